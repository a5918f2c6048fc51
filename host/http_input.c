/* http_input.c -- what pyq.http accepts from Lua, checked before anything
 * is sent: the request options (one pass over the table), the URL (scheme
 * allow-list, query encoding through libcurl's URL API), header names and
 * values, and the masking of credentials in what gets logged.  Everything
 * here raises a Lua error naming the function and the option, and is what
 * tests/fuzz/fuzz_input.c exercises. */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include "http.h"

/* 1 when s (n bytes) holds no CR, LF or NUL: a header cannot be split. */
int pyq_http_header_safe (const char *s, size_t n) {
  return memchr(s, '\r', n) == NULL && memchr(s, '\n', n) == NULL &&
         memchr(s, '\0', n) == NULL;
}

/* A header name is a token; its value cannot start another header. */
int pyq_http_header_ok (const char *name, size_t nlen, const char *value,
                        size_t vlen) {
  size_t i;
  if (nlen == 0) return 0;
  for (i = 0; i < nlen; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= ' ' || c >= 127 || c == ':') return 0;
  }
  return pyq_http_header_safe(value, vlen);
}


/* Raises at the user's line: the first Lua frame outside lualib's pyq/. */
static int bad (lua_State *L, const char *fmt, ...) {
  lua_Debug ar;
  va_list ap;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "S", &ar);
    if (*ar.what != 'C' && strstr(ar.short_src, "pyq/http.lua") == NULL) break;
  }
  luaL_where(L, level);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Validators for the value on top of the stack, named `key` in errors. */
static double to_seconds (lua_State *L, const char *fname, const char *key) {
  double v = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0) || v > 1e9)
    bad(L, "%s: %s must be a non-negative number of seconds, "
        "got %s", fname, key, luaL_tolstring(L, -1, NULL));
  return v;
}

lua_Integer pyq_http_to_count (lua_State *L, const char *fname, const char *key) {
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < 0) {
    const char *got = luaL_tolstring(L, -1, NULL);
    lua_pushfstring(L, "%s: %s must be a non-negative integer, got %s", fname,
                    key, got);
    bad(L, "%s", lua_tostring(L, -1));
  }
  return v;
}

int pyq_http_to_bool (lua_State *L, const char *fname, const char *key) {
  if (lua_type(L, -1) != LUA_TBOOLEAN) {
    lua_pushfstring(L, "%s: %s must be a boolean, got %s", fname, key,
                    luaL_typename(L, -1));
    bad(L, "%s", lua_tostring(L, -1));
  }
  return lua_toboolean(L, -1);
}

/* The index in `known` of the key below the value on top, or an error. */
int pyq_http_key_index (lua_State *L, const char *fname,
                        const char *const *known) {
  int i;
  if (lua_type(L, -2) != LUA_TSTRING)
    bad(L, "%s: option names must be strings, got %s", fname,
        luaL_typename(L, -2));
  for (i = 0; known[i]; i++)
    if (strcmp(known[i], lua_tostring(L, -2)) == 0) return i;
  return bad(L, "%s: unknown option '%s'", fname, lua_tostring(L, -2));
}

enum { K_URL, K_METHOD, K_HEADERS, K_BODY, K_QUERY, K_TIMEOUT, K_CTIMEOUT,
       K_FOLLOW, K_MAXREDIR, K_MAXBODY, K_VERIFY };

static const char *const request_keys[] = {
  "url", "method", "headers", "body", "query", "timeout", "connect_timeout",
  "follow_redirects", "max_redirects", "max_body", "verify", NULL
};

