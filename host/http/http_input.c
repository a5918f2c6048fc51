/* http_input.c -- what pyq.http accepts from Lua, checked before anything
 * is sent.  One option table per API (pyq_http_request_options,
 * pyq_http_configure_options, pyq_http_session_options) names every
 * option, how its value is checked, where it goes and whether http.lua
 * consumes it; pyq_http_read walks the caller's table once against it, so
 * the checks, the messages and the fuzz target's keys cannot drift apart.  The rest builds what libcurl
 * gets: the URL (scheme allow-list, the query encoded through libcurl's URL
 * API), the header list, the body (a json value encoded here), and masks
 * credentials in what gets logged.  Every refusal is a "usage" pyq.Error
 * naming the function and the option, at the caller's line; this file is
 * what tests/fuzz/fuzz_input.c exercises. */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include "http.h"
#include "json/json.h"
#include "lua/error.h"

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

/* ---- the option tables ------------------------------------------------ */

#define O(name, type, to, lua) { name, PYQ_HT_##type, PYQ_HTO_##to, lua }

const pyq_http_option pyq_http_request_options[PYQ_HO_N + 1] = {
  O("url", URL, URL, 0),              O("method", METHOD, URL, 0),
  O("headers", TABLE, HEADERS, 0),    O("body", STRING, BODY, 0),
  O("json", ANY, BODY, 0),            O("query", TABLE, URL, 0),
  O("timeout", SECONDS, EASY, 0),     O("connect_timeout", SECONDS, EASY, 0),
  O("follow_redirects", BOOL, EASY, 0), O("max_redirects", COUNT, EASY, 0),
  O("max_body", COUNT, EASY, 0),      O("verify", BOOL, EASY, 0),
  O("allow_downgrade", BOOL, EASY, 0),
  O("sensitive_headers", NAMES, SESSION, 0),
  O("sensitive_query", NAMES, SESSION, 0),
  O("retries", COUNT, PLAN, 1),       O("backoff", DURATION, PLAN, 1),
  O("retry_unsafe", BOOL, PLAN, 1),   O("attempt_timeout", ATTEMPT, PLAN, 1),
  O("max_retry_after", DURATION, PLAN, 1),
  O("form", TABLE, BODY, 0),          O("multipart", TABLE, BODY, 0),
  O("auth", TABLE, EASY, 0),          O("bearer", LINE, HEADERS, 0),
  O("proxy", PROXY, EASY, 0),         O("http_version", VERSION, EASY, 0),
  O("output", STRING, SINK, 0),       O("keep_partial", BOOL, SINK, 0),
  O("resume", BOOL, SINK, 0),         O("on_data", FUNCTION, SINK, 0),
  O("cache", BOOL, PLAN, 1),          O("cache_ttl", DURATION, PLAN, 1),
  { NULL, 0, 0, 0 }
};

#define SESSION_OPTIONS \
  O("user_agent", LINE, SESSION, 0),  O("http2", BOOL, SESSION, 0), \
  O("sensitive_headers", NAMES, SESSION, 0), \
  O("sensitive_query", NAMES, SESSION, 0), \
  O("retries", COUNT, PLAN, 1),       O("backoff", DURATION, PLAN, 1), \
  O("max_retry_after", DURATION, PLAN, 1), \
  O("proxy", PROXY, SESSION, 0),      O("http_version", VERSION, SESSION, 0), \
  O("cache", ANY, SESSION, 1),        O("cache_ttl", DURATION, SESSION, 1), \
  O("cache_statuses", TABLE, SESSION, 1), O("cache_vary", NAMES, SESSION, 1)

const pyq_http_option pyq_http_configure_options[PYQ_HC_N + 1] = {
  SESSION_OPTIONS,
  O("max_connections", COUNT, MULTI, 0), O("max_per_host", COUNT, MULTI, 0),
  O("max_total", COUNT, MULTI, 0),
  { NULL, 0, 0, 0 }
};

const pyq_http_option pyq_http_session_options[PYQ_HSO_N + 1] = {
  SESSION_OPTIONS,
  O("base_url", LINE, SESSION, 0),    O("cookies", ANY, SESSION, 0),
  O("headers", TABLE, DEFAULT, 0),    O("query", TABLE, DEFAULT, 0),
  O("auth", TABLE, DEFAULT, 0),       O("bearer", LINE, DEFAULT, 0),
  O("timeout", SECONDS, DEFAULT, 0),  O("connect_timeout", SECONDS, DEFAULT, 0),
  O("attempt_timeout", ATTEMPT, DEFAULT, 1),
  O("follow_redirects", BOOL, DEFAULT, 0), O("max_redirects", COUNT, DEFAULT, 0),
  O("max_body", COUNT, DEFAULT, 0),   O("verify", BOOL, DEFAULT, 0),
  O("allow_downgrade", BOOL, DEFAULT, 0), O("retry_unsafe", BOOL, DEFAULT, 1),
  { NULL, 0, 0, 0 }
};

