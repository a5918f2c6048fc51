/* json.c -- pyq.json: the host's JSON codec, Lua values <-> JSON text.
 *
 * Decoding builds Lua values straight from the text: a number without
 * fraction or exponent that fits 64 bits is an integer, others are floats;
 * arrays and objects get the shared marker metatables (pyq.json.array /
 * pyq.json.object), so empty ones round-trip.  Encoding writes straight
 * into a pyq_jbuf from raw table reads (no metamethod, no Lua code runs),
 * so a caller such as pyq.jsonl's writer is never interrupted half-way.
 * An unmarked table is an array when its keys are exactly 1..n, an object
 * when they are all strings, and [] when empty.  Errors name the path
 * (.a[2].b) on encode and the line and column on decode.  Both directions
 * stop at PYQ_JSON_MAXDEPTH levels, long before the C stack would. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "json.h"
#include "lua/check.h"
#include "lua/error.h"
#include "core/log.h"
#include "core/signal.h"

static const char ARRAY_MT = 'a', OBJECT_MT = 'o';   /* registry keys */

enum { UNMARKED, ARRAY, OBJECT };

/* ---- buffer ------------------------------------------------------------ */

int pyq_jbuf_grow (pyq_jbuf *b, size_t more) {
  size_t size = b->size ? b->size : 256;
  char *p;
  if (more > SIZE_MAX / 2 - b->n) return 0;
  while (size - b->n < more) size *= 2;
  p = realloc(b->p, size);
  if (p == NULL) return 0;
  b->p = p;
  b->size = size;
  return 1;
}

void pyq_jbuf_free (pyq_jbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->size = 0;
}

#define reserve(b, k) ((b)->size - (b)->n >= (k) || pyq_jbuf_grow((b), (k)))

/* Pushes the two marker metatables (array, object), made on first use. */
static void push_markers (lua_State *L) {
  static const char *const names[] = { "pyq.json.array", "pyq.json.object" };
  const char *keys[] = { &ARRAY_MT, &OBJECT_MT };
  int i;
  for (i = 0; i < 2; i++) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, keys[i]) == LUA_TTABLE) continue;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, names[i]);
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, keys[i]);
  }
}

static char decimal_point (void) {
  const char *dp = localeconv()->decimal_point;
  return dp && dp[0] ? dp[0] : '.';
}

/* ---- encoding ---------------------------------------------------------- */

/* How each byte goes into a JSON string: 0 as it is, 1 starts a UTF-8
 * sequence to check, else the letter after the backslash ('u': \u00XX). */
