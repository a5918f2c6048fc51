/* fuzz_url.c -- libFuzzer target over pyq.url (host/http/url.c).
 *
 * The first byte picks a round trip over the rest of the input:
 *   parse: a URL that parses builds back to a URL whose parts are the
 *     same, and building that again gives the same text;
 *   join: the rest split at its first NUL into base and ref; a result
 *     parses, and joining "" to it gives it back (it has no fragment) or
 *     it without its fragment;
 *   build: a table of parts made from the bytes (known names, odd names,
 *     values of every type); a URL it gives parses and builds back to
 *     itself;
 *   encode: decode(encode(s)) == s, and encode's output is unreserved
 *     bytes and %XX only; decode of anything never fails.
 * Parts compare equal but for the case of escapes' hex digits, which
 * curl lower-cases when it sets a part.  The only errors allowed are pyq.Errors of kind usage or url; anything
 * else, or a round trip that does not hold, aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "http/url.h"

typedef struct input { const uint8_t *p; size_t n; } input;

static int byte (input *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

/* Calls url[fname] with nargs arguments on the stack; pushes 1 result and
 * returns 1, or pops the error (which must be a usage or url pyq.Error)
 * and returns 0. */
static int call (lua_State *L, const char *fname, int nargs) {
  const char *kind;
  lua_getglobal(L, "url");
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, 1, 0) == LUA_OK) return 1;
  if (!lua_istable(L, -1)) abort();
  lua_getfield(L, -1, "kind");
  kind = lua_tostring(L, -1);
  if (kind == NULL || (strcmp(kind, "usage") != 0 && strcmp(kind, "url") != 0))
    abort();
  lua_pop(L, 2);
  return 0;
}

/* Strings equal but for the case of the hex digits of %XX escapes (curl
 * lower-cases them when it sets a part). */
static int same_text (const char *a, size_t na, const char *b, size_t nb) {
  size_t i;
  int esc = 0;
  if (na != nb) return 0;
  for (i = 0; i < na; i++, esc = esc ? esc - 1 : 0) {
    if (a[i] == b[i]) {
      if (a[i] == '%') esc = 3;
      continue;
    }
    if (!esc || (a[i] | 0x20) != (b[i] | 0x20)) return 0;
  }
  return 1;
}

/* Same keys and values (strings and integers), both ways. */
static int same_parts (lua_State *L, int a, int b) {
  int n = 0;
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  lua_pushnil(L);
  while (lua_next(L, a)) {
    size_t na, nb;
    const char *sa, *sb;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    sa = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &na) : NULL;
    sb = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nb) : NULL;
    if (sa && sb ? !same_text(sa, na, sb, nb) : !lua_rawequal(L, -1, -2)) {
      lua_pop(L, 3);
      return 0;
    }
    lua_pop(L, 2);
    n++;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) { lua_pop(L, 1); n--; }
  return n == 0;
}

/* parse -> build -> parse: the parts stay; build again: the text stays. */
static void parse_trip (lua_State *L, input *in) {
  lua_pushlstring(L, (const char *)in->p, in->n);
  if (!call(L, "parse", 1)) return;                        /* 1: parts */
  lua_pushvalue(L, 1);
  if (!call(L, "build", 1)) abort();                       /* 2: url */
  lua_pushvalue(L, 2);
  if (!call(L, "parse", 1)) abort();                       /* 3: parts */
  if (!same_parts(L, 1, 3)) abort();
  lua_pushvalue(L, 3);
  if (!call(L, "build", 1)) abort();                       /* 4: url */
  if (!lua_rawequal(L, 2, 4)) abort();
  lua_pushvalue(L, 4);
  if (!call(L, "parse", 1)) abort();                       /* 5 */
  if (!same_parts(L, 3, 5)) abort();
}