struct curl_slist *pyq_http_headers (lua_State *L, int t, int present,
                                     const char *fname) {
  struct curl_slist *list = NULL, *n;
  if (!present) return NULL;
  if (lua_getfield(L, t, "headers") == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (!lua_istable(L, -1))
    bad(L, "%s: headers must be a table, got %s", fname,
        luaL_typename(L, -1));
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    size_t nlen, vlen;
    const char *name, *value;
    if (lua_type(L, -2) != LUA_TSTRING ||
        (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
      curl_slist_free_all(list);
      bad(L, "%s: headers must map names to strings, got %s = "
          "%s", fname, luaL_typename(L, -2), luaL_typename(L, -1));
    }
    name = lua_tolstring(L, -2, &nlen);
    value = lua_tolstring(L, -1, &vlen);
    if (!pyq_http_header_ok(name, nlen, value, vlen)) {
      curl_slist_free_all(list);
      bad(L, "%s: header '%s' has a bad name or a CR, LF or "
          "NUL in its value", fname, name);
    }
    lua_pushfstring(L, vlen ? "%s: %s" : "%s;", name, value);
    n = curl_slist_append(list, lua_tostring(L, -1));
    lua_pop(L, 2);
    if (n == NULL) {
      curl_slist_free_all(list);
      luaL_error(L, "not enough memory");
    }
    list = n;
  }
  lua_pop(L, 1);
  return list;
}

/* Appends one name=value pair (URL-encoded) to the query of u. */
static void add_query (lua_State *L, CURLU *u, int name, int value,
                       const char *fname) {
  const char *v;
  if (lua_type(L, value) == LUA_TBOOLEAN)
    v = lua_toboolean(L, value) ? "true" : "false";
  else if (lua_type(L, value) == LUA_TSTRING || lua_type(L, value) == LUA_TNUMBER)
    v = lua_tostring(L, value);
  else {
    curl_url_cleanup(u);
    bad(L, "%s: query value for '%s' must be a string, number "
        "or boolean, got %s", fname, lua_tostring(L, name), luaL_typename(L, value));
    return;
  }
  lua_pushfstring(L, "%s=%s", lua_tostring(L, name), v);
  curl_url_set(u, CURLUPART_QUERY, lua_tostring(L, -1),
               CURLU_APPENDQUERY | CURLU_URLENCODE);
  lua_pop(L, 1);
}

static void build_query (lua_State *L, int t, CURLU *u, const char *fname) {
  if (lua_getfield(L, t, "query") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) {
    curl_url_cleanup(u);
    bad(L, "%s: query must be a table, got %s", fname,
        luaL_typename(L, -1));
  }
  /* sorted names, so the same table always gives the same URL */
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_remove(L, -2);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -4)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      curl_url_cleanup(u);
      bad(L, "%s: query names must be strings, got %s", fname,
          luaL_typename(L, -1));
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, (lua_Integer)luaL_len(L, -3) + 1);
  }
  lua_pushvalue(L, -1);
  lua_insert(L, -3);
  lua_call(L, 1, 0);
  {
    lua_Integer i, n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_pushvalue(L, -1);
      lua_gettable(L, -4);
      if (lua_istable(L, -1)) {   /* a list: the name repeated */
        lua_Integer j, m = luaL_len(L, -1);
        for (j = 1; j <= m; j++) {
          lua_rawgeti(L, -1, j);
          add_query(L, u, lua_gettop(L) - 2, lua_gettop(L), fname);
          lua_pop(L, 1);
        }
      } else {
        add_query(L, u, lua_gettop(L) - 1, lua_gettop(L), fname);
      }
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 2);
}

static const char *masked (const char *url, char *out, size_t size) {
  pyq_http_mask_url(url, out, size);
  return out;
}

/* "http://host..." or "https://host..." with no space, CR, LF or NUL */
static int plain_http (const char *url, size_t n) {
  size_t host = strncasecmp(url, "http://", 7) == 0 ? 7
              : strncasecmp(url, "https://", 8) == 0 ? 8 : 0;
  return host > 0 && n > host && url[host] != '/' && pyq_http_header_safe(url, n) &&
         memchr(url, ' ', n) == NULL;
}

/* Checks the URL and scheme and appends the query; pushes the final URL.
 * A plain http(s) URL without a query table goes to libcurl as it is:
 * libcurl parses it again anyway, and refuses what it cannot send. */
static void build_url (lua_State *L, int t, int has_query, const char *fname) {
  CURLU *u;
  CURLUcode rc;
  char *scheme = NULL, *full = NULL, shown[1024];
  const char *url;
  size_t n;
  int type = lua_type(L, 2) != LUA_TNIL ? (lua_pushvalue(L, 2), lua_type(L, 2))
           : lua_istable(L, t) ? lua_getfield(L, t, "url") : (lua_pushnil(L), LUA_TNIL);
  if (type != LUA_TSTRING)
    bad(L, "%s: url must be a string, got %s", fname,
        luaL_typename(L, -1));
  url = lua_tolstring(L, -1, &n);
  if (!has_query && plain_http(url, n)) return;
  if ((u = curl_url()) == NULL) luaL_error(L, "not enough memory");
  rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) {
    curl_url_cleanup(u);
    bad(L, "%s: bad url '%s': %s", fname, masked(url, shown, sizeof shown),
        curl_url_strerror(rc));
  }
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (scheme == NULL || (strcasecmp(scheme, "http") != 0 &&
                         strcasecmp(scheme, "https") != 0)) {
    curl_free(scheme);
    curl_url_cleanup(u);
    bad(L, "%s: url '%s' is not http or https", fname,
        masked(url, shown, sizeof shown));
  }
  curl_free(scheme);
  build_query(L, t, u, fname);
  curl_url_get(u, CURLUPART_URL, &full, 0);
  curl_url_cleanup(u);
  lua_pushstring(L, full ? full : url);
  curl_free(full);
  lua_remove(L, -2);
}