static const unsigned char str_class[256] = {
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
  0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* One level of the path from the value being encoded to the top. */
typedef struct level {
  const void *table;
  int kind;            /* 0 no key yet, 1 key at stack index `key`, 2 index i */
  int key;
  lua_Integer i;
} level;

typedef struct enc {
  lua_State *L;
  pyq_jbuf *b;
  int flags;
  char dp;
  const void *array_mt, *object_mt;
  int depth;
  level path[PYQ_JSON_MAXDEPTH + 1];
} enc;

static void add_path (enc *e, luaL_Buffer *B) {
  lua_State *L = e->L;
  int d, any = 0;
  for (d = 1; d <= e->depth; d++) {
    level *lv = &e->path[d];
    if (e->depth > 24 && d == 11) {   /* a deep path: its two ends */
      luaL_addstring(B, "...");
      d = e->depth - 10;
      continue;
    }
    if (lv->kind == 2 || (lv->kind == 1 && lua_type(L, lv->key) == LUA_TNUMBER)) {
      lua_pushfstring(L, "[%I]", lv->kind == 2 ? lv->i : lua_tointeger(L, lv->key));
      luaL_addvalue(B);
      any = 1;
    } else if (lv->kind == 1) {
      size_t n, k;
      const char *s = lua_tolstring(L, lv->key, &n);
      int ident = n > 0 && n <= 64 && !(s[0] >= '0' && s[0] <= '9');
      for (k = 0; k < n && ident; k++)
        ident = s[k] == '_' || (s[k] >= 'a' && s[k] <= 'z') ||
                (s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9');
      if (ident) {
        luaL_addchar(B, '.');
        luaL_addlstring(B, s, n);
      } else {
        lua_pushfstring(L, "[\"%s\"]", n > 64 ? "..." : s);
        luaL_addvalue(B);
      }
      any = 1;
    }
  }
  if (!any) luaL_addchar(B, '.');
}

/* Pushes "message at .path" and returns 0, for the caller to return. */
static int fail (enc *e, const char *fmt, ...) {
  luaL_Buffer B;
  va_list ap;
  luaL_buffinit(e->L, &B);
  va_start(ap, fmt);
  lua_pushvfstring(e->L, fmt, ap);
  va_end(ap);
  luaL_addvalue(&B);
  luaL_addstring(&B, " at ");
  add_path(e, &B);
  luaL_pushresult(&B);
  return 0;
}

#define put(e, lit) (memcpy((e)->b->p + (e)->b->n, lit, sizeof lit - 1), \
                     (e)->b->n += sizeof lit - 1)

static int oom (enc *e) { return fail(e, "out of memory"); }

/* Length of the valid UTF-8 sequence at p, or minus the length of the
 * longest invalid prefix to replace by one U+FFFD (Unicode's "maximal
 * subpart" rule, as Python's errors="replace"). */
static int utf8_seq (const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  int n, k;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;           /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;           /* nothing above U+10FFFF */
  } else return -1;
  for (k = 1; k < n; k++) {
    if (p + k >= end || p[k] < lo || p[k] > hi) return -k;
    lo = 0x80; hi = 0xBF;
  }
  return n;
}

static int enc_string (enc *e, const char *str, size_t len) {
  pyq_jbuf *b = e->b;
  const unsigned char *p = (const unsigned char *)str, *end = p + len;
  if (!reserve(b, len + 2)) return oom(e);
  b->p[b->n++] = '"';
  while (p < end) {
    const unsigned char *run = p;
    unsigned c;
    while (p < end && str_class[*p] == 0) p++;
    memcpy(b->p + b->n, run, (size_t)(p - run));
    b->n += (size_t)(p - run);
    if (p == end) break;
    /* room for this escape and every byte left as it is */
    if (!reserve(b, (size_t)(end - p) + 8)) return oom(e);
    c = str_class[*p];
    if (c == 1) {
      int k = utf8_seq(p, end);
      if (k > 0) {
        memcpy(b->p + b->n, p, (size_t)k);
        b->n += (size_t)k;
        p += k;
        continue;
      }
      if (e->flags & PYQ_JSON_UTF8_ERROR) {
        char what[64];   /* lua_pushfstring has no %X */
        snprintf(what, sizeof what, "byte 0x%02X at offset %d of a string",
                 (unsigned)*p, (int)(p - (const unsigned char *)str));
        return fail(e, "invalid UTF-8 (%s)", what);
      }
      put(e, "\xEF\xBF\xBD");
      p += -k;
    } else if (c == 'u') {
      static const char hex[] = "0123456789abcdef";
      put(e, "\\u00");
      b->p[b->n++] = hex[*p >> 4];
      b->p[b->n++] = hex[*p & 15];
      p++;
    } else {
      b->p[b->n++] = '\\';
      b->p[b->n++] = (char)c;
      p++;
    }
  }
  b->p[b->n++] = '"';
  return 1;
}

/* Writes the integer's digits at out; returns their count (at most 20). */
static int fmt_integer (char *out, lua_Integer v) {
  char tmp[24];
  int n = 0, k = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) out[k++] = '-';
  while (n) out[k++] = tmp[--n];
  return k;
}

static int enc_integer (enc *e, lua_Integer v) {
  if (!reserve(e->b, 24)) return oom(e);
  e->b->n += (size_t)fmt_integer(e->b->p + e->b->n, v);
  return 1;
}

/* The shortest of %.15g, %.16g, %.17g that reads back equal; an integral
 * value keeps a ".0" so it decodes as a float again. */
