/* fuzz_input.c -- libFuzzer target over the host's input handling.
 *
 * The first byte picks what the rest feeds: the option table of pyq.Queue,
 * the option table of pyq.http.request (validated by pyq_http_check, no
 * transfer), that of pyq.http.configure (pyq_http_read), a session with a
 * request on it (its defaults merged and checked, nothing sent), a rate
 * string for pyq.http.limit, a URL and a header for
 * the URL check, the header check and the credential masking, or a URL
 * built around a known secret (mask_case), a redis:// URL for
 * pyq_redis_parse_url (redis_url_case), the option table of a cluster
 * queue (cluster_case), or a URL and a timeout for core._redis, what
 * `--worker URL` and `--cluster-status URL NAME` open (redis_case).
 * Tables are built from the bytes: known keys or random ones, values of
 * every type.  Bad input must end in a Lua error, never a crash; a secret
 * that survives masking, or a URL parsed into something it does not say,
 * aborts.
 *
 * Nothing connects anywhere but to a closed port of 127.0.0.1: before a
 * cluster queue or a connection is made, a `cluster` URL that parses is
 * rewritten to redis://127.0.0.1:PORT/DB (its database kept), PORT one
 * this process bound and never listens on, so every connect is refused
 * (safe_cluster); one that does not parse is left, to be refused before
 * any connect.  The loop then runs once per input (without waiting), so
 * the refused connections and closed queues are freed as they would be. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "pyqhost.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "http/http.h"
#include "redis/redis.h"

typedef struct input { const uint8_t *p; size_t n; } input;

static pyq_host host;
static int ready;
static int closed_port;   /* bound, never listening: connects are refused */

static int byte (input *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

static void push_string (lua_State *L, input *in) {
  size_t len = (size_t)byte(in) % 48;
  if (len > in->n) len = in->n;
  lua_pushlstring(L, (const char *)in->p, len);
  in->p += len;
  in->n -= len;
}

/* pyq.Queue's option names, then those of pyq.http's option tables:
 * the fuzzer meets every option the host knows, and no list to update. */
static const char *const queue_keys[] = {
  "workers", "maxsize", "log_level", "exception_handler", "progress", "total",
  "store", "name", "key", "delay"
};
static const char *keys[128];
static size_t nkeys;

static void collect_keys (void) {
  const pyq_http_option *tables[] = { pyq_http_request_options,
                                      pyq_http_configure_options,
                                      pyq_http_session_options };
  size_t i, t;
  for (i = 0; i < sizeof queue_keys / sizeof *queue_keys; i++)
    keys[nkeys++] = queue_keys[i];
  for (t = 0; t < 3; t++)
    for (i = 0; tables[t][i].name && nkeys < sizeof keys / sizeof *keys; i++)
      keys[nkeys++] = tables[t][i].name;
}

static void push_value (lua_State *L, input *in, int depth);

static void push_table (lua_State *L, input *in, int depth) {
  int i, n = byte(in) % 8;
  lua_createtable(L, 0, n);
  for (i = 0; i < n && in->n > 0; i++) {
    int k = byte(in);
    if (k < 200) lua_pushstring(L, keys[(size_t)k % nkeys]);
    else if (k < 240) push_string(L, in);
    else lua_pushinteger(L, k - 239);
    push_value(L, in, depth + 1);
    lua_rawset(L, -3);
  }
}

static void push_value (lua_State *L, input *in, int depth) {
  int b;
  switch (byte(in) % 10) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, byte(in) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)byte(in) * (byte(in) + 1)); break;
    case 3: b = byte(in); lua_pushnumber(L, b == 0 ? 0.0 / 0.0 : (b - 128) / 7.0); break;
    case 4: lua_pushinteger(L, (lua_Integer)((uint64_t)byte(in) << (byte(in) % 64))); break;
    case 5: case 6: push_string(L, in); break;
    case 7: if (depth < 3) push_table(L, in, depth); else lua_pushnil(L); break;
    case 8: lua_getglobal(L, "print"); break;
    default: lua_pushnumber(L, byte(in) & 1 ? 1e300 * 1e300 : -0.0); break;
  }
}

/* A redis:// URL from the bytes that parses becomes one to the closed
 * port (the database kept); a string that does not parse is left. */