static void check_method (lua_State *L, int t, unsigned present, char *out,
                          size_t size, const char *fname) {
  const char *m = (present & (1u << K_BODY)) ? "POST" : "GET";
  size_t i, n;
  int type = lua_type(L, 1) != LUA_TNIL ? (lua_pushvalue(L, 1), lua_type(L, 1))
           : (present & (1u << K_METHOD)) ? lua_getfield(L, t, "method")
           : (lua_pushnil(L), LUA_TNIL);
  if (type == LUA_TNIL) {
  } else if (type == LUA_TSTRING) {
    m = lua_tostring(L, -1);
  } else {
    bad(L, "%s: method must be a string, got %s", fname,
        luaL_typename(L, -1));
  }
  n = strlen(m);
  if (n == 0 || n >= size)
    bad(L, "%s: bad method '%s'", fname, m);
  for (i = 0; i < n; i++) {
    if (!isalpha((unsigned char)m[i]) && m[i] != '-' && m[i] != '_')
      bad(L, "%s: bad method '%s'", fname, m);
    out[i] = (char)toupper((unsigned char)m[i]);
  }
  out[n] = '\0';
  lua_pop(L, 1);
}

/* Validates a request given as 1: method or nil, 2: url or nil, 3: the
 * options table or nil (the method and url arguments win over the table's)
 * and pushes the final URL and the body; raises on bad input, before
 * anything is allocated outside Lua. */
int pyq_http_check (lua_State *L, pyq_http_opts *o) {
  const char *fname = o->fname;
  unsigned present = 0;
  if (!lua_isnil(L, 3) && !lua_istable(L, 3))
    bad(L, "%s: expected a table of options, got %s", fname,
        luaL_typename(L, 3));
  o->timeout = 30;
  o->connect_timeout = 10;
  o->follow = o->verify = 1;
  o->max_redirects = 10;
  o->max_body = 64 * 1024 * 1024;
  if (lua_istable(L, 3)) lua_pushnil(L);
  while (lua_istable(L, 3) && lua_next(L, 3)) {
    int k = pyq_http_key_index(L, fname, request_keys);
    present |= 1u << k;
    switch (k) {
      case K_TIMEOUT: o->timeout = to_seconds(L, fname, "timeout"); break;
      case K_CTIMEOUT: o->connect_timeout = to_seconds(L, fname, "connect_timeout"); break;
      case K_FOLLOW: o->follow = pyq_http_to_bool(L, fname, "follow_redirects"); break;
      case K_VERIFY: o->verify = pyq_http_to_bool(L, fname, "verify"); break;
      case K_MAXREDIR: o->max_redirects = (long)pyq_http_to_count(L, fname, "max_redirects"); break;
      case K_MAXBODY: o->max_body = (curl_off_t)pyq_http_to_count(L, fname, "max_body"); break;
      case K_BODY:
        if (lua_type(L, -1) != LUA_TSTRING)
          bad(L, "%s: body must be a string, got %s", fname,
              luaL_typename(L, -1));
        break;
      default: break;
    }
    lua_pop(L, 1);
  }
  o->has_headers = (present & (1u << K_HEADERS)) != 0;
  check_method(L, 3, present, o->method, sizeof o->method, fname);
  build_url(L, 3, (present & (1u << K_QUERY)) != 0, fname);
  if (present & (1u << K_BODY)) lua_getfield(L, 3, "body");
  else lua_pushnil(L);
  return 2;
}

/* A name that carries a secret: Authorization, Cookie, X-Api-Key,
 * X-Riot-Token, api_key, access_token, password, ... */
int pyq_http_secret_name (const char *name, size_t n) {
  static const char *const words[] = {
    "auth", "cookie", "key", "token", "secret", "pass", "signature",
    "session", "credential", NULL
  };
  char low[128];
  size_t i;
  int w;
  if (n >= sizeof low) n = sizeof low - 1;
  for (i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name[i]);
  low[n] = '\0';
  for (w = 0; words[w]; w++)
    if (strstr(low, words[w]) != NULL) return 1;
  return 0;
}

/* Copies url to out with the password and secret query values masked. */
void pyq_http_mask_url (const char *url, char *out, size_t size) {
  const char *p = url, *q = strchr(url, '?'), *at, *scheme = strstr(url, "://");
  size_t n = 0;
  if (size == 0) return;
#define PUT(c) do { if (n + 1 < size) out[n++] = (c); } while (0)
  at = scheme ? strpbrk(scheme + 3, "@/?#") : NULL;
  if (at && *at == '@') {   /* user:password@ */
    const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    for (; p < (colon ? colon + 1 : at); p++) PUT(*p);
    if (colon) { PUT('*'); PUT('*'); PUT('*'); }
    p = at;
  }
  for (; *p && (q == NULL || p <= q); p++) PUT(*p);
  while (q && *p) {   /* name=value pairs */
    const char *end = p + strcspn(p, "&#"), *eq = memchr(p, '=', (size_t)(end - p));
    int secret = eq && pyq_http_secret_name(p, (size_t)(eq - p));
    for (; p < (secret ? eq + 1 : end); p++) PUT(*p);
    if (secret) { PUT('*'); PUT('*'); PUT('*'); p = end; }
    if (*p == '#') break;
    if (*p) {
      PUT(*p);
      p++;
    }
  }
  for (; *p; p++) PUT(*p);
#undef PUT
  out[n] = '\0';
}