/* Checks the value on top against its row; scalars go into v. */
static void check_value (lua_State *L, const char *fname,
                         const pyq_http_option *o, pyq_http_value *v) {
  int type = lua_type(L, -1), isint;
  double d = lua_tonumber(L, -1);
  switch (o->type) {
    case PYQ_HT_SECONDS: case PYQ_HT_ATTEMPT:
      if (type != LUA_TNUMBER || !(d >= 0) || d > 1e9)
        pyq_usage(L, "%s: %s must be a number of seconds from 0 to 1e+09, "
                  "got %s", fname, o->name, pyq_got(L, -1));
      if (o->type == PYQ_HT_ATTEMPT && d == 0)
        pyq_usage(L, "%s: %s must be greater than 0 (timeout = 0 is the "
                  "request that is already out of time)", fname, o->name);
      v->num = d;
      break;
    case PYQ_HT_DURATION:
      if (type != LUA_TNUMBER || !(d >= 0))
        pyq_usage(L, "%s: %s must be a non-negative number of seconds, "
                  "got %s", fname, o->name, pyq_got(L, -1));
      v->num = d;
      break;
    case PYQ_HT_COUNT:
      v->count = lua_tointegerx(L, -1, &isint);
      if (type != LUA_TNUMBER || !isint || v->count < 0)
        pyq_usage(L, "%s: %s must be a non-negative integer, got %s", fname,
                  o->name, pyq_got(L, -1));
      break;
    case PYQ_HT_BOOL:
      if (type != LUA_TBOOLEAN)
        pyq_usage(L, "%s: %s must be a boolean, got %s", fname, o->name,
                  luaL_typename(L, -1));
      v->count = lua_toboolean(L, -1);
      break;
    case PYQ_HT_STRING:
      if (type != LUA_TSTRING)
        pyq_usage(L, "%s: %s must be a string, got %s", fname, o->name,
                  luaL_typename(L, -1));
      break;
    case PYQ_HT_LINE: {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      if (type != LUA_TSTRING || !pyq_http_header_safe(s, n))
        pyq_usage(L, "%s: %s must be a string without CR or LF", fname,
                  o->name);
      break;
    }
    case PYQ_HT_FUNCTION:
      if (type != LUA_TFUNCTION)
        pyq_usage(L, "%s: %s must be a function, got %s", fname, o->name,
                  luaL_typename(L, -1));
      break;
    case PYQ_HT_PROXY: {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      v->count = type == LUA_TSTRING;
      if (!(type == LUA_TBOOLEAN && !lua_toboolean(L, -1)) &&
          (type != LUA_TSTRING || n == 0 || !pyq_http_header_safe(s, n) ||
           memchr(s, ' ', n) != NULL))
        pyq_usage(L, "%s: %s must be a proxy URL such as "
                  "\"http://host:3128\" or \"socks5h://host:1080\", or false "
                  "(no proxy, not even from the environment), got %s", fname,
                  o->name, type == LUA_TSTRING ? "a bad string" : lua_typename(L, type));
      break;
    }
    case PYQ_HT_VERSION: {
      static const char *const names[] = {"1.0", "1.1", "2", "2-prior-knowledge", NULL};
      static const long values[] = {CURL_HTTP_VERSION_1_0, CURL_HTTP_VERSION_1_1,
        CURL_HTTP_VERSION_2_0, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE};
      const char *s = type == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      int i;
      for (i = 0; s && names[i] && strcmp(names[i], s) != 0; i++) ;
      if (s == NULL || names[i] == NULL)
        pyq_usage(L, "%s: %s must be \"1.0\", \"1.1\", \"2\" or "
                  "\"2-prior-knowledge\", got %s", fname, o->name,
                  s ? s : luaL_typename(L, -1));
      v->count = values[i];
      break;
    }
    default: break;   /* tables, names, url, method: where they are used */
  }
}

pyq_http_set pyq_http_read (lua_State *L, int t, const char *fname,
                        const pyq_http_option *table, pyq_http_value *v) {
  pyq_http_set present = 0;
  t = lua_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *key;
    int i;
    if (lua_type(L, -2) != LUA_TSTRING)
      pyq_usage(L, "%s: option names must be strings, got %s", fname,
                luaL_typename(L, -2));
    key = lua_tostring(L, -2);
    for (i = 0; table[i].name && strcmp(table[i].name, key) != 0; i++) ;
    if (table[i].name == NULL)
      pyq_usage(L, "%s: unknown option '%s'", fname, key);
    check_value(L, fname, &table[i], &v[i]);
    present |= PYQ_BIT(i);
    lua_pop(L, 1);
  }
  return present;
}

/* The headers option as a list for libcurl; notes a Content-Type. */
/* libcurl objects under construction sit in a box on the Lua stack, so a
 * check that raises (or memory running out) leaves them to the collector
 * instead of leaking them; the builder takes them out when it is done. */
typedef struct box { struct curl_slist *list; CURLU *url; } box;

#define BOX "pyq.http.box"

static int box_gc (lua_State *L) {
  box *b = luaL_checkudata(L, 1, BOX);
  curl_slist_free_all(b->list);
  curl_url_cleanup(b->url);
  b->list = NULL;
  b->url = NULL;
  return 0;
}