static int enc_float (enc *e, double x) {
  char tmp[48];
  int n, k, point = 0;
  if (x != x) return fail(e, "cannot encode NaN");
  if (isinf(x)) return fail(e, "cannot encode %s", x > 0 ? "Infinity" : "-Infinity");
  if (!reserve(e->b, sizeof tmp)) return oom(e);
  if (x == floor(x) && fabs(x) < 9007199254740992.0) {
    n = 0;
    if (x == 0 && signbit(x)) tmp[n++] = '-';
    n += fmt_integer(tmp + n, (lua_Integer)x);
  } else {
    n = snprintf(tmp, sizeof tmp, "%.15g", x);
    if (strtod(tmp, NULL) != x) {
      n = snprintf(tmp, sizeof tmp, "%.16g", x);
      if (strtod(tmp, NULL) != x) n = snprintf(tmp, sizeof tmp, "%.17g", x);
    }
    for (k = 0; k < n; k++) {
      if (tmp[k] == e->dp) tmp[k] = '.';
      if (tmp[k] == '.' || tmp[k] == 'e') point = 1;
    }
  }
  if (!point) { tmp[n++] = '.'; tmp[n++] = '0'; }
  memcpy(e->b->p + e->b->n, tmp, (size_t)n);
  e->b->n += (size_t)n;
  return 1;
}

static int enc_value (enc *e, int idx);

static int marker (enc *e, int idx) {
  const void *mt;
  if (!lua_getmetatable(e->L, idx)) return UNMARKED;
  mt = lua_topointer(e->L, -1);
  lua_pop(e->L, 1);
  return mt == e->array_mt ? ARRAY : mt == e->object_mt ? OBJECT : UNMARKED;
}

/* For what is wrong with the table itself: the path to the table. */
#define at_table(e) ((e)->path[(e)->depth].kind = 0)

static int bad_key (enc *e, int key) {
  lua_State *L = e->L;
  at_table(e);
  if (lua_type(L, key) == LUA_TNUMBER && !lua_isinteger(L, key))
    return fail(e, "cannot encode a table with a float key (%f)", lua_tonumber(L, key));
  return fail(e, "cannot encode a table with a %s key", luaL_typename(L, key));
}

/* An object, from the first pair lua_next left on the stack. */
static int enc_object (enc *e, int t, int marked) {
  lua_State *L = e->L;
  pyq_jbuf *b = e->b;
  level *lv = &e->path[e->depth];
  int first = 1;
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = '{';
  do {
    int key = lua_gettop(L) - 1;
    if (lua_type(L, key) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, key, &n);
      if (!reserve(b, 1)) return oom(e);
      if (!first) b->p[b->n++] = ',';
      if (!enc_string(e, s, n)) return 0;
    } else if (lua_isinteger(L, key) && marked) {
      if (!reserve(b, 28)) return oom(e);
      if (!first) b->p[b->n++] = ',';
      b->p[b->n++] = '"';
      b->n += (size_t)fmt_integer(b->p + b->n, lua_tointeger(L, key));
      b->p[b->n++] = '"';
    } else if (lua_isinteger(L, key)) {
      at_table(e);
      return fail(e, "cannot encode a table with both string and integer keys "
                  "(pyq.json.object(t) makes integer keys strings)");
    } else {
      return bad_key(e, key);
    }
    if (!reserve(b, 1)) return oom(e);
    b->p[b->n++] = ':';
    first = 0;
    lv->kind = 1;
    lv->key = key;
    if (!enc_value(e, key + 1)) return 0;
    lua_pop(L, 1);
  } while (lua_next(L, t));
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = '}';
  return 1;
}

/* An array whose keys lua_next does not give as 1, 2, 3, ...: check that
 * they are exactly 1..n, then read them in order. */
