/* url.c -- pyq.url: parse, join and build URLs, encode and decode one
 * component.
 *
 * Nothing here parses a URL: libcurl's URL API (curl_url) does, so a URL
 * means here what it means to the transfers.  Each call works on one
 * CURLU handle kept in a userdata whose __gc frees it (and the string
 * curl last returned), so a Lua error at any point leaks nothing.
 *
 * URLs are hierarchical ("scheme://authority/path?query#fragment", any
 * scheme); curl refuses "mailto:x" and "g:h".  Parsing normalizes as
 * curl does before a transfer: the scheme lower-cased, dot segments
 * removed, an empty path made "/".  Parts come back as they are in the
 * URL, still percent-encoded; build takes them the same way and checks
 * that each survives the trip (a query holding "#" does not), so
 * parse(build(t)) gives t's parts back.  encode and decode are
 * curl_easy_escape and curl_easy_unescape: every byte but the unreserved
 * A-Z a-z 0-9 - . _ ~ is encoded; decode keeps a "%" that starts no valid
 * escape and leaves "+" alone, as curl and RFC 3986 do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include "url.h"
#include "lua/check.h"
#include "lua/error.h"

#define BOX "pyq.url.handle"
#define FLAGS CURLU_NON_SUPPORT_SCHEME

typedef struct box { CURLU *u; char *s; } box;

/* The parts of a URL as pyq.url names them, in URL order. */
static const struct { const char *name; CURLUPart part; } parts[] = {
  {"scheme", CURLUPART_SCHEME}, {"user", CURLUPART_USER},
  {"password", CURLUPART_PASSWORD}, {"options", CURLUPART_OPTIONS},
  {"host", CURLUPART_HOST}, {"zoneid", CURLUPART_ZONEID},
  {"port", CURLUPART_PORT}, {"path", CURLUPART_PATH},
  {"query", CURLUPART_QUERY}, {"fragment", CURLUPART_FRAGMENT}
};
#define NPARTS (int)(sizeof parts / sizeof parts[0])

static int box_gc (lua_State *L) {
  box *b = luaL_checkudata(L, 1, BOX);
  curl_url_cleanup(b->u);
  curl_free(b->s);
  b->u = NULL;
  b->s = NULL;
  return 0;
}

static box *newbox (lua_State *L) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->u = NULL;
  b->s = NULL;
  luaL_setmetatable(L, BOX);
  if ((b->u = curl_url()) == NULL) luaL_error(L, "not enough memory");
  return b;
}

/* Gets a part into b->s (freed by the next get or by __gc). */
static CURLUcode get (box *b, CURLUPart part) {
  curl_free(b->s);
  b->s = NULL;
  return curl_url_get(b->u, part, &b->s, 0);
}

/* Pushes b->s and frees it. */
static void push_got (lua_State *L, box *b) {
  lua_pushstring(L, b->s);
  curl_free(b->s);
  b->s = NULL;
}

static const char *checkurl (lua_State *L, int arg, const char *fname,
                             const char *what) {
  size_t n;
  const char *s;
  if (lua_type(L, arg) != LUA_TSTRING)
    pyq_usage(L, "%s: %s must be a string, got %s", fname, what,
              pyq_got(L, arg));
  s = lua_tolstring(L, arg, &n);
  if (strlen(s) != n)
    pyq_usage(L, "%s: %s contains a NUL byte", fname, what);
  return s;
}

/* s quoted for a message in buf, cut when long. */
typedef char qbuf[216];
static const char *quoted (qbuf buf, const char *s) {
  size_t n = strlen(s);
  snprintf(buf, sizeof(qbuf), "\"%.*s%s\"", n > 200 ? 197 : (int)n, s,
           n > 200 ? "..." : "");
  return buf;
}

/* Raises a "url" pyq.Error for a URL curl refused: the message gives the
 * URL (what: "base", "ref" or "") and curl's reason; fields url, reason. */
static int refused_why (lua_State *L, const char *fname, const char *what,
                        const char *url, const char *reason,
                        const char *base) {
  qbuf q1, q2;
  luaL_where(L, 1);
  lua_pushfstring(L, "%s: curl refuses %s%s%s%s%s%s: %s", fname, what,
                  *what ? " " : "", quoted(q1, url), base ? " (base " : "",
                  base ? quoted(q2, base) : "", base ? ")" : "", reason);
  lua_concat(L, 2);
  pyq_error_new(L, "url", lua_tostring(L, -1));
  lua_pushstring(L, url);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  return lua_error(L);
}

static int refused (lua_State *L, const char *fname, const char *what,
                    const char *url, CURLUcode rc, const char *base) {
  return refused_why(L, fname, what, url, curl_url_strerror(rc), base);
}