static box *push_box (lua_State *L) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->list = NULL;
  b->url = NULL;
  if (luaL_newmetatable(L, BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

struct curl_slist *pyq_http_headers (lua_State *L, int t, pyq_http_opts *o) {
  struct curl_slist *list, *n;
  const char *fname = o->fname;
  box *b;
  int has_auth = 0;
  o->has_type = 0;
  if (!(o->present & (PYQ_BIT(PYQ_HO_HEADERS) | PYQ_BIT(PYQ_HO_BEARER))))
    return NULL;
  if (!(o->present & PYQ_BIT(PYQ_HO_HEADERS)) ||
      lua_getfield(L, t, "headers") == LUA_TNIL) {
    if (o->present & PYQ_BIT(PYQ_HO_HEADERS)) lua_pop(L, 1);
    lua_newtable(L);
  }
  if (!lua_istable(L, -1))
    pyq_usage(L, "%s: headers must be a table, got %s", fname,
        luaL_typename(L, -1));
  b = push_box(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    size_t nlen, vlen;
    const char *name, *value;
    if (lua_type(L, -2) != LUA_TSTRING ||
        (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
      pyq_usage(L, "%s: headers must map names to strings, got %s = "
          "%s", fname, luaL_typename(L, -2), luaL_typename(L, -1));
    name = lua_tolstring(L, -2, &nlen);
    value = lua_tolstring(L, -1, &vlen);
    if (!pyq_http_header_ok(name, nlen, value, vlen))
      pyq_usage(L, "%s: header '%s' has a bad name or a CR, LF or "
          "NUL in its value", fname, name);
    if (nlen == 12 && strcasecmp(name, "content-type") == 0) o->has_type = 1;
    if (nlen == 13 && strcasecmp(name, "authorization") == 0) has_auth = 1;
    lua_pushfstring(L, vlen ? "%s: %s" : "%s;", name, value);
    n = curl_slist_append(b->list, lua_tostring(L, -1));
    lua_pop(L, 2);
    if (n == NULL) luaL_error(L, "not enough memory");
    b->list = n;
  }
  if (has_auth && (o->present & PYQ_BIT(PYQ_HO_AUTH)))
    pyq_usage(L, "%s: give auth or an Authorization header, not both", fname);
  if (o->present & PYQ_BIT(PYQ_HO_BEARER)) {
    if (has_auth)
      pyq_usage(L, "%s: give bearer or an Authorization header, not both", fname);
    lua_getfield(L, t, "bearer");
    lua_pushfstring(L, "Authorization: Bearer %s", lua_tostring(L, -1));
    n = curl_slist_append(b->list, lua_tostring(L, -1));
    lua_pop(L, 2);
    if (n == NULL) luaL_error(L, "not enough memory");
    b->list = n;
  }
  list = b->list;
  b->list = NULL;
  lua_pop(L, 2);
  return list;
}

/* Replaces the list of names on top (sensitive_headers = { ... }) by its
 * packed form, a Lua string; returns it. */
const char *pyq_http_names (lua_State *L, const char *fname, const char *key) {
  luaL_Buffer b;
  lua_Integer i, n;
  int t = lua_gettop(L);
  if (!lua_istable(L, t))
    pyq_usage(L, "%s: %s must be a list of names, got %s", fname, key,
        luaL_typename(L, t));
  n = (lua_Integer)lua_rawlen(L, t);
  for (i = 1; i <= n; i++) {   /* checked first: no buffer on the stack */
    size_t len;
    const char *s = lua_rawgeti(L, t, i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (s == NULL || len == 0 || memchr(s, '\0', len) != NULL)
      pyq_usage(L, "%s: %s must be a list of non-empty strings, got %s at %d",
          fname, key, luaL_typename(L, -1), (int)i);
    lua_pop(L, 1);
  }
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    size_t len, j;
    const char *s;
    lua_rawgeti(L, t, i);
    s = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);   /* the table keeps it */
    for (j = 0; j < len; j++) luaL_addchar(&b, (char)tolower((unsigned char)s[j]));
    luaL_addchar(&b, '\0');
  }
  luaL_addchar(&b, '\0');
  luaL_pushresult(&b);
  lua_replace(L, t);
  return lua_tostring(L, t);
}

/* Appends s percent-encoded as a query part: unreserved bytes stay, a
 * space becomes '+', every other byte %XX (so '=', '&', '#' in a name are
 * data, not syntax). */
static void add_encoded (luaL_Buffer *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
      luaL_addchar(b, (char)c);
    else if (c == ' ')
      luaL_addchar(b, '+');
    else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[c >> 4]);
      luaL_addchar(b, hex[c & 15]);
    }
  }
}

/* Replaces the value on top by its "name=value" pair, encoded; the name
 * is at `name`.  what: "query" or "form", for messages. */
static void encode_pair (lua_State *L, int name, const char *fname,
                         const char *what) {
  luaL_Buffer b;
  size_t nlen, vlen;
  const char *k = lua_tolstring(L, name, &nlen), *v;
  int type = lua_type(L, -1);
  if (type == LUA_TBOOLEAN)
    lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
  else if (type == LUA_TSTRING || type == LUA_TNUMBER)
    lua_pushvalue(L, -1);
  else
    pyq_usage(L, "%s: %s value for '%s' must be a string, number "
        "or boolean, got %s", fname, what, k, luaL_typename(L, -1));
  v = lua_tolstring(L, -1, &vlen);
  if (memchr(v, '\0', vlen) != NULL)
    pyq_usage(L, "%s: %s value for '%s' contains a NUL byte", fname, what, k);
  luaL_buffinit(L, &b);
  add_encoded(&b, k, nlen);
  luaL_addchar(&b, '=');
  add_encoded(&b, v, vlen);
  luaL_pushresult(&b);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

typedef struct qname { const char *s; size_t n; } qname;

static int qname_cmp (const void *a, const void *b) {
  const qname *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Pushes the table at q as "a=1&b=2&b=3" (application/x-www-form-
 * urlencoded, the encoding of a query too): names in byte order (sorted
 * here, not by a table.sort a script could replace), so the same table
 * always gives the same text; a list value repeats the name. */
static void push_pairs (lua_State *L, int q, const char *fname,
                        const char *what) {
  qname *names;
  size_t i, n = 0;
  lua_Integer np = 0;
  int list;
  luaL_Buffer b;
  lua_pushnil(L);
  while (lua_next(L, q)) {
    size_t len;
    const char *k;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      pyq_usage(L, "%s: %s names must be strings, got %s", fname, what,
          luaL_typename(L, -1));
    k = lua_tolstring(L, -1, &len);
    if (memchr(k, '\0', len) != NULL)
      pyq_usage(L, "%s: %s name '%s' contains a NUL byte", fname, what, k);
    n++;
  }
  /* the names stay alive as the table's keys */
  names = lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0);
  lua_createtable(L, (int)n, 0);
  list = lua_gettop(L);
  n = 0;
  lua_pushnil(L);
  while (lua_next(L, q)) {
    lua_pop(L, 1);
    names[n].s = lua_tolstring(L, -1, &names[n].n);
    n++;
  }
  qsort(names, n, sizeof *names, qname_cmp);
  for (i = 0; i < n; i++) {
    lua_pushlstring(L, names[i].s, names[i].n);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, q) == LUA_TTABLE) {   /* a list: the name repeated */
      lua_Integer j, m = (lua_Integer)lua_rawlen(L, -1), keys = 0;
      lua_pushnil(L);
      while (lua_next(L, -2)) {   /* nothing but 1..m: a map is not sent */
        lua_pop(L, 1);
        keys++;
      }
      if (keys != m)
        pyq_usage(L, "%s: %s value for '%s' must be a string, number, boolean "
                  "or a list of them, got a table that is not a list", fname,
                  what, lua_tostring(L, -2));
      for (j = 1; j <= m; j++) {
        lua_rawgeti(L, -1, j);
        encode_pair(L, lua_gettop(L) - 2, fname, what);
        lua_rawseti(L, list, ++np);
      }
      lua_pop(L, 1);
    } else {
      encode_pair(L, lua_gettop(L) - 1, fname, what);
      lua_rawseti(L, list, ++np);
    }
    lua_pop(L, 1);
  }
  luaL_buffinit(L, &b);
  for (i = 1; i <= (size_t)np; i++) {
    if (i > 1) luaL_addchar(&b, '&');
    lua_rawgeti(L, list, (lua_Integer)i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, list - 1);   /* over the names */
  lua_settop(L, list - 1);
}