static void rewrite_url (lua_State *L, int idx) {
  char hostname[128];
  int port, db;
  const char *why;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TSTRING ||
      !pyq_redis_parse_url(lua_tostring(L, idx), hostname, sizeof hostname,
                           &port, &db, &why)) return;
  lua_pushfstring(L, "redis://127.0.0.1:%d/%d", closed_port, db);
  lua_replace(L, idx);
}

/* The cluster option of the table at t, made safe (rewrite_url). */
static void safe_cluster (lua_State *L, int t) {
  lua_getfield(L, t, "cluster");
  rewrite_url(L, -1);
  lua_setfield(L, t, "cluster");
}

/* A queue from the bytes (a store is dropped: the fuzzer writes no files;
 * a name is kept, which must then be refused), then, once it is closed, a
 * put with an options table (key, delay) from them too: its options are
 * checked before the closed queue refuses it, and nothing runs. */
static int queue_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  lua_getglobal(L, "pyq");
  lua_getfield(L, -1, "Queue");
  push_table(L, in, 0);
  lua_pushnil(L);
  lua_setfield(L, -2, "store");
  safe_cluster(L, lua_gettop(L));
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "close");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "put");
  lua_insert(L, -2);
  lua_getfield(L, -3, "async");
  lua_getglobal(L, "print");
  lua_call(L, 1, 1);
  lua_call(L, 0, 1);   /* a task: print() */
  push_table(L, in, 0);
  lua_pcall(L, 3, 0, 0);
  return 0;
}

static int request_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  pyq_http_opts o;
  lua_settop(L, 0);
  if (byte(in) & 1) push_string(L, in); else lua_pushnil(L);   /* method */
  if (byte(in) & 1) push_string(L, in); else lua_pushnil(L);   /* url */
  push_table(L, in, 0);
  o.fname = "fuzz";
  pyq_http_check(L, &o);
  return 0;
}

static int configure_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  pyq_http_value v[PYQ_HC_N];
  push_table(L, in, 0);
  pyq_http_read(L, -1, "fuzz", pyq_http_configure_options, v);
  return 0;
}

/* A session from the bytes (a cookie or cache file name is dropped: the
 * fuzzer writes no files), then a request on it: the defaults merged and checked
 * (it cannot be sent: the fuzzer is not a task). */
static int session_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  lua_getglobal(L, "pyq");
  lua_getfield(L, -1, "http");
  lua_getfield(L, -1, "session");
  push_table(L, in, 0);
  if (lua_getfield(L, -1, "cookies") == LUA_TSTRING) {
    lua_pushnil(L);
    lua_setfield(L, -3, "cookies");
  }
  if (lua_getfield(L, -2, "cache") == LUA_TSTRING) {   /* a cache file */
    lua_pushnil(L);
    lua_setfield(L, -4, "cache");
  }
  lua_pop(L, 2);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "get");
  lua_pushvalue(L, -2);
  push_string(L, in);
  push_table(L, in, 0);
  lua_pcall(L, 3, 0, 0);
  lua_getfield(L, -1, "close");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

static int limit_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  lua_getglobal(L, "pyq");
  lua_getfield(L, -1, "http");
  lua_getfield(L, -1, "limit");
  push_string(L, in);
  push_string(L, in);
  push_string(L, in);
  lua_call(L, 3, 0);
  return 0;
}

static int url_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  char masked[256];
  size_t nlen, vlen;
  const char *name, *value, *url;
  pyq_http_opts o;
  lua_settop(L, 0);
  push_string(L, in);                       /* 1 url */
  push_string(L, in);                       /* 2 header name */
  push_string(L, in);                       /* 3 header value */
  url = lua_tostring(L, 1);
  name = lua_tolstring(L, 2, &nlen);
  value = lua_tolstring(L, 3, &vlen);
  pyq_http_header_ok(name, nlen, value, vlen);
  pyq_http_secret_name(name, nlen);
  pyq_http_mask_url(url, masked, sizeof masked);
  pyq_http_mask_url(url, masked, 8);
  lua_createtable(L, 0, 1);                 /* 4 headers */
  lua_pushvalue(L, 3);
  lua_setfield(L, 4, nlen ? name : "x");
  lua_createtable(L, 0, 1);                 /* 5 options */
  lua_pushvalue(L, 4);
  lua_setfield(L, 5, "headers");
  lua_copy(L, 1, 2);                        /* as pyq_http_check wants: */
  lua_pushnil(L);                           /* nil, url, options */
  lua_replace(L, 1);
  lua_copy(L, 5, 3);
  lua_settop(L, 3);
  o.fname = "fuzz";
  pyq_http_check(L, &o);
  return 0;
}