/* Sets t[name] for each part the handle holds.  An empty query or
 * fragment reads as absent: curl writes neither back. */
static void push_parts (lua_State *L, box *b) {
  int i;
  lua_createtable(L, 0, NPARTS);
  for (i = 0; i < NPARTS; i++) {
    if (get(b, parts[i].part) != CURLUE_OK || b->s == NULL) continue;
    if (parts[i].part == CURLUPART_PORT)
      lua_pushinteger(L, strtol(b->s, NULL, 10));
    else if (*b->s == '\0' && (parts[i].part == CURLUPART_QUERY ||
                               parts[i].part == CURLUPART_FRAGMENT))
      continue;
    else
      lua_pushstring(L, b->s);
    curl_free(b->s);
    b->s = NULL;
    lua_setfield(L, -2, parts[i].name);
  }
}

/* Leaves the handle parsed from the URL curl writes for it and pushes
 * that URL; or returns curl's error, pushing what it refused ("" when it
 * wrote nothing).  A part set on its own is not checked, the whole URL
 * is.  Parsing normalizes (dot segments), so the URL is written and
 * parsed until it stays the same; curl 7.88 writes an empty file path as
 * "(nil)", so a written URL curl refuses gets its path set again once,
 * and a rewrite that fails keeps the last URL that parsed. */
static CURLUcode settle (lua_State *L, box *b) {
  int round;
  CURLUcode rc = get(b, CURLUPART_URL);
  if (rc != CURLUE_OK) {
    lua_pushliteral(L, "");
    return rc;
  }
  push_got(L, b);
  if ((rc = curl_url_set(b->u, CURLUPART_URL, lua_tostring(L, -1), FLAGS))
      != CURLUE_OK) {
    if (get(b, CURLUPART_PATH) != CURLUE_OK ||
        curl_url_set(b->u, CURLUPART_PATH, b->s, FLAGS) != CURLUE_OK ||
        get(b, CURLUPART_URL) != CURLUE_OK)
      return rc;
    lua_pop(L, 1);
    push_got(L, b);
    rc = curl_url_set(b->u, CURLUPART_URL, lua_tostring(L, -1), FLAGS);
    if (rc != CURLUE_OK) return rc;
  }
  for (round = 0; round < 3; round++) {
    if (get(b, CURLUPART_URL) != CURLUE_OK ||
        strcmp(b->s, lua_tostring(L, -1)) == 0)
      break;
    if (curl_url_set(b->u, CURLUPART_URL, b->s, FLAGS) != CURLUE_OK) {
      curl_url_set(b->u, CURLUPART_URL, lua_tostring(L, -1), FLAGS);
      break;
    }
    lua_pop(L, 1);
    push_got(L, b);
  }
  return CURLUE_OK;
}

/* Why build could not give back a URL curl parsed, or NULL: curl 7.88
 * parses port 0 but will not set it, and writes a host holding "%" (other
 * than a zone id's) encoded once more each time it is set. */
static const char *unbuildable (box *b) {
  if (get(b, CURLUPART_PORT) == CURLUE_OK && strtol(b->s, NULL, 10) == 0)
    return "port 0";
  if (get(b, CURLUPART_HOST) == CURLUE_OK && strchr(b->s, '%'))
    return curl_url_strerror(CURLUE_BAD_HOSTNAME);
  return NULL;
}

/* pyq.url.parse(url) -> {scheme, user, password, host, port, path, query,
 * fragment} (options and zoneid too when there are such). */
static int url_parse (lua_State *L) {
  const char *url = checkurl(L, 1, "pyq.url.parse", "the URL"), *why;
  box *b = newbox(L);
  CURLUcode rc = curl_url_set(b->u, CURLUPART_URL, url, FLAGS);
  if (rc == CURLUE_OK) rc = settle(L, b);
  if (rc != CURLUE_OK) return refused(L, "pyq.url.parse", "", url, rc, NULL);
  if ((why = unbuildable(b)) != NULL)
    return refused_why(L, "pyq.url.parse", "", url, why, NULL);
  push_parts(L, b);
  return 1;
}