/* Appends the query table's pairs to the query of u. */
static void build_query (lua_State *L, int t, CURLU *u, const char *fname) {
  if (lua_getfield(L, t, "query") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1))
    pyq_usage(L, "%s: query must be a table, got %s", fname, luaL_typename(L, -1));
  push_pairs(L, lua_gettop(L), fname, "query");
  if (lua_rawlen(L, -1) > 0 &&
      curl_url_set(u, CURLUPART_QUERY, lua_tostring(L, -1),
                   CURLU_APPENDQUERY) != CURLUE_OK)
    luaL_error(L, "not enough memory");
  lua_pop(L, 2);
}

static const char *masked (const char *url, char *out, size_t size,
                           const char *qnames) {
  pyq_http_mask(url, out, size, qnames, NULL);
  return out;
}

/* 1 when url starts with a scheme ("http:", "mailto:"), not with a host
 * and port ("localhost:8080/x", "127.0.0.1:80"). */
static int has_scheme (const char *url) {
  size_t i = 0;
  if (!isalpha((unsigned char)url[0])) return 0;
  while (isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' ||
         url[i] == '.')
    i++;
  return url[i] == ':' && !isdigit((unsigned char)url[i + 1]);
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
static void build_url (lua_State *L, int t, int has_query, const char *fname,
                       const char *qnames) {
  CURLU *u;
  CURLUcode rc;
  box *b;
  char *scheme = NULL, *full = NULL, shown[1024];
  const char *url;
  size_t n;
  int type = lua_type(L, 2) != LUA_TNIL ? (lua_pushvalue(L, 2), lua_type(L, 2))
           : lua_istable(L, t) ? lua_getfield(L, t, "url") : (lua_pushnil(L), LUA_TNIL);
  if (type != LUA_TSTRING)
    pyq_usage(L, "%s: url must be a string, got %s", fname,
        luaL_typename(L, -1));
  url = lua_tolstring(L, -1, &n);
  if (!has_query && plain_http(url, n)) return;
  if (!has_scheme(url))
    pyq_usage(L, "%s: url '%s' has no scheme: write http:// or https://", fname,
        masked(url, shown, sizeof shown, qnames));
  if (strncasecmp(url, "http:", 5) != 0 && strncasecmp(url, "https:", 6) != 0)
    pyq_usage(L, "%s: url '%s' is not http or https", fname,
        masked(url, shown, sizeof shown, qnames));
  b = push_box(L);
  if ((u = b->url = curl_url()) == NULL) luaL_error(L, "not enough memory");
  rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK)
    pyq_usage(L, "%s: bad url '%s': %s", fname,
        masked(url, shown, sizeof shown, qnames), curl_url_strerror(rc));
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (scheme == NULL || (strcasecmp(scheme, "http") != 0 &&
                         strcasecmp(scheme, "https") != 0)) {
    curl_free(scheme);
    pyq_usage(L, "%s: url '%s' is not http or https", fname,
        masked(url, shown, sizeof shown, qnames));
  }
  curl_free(scheme);
  build_query(L, t, u, fname);
  curl_url_get(u, CURLUPART_URL, &full, 0);
  curl_url_cleanup(u);
  b->url = NULL;
  lua_pop(L, 1);   /* the box */
  lua_pushstring(L, full ? full : url);
  curl_free(full);
  lua_remove(L, -2);
}

static void check_method (lua_State *L, int t, pyq_http_set present, char *out,
                          size_t size, const char *fname) {
  const char *m = (present & (PYQ_BIT(PYQ_HO_BODY) | PYQ_BIT(PYQ_HO_JSON) | PYQ_BIT(PYQ_HO_FORM) | PYQ_BIT(PYQ_HO_MULTIPART))) ? "POST" : "GET";
  size_t i, n;
  int type;
  if (lua_type(L, 1) != LUA_TNIL && (present & PYQ_BIT(PYQ_HO_METHOD)))
    pyq_usage(L, "%s: method is the function's (%s): give it to "
              "pyq.http.request{ method = ... }", fname, lua_tostring(L, 1));
  type = lua_type(L, 1) != LUA_TNIL ? (lua_pushvalue(L, 1), lua_type(L, 1))
           : (present & PYQ_BIT(PYQ_HO_METHOD)) ? lua_getfield(L, t, "method")
           : (lua_pushnil(L), LUA_TNIL);
  if (type == LUA_TNIL) {
  } else if (type == LUA_TSTRING) {
    m = lua_tostring(L, -1);
  } else {
    pyq_usage(L, "%s: method must be a string, got %s", fname,
        luaL_typename(L, -1));
  }
  n = strlen(m);
  if (n == 0 || n >= size)
    pyq_usage(L, "%s: bad method '%s'", fname, m);
  for (i = 0; i < n; i++) {
    if (!isalpha((unsigned char)m[i]) && m[i] != '-' && m[i] != '_')
      pyq_usage(L, "%s: bad method '%s'", fname, m);
    out[i] = (char)toupper((unsigned char)m[i]);
  }
  out[n] = '\0';
  lua_pop(L, 1);
}