static int enc_array_slow (enc *e, int t) {
  lua_State *L = e->L;
  pyq_jbuf *b = e->b;
  level *lv = &e->path[e->depth];
  lua_Integer n = 0, max = 0, i;
  int strings = 0;
  at_table(e);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
      n++;
      if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      strings = 1;
    } else {
      return bad_key(e, lua_gettop(L));
    }
  }
  if (strings && n == 0)
    return fail(e, "cannot encode an array (pyq.json.array) with string keys");
  if (strings)
    return fail(e, "cannot encode a table with both string and integer keys "
                "(pyq.json.object(t) makes integer keys strings)");
  if (max != n)
    return fail(e, "cannot encode a sparse array (%I values, largest index %I)", n, max);
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = '[';
  for (i = 1; i <= n; i++) {
    if (i > 1) {
      if (!reserve(b, 1)) return oom(e);
      b->p[b->n++] = ',';
    }
    lua_rawgeti(L, t, i);
    lv->kind = 2;
    lv->i = i;
    if (!enc_value(e, lua_gettop(L))) return 0;
    lua_pop(L, 1);
  }
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = ']';
  return 1;
}

/* An array, from the first pair lua_next left on the stack: one pass while
 * the keys come as 1, 2, 3, ... (an array part does), else the slow way. */
static int enc_array (enc *e, int t) {
  lua_State *L = e->L;
  pyq_jbuf *b = e->b;
  level *lv = &e->path[e->depth];
  size_t start = b->n;
  lua_Integer i = 0;
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = '[';
  do {
    int key = lua_gettop(L) - 1;
    if (!lua_isinteger(L, key) || lua_tointeger(L, key) != ++i) {
      lua_pop(L, 2);
      b->n = start;
      return enc_array_slow(e, t);
    }
    if (i > 1) {
      if (!reserve(b, 1)) return oom(e);
      b->p[b->n++] = ',';
    }
    lv->kind = 1;
    lv->key = key;
    if (!enc_value(e, key + 1)) return 0;
    lua_pop(L, 1);
  } while (lua_next(L, t));
  if (!reserve(b, 1)) return oom(e);
  b->p[b->n++] = ']';
  return 1;
}

static int enc_table (enc *e, int t) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, t);
  int d, kind, ok;
  for (d = 1; d <= e->depth; d++)
    if (e->path[d].table == p) return fail(e, "cannot encode a cycle");
  if (e->depth >= PYQ_JSON_MAXDEPTH)
    return fail(e, "cannot encode tables nested deeper than %d", PYQ_JSON_MAXDEPTH);
  if (!lua_checkstack(L, 6)) return fail(e, "out of Lua stack");
  kind = marker(e, t);
  e->depth++;
  e->path[e->depth].table = p;
  e->path[e->depth].kind = 0;
  lua_pushnil(L);
  if (!lua_next(L, t)) {
    if (!reserve(e->b, 2)) return oom(e);
    if (kind == OBJECT) put(e, "{}"); else put(e, "[]");
    ok = 1;
  } else if (kind == OBJECT || (kind == UNMARKED && lua_type(L, -2) == LUA_TSTRING)) {
    ok = enc_object(e, t, kind == OBJECT);
  } else {
    ok = enc_array(e, t);
  }
  if (ok) e->depth--;
  return ok;
}

static int enc_value (enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      if (!reserve(e->b, 4)) return oom(e);
      put(e, "null");
      return 1;
    case LUA_TBOOLEAN:
      if (!reserve(e->b, 5)) return oom(e);
      if (lua_toboolean(L, idx)) put(e, "true"); else put(e, "false");
      return 1;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) return enc_integer(e, lua_tointeger(L, idx));
      return enc_float(e, lua_tonumber(L, idx));
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      return enc_string(e, s, n);
    }
    case LUA_TTABLE:
      return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {   /* pyq.json.null */
        if (!reserve(e->b, 4)) return oom(e);
        put(e, "null");
        return 1;
      }
      /* FALLTHROUGH */
    default:
      return fail(e, "cannot encode a %s", luaL_typename(L, idx));
  }
}

int pyq_json_encode (lua_State *L, int idx, pyq_jbuf *b, int flags) {
  enc encoder, *e = &encoder;   /* on the C stack: an error raised by the
                                 * Lua API inside leaves nothing to free */
  int base = lua_gettop(L), ok;
  size_t start = b->n;
  idx = lua_absindex(L, idx);
  e->L = L;
  e->b = b;
  e->flags = flags;
  e->dp = decimal_point();
  e->depth = 0;
  push_markers(L);
  e->array_mt = lua_topointer(L, -2);
  e->object_mt = lua_topointer(L, -1);
  ok = enc_value(e, idx);
  if (ok) {
    lua_settop(L, base);
    return 1;
  }
  b->n = start;
  lua_replace(L, base + 1);   /* the message */
  lua_settop(L, base + 1);
  return 0;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  const unsigned char *s, *p, *end;
  int flags, depth;
  int array_mt, object_mt;   /* stack indices */
} dec;