/* join: the result parses and resolves "" to itself sans fragment. */
static void join_trip (lua_State *L, input *in) {
  const char *s = (const char *)in->p, *nul = memchr(s, '\0', in->n);
  size_t nbase = nul ? (size_t)(nul - s) : in->n / 2;
  lua_pushlstring(L, s, nbase);
  lua_pushlstring(L, s + nbase + (nul != NULL), in->n - nbase - (nul != NULL));
  if (!call(L, "join", 2)) return;                         /* 1: url */
  lua_pushvalue(L, 1);
  if (!call(L, "parse", 1)) abort();                       /* 2: parts */
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "");
  if (!call(L, "join", 2)) abort();                        /* 3 */
  lua_pushnil(L);
  lua_setfield(L, 2, "fragment");
  lua_pushvalue(L, 2);
  if (!call(L, "build", 1)) abort();                       /* 4 */
  lua_pushvalue(L, 4);
  if (!call(L, "parse", 1)) abort();                       /* 5 */
  lua_pushvalue(L, 3);
  if (!call(L, "parse", 1)) abort();                       /* 6 */
  if (!same_parts(L, 5, 6)) abort();
}

static const char *const names[] = {
  "scheme", "user", "password", "options", "host", "zoneid", "port", "path",
  "query", "fragment", "hostname", ""
};

static void push_string (lua_State *L, input *in) {
  size_t len = (size_t)byte(in) % 40;
  if (len > in->n) len = in->n;
  lua_pushlstring(L, (const char *)in->p, len);
  in->p += len;
  in->n -= len;
}

/* build from a table made of the bytes; a URL it gives must hold. */
static void build_trip (lua_State *L, input *in) {
  int i, n = byte(in) % 10;
  lua_newtable(L);
  if (byte(in) < 200) {                                    /* most: a scheme */
    lua_pushstring(L, byte(in) & 1 ? "http" : "foo");
    lua_setfield(L, -2, "scheme");
  }
  for (i = 0; i < n && in->n > 0; i++) {
    int k = byte(in), v = byte(in);
    lua_pushstring(L, names[k % (sizeof names / sizeof *names)]);
    if (v < 160) push_string(L, in);
    else if (v < 230) lua_pushinteger(L, (lua_Integer)(v - 160) * 1000 - 3);
    else if (v < 240) lua_pushnumber(L, 80.5);
    else if (v < 250) lua_pushboolean(L, 1);
    else lua_newtable(L);
    lua_rawset(L, -3);
  }
  if (!call(L, "build", 1)) return;                        /* 1: url */
  lua_pushvalue(L, 1);
  if (!call(L, "parse", 1)) abort();
  if (!call(L, "build", 1)) abort();                       /* 2 */
  lua_pushvalue(L, 2);
  if (!call(L, "parse", 1)) abort();
  if (!call(L, "build", 1)) abort();                       /* 3 */
  if (!lua_rawequal(L, 2, 3)) abort();
}

static int unreserved (int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static int hex (int c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static void encode_trip (lua_State *L, input *in) {
  size_t n, i;
  const char *e;
  lua_pushlstring(L, (const char *)in->p, in->n);          /* 1 */
  lua_pushvalue(L, 1);
  if (!call(L, "encode", 1)) abort();                      /* 2 */
  e = lua_tolstring(L, 2, &n);
  for (i = 0; i < n; i++) {
    if (e[i] == '%') {
      if (i + 2 >= n || !hex(e[i + 1]) || !hex(e[i + 2])) abort();
      i += 2;
    } else if (!unreserved((unsigned char)e[i])) {
      abort();
    }
  }
  lua_pushvalue(L, 2);
  if (!call(L, "decode", 1)) abort();                      /* 3 */
  if (!lua_rawequal(L, 1, 3)) abort();
  lua_pushvalue(L, 1);
  if (!call(L, "decode", 1)) abort();                      /* any string */
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static lua_State *L;
  input in = { data, size };
  if (L == NULL) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "url", luaopen_pyq_url, 1);
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  switch (byte(&in) % 4) {
    case 0: parse_trip(L, &in); break;
    case 1: join_trip(L, &in); break;
    case 2: build_trip(L, &in); break;
    default: encode_trip(L, &in); break;
  }
  lua_settop(L, 0);
  return 0;
}