/* The json option, encoded, replaces the body slot on top. */
static void encode_json (lua_State *L, int t, const char *fname) {
  pyq_jbuf b = { NULL, 0, 0 };
  lua_getfield(L, t, "json");
  if (!pyq_json_encode(L, lua_gettop(L), &b, 0)) {
    pyq_jbuf_free(&b);
    pyq_usage(L, "%s: json: %s", fname, lua_tostring(L, -1));
  }
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  pyq_jbuf_free(&b);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* At most one body option; auth and bearer are two ways to say one thing. */
static void check_conflicts (lua_State *L, pyq_http_set present,
                             const char *fname) {
  static const int bodies[] = {PYQ_HO_BODY, PYQ_HO_JSON, PYQ_HO_FORM,
                               PYQ_HO_MULTIPART};
  const char *first = NULL;
  int i;
  for (i = 0; i < 4; i++) {
    if (!(present & PYQ_BIT(bodies[i]))) continue;
    if (first)
      pyq_usage(L, "%s: give one of body, json, form or multipart, not both "
                "%s and %s", fname, first, pyq_http_request_options[bodies[i]].name);
    first = pyq_http_request_options[bodies[i]].name;
  }
  if ((present & PYQ_BIT(PYQ_HO_AUTH)) && (present & PYQ_BIT(PYQ_HO_BEARER)))
    pyq_usage(L, "%s: give auth or bearer, not both", fname);
}

/* The form option, URL-encoded, as the body. */
static void push_form (lua_State *L, int t, const char *fname) {
  lua_getfield(L, t, "form");
  if (!lua_istable(L, -1))
    pyq_usage(L, "%s: form must be a table, got %s", fname, luaL_typename(L, -1));
  push_pairs(L, lua_gettop(L), fname, "form");
  lua_remove(L, -2);
}

/* A string field of a multipart part: nil, or a string: without NUL
 * (header 0), without CR, LF or NUL (1: it goes into a header), any (2). */
static const char *part_string (lua_State *L, int part, const char *key,
                                const char *fname, const char *field,
                                int header) {
  size_t n = 0;
  const char *s;
  int type = lua_getfield(L, part, key);
  s = type == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  lua_pop(L, 1);   /* the part keeps it */
  if (type == LUA_TNIL) return NULL;
  if (s == NULL || (header == 0 && memchr(s, '\0', n) != NULL) ||
      (header == 1 && !pyq_http_header_safe(s, n)))
    pyq_usage(L, "%s: multipart field '%s': %s must be a string%s", fname,
              field, key, header ? " without CR, LF or NUL" : " without NUL");
  return s;
}

/* The multipart option: { name = "value" | number | { path = | data =,
 * filename =, type = } }, checked and copied: the body slot holds a list
 * of { name, kind, content, filename, type } (kind "v" a value, "f" a file
 * path, "d" data) that only http.c sees, so an attempt made later (a
 * retry, a wait for a rate limit) sends what was checked, whatever the
 * script does to its table meanwhile; http.c builds libcurl's mime from
 * it, and files are read from disk as they are sent, never into Lua. */
static void check_multipart (lua_State *L, int t, const char *fname) {
  int m, c;
  lua_Integer np = 0;
  lua_getfield(L, t, "multipart");
  m = lua_gettop(L);
  if (!lua_istable(L, m))
    pyq_usage(L, "%s: multipart must be a table, got %s", fname, luaL_typename(L, m));
  lua_newtable(L);
  c = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, m)) {
    size_t n;
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
    int part = lua_gettop(L);
    if (name == NULL || n == 0 || !pyq_http_header_safe(name, n) ||
        strchr(name, '"') != NULL)
      pyq_usage(L, "%s: multipart field names must be non-empty strings "
                "without quotes, CR, LF or NUL, got %s", fname,
                name ? "a bad string" : luaL_typename(L, -2));
    lua_createtable(L, 5, 0);   /* the copy: name, kind, content, filename, type */
    lua_pushvalue(L, part - 1);
    lua_rawseti(L, -2, 1);
    if (lua_type(L, part) == LUA_TTABLE) {
      const char *path = part_string(L, part, "path", fname, name, 0);
      const char *data = part_string(L, part, "data", fname, name, 2);
      const char *filename = part_string(L, part, "filename", fname, name, 1);
      const char *type = part_string(L, part, "type", fname, name, 1);
      struct stat st;
      if ((path != NULL) == (data != NULL))
        pyq_usage(L, "%s: multipart field '%s' needs one of path (a file "
                  "to send) or data (a string)", fname, name);
      if (path && stat(path, &st) != 0)
        pyq_usage(L, "%s: multipart field '%s': cannot read '%s': %s", fname,
                  name, path, strerror(errno));
      if (path && !S_ISREG(st.st_mode))
        pyq_usage(L, "%s: multipart field '%s': '%s' is not a regular file",
                  fname, name, path);
      if (path && access(path, R_OK) != 0)
        pyq_usage(L, "%s: multipart field '%s': cannot read '%s': %s", fname,
                  name, path, strerror(errno));
      lua_pushnil(L);
      while (lua_next(L, part)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "path") && strcmp(k, "data") && strcmp(k, "filename") &&
            strcmp(k, "type"))
          pyq_usage(L, "%s: multipart field '%s': unknown key '%s' (path, "
                    "data, filename, type)", fname, name, k);
        lua_pop(L, 1);
      }
      lua_pushstring(L, path ? "f" : "d");
      lua_rawseti(L, -2, 2);
      lua_getfield(L, part, path ? "path" : "data");
      lua_rawseti(L, -2, 3);
      if (filename) {
        lua_pushstring(L, filename);
        lua_rawseti(L, -2, 4);
      }
      if (type) {
        lua_pushstring(L, type);
        lua_rawseti(L, -2, 5);
      }
    } else if (lua_type(L, part) == LUA_TSTRING || lua_type(L, part) == LUA_TNUMBER) {
      lua_pushliteral(L, "v");
      lua_rawseti(L, -2, 2);
      lua_pushvalue(L, part);
      lua_tostring(L, -1);   /* a number's text, on the copy */
      lua_rawseti(L, -2, 3);
    } else {
      pyq_usage(L, "%s: multipart field '%s' must be a string, a number or "
                "a table { path = | data =, filename =, type = }, got %s",
                fname, name, luaL_typename(L, part));
    }
    lua_rawseti(L, c, ++np);
    lua_settop(L, part - 1);
  }
  lua_replace(L, m);   /* the copy is the body */
}

/* The auth option, { user, password [, type = "basic" | "digest"] },
 * packed for http.c as "B" or "D", the user, NUL, the password. */