static int dfail (dec *d, const char *fmt, ...) {
  const unsigned char *q, *line_start = d->s;
  int line = 1;
  va_list ap;
  for (q = d->s; q < d->p; q++)
    if (*q == '\n') { line++; line_start = q + 1; }
  va_start(ap, fmt);
  lua_pushvfstring(d->L, fmt, ap);
  va_end(ap);
  if (d->flags & PYQ_JSON_ONE_LINE)
    lua_pushfstring(d->L, "%s at column %d", lua_tostring(d->L, -1),
                    (int)(d->p - line_start) + 1);
  else
    lua_pushfstring(d->L, "%s at line %d column %d (byte %I)", lua_tostring(d->L, -1),
                    line, (int)(d->p - line_start) + 1, (lua_Integer)(d->p - d->s) + 1);
  return 0;
}

static int unexpected_after (dec *d, const char *after) {
  unsigned c;
  char what[16];
  if (d->p >= d->end) return dfail(d, "unexpected end of input");
  c = *d->p;
  if (c > 0x20 && c < 0x7F) return dfail(d, "unexpected character '%c'%s", (int)c, after);
  snprintf(what, sizeof what, "0x%02X", c);   /* lua_pushfstring has no %X */
  return dfail(d, "unexpected byte %s%s", what, after);
}

static int unexpected (dec *d) { return unexpected_after(d, ""); }

static inline void skip_space (dec *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

static int hex4 (const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return 0;
  }
  *out = v;
  return 1;
}

static void add_utf8 (luaL_Buffer *B, unsigned c) {
  char u[4];
  int n;
  if (c < 0x80) { u[0] = (char)c; n = 1; }
  else if (c < 0x800) { u[0] = (char)(0xC0 | c >> 6); u[1] = (char)(0x80 | (c & 63)); n = 2; }
  else if (c < 0x10000) {
    u[0] = (char)(0xE0 | c >> 12); u[1] = (char)(0x80 | (c >> 6 & 63));
    u[2] = (char)(0x80 | (c & 63)); n = 3;
  } else {
    u[0] = (char)(0xF0 | c >> 18); u[1] = (char)(0x80 | (c >> 12 & 63));
    u[2] = (char)(0x80 | (c >> 6 & 63)); u[3] = (char)(0x80 | (c & 63)); n = 4;
  }
  luaL_addlstring(B, u, (size_t)n);
}