/* pyq.url.join(base, ref): ref resolved against base (RFC 3986, 5.2). */
static int url_join (lua_State *L) {
  const char *base = checkurl(L, 1, "pyq.url.join", "base");
  const char *ref = checkurl(L, 2, "pyq.url.join", "ref"), *why;
  box *b = newbox(L);
  CURLUcode rc = curl_url_set(b->u, CURLUPART_URL, base, FLAGS);
  if (rc != CURLUE_OK) return refused(L, "pyq.url.join", "base", base, rc, NULL);
  /* "" and "#frag" keep all of base but its fragment (RFC 3986, 5.2.2);
   * curl 7.88 would drop base's last segment and query for them */
  if (*ref == '\0' || *ref == '#')
    rc = curl_url_set(b->u, CURLUPART_FRAGMENT, *ref ? ref + 1 : NULL, 0);
  else
    rc = curl_url_set(b->u, CURLUPART_URL, ref, FLAGS);
  if (rc != CURLUE_OK) return refused(L, "pyq.url.join", "ref", ref, rc, base);
  if ((rc = settle(L, b)) != CURLUE_OK)
    return refused(L, "pyq.url.join", "the result", lua_tostring(L, -1), rc, base);
  if ((why = unbuildable(b)) != NULL)
    return refused_why(L, "pyq.url.join", "the result", lua_tostring(L, -1),
                       why, base);
  return 1;
}

static int part_index (const char *name) {
  int i;
  for (i = 0; i < NPARTS; i++)
    if (strcmp(parts[i].name, name) == 0) return i;
  return -1;
}

/* The field curl blames for a URL it refuses, or NULL. */
static const char *blamed (CURLUcode rc) {
  switch (rc) {
    case CURLUE_BAD_SCHEME: case CURLUE_BAD_SLASHES:
    case CURLUE_UNSUPPORTED_SCHEME: case CURLUE_NO_SCHEME: return "scheme";
    case CURLUE_BAD_USER: case CURLUE_BAD_LOGIN: return "user";
    case CURLUE_BAD_PASSWORD: return "password";
    case CURLUE_BAD_HOSTNAME: case CURLUE_BAD_IPV6:
    case CURLUE_NO_HOST: return "host";
    case CURLUE_BAD_PORT_NUMBER: return "port";
    case CURLUE_BAD_PATH: case CURLUE_BAD_FILE_URL: return "path";
    case CURLUE_BAD_QUERY: return "query";
    case CURLUE_BAD_FRAGMENT: return "fragment";
    default: return NULL;
  }
}

/* Sets one field of build's table (value at the top) on the handle. */
static void set_field (lua_State *L, box *b, int i) {
  char port[24];
  const char *v;
  CURLUcode rc;
  if (parts[i].part == CURLUPART_PORT) {
    lua_Integer n = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || n < 1 || n > 65535)
      pyq_usage(L, "pyq.url.build: port must be an integer from 1 to 65535, "
                "got %s", pyq_got(L, -1));
    snprintf(port, sizeof port, "%d", (int)n);
    v = port;
  } else {
    size_t n;
    if (lua_type(L, -1) != LUA_TSTRING)
      pyq_usage(L, "pyq.url.build: %s must be a string, got %s",
                parts[i].name, pyq_got(L, -1));
    v = lua_tolstring(L, -1, &n);
    if (strlen(v) != n)
      pyq_usage(L, "pyq.url.build: %s contains a NUL byte", parts[i].name);
  }
  rc = curl_url_set(b->u, parts[i].part, v, FLAGS);
  if (rc != CURLUE_OK)
    pyq_usage(L, "pyq.url.build: curl refuses %s %s: %s", parts[i].name,
              pyq_got(L, -1), curl_url_strerror(rc));
}

/* pyq.url.build(t): the URL of parse's table, each part taken as it
 * would be in the URL (percent-encoded). */