static void push_auth (lua_State *L, int t, const char *fname) {
  static const char *const types[] = {"basic", "digest", NULL};
  size_t un, pn;
  const char *user, *pass, *type = "basic";
  int a, i;
  lua_getfield(L, t, "auth");
  a = lua_gettop(L);
  if (!lua_istable(L, a))
    pyq_usage(L, "%s: auth must be a table { user, password [, type = "
              "\"digest\"] }, got %s", fname, luaL_typename(L, a));
  lua_rawgeti(L, a, 1);
  lua_rawgeti(L, a, 2);
  lua_getfield(L, a, "type");
  user = lua_type(L, a + 1) == LUA_TSTRING ? lua_tolstring(L, a + 1, &un) : NULL;
  pass = lua_type(L, a + 2) == LUA_TSTRING ? lua_tolstring(L, a + 2, &pn) : NULL;
  if (user == NULL || pass == NULL || memchr(user, '\0', un) ||
      memchr(pass, '\0', pn))
    pyq_usage(L, "%s: auth must be { user, password } (two strings "
              "without NUL), got %s and %s", fname, luaL_typename(L, a + 1),
              luaL_typename(L, a + 2));
  lua_pushnil(L);
  while (lua_next(L, a)) {
    lua_Integer k = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
    if ((k < 1 || k > 2) && !(lua_type(L, -2) == LUA_TSTRING &&
                              strcmp(lua_tostring(L, -2), "type") == 0))
      pyq_usage(L, "%s: auth: unknown key %s (auth is { user, password [, type "
                "= \"digest\"] })", fname, pyq_got(L, -2));
    lua_pop(L, 1);
  }
  if (!lua_isnil(L, a + 3)) type = lua_isstring(L, a + 3) ? lua_tostring(L, a + 3) : "?";
  for (i = 0; types[i] && strcmp(types[i], type) != 0; i++) ;
  if (types[i] == NULL)
    pyq_usage(L, "%s: auth.type must be \"basic\" or \"digest\", got %s",
              fname, lua_isstring(L, a + 3) ? type : luaL_typename(L, a + 3));
  if (i == 0 && memchr(user, ':', un))
    pyq_usage(L, "%s: auth: a basic auth user cannot contain ':'", fname);
  lua_pushfstring(L, "%c%s", i == 0 ? 'B' : 'D', user);
  lua_pushlstring(L, "", 1);
  lua_pushvalue(L, a + 2);
  lua_concat(L, 3);
  lua_replace(L, a);
  lua_settop(L, a);
}

/* output = path (with keep_partial, resume) or on_data = fn: one of them,
 * a path that names a file, and no limit on the body unless max_body says
 * (the 64 MiB default is there to spare memory, which neither uses). */
static void check_sink (lua_State *L, const char *fname, pyq_http_set present,
                        const pyq_http_value *v, pyq_http_opts *o) {
  size_t n;
  const char *path;
#define GOT(id) (present & PYQ_BIT(PYQ_HO_##id))
  if (GOT(OUTPUT) && GOT(ONDATA))
    pyq_usage(L, "%s: give output or on_data, not both", fname);
  if ((GOT(KEEP) || GOT(RESUME)) && !GOT(OUTPUT))
    pyq_usage(L, "%s: %s needs output (a path to download to)", fname,
              GOT(KEEP) ? "keep_partial" : "resume");
  if (GOT(OUTPUT)) {
    lua_getfield(L, 3, "output");
    path = lua_tolstring(L, -1, &n);
    if (n == 0 || memchr(path, '\0', n) != NULL || path[n - 1] == '/')
      pyq_usage(L, "%s: output must be the path of a file, got %s", fname,
                pyq_got(L, -1));
    lua_pop(L, 1);
  }
  if (GOT(RESUME)) o->resume = (int)v[PYQ_HO_RESUME].count;
  o->keep_partial = GOT(KEEP) ? (int)v[PYQ_HO_KEEP].count : o->resume;
  if ((GOT(OUTPUT) || GOT(ONDATA)) && !GOT(MAXBODY))
    o->max_body = (curl_off_t)INT64_MAX;
#undef GOT
}

/* Validates a request given as 1: method or nil, 2: url or nil, 3: the
 * options table or nil (the method and url arguments win over the table's)
 * and pushes the slots PYQ_HS_* (http.h); raises on bad input, before
 * anything is allocated outside Lua. */
int pyq_http_check (lua_State *L, pyq_http_opts *o) {
  const char *fname = o->fname, *qnames = NULL;
  pyq_http_value v[PYQ_HO_N];
  pyq_http_set present = 0;
  if (!lua_isnil(L, 3) && !lua_istable(L, 3))
    pyq_usage(L, "%s: expected a table of options, got %s", fname,
              luaL_typename(L, 3));
  o->timeout = 30;
  o->connect_timeout = 10;
  o->follow = o->verify = 1;
  o->allow_downgrade = 0;
  o->max_redirects = 10;
  o->max_body = 64 * 1024 * 1024;
  o->retries = -1;
  o->backoff = o->max_retry_after = -1;
  o->attempt_timeout = 0;
  o->retry_unsafe = 0;
  o->http_version = 0;
  o->keep_partial = o->resume = 0;
  o->nocache = 0;
  o->cache_ttl = -1;
  if (lua_istable(L, 3)) {
    present = pyq_http_read(L, 3, fname, pyq_http_request_options, v);
#define GOT(id) (present & PYQ_BIT(PYQ_HO_##id))
    if (GOT(TIMEOUT)) o->timeout = v[PYQ_HO_TIMEOUT].num;
    if (GOT(CTIMEOUT)) o->connect_timeout = v[PYQ_HO_CTIMEOUT].num;
    if (GOT(FOLLOW)) o->follow = (int)v[PYQ_HO_FOLLOW].count;
    if (GOT(VERIFY)) o->verify = (int)v[PYQ_HO_VERIFY].count;
    if (GOT(DOWNGRADE)) o->allow_downgrade = (int)v[PYQ_HO_DOWNGRADE].count;
    if (GOT(MAXREDIR)) o->max_redirects = (long)v[PYQ_HO_MAXREDIR].count;
    if (GOT(MAXBODY)) o->max_body = (curl_off_t)v[PYQ_HO_MAXBODY].count;
    if (GOT(RETRIES)) o->retries = v[PYQ_HO_RETRIES].count;
    if (GOT(BACKOFF)) o->backoff = v[PYQ_HO_BACKOFF].num;
    if (GOT(MAXRA)) o->max_retry_after = v[PYQ_HO_MAXRA].num;
    if (GOT(ATTEMPT)) o->attempt_timeout = v[PYQ_HO_ATTEMPT].num;
    if (GOT(UNSAFE)) o->retry_unsafe = (int)v[PYQ_HO_UNSAFE].count;
    if (GOT(VERSION)) o->http_version = (long)v[PYQ_HO_VERSION].count;
    if (GOT(CACHE)) o->nocache = !v[PYQ_HO_CACHE].count;
    if (GOT(CTTL)) o->cache_ttl = v[PYQ_HO_CTTL].num;
    check_conflicts(L, present, fname);
    check_sink(L, fname, present, v, o);
  }
  o->present = present;
  check_method(L, 3, present, o->method, sizeof o->method, fname);
  if ((present & (PYQ_BIT(PYQ_HO_OUTPUT) | PYQ_BIT(PYQ_HO_ONDATA))) &&
      strcmp(o->method, "HEAD") == 0)
    pyq_usage(L, "%s: %s needs a body: a HEAD request has none", fname,
              (present & PYQ_BIT(PYQ_HO_OUTPUT)) ? "output" : "on_data");
  if (GOT(SHEADERS)) {
    lua_getfield(L, 3, "sensitive_headers");
    pyq_http_names(L, fname, "sensitive_headers");
  } else lua_pushnil(L);
  if (GOT(SQUERY)) {
    lua_getfield(L, 3, "sensitive_query");
    qnames = pyq_http_names(L, fname, "sensitive_query");
  } else lua_pushnil(L);
  build_url(L, 3, GOT(QUERY) != 0, fname, qnames);
  if (GOT(BODY)) lua_getfield(L, 3, "body");
  else if (GOT(FORM)) push_form(L, 3, fname);
  else if (GOT(MULTIPART)) check_multipart(L, 3, fname);
  else lua_pushnil(L);
  if (GOT(JSON)) encode_json(L, 3, fname);
  if (GOT(AUTH)) push_auth(L, 3, fname);
  else lua_pushnil(L);
  if (GOT(PROXY)) {   /* false: "" (libcurl's "no proxy at all") */
    lua_getfield(L, 3, "proxy");
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "");
    }
  } else lua_pushnil(L);
  if (GOT(OUTPUT)) lua_getfield(L, 3, "output");
  else if (GOT(ONDATA)) lua_getfield(L, 3, "on_data");
  else lua_pushnil(L);