/* The rest of a string with escapes, from d->p at a backslash. */
static int dec_string_slow (dec *d, const unsigned char *start) {
  luaL_Buffer B;
  luaL_buffinit(d->L, &B);
  luaL_addlstring(&B, (const char *)start, (size_t)(d->p - start));
  for (;;) {
    const unsigned char *run = d->p;
    unsigned c;
    while (d->p < d->end && *d->p != '"' && *d->p != '\\') d->p++;
    luaL_addlstring(&B, (const char *)run, (size_t)(d->p - run));
    if (d->p >= d->end) return dfail(d, "unexpected end of input in a string");
    if (*d->p == '"') break;
    if (d->end - d->p < 2) { d->p = d->end; return unexpected(d); }
    switch (d->p[1]) {
      case '"': case '\\': case '/': luaL_addchar(&B, (char)d->p[1]); break;
      case 'b': luaL_addchar(&B, '\b'); break;
      case 'f': luaL_addchar(&B, '\f'); break;
      case 'n': luaL_addchar(&B, '\n'); break;
      case 'r': luaL_addchar(&B, '\r'); break;
      case 't': luaL_addchar(&B, '\t'); break;
      case 'u':
        if (d->end - d->p < 6 || !hex4(d->p + 2, &c))
          return dfail(d, "invalid \\u escape in a string");
        if (c >= 0xD800 && c <= 0xDBFF) {   /* a high surrogate: its pair? */
          unsigned lo;
          if (d->end - d->p >= 12 && d->p[6] == '\\' && d->p[7] == 'u' &&
              hex4(d->p + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            d->p += 6;
          } else {
            c = 0xFFFD;                     /* a lone surrogate */
          }
        } else if (c >= 0xDC00 && c <= 0xDFFF) {
          c = 0xFFFD;
        }
        add_utf8(&B, c);
        d->p += 4;
        break;
      default:
        d->p++;
        return dfail(d, "invalid escape '\\%c' in a string", d->p[0] > 0x20 && d->p[0] < 0x7F ? (int)d->p[0] : '?');
    }
    d->p += 2;
  }
  d->p++;
  luaL_pushresult(&B);
  return 1;
}

static int dec_string (dec *d) {
  const unsigned char *start = ++d->p;
  while (d->p < d->end && *d->p != '"' && *d->p != '\\') d->p++;
  if (d->p >= d->end) return dfail(d, "unexpected end of input in a string");
  if (*d->p == '\\') return dec_string_slow(d, start);
  lua_pushlstring(d->L, (const char *)start, (size_t)(d->p - start));
  d->p++;
  return 1;
}

static const double pow10_[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* A number: an integer when it has no fraction or exponent and fits 64
 * bits; a float otherwise, computed exactly when the digits fit a double's
 * mantissa and the power of ten is exact (Clinger's fast path), else by
 * Lua's own conversion (strtod, whatever the locale). */
static int dec_number (dec *d) {
  const unsigned char *start = d->p, *p = d->p, *end = d->end;
  uint64_t m = 0;
  int neg = 0, digits = 0, frac = 0, isfloat = 0, exp = 0, expneg = 0;
  if (*p == '-') { neg = 1; p++; }
  if (p >= end || *p < '0' || *p > '9') { d->p = p; return unexpected(d); }
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9') { d->p = p; return dfail(d, "invalid number (a leading zero)"); }
    digits = 1;
  } else {
    while (p < end && *p >= '0' && *p <= '9') {
      if (digits < 19) m = m * 10 + (uint64_t)(*p - '0');
      digits++;
      p++;
    }
  }
  if (p < end && *p == '.') {
    isfloat = 1;
    p++;
    if (p >= end || *p < '0' || *p > '9') { d->p = p; return dfail(d, "invalid number (no digit after the point)"); }
    while (p < end && *p >= '0' && *p <= '9') {
      if (digits < 19) { m = m * 10 + (uint64_t)(*p - '0'); frac++; }
      digits++;
      p++;
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    isfloat = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-')) expneg = *p++ == '-';
    if (p >= end || *p < '0' || *p > '9') { d->p = p; return dfail(d, "invalid number (no digit in the exponent)"); }
    while (p < end && *p >= '0' && *p <= '9') {
      if (exp < 100000) exp = exp * 10 + (*p - '0');
      p++;
    }
  }
  d->p = p;
  if (!isfloat && digits <= 19) {
    if (m <= (uint64_t)INT64_MAX) {
      lua_pushinteger(d->L, neg ? -(lua_Integer)m : (lua_Integer)m);
      return 1;
    }
    if (neg && m == (uint64_t)INT64_MAX + 1) {
      lua_pushinteger(d->L, INT64_MIN);
      return 1;
    }
  }
  if (digits <= 19 && m <= ((uint64_t)1 << 53)) {
    int e10 = (expneg ? -exp : exp) - frac;
    if (e10 >= -22 && e10 <= 22) {
      double v = (double)m;
      v = e10 < 0 ? v / pow10_[-e10] : v * pow10_[e10];
      lua_pushnumber(d->L, neg ? -v : v);
      return 1;
    }
  }
  {   /* the slow path: a NUL-terminated copy for Lua's conversion */
    char tmp[64];
    size_t n = (size_t)(p - start);
    const char *s = tmp;
    if (n < sizeof tmp) {
      memcpy(tmp, start, n);
      tmp[n] = '\0';
    } else {
      s = lua_pushlstring(d->L, (const char *)start, n);
    }
    if (lua_stringtonumber(d->L, s) == 0) { d->p = start; return dfail(d, "invalid number"); }
    if (lua_isinteger(d->L, -1))   /* over 64 bits: Lua said integer anyway? */
      lua_pushnumber(d->L, (lua_Number)lua_tointeger(d->L, -1)), lua_remove(d->L, -2);
    if (s != tmp) lua_remove(d->L, -2);
    return 1;
  }
}

static int dec_value (dec *d);

static int dec_literal (dec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return unexpected(d);
  d->p += n;
  return 1;
}

static int dec_array (dec *d) {
  lua_State *L = d->L;
  lua_Integer i = 0;
  if (++d->depth > PYQ_JSON_MAXDEPTH)
    return dfail(d, "nesting deeper than %d", PYQ_JSON_MAXDEPTH);
  if (!lua_checkstack(L, 4)) return dfail(d, "out of Lua stack");
  d->p++;
  lua_createtable(L, 4, 0);
  lua_pushvalue(L, d->array_mt);
  lua_setmetatable(L, -2);
  skip_space(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    if (!dec_value(d)) return 0;
    lua_rawseti(L, -2, ++i);
    skip_space(d);
    if (d->p < d->end && *d->p == ',') { d->p++; continue; }
    if (d->p < d->end && *d->p == ']') { d->p++; break; }
    return unexpected(d);
  }
  d->depth--;
  return 1;
}

static int dec_object (dec *d) {
  lua_State *L = d->L;
  if (++d->depth > PYQ_JSON_MAXDEPTH)
    return dfail(d, "nesting deeper than %d", PYQ_JSON_MAXDEPTH);
  if (!lua_checkstack(L, 4)) return dfail(d, "out of Lua stack");
  d->p++;
  lua_createtable(L, 0, 4);   /* small objects are common: fewer rehashes */
  lua_pushvalue(L, d->object_mt);
  lua_setmetatable(L, -2);
  skip_space(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    skip_space(d);
    if (d->p >= d->end || *d->p != '"') return unexpected(d);
    if (!dec_string(d)) return 0;
    skip_space(d);
    if (d->p >= d->end || *d->p != ':') return unexpected(d);
    d->p++;
    if (!dec_value(d)) return 0;
    lua_rawset(L, -3);
    skip_space(d);
    if (d->p < d->end && *d->p == ',') { d->p++; continue; }
    if (d->p < d->end && *d->p == '}') { d->p++; break; }
    return unexpected(d);
  }
  d->depth--;
  return 1;
}

static int dec_value (dec *d) {
  skip_space(d);
  if (d->p >= d->end) return unexpected(d);
  switch (*d->p) {
    case '{': return dec_object(d);
    case '[': return dec_array(d);
    case '"': return dec_string(d);
    case 't': if (!dec_literal(d, "true", 4)) return 0; lua_pushboolean(d->L, 1); return 1;
    case 'f': if (!dec_literal(d, "false", 5)) return 0; lua_pushboolean(d->L, 0); return 1;
    case 'n': if (!dec_literal(d, "null", 4)) return 0; lua_pushlightuserdata(d->L, NULL); return 1;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      return dec_number(d);
    default: return unexpected(d);
  }
}

int pyq_json_decode (lua_State *L, const char *s, size_t n, int flags) {
  dec d;
  int base = lua_gettop(L), ok;
  d.L = L;
  d.s = d.p = (const unsigned char *)s;
  d.end = d.s + n;
  d.flags = flags;
  d.depth = 0;
  push_markers(L);
  d.array_mt = base + 1;
  d.object_mt = base + 2;
  skip_space(&d);
  if (d.p == d.end) {
    lua_pushliteral(L, "empty input");
    ok = 0;
  } else if ((ok = dec_value(&d))) {
    skip_space(&d);
    if (d.p < d.end) ok = unexpected_after(&d, " after the value");
  }
  lua_replace(L, base + 1);   /* the value or the message */
  lua_settop(L, base + 1);
  return ok;
}

/* ---- the Lua module ---------------------------------------------------- */

/* The encoder's buffer, kept between calls (an upvalue of encode). */
#define SCRATCH "pyq.json.scratch"

static int scratch_gc (lua_State *L) {
  pyq_jbuf_free(luaL_checkudata(L, 1, SCRATCH));
  return 0;
}

static int json_encode (lua_State *L) {
  pyq_jbuf *b = lua_touserdata(L, lua_upvalueindex(1));
  int flags = 0;
  luaL_checkany(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2))
      return pyq_usage(L, "pyq.json.encode: options must be a table, got %s", luaL_typename(L, 2));
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *v;
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "invalid_utf8") != 0)
        return pyq_usage(L, "pyq.json.encode: unknown option '%s'", luaL_tolstring(L, -2, NULL));
      v = lua_tostring(L, -1);
      if (lua_type(L, -1) != LUA_TSTRING || (strcmp(v, "error") && strcmp(v, "replace")))
        return pyq_usage(L, "pyq.json.encode: invalid_utf8 must be \"replace\" or \"error\", got %s",
                          pyq_got(L, -1));
      if (strcmp(v, "error") == 0) flags |= PYQ_JSON_UTF8_ERROR;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 1);
  b->n = 0;
  if (!pyq_json_encode(L, 1, b, flags))
    return pyq_raise(L, "encode", "pyq.json.encode: %s", lua_tostring(L, -1));
  lua_pushlstring(L, b->p, b->n);
  if (b->size > (1u << 20)) pyq_jbuf_free(b);   /* do not keep a huge one */
  return 1;
}