/* ---- mask_case: a secret in every part of a URL ---------------------- */

#define SECRET "Zq7SECRETv"

typedef struct sbuf { char p[4096]; size_t n; } sbuf;

static void put (sbuf *b, const char *s) {
  size_t n = strlen(s);
  if (b->n + n < sizeof b->p) {
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
  }
}

/* Up to 4 characters from set, picked by the input. */
static void junk (sbuf *b, input *in, const char *set) {
  int i, n = byte(in) % 5;
  size_t m = strlen(set);
  for (i = 0; i < n; i++) {
    char c[2] = { set[(size_t)byte(in) % m], '\0' };
    put(b, c);
  }
}

/* A password around the secret may hold anything but NUL; a value under a
 * secret name anything but the separators ? & ; # (written encoded, as a
 * URL must carry them). */
static const char *const secret_names[] = {
  "api_key", "access_token", "Sig", "pwd", "signature", "X-Auth", "jwt",
  "otp", "api%5Fkey", "PassWord", "mine", "sessionid"
};

static void pairs (sbuf *b, input *in) {
  int i, n = byte(in) % 4;
  for (i = 0; i < n; i++) {
    if (i > 0) put(b, byte(in) & 1 ? "&" : ";");
    if (byte(in) & 1) {
      put(b, secret_names[(size_t)byte(in) % (sizeof secret_names / sizeof *secret_names)]);
      put(b, "=");
      junk(b, in, "ab=:/@%+.");
      put(b, SECRET);
      junk(b, in, "ab=:/@%+.");
    } else {
      junk(b, in, "abc");
      if (byte(in) & 1) put(b, "=");
      junk(b, in, "xyz/@:=");
    }
  }
}

static int mask_case (lua_State *L) {
  static const char *const schemes[] = { "http://", "https://", "HTTP://", "" };
  input *in = lua_touserdata(L, 1);
  sbuf url = { {0}, 0 };
  char out[8192], small[24];
  put(&url, schemes[byte(in) % 4]);
  if (byte(in) & 1) {                         /* user:password@ */
    junk(&url, in, "us/#?@;&=");
    put(&url, ":");
    junk(&url, in, "p/#?@:;&=%");
    put(&url, SECRET);
    junk(&url, in, "w/#?@:;&=%");
    put(&url, "@");
  }
  put(&url, byte(in) & 1 ? "127.0.0.1" : "h.example");
  if (byte(in) & 1) put(&url, ":8080");
  junk(&url, in, "/ab=@:");
  if (byte(in) & 1) { put(&url, "?"); pairs(&url, in); }
  if (byte(in) & 1) { put(&url, "#"); pairs(&url, in); }
  pyq_http_mask(url.p, out, sizeof out, "mine\0\0", NULL);
  if (strstr(out, SECRET) != NULL) {
    fprintf(stderr, "secret survived masking:\n  %s\n  %s\n", url.p, out);
    abort();
  }
  pyq_http_mask(url.p, small, sizeof small, "mine\0\0", NULL);
  (void)L;
  return 0;
}

/* ---- the cluster's URL and options ------------------------------------ */

/* pyq_redis_parse_url over the rest of the input, into a host buffer of a
 * size from the input: what it accepts must be what the URL says. */