#undef GOT
  return PYQ_HS_END - 4;
}

/* ---- sessions: defaults and base_url ---------------------------------- */

/* Copies the table at i (shallow) onto the top. */
static void push_copy (lua_State *L, int i) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, i)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

/* The headers of a session's request: the defaults' (at d) without those
 * the request (at r) names again, whatever their case, then the
 * request's.  Leaves the merged table on top. */
static void merge_headers (lua_State *L, int d, int r) {
  int m;
  push_copy(L, d);
  m = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, r)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {   /* others: refused by the check */
      const char *name = lua_tostring(L, -1);
      lua_pushnil(L);
      while (lua_next(L, d)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING &&
            strcasecmp(lua_tostring(L, -1), name) == 0) {
          lua_pushvalue(L, -1);
          lua_pushnil(L);
          lua_rawset(L, m);
        }
      }
    }
  }
  lua_pushnil(L);
  while (lua_next(L, r)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, m);
  }
}

/* 1 when the table at h has an Authorization header, whatever its case. */
static int has_authorization (lua_State *L, int h) {
  int found = 0;
  if (!lua_istable(L, h)) return 0;
  lua_pushnil(L);
  while (!found && lua_next(L, h)) {
    lua_pop(L, 1);
    found = lua_type(L, -1) == LUA_TSTRING &&
            strcasecmp(lua_tostring(L, -1), "authorization") == 0;
  }
  if (found) lua_pop(L, 1);
  return found;
}

/* The request at 3 says how to authenticate (auth, bearer or an
 * Authorization header): the defaults' ways (in the copy at m) go, so
 * that the call's wins rather than conflicting with them. */
static void drop_default_auth (lua_State *L, int m) {
  int own;
  if (!lua_istable(L, 3)) return;
  own = lua_getfield(L, 3, "auth") != LUA_TNIL;
  own |= lua_getfield(L, 3, "bearer") != LUA_TNIL;
  lua_getfield(L, 3, "headers");
  own |= has_authorization(L, lua_gettop(L));
  lua_pop(L, 3);
  if (!own) return;
  lua_pushnil(L);
  lua_setfield(L, m, "auth");
  lua_pushnil(L);
  lua_setfield(L, m, "bearer");
  if (lua_getfield(L, m, "headers") == LUA_TTABLE &&
      has_authorization(L, lua_gettop(L))) {
    int h;
    push_copy(L, lua_gettop(L));
    h = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, h - 1)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcasecmp(lua_tostring(L, -1), "authorization") == 0) {
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, h);
      }
    }
    lua_setfield(L, m, "headers");
  }
  lua_pop(L, 1);
}

void pyq_http_merge (lua_State *L, int d, const char *base, const char *fname) {
  int m;
  d = lua_absindex(L, d);
  push_copy(L, d);
  m = lua_gettop(L);
  drop_default_auth(L, m);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      int hq = strcmp(k, "headers") == 0 || strcmp(k, "query") == 0;
      if (hq && lua_istable(L, -1)) {
        if (lua_getfield(L, m, k) != LUA_TTABLE) {   /* m: the defaults so far */
          lua_pop(L, 1);   /* the defaults had none */
        } else if (k[0] == 'h') {   /* headers case-insensitively */
          merge_headers(L, lua_gettop(L), lua_gettop(L) - 1);
          lua_replace(L, -3);
          lua_pop(L, 1);
        } else {   /* the query by name */
          push_copy(L, lua_gettop(L));
          lua_pushnil(L);
          while (lua_next(L, -4)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
          }
          lua_replace(L, -3);
          lua_pop(L, 1);
        }
      }
      if (strcmp(k, "auth") == 0 || strcmp(k, "bearer") == 0) {
        lua_pushnil(L);   /* the request's way to authenticate wins */
        lua_setfield(L, m, k[0] == 'a' ? "bearer" : "auth");
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, m);
    }
  }
  lua_replace(L, 3);
  if (base == NULL) return;
  if (lua_isnil(L, 2) && lua_getfield(L, 3, "url") != LUA_TSTRING) {
    lua_pop(L, 1);
    return;   /* no URL: the check says so */
  }
  if (lua_isnil(L, 2)) lua_replace(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING && !has_scheme(lua_tostring(L, 2))) {
    CURLU *u;
    CURLUcode rc;
    char *full = NULL, shown[1024];
    box *b = push_box(L);
    if ((u = b->url = curl_url()) == NULL) luaL_error(L, "not enough memory");
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
      luaL_error(L, "not enough memory");   /* checked when it was set */
    rc = curl_url_set(u, CURLUPART_URL, lua_tostring(L, 2), 0);
    if (rc != CURLUE_OK)
      pyq_usage(L, "%s: url '%s' does not resolve against base_url: %s", fname,
                masked(lua_tostring(L, 2), shown, sizeof shown, NULL),
                curl_url_strerror(rc));
    if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
      luaL_error(L, "not enough memory");
    lua_pushstring(L, full);
    curl_free(full);
    lua_replace(L, 2);
    lua_pop(L, 1);   /* the box: the collector frees u */
  }
}