static int url_build (lua_State *L) {
  qbuf q1, q2, q3;
  box *b;
  int i;
  CURLUcode rc;
  if (!lua_istable(L, 1))
    return pyq_usage(L, "pyq.url.build: expected a table of URL parts, got %s",
                     pyq_got(L, 1));
  lua_settop(L, 1);
  b = newbox(L);                                         /* 2 */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING || part_index(lua_tostring(L, -2)) < 0)
      return pyq_usage(L, "pyq.url.build: unknown field %s (scheme, user, "
                       "password, options, host, zoneid, port, path, query, fragment)",
                       pyq_got(L, -2));
    lua_pop(L, 1);
  }
  /* in URL order: setting the host clears the zone id */
  for (i = 0; i < NPARTS; i++) {
    if (lua_getfield(L, 1, parts[i].name) != LUA_TNIL) set_field(L, b, i);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "scheme");
  if (lua_isnil(L, -1))
    return pyq_usage(L, "pyq.url.build: scheme is missing");
  lua_pop(L, 1);
  /* what each part is on the handle, to compare after the trip */
  lua_createtable(L, NPARTS, 0);                         /* 3 */
  for (i = 0; i < NPARTS; i++) {
    if (get(b, parts[i].part) == CURLUE_OK) {
      push_got(L, b);
    } else {
      int t = lua_getfield(L, 1, parts[i].name);
      if (t == LUA_TNUMBER || (t == LUA_TSTRING && lua_rawlen(L, -1) > 0))
        return pyq_usage(L, "pyq.url.build: curl drops %s %s", parts[i].name,
                         pyq_got(L, -1));
      lua_pop(L, 1);
      lua_pushboolean(L, 0);
    }
    lua_rawseti(L, 3, i + 1);
  }
  if ((rc = settle(L, b)) != CURLUE_OK) {                 /* 4 */
    const char *field = blamed(rc), *value;
    if (*lua_tostring(L, 4) == '\0')                       /* nothing written */
      return field ? pyq_usage(L, "pyq.url.build: %s: %s", field,
                               curl_url_strerror(rc))
                   : pyq_usage(L, "pyq.url.build: %s", curl_url_strerror(rc));
    if (!field)
      return refused(L, "pyq.url.build", "", lua_tostring(L, 4), rc, NULL);
    lua_getfield(L, 1, field);
    value = pyq_got(L, -1);
    return pyq_usage(L, "pyq.url.build: curl refuses %s %s in %s: %s", field,
                     value, quoted(q1, lua_tostring(L, 4)),
                     curl_url_strerror(rc));
  }
  /* a part that ends up elsewhere ("a#b" as a query) does not survive;
   * the path is left out: curl normalizes it */
  for (i = 0; i < NPARTS; i++) {
    const char *want, *got;
    if (parts[i].part == CURLUPART_PATH) continue;
    lua_rawgeti(L, 3, i + 1);
    want = lua_toboolean(L, -1) ? lua_tostring(L, -1) : NULL;
    got = get(b, parts[i].part) == CURLUE_OK ? b->s : NULL;
    if (parts[i].part == CURLUPART_QUERY || parts[i].part == CURLUPART_FRAGMENT) {
      if (want && !*want) want = NULL;     /* curl writes no empty ones */
      if (got && !*got) got = NULL;
    }
    if (want && got ? (parts[i].part == CURLUPART_SCHEME ? strcasecmp(want, got)
                                                        : strcmp(want, got)) != 0
                    : want != got)
      return pyq_usage(L, "pyq.url.build: the parts do not make a URL that reads "
                       "back the same: %s has %s %s, not %s (percent-encode the "
                       "parts: pyq.url.encode)", quoted(q1, lua_tostring(L, 4)),
                       parts[i].name, got ? quoted(q2, got) : "none",
                       want ? quoted(q3, want) : "none");
    lua_pop(L, 1);
  }
  lua_settop(L, 4);
  return 1;
}

/* pyq.url.encode(s): every byte but A-Z a-z 0-9 - . _ ~ as %XX.  curl
 * takes at most 8 MB at a time; bytes encode one by one, so pieces do. */
static int url_encode (lua_State *L) {
  enum { PIECE = 1 << 20 };
  size_t n, at;
  const char *s;
  box *b;
  luaL_Buffer buf;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.url.encode: expected a string, got %s",
                     pyq_got(L, 1));
  s = lua_tolstring(L, 1, &n);
  b = newbox(L);
  luaL_buffinit(L, &buf);
  for (at = 0; at < n; at += PIECE) {
    int len = n - at > PIECE ? PIECE : (int)(n - at);
    curl_free(b->s);
    if ((b->s = curl_easy_escape(NULL, s + at, len)) == NULL)
      luaL_error(L, "not enough memory");
    luaL_addstring(&buf, b->s);
  }
  luaL_pushresult(&buf);
  return 1;
}

/* pyq.url.decode(s): %XX escapes to bytes; a "%" that starts no escape
 * stays, "+" stays. */
static int url_decode (lua_State *L) {
  size_t n;
  const char *s;
  box *b;
  int len;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.url.decode: expected a string, got %s",
                     pyq_got(L, 1));
  s = lua_tolstring(L, 1, &n);
  if (n > (size_t)0x7fffffff)
    return pyq_usage(L, "pyq.url.decode: the string is longer than 2 GiB");
  b = newbox(L);
  if ((b->s = curl_easy_unescape(NULL, s, (int)n, &len)) == NULL)
    luaL_error(L, "not enough memory");
  lua_pushlstring(L, b->s, (size_t)len);
  return 1;
}

int luaopen_pyq_url (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"parse", url_parse}, {"join", url_join}, {"build", url_build},
    {"encode", url_encode}, {"decode", url_decode}, {NULL, NULL}
  };
  if (luaL_newmetatable(L, BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, BOX);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}

void pyq_open_url (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pyq_url);
  lua_setfield(L, -2, "pyq.url");
  lua_pop(L, 1);
}