static int json_decode (lua_State *L) {
  size_t n;
  const char *s;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.json.decode: expected a string, got %s", luaL_typename(L, 1));
  s = lua_tolstring(L, 1, &n);
  if (!pyq_json_decode(L, s, n, 0))
    return pyq_raise(L, "decode", "pyq.json.decode: %s", lua_tostring(L, -1));
  return 1;
}

/* pyq.json.array([t]) / pyq.json.object([t]): mark t (or a new table). */
static int mark (lua_State *L, int which, const char *fname) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else if (!lua_istable(L, 1)) {
    return pyq_usage(L, "%s: expected a table, got %s", fname, luaL_typename(L, 1));
  }
  lua_settop(L, 1);
  push_markers(L);
  if (lua_getmetatable(L, 1) && !lua_rawequal(L, -1, 2) && !lua_rawequal(L, -1, 3))
    return pyq_usage(L, "%s: the table has a metatable of its own", fname);
  lua_settop(L, 3);
  lua_pushvalue(L, which == ARRAY ? 2 : 3);
  lua_setmetatable(L, 1);
  lua_settop(L, 1);
  return 1;
}

static int json_array (lua_State *L) { return mark(L, ARRAY, "pyq.json.array"); }
static int json_object (lua_State *L) { return mark(L, OBJECT, "pyq.json.object"); }

static int is_marked (lua_State *L, int which) {
  int yes = 0;
  if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
    push_markers(L);
    yes = lua_rawequal(L, -3, which == ARRAY ? -2 : -1);
  }
  lua_pushboolean(L, yes);
  return 1;
}

static int json_is_array (lua_State *L) { return is_marked(L, ARRAY); }
static int json_is_object (lua_State *L) { return is_marked(L, OBJECT); }

int luaopen_pyq_json (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"decode", json_decode}, {"array", json_array}, {"object", json_object},
    {"is_array", json_is_array}, {"is_object", json_is_object}, {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  lua_newuserdatauv(L, sizeof(pyq_jbuf), 0);
  memset(lua_touserdata(L, -1), 0, sizeof(pyq_jbuf));
  if (luaL_newmetatable(L, SCRATCH)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, SCRATCH);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, json_encode, 1);
  lua_setfield(L, -2, "encode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}

void pyq_open_json (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pyq_json);
  lua_setfield(L, -2, "pyq.json");
  lua_pushcfunction(L, luaopen_pyq_jsonl);
  lua_setfield(L, -2, "pyq.jsonl");
  lua_pop(L, 1);
}