void pyq_http_base_url (lua_State *L, int i, const char *fname) {
  CURLU *u;
  CURLUcode rc;
  char *scheme = NULL, *path = NULL, *full = NULL, shown[1024];
  box *b;
  const char *url = lua_tostring(L, i);
  int ok;
  b = push_box(L);
  if ((u = b->url = curl_url()) == NULL) luaL_error(L, "not enough memory");
  rc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (rc != CURLUE_OK)
    pyq_usage(L, "%s: bad base_url '%s': %s", fname,
              masked(url, shown, sizeof shown, NULL), curl_url_strerror(rc));
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  ok = scheme && (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0);
  curl_free(scheme);
  if (!ok)
    pyq_usage(L, "%s: base_url '%s' is not http or https", fname,
              masked(url, shown, sizeof shown, NULL));
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  if (path && path[0] && path[strlen(path) - 1] != '/') {
    lua_pushfstring(L, "%s/", path);
    curl_url_set(u, CURLUPART_PATH, lua_tostring(L, -1), 0);
    lua_pop(L, 1);
  }
  curl_free(path);
  if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
    luaL_error(L, "not enough memory");
  lua_pushstring(L, full);
  curl_free(full);
  lua_remove(L, -2);   /* the box */
}

/* What makes a header or query name a credential: it contains one of these
 * words (case-insensitively, after %XX decoding), or the user listed it. */
static const char *const secret_words[] = {
  "auth", "bearer", "cookie", "cred", "csrf", "hmac", "jwt", "key", "otp",
  "pass", "private", "pwd", "saml", "secret", "session", "sig", "token",
  "xsrf", NULL
};

static int hexval (int c) {
  return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* 1 when the packed list holds low. */
static int listed (const char *names, const char *low) {
  for (; names && *names; names += strlen(names) + 1)
    if (strcmp(names, low) == 0) return 1;
  return 0;
}

int pyq_http_secret (const char *name, size_t n, const char *names1,
                     const char *names2) {
  char low[128];
  size_t i, m = 0;
  int w;
  for (i = 0; i < n && m < sizeof low - 1; i++, m++) {
    int c = (unsigned char)name[i];
    if (c == '%' && i + 2 < n && hexval((unsigned char)name[i + 1]) >= 0 &&
        hexval((unsigned char)name[i + 2]) >= 0) {
      c = hexval((unsigned char)name[i + 1]) * 16 + hexval((unsigned char)name[i + 2]);
      i += 2;
    }
    low[m] = (char)tolower(c);
  }
  low[m] = '\0';
  for (w = 0; secret_words[w]; w++)
    if (strstr(low, secret_words[w]) != NULL) return 1;
  return listed(names1, low) || listed(names2, low);
}

int pyq_http_secret_name (const char *name, size_t n) {
  return pyq_http_secret(name, n, NULL, NULL);
}

/* Copies url to out (at most size bytes, NUL included) with credentials
 * replaced by "***".  Two rules, and a byte is hidden when either hides it:
 * - the password: from the first ':' after "scheme://" to the LAST '@' in
 *   the URL, so an unencoded '/', '?', '#' or '@' in it cannot end it early
 *   (a URL with a port and an '@' further on is masked from the port on:
 *   safe rather than readable; without "http(s)://" from the first ':');
 * - values under secret names: every part between '?', '&', ';' and '#'
 *   (query, fragment, matrix parameters) that is name=value with a secret
 *   name has its value hidden. */
void pyq_http_mask (const char *url, char *out, size_t size,
                    const char *names1, const char *names2) {
  const char *scheme = strstr(url, "://");
  size_t len = strlen(url), start = 0;
  size_t i, n = 0, from = len, to = len, seg = start;
  int value = 0, eq = 0, hidden = 0;
  const char *at, *colon;
  if (size == 0) return;
  /* past "http://" or "https://" only: "u://p@h" may be a user and the
   * password "//p", and ftp://u:p@h is masked from "ftp:" on */
  if (scheme && ((scheme - url == 4 && strncasecmp(url, "http", 4) == 0) ||
                 (scheme - url == 5 && strncasecmp(url, "https", 5) == 0)))
    start = (size_t)(scheme - url) + 3;
  at = strrchr(url + start, '@');
  if (at != NULL &&
      (colon = memchr(url + start, ':', (size_t)(at - url) - start)) != NULL) {
    from = (size_t)(colon - url) + 1;
    to = (size_t)(at - url);
  }
  for (i = 0; i < len; i++) {
    char c = url[i];
    int hide;
    if (i >= start && (c == '?' || c == '&' || c == ';' || c == '#')) {
      value = eq = 0;
      seg = i + 1;
      hide = 0;
    } else if (i >= start && c == '=' && !eq) {
      eq = 1;
      value = pyq_http_secret(url + seg, i - seg, names1, names2);
      hide = 0;
    } else hide = value;
    if (i >= from && i < to) hide = 1;
    if (hide && !hidden && n + 3 < size) {
      memcpy(out + n, "***", 3);
      n += 3;
    }
    if (!hide && n + 1 < size) out[n++] = c;
    hidden = hide;
  }
  out[n] = '\0';
}

void pyq_http_mask_url (const char *url, char *out, size_t size) {
  pyq_http_mask(url, out, size, NULL, NULL);
}