static int redis_url_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  char url[512], hostname[128];
  size_t hn = (size_t)byte(in) % sizeof hostname + 1, n, h;
  int scheme = byte(in) & 1;   /* most with it, so the rest is reached */
  int port, db, r;
  const char *why = NULL, *p;
  char *end;
  n = in->n < sizeof url - 9 ? in->n : sizeof url - 9;
  if (scheme) {
    memcpy(url, "redis://", 8);
    memcpy(url + 8, in->p, n);
    url[8 + n] = '\0';
  } else {
    memcpy(url, in->p, n);
    url[n] = '\0';
  }
  memset(hostname, 'X', sizeof hostname);
  r = pyq_redis_parse_url(url, hostname, hn, &port, &db, &why);
  if (!r) {
    if (why == NULL || *why == '\0') abort();
    return 0;
  }
  if (strncasecmp(url, "redis://", 8) != 0) abort();   /* any case */
  p = url + 8;
  h = strcspn(p, ":/");
  if (h == 0 || h >= hn || strlen(hostname) != h ||
      memcmp(hostname, p, h) != 0 || memchr(hostname, '@', h)) abort();
  if (port < 1 || port > 65535 || db < 0) abort();
  p += h;
  if (*p == ':') {   /* the port the URL gives */
    long v = strtol(p + 1, &end, 10);
    if (v != port) abort();
    p = end;
  } else if (port != 6379) abort();
  if (*p == '/' && p[1]) {
    if (strtol(p + 1, &end, 10) != db || *end) abort();
  } else if (db != 0 || (*p && strcmp(p, "/") != 0)) abort();
  (void)L;
  return 0;
}

/* A string that is most often a redis:// URL. */
static void push_url (lua_State *L, input *in) {
  static const char *const heads[] = {
    "redis://", "redis://127.0.0.1:", "redis://localhost/", "rediss://", ""
  };
  lua_pushstring(L, heads[byte(in) % 5]);
  push_string(L, in);
  lua_concat(L, 2);
}

/* pyq.Queue with the cluster options from the bytes (each there or not,
 * of every type, the URL most often a redis:// one) and maybe odd keys;
 * a queue made is closed.  store goes in only beside a cluster, and as
 * ":memory:" when it is a string, so no file is ever written. */
static int cluster_case (lua_State *L) {
  static const char *const opts[] = {
    "name", "visibility", "cluster_timeout", "workers", "maxsize", "store"
  };
  input *in = lua_touserdata(L, 1);
  int i, t, mask = byte(in);
  lua_getglobal(L, "pyq");
  lua_getfield(L, -1, "Queue");
  if (byte(in) < 32) push_table(L, in, 0); else lua_newtable(L);
  t = lua_gettop(L);
  if (byte(in) < 224) push_url(L, in); else push_value(L, in, 1);
  lua_setfield(L, t, "cluster");
  for (i = 0; i < 6; i++) {
    if (!(mask & (1 << i))) continue;
    if (i == 0 && byte(in) < 200) push_string(L, in);
    else push_value(L, in, 1);
    lua_setfield(L, t, opts[i]);
  }
  lua_getfield(L, t, "cluster");
  lua_getfield(L, t, "store");
  if (lua_isnil(L, -2)) {   /* no cluster: the store would be opened */
    lua_pushnil(L);
    lua_setfield(L, t, "store");
  } else if (lua_type(L, -1) == LUA_TSTRING) {   /* a store beside a cluster
                                                    is opened: no file */
    lua_pushliteral(L, ":memory:");
    lua_setfield(L, t, "store");
  }
  lua_pop(L, 2);
  safe_cluster(L, t);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "close");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* core._redis(url[, timeout]), the connection --worker and --cluster-status
 * open, closed at once. */
static int redis_case (lua_State *L) {
  input *in = lua_touserdata(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "pyq.core");
  lua_getfield(L, -1, "_redis");
  push_url(L, in);
  rewrite_url(L, -1);
  if (byte(in) & 1) push_value(L, in, 1); else lua_pushnil(L);
  lua_call(L, 2, 1);
  lua_getfield(L, -1, "close");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* A port of 127.0.0.1 bound here and never listened on: connects to it
 * are refused, and no other process can listen on it while we live. */
static int bind_closed_port (void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) abort();
  return ntohs(a.sin_port);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static lua_CFunction cases[] = { queue_case, request_case, limit_case, url_case,
                                   mask_case, configure_case, session_case,
                                   redis_url_case, cluster_case, redis_case };
  input in = { data, size };
  lua_State *L;
  if (!ready) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!pyq_host_open(&host, PYQ_CRITICAL + 10)) abort();
    collect_keys();
    closed_port = bind_closed_port();
    ready = 1;
  }
  L = host.L;
  lua_settop(L, 0);
  lua_pushcfunction(L, cases[byte(&in) % 10]);
  lua_pushlightuserdata(L, &in);
  lua_pcall(L, 1, 0, 0);
  lua_settop(L, 0);
  uv_run(host.loop, UV_RUN_NOWAIT);   /* closed queues and connections go */
  return 0;
}
