/* http.c -- pyq.http's sessions, transfers and Lua verbs.
 *
 * A transfer (xfer) is a pooled easy handle with the options last set on
 * it, the session it runs under and a sink its answer goes into (the
 * memory sink now).  It goes onto the loop through curl_uv.c, which calls
 * xfer_done when it is over; that wakes the task, and the response table
 * is built in the task's continuation, inside its coroutine, never in a
 * libuv callback.
 *
 * A session owns the defaults of its requests: the user agent, the HTTP
 * version, the names to mask, the retry plan.  The plain pyq.http.get/...
 * are C functions on the default session: a request is one crossing from
 * Lua, checked once (http_input.c) and sent.  Only a request that needs
 * the retry loop (retries, attempt_timeout, rate limits or a Retry-After
 * hold in force) goes to http.lua, with the checked request as a userdata
 * that each attempt sends again without checking it again.
 *
 * Redirects are followed here, not by libcurl, so that credentials stay
 * with their origin: when a hop ends in a 3xx with a Location, xfer_done
 * puts the same handle back with the new URL (the task sleeps on), after
 * dropping the secret headers if the scheme, host or port changes and
 * refusing https -> http unless allowed.
 *
 * Errors are pyq.Error objects: kind "transport", "timeout" or "too_big",
 * with the method and the masked URL as fields; their text is the one
 * scripts always saw. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <curl/curl.h>
#include "http.h"
#include "curl_uv.h"
#include "sink.h"
#include "core/log.h"
#include "lua/error.h"
#include "report/report.h"

/* Finished transfers kept for reuse, and the body buffer each may keep:
 * a pooled transfer keeps at most KEEP_BODY bytes of body buffer (its
 * header buffer is kept as it grew). */
#define POOL_MAX 256
#define KEEP_BODY 32768
#define LATENCY_BUCKETS 320
#define SESSION_POOL 16

/* A session's defaults.  gen is new (from one counter) at every change of
 * any session, so a pooled handle whose gen differs sets them again.  A
 * session outside Lua memory is counted: its Lua object, each transfer in
 * flight and each checked request hold it; pyq.http's default session
 * lives in the state and is never freed by count. */
typedef struct session {
  int refs;
  int closed;             /* close() or the collector: no new requests */
  char *user_agent;
  char *hnames, *qnames;  /* sensitive_headers, sensitive_query (packed) */
  long http_version;
  char *proxy;            /* NULL: libcurl's (the environment's); "": none */
  char *base_url;         /* ends in '/'; NULL: none */
  int defaults;           /* registry ref of the request defaults, or LUA_NOREF */
  int cache;              /* registry ref of the response cache's settings
                             (http.lua's cache_config), or LUA_NOREF */
  /* cookies = true | "file": the session's own jar in its own share, and
   * its own pool of handles (a handle once given the jar keeps the engine
   * on, so it never serves another session) */
  CURLSH *share;
  char *cookie_file;      /* loaded at start, saved when the session ends */
  struct xfer *pool[SESSION_POOL];
  int npool;
  unsigned gen;
  lua_Integer retries;    /* the retry plan of requests that set none */
  double backoff, max_retry_after;
} session;

/* The options last set on a pooled easy handle. */
typedef struct applied {
  int set;                /* 0: a new handle, nothing set yet */
  unsigned gen;           /* the session gen they were set under */
  long timeout_ms, ctimeout_ms, verify, verifyhost;
  curl_off_t max_body;
  long fresh;             /* CURLOPT_FRESH_CONNECT */
  int headers;            /* CURLOPT_HTTPHEADER points at a list */
  int plain_get;          /* no method or body options in effect */
  int auth;               /* a user and password are set */
  long version;           /* CURLOPT_HTTP_VERSION */
  char *proxy;            /* CURLOPT_PROXY (a copy), NULL: unset */
} applied;

typedef struct xfer xfer;
struct xfer {
  applied applied;
  CURL *easy;
  pyq_fiber *f;
  pyq_http *http;
  session *s;
  pyq_sink *sink;         /* where the answer goes: &mem.sink or &dl->sink */
  pyq_sink_mem mem;
  pyq_sink_dl *dl;        /* output or on_data: a download sink, or NULL */
  struct curl_slist *headers;
  curl_mime *mime;        /* a multipart body, or NULL */
  CURLcode result;
  char method[24];
  char *url;
  char *why;              /* our own error text (a refused redirect) or NULL */
  char *hnames, *qnames;  /* the request's sensitive_headers, sensitive_query */
  long timeout_ms;        /* for the whole request, every hop */
  long max_redirects, hops;
  curl_off_t spent;       /* microseconds in the hops before this one */
  int follow, allow_downgrade;
  int location;           /* this hop's answer has a Location header */
  int discard;            /* this hop's body is a redirect's: dropped */
  int hold_check;         /* a 429 or 503 goes to http.lua's Retry-After */
  char err[CURL_ERROR_SIZE];
};

struct pyq_http {
  pyq_host *host;
  pyq_curl_uv *cu;
  CURLSH *share;
  session defaults;       /* the session of the plain pyq.http functions */
  struct xfer *pool[POOL_MAX];   /* finished transfers, options kept */
  int npool;
  /* what sends a request to http.lua's retry loop (set by http.lua) */
  int limited;            /* http.limit has limits */
  double hold_until;      /* pyq_clock() until which a Retry-After holds */
  /* for the summary */
  uint64_t requests, bytes, retries, failures;
  uint64_t cache_hits, cache_misses;
  uint64_t status[600];
  uint64_t latency[LATENCY_BUCKETS];   /* by log2(microseconds) in eighths */
};

static const char response_key = 'r', retry_key = 't', hold_key = 'h',
                  config_key = 'c';

static unsigned next_gen = 1;

static session *session_ref (session *s) {
  s->refs++;
  return s;
}

static void session_free_fields (session *s) {
  free(s->user_agent);
  free(s->hnames);
  free(s->qnames);
  free(s->proxy);
  free(s->base_url);
  s->user_agent = s->hnames = s->qnames = s->proxy = s->base_url = NULL;
}

static void xfer_destroy (struct xfer *x);

/* A handle on the session's jar, for loading, saving and listing it. */
static CURL *jar_handle (session *s) {
  CURL *e = curl_easy_init();
  if (e) {
    curl_easy_setopt(e, CURLOPT_SHARE, s->share);
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
  }
  return e;
}

/* Writes the jar to the cookie file (libcurl writes a temporary file and
 * renames it: the file is whole or as it was). */
static void save_cookies (session *s) {
  CURL *e;
  if (s->cookie_file == NULL || (e = jar_handle(s)) == NULL) return;
  curl_easy_setopt(e, CURLOPT_COOKIEJAR, s->cookie_file);
  curl_easy_setopt(e, CURLOPT_COOKIELIST, "FLUSH");
  curl_easy_cleanup(e);
}

static void session_unref (session *s) {
  int i;
  if (--s->refs > 0) return;
  for (i = 0; i < s->npool; i++) xfer_destroy(s->pool[i]);
  if (s->share) {
    save_cookies(s);
    curl_share_cleanup(s->share);
  }
  free(s->cookie_file);
  session_free_fields(s);
  free(s);
}

static void xfer_done (CURL *e, CURLcode result, void *ud);
static void setup_auth (xfer *x, const char *packed);

/* ---- curl callbacks: the answer into the sink ------------------------- */

static size_t on_body (char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  n *= size;
  int r;
  if (x->discard) return n;
  r = x->sink->ops->data(x->sink, p, n);
  return r == PYQ_SINK_PAUSE ? CURL_WRITEFUNC_PAUSE : r ? n : 0;
}

/* Notes a Location, and at the end of a redirect's headers decides that
 * its body is not kept; the sink gets every line. */
static size_t on_header (char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  n *= size;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* next answer */
    x->location = 0;
  } else if (n >= 9 && strncasecmp(p, "location:", 9) == 0) {
    x->location = 1;
  } else if (n <= 2 && (p[0] == '\r' || p[0] == '\n') && x->location &&
             x->follow) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    x->discard = code >= 300 && code < 400 && code != 304;
  }
  return x->sink->ops->headers(x->sink, p, n) ? n : 0;
}

/* ---- redirects ------------------------------------------------------------ */

/* 1 when a and b have the same scheme, host and port. */
static int same_origin (const char *a, const char *b) {
  static const CURLUPart parts[] = { CURLUPART_SCHEME, CURLUPART_HOST,
                                     CURLUPART_PORT };
  CURLU *ua = curl_url(), *ub = curl_url();
  int i, same = ua && ub &&
    curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
    curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK;
  for (i = 0; same && i < 3; i++) {
    char *pa = NULL, *pb = NULL;
    curl_url_get(ua, parts[i], &pa, CURLU_DEFAULT_PORT);
    curl_url_get(ub, parts[i], &pb, CURLU_DEFAULT_PORT);
    same = pa && pb && strcasecmp(pa, pb) == 0;
    curl_free(pa);
    curl_free(pb);
  }
  curl_url_cleanup(ua);
  curl_url_cleanup(ub);
  return same;
}

/* The request's headers without those that must not reach another origin:
 * credentials by name (as masked in logs), the user's sensitive_headers,
 * and Host (it names the first origin). */
static int origin_headers (xfer *x, struct curl_slist **out) {
  struct curl_slist *h, *kept = NULL, *n;
  for (h = x->headers; h; h = h->next) {
    size_t nlen = strcspn(h->data, ":;");
    if (pyq_http_secret(h->data, nlen, x->s->hnames, x->hnames) ||
        (nlen == 4 && strncasecmp(h->data, "host", 4) == 0))
      continue;
    if ((n = curl_slist_append(kept, h->data)) == NULL) {
      curl_slist_free_all(kept);
      return 0;
    }
    kept = n;
  }
  *out = kept;
  return 1;
}

/* A refused redirect: the transfer ends with this text as its error. */
static int refuse (xfer *x, CURLcode code, const char *fmt, const char *to) {
  char from[1024], shown[1024], text[2560];
  pyq_http_mask(x->url, from, sizeof from, x->s->qnames, x->qnames);
  pyq_http_mask(to, shown, sizeof shown, x->s->qnames, x->qnames);
  snprintf(text, sizeof text, fmt, from, shown);
  x->why = strdup(text);
  x->result = code;
  return 0;
}

/* After a hop: a redirect to follow puts the handle back into the multi
 * handle with the new URL and returns 1; 0 when the transfer is over. */
static int follow_redirect (xfer *x) {
  CURL *e = x->easy;
  long code = 0, left;
  char *loc = NULL, *to;
  curl_off_t us = 0;
  struct curl_slist *headers = x->headers;
  int https_before;
  if (!x->discard || x->result != CURLE_OK) return 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (code < 300 || code >= 400 || code == 304 ||
      curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK ||
      loc == NULL) {
    x->discard = 0;   /* a Location libcurl cannot use: the answer stands */
    return 0;
  }
  if (x->hops >= x->max_redirects) {
    x->result = CURLE_TOO_MANY_REDIRECTS;
    snprintf(x->err, sizeof x->err, "Maximum (%ld) redirects followed",
             x->max_redirects);
    return 0;
  }
  if (strncasecmp(loc, "http://", 7) != 0 && strncasecmp(loc, "https://", 8) != 0) {
    x->result = CURLE_UNSUPPORTED_PROTOCOL;
    snprintf(x->err, sizeof x->err, "Protocol \"%.*s\" not supported",
             (int)strcspn(loc, ":"), loc);
    return 0;
  }
  https_before = strncasecmp(x->url, "https:", 6) == 0;
  if (https_before && strncasecmp(loc, "http:", 5) == 0 && !x->allow_downgrade)
    return refuse(x, CURLE_UNSUPPORTED_PROTOCOL, "refused the redirect from "
                  "%s to %s: it leaves https (allow_downgrade = true permits it)", loc);
  curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
  x->spent += us;
  if ((left = x->timeout_ms - (long)(x->spent / 1000)) <= 0) {
    x->result = CURLE_OPERATION_TIMEDOUT;
    snprintf(x->err, sizeof x->err, "Operation timed out after %ld "
             "milliseconds, after %ld redirects", x->timeout_ms, x->hops + 1);
    return 0;
  }
  if ((to = strdup(loc)) == NULL) {
    x->result = CURLE_OUT_OF_MEMORY;
    return 0;
  }
  if ((x->headers || x->applied.auth) && !same_origin(x->url, to)) {
    setup_auth(x, NULL);   /* a user and password are the first origin's */
    if (x->headers && !origin_headers(x, &headers)) {
      free(to);
      x->result = CURLE_OUT_OF_MEMORY;
      return 0;
    }
  }
  if (headers != x->headers) {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_slist_free_all(x->headers);
    x->headers = headers;
    x->applied.headers = headers != NULL;
  }
  /* libcurl's rules: 301 and 302 turn a POST into a GET, 303 anything but
   * HEAD; 307 and 308 keep the method and the body. */
  if (((code == 301 || code == 302) && strcmp(x->method, "POST") == 0) ||
      (code == 303 && strcmp(x->method, "HEAD") != 0)) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    strcpy(x->method, "GET");
    x->applied.plain_get = 1;
  }
  curl_easy_setopt(e, CURLOPT_URL, to);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left);
  x->applied.timeout_ms = left;
  if (x->applied.fresh) {   /* the next origin may have a connection to reuse */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 0L);
    x->applied.fresh = 0;
  }
  free(x->url);
  x->url = to;
  x->hops++;
  x->mem.body.len = 0;
  x->discard = x->location = 0;
  if (!pyq_curl_uv_add(x->http->cu, e, xfer_done, x)) {
    x->result = CURLE_OUT_OF_MEMORY;
    return 0;
  }
  return 1;
}

/* A hop is over: follow its redirect, or wake the task. */
static void xfer_done (CURL *e, CURLcode result, void *ud) {
  xfer *x = ud;
  (void)e;
  x->result = result;
  if (x->discard && follow_redirect(x)) return;
  x->sink->ops->done(x->sink, x->result);
  if (x->dl && x->dl->woken) return;   /* on_data's chunk woke it already */
  pyq_wake_now(x->f, 0);
}

/* ---- transfers ---------------------------------------------------------- */

static void xfer_destroy (xfer *x) {
  if (x->easy) curl_easy_cleanup(x->easy);
  free(x->applied.proxy);
  pyq_sink_mem_free(&x->mem);
  free(x);
}

/* Back to the pool: the easy handle keeps its options, small buffers stay. */
static void xfer_free (xfer *x) {
  pyq_http *hp = x->http;
  session *s;
  curl_slist_free_all(x->headers);
  x->headers = NULL;
  if (x->mime) {   /* the handle lets go of it first */
    curl_easy_setopt(x->easy, CURLOPT_MIMEPOST, NULL);
    curl_mime_free(x->mime);
    x->mime = NULL;
    x->applied.plain_get = 0;
  }
  free(x->url);
  free(x->why);
  free(x->hnames);
  free(x->qnames);
  x->url = x->why = x->hnames = x->qnames = NULL;
  s = x->s;
  x->s = NULL;
  x->f = NULL;
  x->hops = 0;
  x->spent = 0;
  x->discard = x->location = x->hold_check = 0;
  if (x->dl) {   /* its handle has a Range, no Accept-Encoding or a pause */
    pyq_sink_dl_free(x->dl);
    x->dl = NULL;
    x->sink = &x->mem.sink;
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
  }
  if (x->easy && hp->cu && (s && s->share ? s->npool < SESSION_POOL && !s->closed
                                           : hp->npool < POOL_MAX)) {
    pyq_sink_mem_reset(&x->mem, KEEP_BODY);
    x->err[0] = '\0';
    if (s && s->share) s->pool[s->npool++] = x;
    else hp->pool[hp->npool++] = x;
  } else {
    xfer_destroy(x);
  }
  if (s) session_unref(s);
}

static xfer *xfer_new (pyq_http *hp, session *s) {
  xfer *x;
  if (s->share ? s->npool > 0 : hp->npool > 0)
    return s->share ? s->pool[--s->npool] : hp->pool[--hp->npool];
  if ((x = calloc(1, sizeof *x)) == NULL) return NULL;
  x->http = hp;
  x->sink = &x->mem.sink;
  if ((x->easy = curl_easy_init()) == NULL) {
    free(x);
    return NULL;
  }
  return x;
}

/* A cancelled task's transfer stops at once. */
static void xfer_disarm (pyq_fiber *f, void *on) {
  xfer *x = on;
  (void)f;
  pyq_curl_uv_remove(x->http->cu, x->easy);
  xfer_free(x);
}

static const pyq_wait_ops xfer_wait = {"pyq.http", xfer_disarm};

static const char *version_name (long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_1_1: return "1.1";
    case CURL_HTTP_VERSION_2_0: return "2";
    case CURL_HTTP_VERSION_3: return "3";
    default: return "?";
  }
}

/* Pushes name lower-cased. */
static void push_lower (lua_State *L, const char *p, size_t n) {
  char small[128], *low = small;
  luaL_Buffer b;
  size_t i;
  if (n > sizeof small) low = luaL_buffinitsize(L, &b, n);
  for (i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)p[i]);
  if (low == small) lua_pushlstring(L, low, n);
  else luaL_pushresultsize(&b, n);
}

/* Lower-cased names; a repeated header's values joined with ", ".  The
 * values of a repeated name are gathered in a list and joined once at the
 * end, so 40,000 "A: v" lines cost linear time. */
static void push_headers (lua_State *L, const char *p, size_t len) {
  const char *end = p + len;
  int t, lists = 0;
  lua_createtable(L, 0, 8);
  t = lua_gettop(L);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *colon, *v, *ve;
    if (eol == NULL) eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (colon != NULL && colon > p && !(eol - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) ;
      for (ve = eol; ve > v && isspace((unsigned char)ve[-1]); ve--) ;
      push_lower(L, p, (size_t)(colon - p));
      lua_pushvalue(L, -1);
      switch (lua_rawget(L, t)) {
        case LUA_TNIL:      /* first: the value itself */
          lua_pop(L, 1);
          lua_pushlstring(L, v, (size_t)(ve - v));
          lua_rawset(L, t);
          break;
        case LUA_TSTRING:   /* second: a list of both */
          lua_createtable(L, 4, 0);
          lua_insert(L, -2);
          lua_rawseti(L, -2, 1);
          lua_pushlstring(L, v, (size_t)(ve - v));
          lua_rawseti(L, -2, 2);
          lua_rawset(L, t);
          lists = 1;
          break;
        default:            /* more: appended */
          lua_pushlstring(L, v, (size_t)(ve - v));
          lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
          lua_pop(L, 2);
          break;
      }
    }
    p = eol + 1;
  }
  if (!lists) return;
  lua_pushnil(L);
  while (lua_next(L, t)) {   /* join the lists */
    if (lua_istable(L, -1)) {
      luaL_Buffer b;
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
      int list = lua_gettop(L);
      luaL_buffinit(L, &b);
      for (i = 1; i <= n; i++) {
        if (i > 1) luaL_addlstring(&b, ", ", 2);
        lua_rawgeti(L, list, i);
        luaL_addvalue(&b);
      }
      luaL_pushresult(&b);
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, t);   /* an existing key: lua_next goes on */
    }
    lua_pop(L, 1);
  }
}

/* res.body; a download's 2xx body is not in memory: res.size (bytes in
 * the file or handed to on_data), res.path once path holds it whole, and
 * res.aborted when on_data stopped it. */
static void push_body (lua_State *L, xfer *x) {
  pyq_sink_dl *d = x->dl;
  if (d == NULL || (d->to_mem && !d->whole)) {
    lua_pushlstring(L, x->mem.body.p ? x->mem.body.p : "", x->mem.body.len);
    lua_setfield(L, -2, "body");
    return;
  }
  lua_pushinteger(L, (lua_Integer)d->size);
  lua_setfield(L, -2, "size");
  if (d->whole) {
    lua_pushstring(L, d->path);
    lua_setfield(L, -2, "path");
  }
  if (d->aborted) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "aborted");
  }
}

static void push_response (lua_State *L, xfer *x) {
  long status = 0, version = 0;
  char *url = NULL;
  curl_off_t total = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total);
  total += x->spent;
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushboolean(L, status >= 200 && status < 300);
  lua_setfield(L, -2, "ok");
  push_body(L, x);
  lua_pushlstring(L, x->mem.head.p ? x->mem.head.p : "", x->mem.head.len);
  lua_setfield(L, -2, "raw_headers");   /* res.headers parses it on use */
  lua_pushstring(L, url ? url : x->url);
  lua_setfield(L, -2, "url");
  lua_pushnumber(L, (lua_Number)total / 1e6);
  lua_setfield(L, -2, "elapsed");
  lua_pushstring(L, version_name(version));
  lua_setfield(L, -2, "http_version");
  lua_pushstring(L, x->method);
  lua_setfield(L, -2, "method");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &response_key);
  lua_setmetatable(L, -2);
}

static void count (xfer *x) {
  pyq_http *hp = x->http;
  long status = 0;
  curl_off_t us = 0;
  int b;
  hp->requests++;
  hp->bytes += x->mem.body.len;
  if (x->dl && !x->dl->to_mem) hp->bytes += (uint64_t)x->dl->size;
  if (x->result != CURLE_OK) {
    hp->failures++;
    return;
  }
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
  us += x->spent;
  if (status >= 0 && status < 600) hp->status[status]++;
  b = us > 0 ? (int)(log2((double)us) * 8) : 0;
  hp->latency[b < 0 ? 0 : b >= LATENCY_BUCKETS ? LATENCY_BUCKETS - 1 : b]++;
}

/* The latency at quantile q, in milliseconds (bucket midpoint). */
static double quantile (const pyq_http *hp, double q) {
  uint64_t n = 0, seen = 0, want;
  int b;
  for (b = 0; b < LATENCY_BUCKETS; b++) n += hp->latency[b];
  want = (uint64_t)(q * (double)n);
  for (b = 0; b < LATENCY_BUCKETS; b++) {
    seen += hp->latency[b];
    if (seen > want) break;
  }
  return pow(2.0, (b + 0.5) / 8.0) / 1000.0;
}

void pyq_http_report (pyq_http *hp, FILE *out) {
  int s;
  if (hp->cache_hits + hp->cache_misses > 0)
    fprintf(out, "  http cache: %llu hit%s, %llu miss%s\n",
            (unsigned long long)hp->cache_hits, hp->cache_hits == 1 ? "" : "s",
            (unsigned long long)hp->cache_misses, hp->cache_misses == 1 ? "" : "es");
  if (hp->requests == 0) return;
  fprintf(out, "  http: %llu request%s, %llu retr%s, %llu failed, %.1f MiB;",
          (unsigned long long)hp->requests, hp->requests == 1 ? "" : "s",
          (unsigned long long)hp->retries, hp->retries == 1 ? "y" : "ies",
          (unsigned long long)hp->failures, (double)hp->bytes / 1048576.0);
  for (s = 0; s < 600; s++)
    if (hp->status[s])
      fprintf(out, " %d x%llu", s, (unsigned long long)hp->status[s]);
  if (hp->requests > hp->failures)
    fprintf(out, "; latency p50 %.1f ms, p90 %.1f ms, p99 %.1f ms",
            quantile(hp, 0.5), quantile(hp, 0.9), quantile(hp, 0.99));
  fputc('\n', out);
}

static void log_response (xfer *x);

/* libcurl's reason; a header over its limit says so rather than "Out of
 * memory", which is how libcurl reports it. */
static const char *error_text (xfer *x) {
  long code = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  if (x->result == CURLE_OUT_OF_MEMORY && code > 0)
    return "a response header is too large (libcurl takes at most 100 KiB "
           "a header)";
  return x->err[0] ? x->err : curl_easy_strerror(x->result);
}

/* Pushes the message of a failed transfer and returns its kind. */
static const char *push_failure (lua_State *L, xfer *x, const char *shown) {
  char size[64], text[1024];
  long oserr = 0;
  const char *kind;
  if (x->dl && (kind = pyq_sink_dl_error(x->dl, text, sizeof text)) != NULL) {
    lua_pushfstring(L, "pyq.http: %s %s: %s", x->method, shown, text);
    return kind;
  }
  if (x->mem.too_big || x->result == CURLE_FILESIZE_EXCEEDED) {
    snprintf(size, sizeof size, "%lld",
             (long long)(x->dl && !x->mem.too_big ? x->dl->max : x->mem.max));
    lua_pushfstring(L, "pyq.http: %s %s: the response body is over max_body "
                    "(%s bytes)", x->method, shown, size);
    return "too_big";
  }
  if (x->why) {
    lua_pushfstring(L, "pyq.http: %s %s: %s", x->method, shown, x->why);
    return "transport";
  }
  if (x->result == CURLE_COULDNT_CONNECT)   /* say "Connection refused" */
    curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
  lua_pushfstring(L, "pyq.http: %s %s: %s%s%s%s", x->method, shown,
                  error_text(x), oserr ? " (" : "",
                  oserr ? strerror((int)oserr) : "", oserr ? ")" : "");
  return x->result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport";
}

/* Stops an on_data transfer that is still on the loop. */
static void stream_stop (xfer *x) {
  if (!x->dl->finished) {
    pyq_curl_uv_remove(x->http->cu, x->easy);
    x->dl->finished = 1;
  }
}

/* on_data: the task hands the bytes that came to its callback, which runs
 * here, in the task, and cannot wait; the transfer stays paused until the
 * callback has returned (at most one chunk waits in C, libcurl keeps the
 * next), so a slow callback slows the download instead of filling memory.
 * 1 when the transfer is over (its response or error follows), 0 to wait
 * for more. */
static int stream (lua_State *L, pyq_fiber *f, xfer *x) {
  pyq_sink_dl *d = x->dl;
  d->woken = 0;
  d->running = 1;
  for (;;) {
    if (f->run.cancel || f->run.expired) {
      const pyq_reason *why = f->run.cancel ? f->run.cancel : &pyq_timeout_reason;
      stream_stop(x);
      xfer_free(x);
      return pyq_raise_reason(L, why);
    }
    if (d->buf.len > 0) {
      int st;
      lua_pushvalue(L, PYQ_HS_SINK);
      lua_pushlstring(L, d->buf.p, d->buf.len);
      d->buf.len = 0;
      f->flags |= PYQ_F_NOWAIT;
      f->nowait = "pyq.http's on_data (it runs while the transfer waits for "
                  "it; hand slow work to a queue)";
      st = lua_pcall(L, 1, 1, 0);
      f->flags &= ~PYQ_F_NOWAIT;
      f->nowait = NULL;
      if (st != LUA_OK) {   /* the request fails with the callback's error */
        stream_stop(x);
        xfer_free(x);
        return lua_error(L);
      }
      if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {   /* stop here */
        stream_stop(x);
        d->aborted = 1;
        x->result = CURLE_OK;
      }
      lua_pop(L, 1);
      continue;
    }
    if (d->finished) break;
    curl_easy_pause(x->easy, CURLPAUSE_CONT);   /* may hand a chunk at once */
    if (d->buf.len == 0 && !d->finished) {
      d->running = 0;
      return 0;
    }
  }
  d->running = 0;
  return 1;
}

/* The continuation of a request: the response, or its error raised.  A
 * 429 or 503 outside the retry loop still records its Retry-After (in
 * http.lua), so later requests wait it out. */
static int request_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  xfer *x = f->on;
  long code = 0;
  (void)status;
  f->on = NULL;
  if (!pyq_resumed(L, f)) {   /* cancelled or timed out after it was woken */
    if (x && x->dl && x->dl->chunks)   /* woken for a chunk: still on the loop */
      stream_stop(x);
    if (x) xfer_free(x);
    return lua_error(L);
  }
  if (x->dl && x->dl->chunks && !stream(L, f, x))
    return pyq_park(L, f, &xfer_wait, x, request_k);
  count(x);
  if (x->result != CURLE_OK || (x->dl && x->dl->op != NULL)) {   /* a rename that failed too */
    char shown[1024];
    const char *kind;
    pyq_http_mask(x->url, shown, sizeof shown, x->s->qnames, x->qnames);
    kind = push_failure(L, x, shown);
    pyq_error_new(L, kind, lua_tostring(L, -1));
    lua_pushstring(L, x->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, shown);
    lua_setfield(L, -2, "url");
    if (x->why) {   /* refused again on a retry: http.lua does not retry */
      lua_pushliteral(L, "redirect");
      lua_setfield(L, -2, "refused");
    }
    xfer_free(x);
    return lua_error(L);
  }
  push_response(L, x);
  if (x->http->host->log_level <= PYQ_DEBUG) log_response(x);
  if (x->hold_check) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  xfer_free(x);
  if (code == 429 || code == 503) {   /* http.lua's obey_retry_after(url, res) */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hold_key) == LUA_TFUNCTION) {
      lua_pushvalue(L, PYQ_HS_URL);   /* the request's URL */
      lua_pushvalue(L, -3);
      lua_call(L, 2, 0);
    } else lua_pop(L, 1);
  }
  return 1;
}

/* ---- sending ---------------------------------------------------------- */

/* Options that never change on a handle of ours. */
static void setup_fixed (pyq_http *hp, xfer *x) {
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  /* a proxy's "200 Connection established" is not the answer: it must not
   * reach the sink (a download would take it for its 2xx) nor raw_headers */
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_SHARE, x->s->share ? x->s->share : hp->share);
  if (x->s->share) curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
  pyq_curl_uv_count_sockets(hp->cu, e);
}

/* Seconds as libcurl's milliseconds, rounded up: 0 would mean no limit. */
static long ms (double seconds) { return (long)ceil(seconds * 1000); }

/* A pooled handle keeps its options: each is set again only when this
 * request wants another value, which spares most setopt calls. */
#define APPLY(field, opt, value) do { \
    if (!a->set || a->field != (value)) { \
      a->field = (value); \
      curl_easy_setopt(e, opt, a->field); \
    } \
  } while (0)

/* The multipart parts at i (http_input.c's checked copy) as libcurl's mime
 * on x: files are named, not read (libcurl streams them as it sends).
 * Raw reads of tables no script sees: nothing here raises.  0 when out of
 * memory. */
static int build_mime (lua_State *L, xfer *x, int i) {
  curl_mime *m = x->mime = curl_mime_init(x->easy);
  lua_Integer k, n = (lua_Integer)lua_rawlen(L, i);
  int ok = m != NULL, top = lua_gettop(L);
  for (k = 1; ok && k <= n; k++) {
    curl_mimepart *part = curl_mime_addpart(m);
    size_t len;
    const char *kind, *v;
    lua_rawgeti(L, i, k);
    lua_rawgeti(L, -1, 1);   /* name */
    lua_rawgeti(L, -2, 2);   /* kind */
    lua_rawgeti(L, -3, 3);   /* content */
    lua_rawgeti(L, -4, 4);   /* filename or nil */
    lua_rawgeti(L, -5, 5);   /* type or nil */
    kind = lua_tostring(L, -4);
    v = lua_tolstring(L, -3, &len);
    ok = part && curl_mime_name(part, lua_tostring(L, -5)) == CURLE_OK &&
         (kind[0] == 'f' ? curl_mime_filedata(part, v)
                         : curl_mime_data(part, v, len)) == CURLE_OK &&
         (lua_isnil(L, -2) || curl_mime_filename(part, lua_tostring(L, -2)) == CURLE_OK) &&
         (lua_isnil(L, -1) || curl_mime_type(part, lua_tostring(L, -1)) == CURLE_OK);
    lua_settop(L, top);
  }
  return ok;
}

/* The user and password of the auth slot, or none. */
static void setup_auth (xfer *x, const char *packed) {
  CURL *e = x->easy;
  applied *a = &x->applied;
  if (packed != NULL) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, packed[0] == 'D' ? CURLAUTH_DIGEST
                                                           : CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, packed + 1);
    curl_easy_setopt(e, CURLOPT_PASSWORD, packed + strlen(packed) + 1);
    a->auth = 1;
  } else if (a->auth) {
    curl_easy_setopt(e, CURLOPT_USERNAME, NULL);
    curl_easy_setopt(e, CURLOPT_PASSWORD, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    a->auth = 0;
  }
}

/* The proxy: the request's, else the session's, else libcurl's own
 * (http_proxy, https_proxy, no_proxy from the environment). */
static int setup_proxy (xfer *x, const char *proxy) {
  applied *a = &x->applied;
  if (proxy == NULL) proxy = x->s->proxy;
  if (proxy == NULL ? a->proxy == NULL : a->proxy && strcmp(proxy, a->proxy) == 0)
    return 1;
  free(a->proxy);
  a->proxy = NULL;
  if (proxy && (a->proxy = strdup(proxy)) == NULL) return 0;
  curl_easy_setopt(x->easy, CURLOPT_PROXY, a->proxy);
  return 1;
}

/* Sets the request on x's handle: the options at o, the slots of the
 * checked request on the stack (PYQ_HS_*).  0 when out of memory. */
static int setup (lua_State *L, pyq_http *hp, xfer *x, const pyq_http_opts *o) {
  CURL *e = x->easy;
  applied *a = &x->applied;
  session *s = x->s;
  size_t bodylen = 0;
  const char *body = lua_tolstring(L, PYQ_HS_BODY, &bodylen);
  int multipart = lua_istable(L, PYQ_HS_BODY);
  int get = strcmp(x->method, "GET") == 0;
  int plain = get && body == NULL && !multipart;
  long version = o->http_version ? o->http_version : s->http_version;
  if (!a->set) setup_fixed(hp, x);
  if (!a->set || a->gen != s->gen) {
    curl_easy_setopt(e, CURLOPT_USERAGENT, s->user_agent);
    a->gen = s->gen;
  }
  APPLY(version, CURLOPT_HTTP_VERSION, version);
  setup_auth(x, lua_tostring(L, PYQ_HS_AUTH));
  if (!setup_proxy(x, lua_tostring(L, PYQ_HS_PROXY))) return 0;
  curl_easy_setopt(e, CURLOPT_URL, x->url);
  APPLY(timeout_ms, CURLOPT_TIMEOUT_MS, x->timeout_ms);
  APPLY(ctimeout_ms, CURLOPT_CONNECTTIMEOUT_MS, ms(o->connect_timeout));
  APPLY(verify, CURLOPT_SSL_VERIFYPEER, (long)o->verify);
  APPLY(verifyhost, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  /* a HEAD answer has no body: its Content-Length is no reason to fail */
  APPLY(max_body, CURLOPT_MAXFILESIZE_LARGE,
        strcmp(x->method, "HEAD") == 0 ? (curl_off_t)0 : o->max_body);
  /* With every socket busy there is no connection to reuse, and looking for
   * one costs libcurl a walk over all of the host's connections: with
   * thousands in flight that walk dominates.  Plain http only: an https
   * connection may take more transfers (HTTP/2). */
  APPLY(fresh, CURLOPT_FRESH_CONNECT,
        (long)(pyq_curl_uv_busy(hp->cu) && strncasecmp(x->url, "http:", 5) == 0));
  if (x->headers || a->headers) {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    a->headers = x->headers != NULL;
  }
  if (!plain || !a->plain_get || !a->set) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (body != NULL) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodylen);
      curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    } else if (multipart) {
      if (!build_mime(L, x, PYQ_HS_BODY)) return 0;
      curl_easy_setopt(e, CURLOPT_MIMEPOST, x->mime);
    }
    if (strcmp(x->method, "HEAD") == 0)
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (!plain)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
  }
  a->plain_get = plain;
  a->set = 1;
  return 1;
}

/* ---- DEBUG logging (credentials masked by http_input.c) --------------- */

static void log_request (pyq_http *hp, xfer *x) {
  char url[1024], line[2048];
  size_t n;
  struct curl_slist *h;
  pyq_http_mask(x->url, url, sizeof url, x->s->qnames, x->qnames);
  n = (size_t)snprintf(line, sizeof line, "%s %s", x->method, url);
  for (h = x->headers; h && n < sizeof line; h = h->next) {
    const char *colon = strchr(h->data, ':');
    size_t nlen = colon ? (size_t)(colon - h->data) : strlen(h->data);
    int secret = pyq_http_secret(h->data, nlen, x->s->hnames, x->hnames);
    n += (size_t)snprintf(line + n, sizeof line - n, "%s%.*s%s%s",
                          h == x->headers ? " [" : ", ", (int)nlen, h->data,
                          colon ? ":" : "", colon ? (secret ? " ***" : colon + 1) : "");
    if (h->next == NULL && n < sizeof line)
      n += (size_t)snprintf(line + n, sizeof line - n, "]");
  }
  pyq_log(hp->host, PYQ_DEBUG, "pyq.http", "%s", line);
}

static void log_response (xfer *x) {
  char url[1024];
  long status = 0;
  curl_off_t us = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
  us += x->spent;
  pyq_http_mask(x->url, url, sizeof url, x->s->qnames, x->qnames);
  pyq_log(x->http->host, PYQ_DEBUG, "pyq.http", "%s %s -> %ld in %.1f ms",
          x->method, url, status, (double)us / 1000.0);
}

/* A packed list of names (the Lua string at i) copied out of Lua; NULL
 * when out of memory. */
static char *copy_names (lua_State *L, int i) {
  size_t n;
  const char *names = lua_tolstring(L, i, &n);
  char *copy = malloc(n + 1);
  if (copy != NULL) memcpy(copy, names, n + 1);
  return copy;
}

/* A timeout of 0 has expired before anything is sent. */
static int expired (lua_State *L, pyq_http *hp, session *s,
                    const pyq_http_opts *o, double timeout, const char *url,
                    const char *qnames) {
  char shown[1024];
  pyq_http_mask(url, shown, sizeof shown, s->qnames, qnames);
  hp->requests++;
  hp->failures++;
  lua_pushfstring(L, "pyq.http: %s %s: %s timed out after 0 milliseconds "
                  "(%s = 0)", o->method, shown,
                  timeout == 0 ? "Operation" : "Connection",
                  timeout == 0 ? "timeout" : "connect_timeout");
  pyq_error_new(L, "timeout", lua_tostring(L, -1));
  lua_pushstring(L, o->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, shown);
  lua_setfield(L, -2, "url");
  return lua_error(L);
}

static void dl_ready (void *ud) {
  xfer *x = ud;
  pyq_wake(x->f, 0);
}

/* output = path (a string) or on_data (path NULL): the body goes to a
 * download sink; the memory sink keeps the headers and a body that is not
 * 2xx, up to max_body or the usual 64 MiB.  0 when out of memory. */
static int start_download (xfer *x, const pyq_http_opts *o, const char *path) {
  curl_off_t keep = 64 * 1024 * 1024;
  if ((x->dl = pyq_sink_dl_new(&x->mem, path, o->keep_partial, o->resume,
                               o->max_body)) == NULL)
    return 0;
  x->dl->ready = dl_ready;
  x->dl->ud = x;
  x->mem.max = o->max_body < keep ? o->max_body : keep;
  x->sink = &x->dl->sink;
  return 1;
}

/* A file gets the bytes as served (no Accept-Encoding, as curl -o), so a
 * .part's length is an offset the server knows: resume asks for the rest
 * with a Range (not CURLOPT_RESUME_FROM, which fails on a 200 instead of
 * starting over).  The handle is not pooled afterwards. */
static void download_options (xfer *x) {
  char range[32];
  if (x->dl->chunks) return;
  curl_easy_setopt(x->easy, CURLOPT_ACCEPT_ENCODING, NULL);
  if (x->dl->from > 0) {
    snprintf(range, sizeof range, "%lld-", (long long)x->dl->from);
    curl_easy_setopt(x->easy, CURLOPT_RANGE, range);
  }
}

/* Sends a checked request (its slots on the stack, PYQ_HS_*) and parks the
 * task: headers (taken over); timeout in seconds for the whole request. */
static int send_request (lua_State *L, pyq_http *hp, session *s, pyq_fiber *f,
                 const pyq_http_opts *o, double timeout,
                 struct curl_slist *headers, int hold_check) {
  const int hn = PYQ_HS_HNAMES, qn = PYQ_HS_QNAMES, u = PYQ_HS_URL;
  xfer *x;
  if (timeout == 0 || o->connect_timeout == 0) {
    curl_slist_free_all(headers);
    return expired(L, hp, s, o, timeout, lua_tostring(L, u), lua_tostring(L, qn));
  }
  if ((x = xfer_new(hp, s)) == NULL) {
    curl_slist_free_all(headers);
    return luaL_error(L, "not enough memory");
  }
  x->headers = headers;
  x->f = f;
  x->s = session_ref(s);
  pyq_sink_mem_init(&x->mem, o->max_body);
  x->timeout_ms = ms(timeout);
  x->follow = o->follow;
  x->max_redirects = o->max_redirects;
  x->allow_downgrade = o->allow_downgrade;
  x->hold_check = hold_check;
  strcpy(x->method, o->method);
  if (!lua_isnil(L, PYQ_HS_SINK) && !start_download(x, o, lua_tostring(L, PYQ_HS_SINK))) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  if ((x->url = strdup(lua_tostring(L, u))) == NULL ||
      (!lua_isnil(L, hn) && (x->hnames = copy_names(L, hn)) == NULL) ||
      (!lua_isnil(L, qn) && (x->qnames = copy_names(L, qn)) == NULL)) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  if (!setup(L, hp, x, o)) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  if (x->dl) download_options(x);
  if (hp->host->log_level <= PYQ_DEBUG) log_request(hp, x);
  if (!pyq_curl_uv_add(hp->cu, x->easy, xfer_done, x)) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  return pyq_park(L, f, &xfer_wait, x, request_k);
}

/* The headers option as libcurl's list, with the Content-Type a body
 * needs when the headers name none. */
static struct curl_slist *build_headers (lua_State *L, pyq_http_opts *o) {
  struct curl_slist *headers = pyq_http_headers(L, 3, o), *h;
  const char *type = (o->present & PYQ_BIT(PYQ_HO_JSON)) ? "Content-Type: application/json"
                   : (o->present & PYQ_BIT(PYQ_HO_FORM))
                   ? "Content-Type: application/x-www-form-urlencoded"
                   : "Content-Type: application/octet-stream";
  if (!lua_isstring(L, PYQ_HS_BODY) || o->has_type) return headers;   /* multipart: libcurl's */
  if ((h = curl_slist_append(headers, type)) == NULL) {   /* not libcurl's form type */
    curl_slist_free_all(headers);
    luaL_error(L, "not enough memory");
  }
  return h;
}

/* ---- the request a retry loop sends again ------------------------------ */

/* Checked once; each attempt sends it with what is left of the time.  The
 * sensitive names, URL and body are its user values 1-4, the sink value
 * (output, on_data) 5. */
typedef struct prepared {
  pyq_http_opts o;
  struct curl_slist *headers;
  session *s;
} prepared;

#define PREPARED "pyq.http.prepared"

static int prepared_gc (lua_State *L) {
  prepared *p = luaL_checkudata(L, 1, PREPARED);
  curl_slist_free_all(p->headers);
  p->headers = NULL;
  if (p->s) session_unref(p->s);
  p->s = NULL;
  return 0;
}

/* A copy of the list for one attempt (a redirect may change its own). */
static struct curl_slist *copy_list (lua_State *L, const struct curl_slist *l) {
  struct curl_slist *c = NULL, *n;
  for (; l; l = l->next) {
    if ((n = curl_slist_append(c, l->data)) == NULL) {
      curl_slist_free_all(c);
      luaL_error(L, "not enough memory");
    }
    c = n;
  }
  return c;
}

/* C.attempt(prepared, timeout) -> response; raises the attempt's error. */
static int http_attempt (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  prepared *p = luaL_checkudata(L, 1, PREPARED);
  double timeout = luaL_checknumber(L, 2);
  pyq_fiber *f = pyq_fiber_check(L, p->o.fname);
  int i;
  if (hp->cu == NULL) return pyq_raise(L, "usage", "%s: pyq.http is closed", p->o.fname);
  lua_settop(L, 3);
  for (i = PYQ_HS_HNAMES; i < PYQ_HS_END; i++)   /* the slots */
    lua_getiuservalue(L, 1, i - PYQ_HS_HNAMES + 1);
  return send_request(L, hp, p->s, f, &p->o, timeout, copy_list(L, p->headers), 0);
}

/* 1 when the request carries credentials: its answer is someone's and
 * must not answer anyone else (the cache keeps no secrets either). */
static int has_credentials (lua_State *L, prepared *p, const char *user) {
  struct curl_slist *h;
  int auth;
  if (user != NULL || p->s->share != NULL) return 1;   /* URL user, a cookie jar */
  auth = lua_getiuservalue(L, 1, PYQ_HS_AUTH - PYQ_HS_HNAMES + 1) != LUA_TNIL;
  lua_getiuservalue(L, 1, PYQ_HS_HNAMES - PYQ_HS_HNAMES + 1);
  for (h = p->headers; h && !auth; h = h->next)
    auth = pyq_http_secret(h->data, strcspn(h->data, ":;"), p->s->hnames,
                           lua_tostring(L, -1));
  lua_pop(L, 2);
  return auth;
}

/* C.cache_key(prepared, vary) -> the response cache's key of a request,
 * or nil when it must not be cached (it carries credentials): its method
 * and URL normalized (scheme and host in lower case, a default port and
 * the fragment dropped; the query as sent), how it follows redirects when
 * not the default, then "\nname: value" for each name of the vary list
 * the request sends ("\nname" when it does not), so requests that differ
 * only there are cached apart. */
static int http_cache_key (lua_State *L) {
  prepared *p = luaL_checkudata(L, 1, PREPARED);
  CURLU *u = curl_url();
  char *part[5] = {NULL, NULL, NULL, NULL, NULL};
  static const CURLUPart parts[5] = {CURLUPART_SCHEME, CURLUPART_HOST,
    CURLUPART_PORT, CURLUPART_PATH, CURLUPART_QUERY};
  luaL_Buffer b;
  lua_Integer i, n;
  int k;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getiuservalue(L, 1, PYQ_HS_URL - PYQ_HS_HNAMES + 1);
  if (u == NULL || curl_url_set(u, CURLUPART_URL, lua_tostring(L, -1), 0) != CURLUE_OK) {
    curl_url_cleanup(u);   /* cannot be: the URL was checked */
    return luaL_error(L, "pyq.http: cannot parse %s", lua_tostring(L, -1));
  }
  for (k = 0; k < 5; k++)
    curl_url_get(u, parts[k], &part[k], k == 2 ? CURLU_NO_DEFAULT_PORT : 0);
  {
    char *user = NULL;
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_cleanup(u);
    k = has_credentials(L, p, user);
    curl_free(user);
    if (k) {
      for (k = 0; k < 5; k++) curl_free(part[k]);
      lua_pushnil(L);
      return 1;
    }
  }
  for (k = 0; part[1] && part[1][k]; k++)
    part[1][k] = (char)tolower((unsigned char)part[1][k]);
  lua_pushfstring(L, "%s %s://%s%s%s%s%s%s", p->o.method, part[0] ? part[0] : "",
                  part[1] ? part[1] : "", part[2] ? ":" : "", part[2] ? part[2] : "",
                  part[3] ? part[3] : "/", part[4] ? "?" : "", part[4] ? part[4] : "");
  for (k = 0; k < 5; k++) curl_free(part[k]);
  if (!p->o.follow) lua_pushliteral(L, "\n\tredirects not followed");
  else if (p->o.max_redirects != 10)
    lua_pushfstring(L, "\n\tat most %d redirects", (int)p->o.max_redirects);
  else lua_pushliteral(L, "");
  lua_concat(L, 2);
  luaL_buffinit(L, &b);
  lua_pushvalue(L, -2);
  luaL_addvalue(&b);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    struct curl_slist *h;
    size_t len;
    const char *name;
    lua_rawgeti(L, 2, i);
    name = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);   /* the list keeps it */
    if (name == NULL) continue;
    luaL_addchar(&b, '\n');
    luaL_addlstring(&b, name, len);
    for (h = p->headers; h; h = h->next)
      if (strncasecmp(h->data, name, len) == 0 && h->data[len] == ':') {
        luaL_addstring(&b, h->data + len);
        break;
      }
  }
  luaL_pushresult(&b);
  return 1;
}

/* C.time(): wall-clock seconds, for ages that mean the same across runs. */
static int http_time (lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + tv.tv_usec / 1e6);
  return 1;
}

/* C.count_cache(hit) */
static int http_count_cache (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_toboolean(L, 1)) hp->cache_hits++;
  else hp->cache_misses++;
  return 0;
}

/* The retry loop's result is the request's. */
static int retry_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return 1;
}

/* 1 when the session's response cache may answer this request: GET or
 * HEAD, not bypassed (cache = false), its body not going to a file or a
 * callback. */
static int cached (const session *s, const pyq_http_opts *o) {
  return s->cache != LUA_NOREF && !o->nocache &&
         (strcmp(o->method, "GET") == 0 || strcmp(o->method, "HEAD") == 0) &&
         !(o->present & (PYQ_BIT(PYQ_HO_OUTPUT) | PYQ_BIT(PYQ_HO_ONDATA)));
}

/* Hands the checked request (its slots, as pyq_http_check left them) to
 * http.lua's retry loop: retry(prepared, method, url, shown, timeout,
 * retries, backoff, retry_unsafe, attempt_timeout, max_retry_after). */
static int to_retry_loop (lua_State *L, session *s, pyq_http_opts *o) {
  char shown[1024];
  prepared *p;
  struct curl_slist *headers = build_headers(L, o);
  int i;
  p = lua_newuserdatauv(L, sizeof *p, PYQ_HS_END - PYQ_HS_HNAMES);   /* at PYQ_HS_END */
  p->headers = headers;
  p->o = *o;
  p->s = session_ref(s);
  if (luaL_newmetatable(L, PREPARED)) {
    lua_pushcfunction(L, prepared_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  for (i = PYQ_HS_HNAMES; i < PYQ_HS_END; i++) {
    lua_pushvalue(L, i);
    lua_setiuservalue(L, PYQ_HS_END, i - PYQ_HS_HNAMES + 1);
  }
  pyq_http_mask(lua_tostring(L, PYQ_HS_URL), shown, sizeof shown, s->qnames,
                lua_tostring(L, PYQ_HS_QNAMES));
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &retry_key) != LUA_TFUNCTION)
    return pyq_usage(L, "%s: the retry loop is in pyq.http: call it through "
                     "pyq.http", o->fname);
  lua_pushvalue(L, PYQ_HS_END);
  lua_pushstring(L, o->method);
  lua_pushvalue(L, PYQ_HS_URL);
  lua_pushstring(L, shown);
  lua_pushnumber(L, o->timeout);
  lua_pushinteger(L, o->retries >= 0 ? o->retries : s->retries);
  lua_pushnumber(L, o->backoff >= 0 ? o->backoff : s->backoff);
  lua_pushboolean(L, o->retry_unsafe);
  if (o->attempt_timeout > 0) lua_pushnumber(L, o->attempt_timeout);
  else lua_pushnil(L);
  lua_pushnumber(L, o->max_retry_after >= 0 ? o->max_retry_after : s->max_retry_after);
  if (cached(s, o)) {   /* the cache's settings, the request's ttl */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cache);
    if (o->cache_ttl >= 0) lua_pushnumber(L, o->cache_ttl);
    else lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_callk(L, 12, 1, 0, retry_k);
  return 1;
}

/* ---- the verbs ------------------------------------------------------- */

/* A request on session s: 1 url and 2 opts, or 1 opts when the method
 * upvalue is nil (request).  A request with no retry plan, no limits and
 * no hold in force goes out from here; any other goes through http.lua's
 * retry loop. */
static int perform (lua_State *L, pyq_http *hp, session *s) {
  pyq_http_opts o;
  pyq_fiber *f;
  o.fname = lua_tostring(L, lua_upvalueindex(3));
  if (lua_isnil(L, lua_upvalueindex(2))) {   /* request(opts) */
    if (!lua_istable(L, 1))
      return pyq_usage(L, "%s: expected a table of options, got %s", o.fname,
                       luaL_typename(L, 1));
    lua_settop(L, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_rotate(L, 1, 2);
  } else {
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
  }
  if (hp->cu == NULL) return pyq_usage(L, "%s: pyq.http is closed", o.fname);
  if (s->closed) return pyq_usage(L, "%s: the session is closed", o.fname);
  if (s->defaults != LUA_NOREF || s->base_url) {
    if (!lua_isnil(L, 3) && !lua_istable(L, 3))
      return pyq_usage(L, "%s: expected a table of options, got %s", o.fname,
                       luaL_typename(L, 3));
    if (s->defaults != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, s->defaults);
    else lua_newtable(L);
    pyq_http_merge(L, 4, s->base_url, o.fname);
    lua_settop(L, 3);
  }
  pyq_http_check(L, &o);   /* the slots PYQ_HS_* */
  f = pyq_fiber_check(L, o.fname);
  if ((o.retries > 0 || (o.retries < 0 && s->retries > 0)) ||
      o.attempt_timeout > 0 || hp->limited || pyq_clock() < hp->hold_until ||
      cached(s, &o))
    return to_retry_loop(L, s, &o);
  return send_request(L, hp, s, f, &o, o.timeout, build_headers(L, &o), 1);
}

/* pyq.http.get(url [, opts]), ..., pyq.http.request(opts) on the default
 * session: upvalues are the state, the method (nil for request) and the
 * function's name. */
static int http_verb (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  return perform(L, hp, &hp->defaults);
}

/* ---- sessions ----------------------------------------------------------- */

#define SESSION_MT "pyq.http.session"

typedef struct session_box { session *s; } session_box;

static session *check_session (lua_State *L, const char *fname) {
  session_box *b = luaL_testudata(L, 1, SESSION_MT);
  if (b == NULL)
    pyq_usage(L, "%s: expected a pyq.http.session as self (call it with ':'), "
              "got %s", fname, luaL_typename(L, 1));
  return b->s;
}

/* session:get(url [, opts]), ..., session:request(opts) */
static int session_verb (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  session *s = check_session(L, lua_tostring(L, lua_upvalueindex(3)));
  lua_remove(L, 1);
  if (s == NULL) return pyq_usage(L, "%s: the session is closed",
                                  lua_tostring(L, lua_upvalueindex(3)));
  return perform(L, hp, s);
}

/* session:close(), <close> and the collector: no more requests; those in
 * flight finish (they hold the session). */
static int session_close (lua_State *L) {
  session_box *b = luaL_checkudata(L, 1, SESSION_MT);
  if (b->s) {
    b->s->closed = 1;
    luaL_unref(L, LUA_REGISTRYINDEX, b->s->defaults);
    luaL_unref(L, LUA_REGISTRYINDEX, b->s->cache);
    b->s->defaults = b->s->cache = LUA_NOREF;
    session_unref(b->s);
    b->s = NULL;
  }
  return 0;
}

/* session:cookies() -> { { name =, value =, domain =, path =, secure =,
 * http_only =, expires = (0: at the end of the session) }, ... } from
 * libcurl's jar, in its order. */
static int session_cookies (lua_State *L) {
  session *s = check_session(L, "pyq.http.session:cookies");
  struct curl_slist *list = NULL, *c;
  CURL *e;
  int n = 0;
  if (s == NULL) return pyq_usage(L, "pyq.http.session:cookies: the session is closed");
  if (s->share == NULL)
    return pyq_usage(L, "pyq.http.session:cookies: the session keeps no "
                     "cookies (pyq.http.session{ cookies = true })");
  if ((e = jar_handle(s)) == NULL) return luaL_error(L, "not enough memory");
  curl_easy_getinfo(e, CURLINFO_COOKIELIST, &list);
  curl_easy_cleanup(e);
  lua_newtable(L);
  for (c = list; c; c = c->next) {   /* domain, tailmatch, path, secure, expires, name, value */
    char *f[7], *p = c->data;
    int i, http_only = strncmp(p, "#HttpOnly_", 10) == 0;
    if (http_only) p += 10;
    for (i = 0; i < 7 && p; i++) {
      f[i] = p;
      if ((p = strchr(p, '\t')) != NULL) *p++ = '\0';
    }
    if (i < 7) continue;
    lua_createtable(L, 0, 7);
    lua_pushstring(L, f[5]);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, f[6]);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, f[0][0] == '.' ? f[0] + 1 : f[0]);
    lua_setfield(L, -2, "domain");
    lua_pushstring(L, f[2]);
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, strcmp(f[3], "TRUE") == 0);
    lua_setfield(L, -2, "secure");
    lua_pushboolean(L, http_only);
    lua_setfield(L, -2, "http_only");
    lua_pushinteger(L, (lua_Integer)strtoll(f[4], NULL, 10));
    lua_setfield(L, -2, "expires");
    lua_rawseti(L, -2, ++n);
  }
  curl_slist_free_all(list);
  return 1;
}

static int session_tostring (lua_State *L) {
  session_box *b = luaL_checkudata(L, 1, SESSION_MT);
  lua_pushfstring(L, "pyq.http.session (%s)", b->s ? "open" : "closed");
  return 1;
}

/* C.gate(limited, hold_until): what http.lua knows that sends requests to
 * its retry loop. */
static int http_gate (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  double until = luaL_optnumber(L, 2, 0);
  hp->limited = lua_toboolean(L, 1);
  if (until > hp->hold_until) hp->hold_until = until;
  return 0;
}

/* C.set_hooks(retry, obey_retry_after, cache_config) */
static int http_set_hooks (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_pushvalue(L, 3);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &config_key);
  lua_pushvalue(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &retry_key);
  lua_pushvalue(L, 2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hold_key);
  return 0;
}

/* ---- configure ------------------------------------------------------- */

/* Replaces a packed list (the Lua string at i) of the session. */
static void set_names (lua_State *L, char **list, int i) {
  char *names;
  if ((names = copy_names(L, i)) == NULL) luaL_error(L, "not enough memory");
  free(*list);
  *list = names;
}

/* Sets the session options of the table at t (checked by pyq_http_read
 * into v and present) on s; every check is made before anything changes. */
static void apply_session (lua_State *L, int t, session *s, const char *fname,
                           const pyq_http_value *v, pyq_http_set present) {
  int top = lua_gettop(L), cache = s->cache;
  char *agent = NULL, *proxy = NULL;
  if (present & (PYQ_BIT(PYQ_HC_CACHE) | PYQ_BIT(PYQ_HC_CTTL) |
                 PYQ_BIT(PYQ_HC_CSTATUSES) | PYQ_BIT(PYQ_HC_CVARY))) {
    /* http.lua's cache_config(settings or nil, options, fname) -> new
     * settings or nil (cache = false); it checks and raises first */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &config_key);
    if (cache != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, cache);
    else lua_pushnil(L);
    lua_pushvalue(L, t);
    lua_pushstring(L, fname);
    lua_call(L, 3, 1);
    cache = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF)
                             : luaL_ref(L, LUA_REGISTRYINDEX);
  }
#define GOT(id) (present & PYQ_BIT(PYQ_HC_##id))
  lua_getfield(L, t, "sensitive_headers");   /* top + 1 */
  if (GOT(SHEADERS)) pyq_http_names(L, fname, "sensitive_headers");
  lua_getfield(L, t, "sensitive_query");     /* top + 2 */
  if (GOT(SQUERY)) pyq_http_names(L, fname, "sensitive_query");
  lua_getfield(L, t, "user_agent");          /* top + 3 */
  lua_getfield(L, t, "proxy");               /* top + 4 */
  if (GOT(AGENT) && (agent = strdup(lua_tostring(L, top + 3))) == NULL)
    luaL_error(L, "not enough memory");
  if (GOT(PROXY) && (proxy = strdup(lua_isstring(L, top + 4) ?
                                    lua_tostring(L, top + 4) : "")) == NULL) {
    free(agent);
    luaL_error(L, "not enough memory");
  }
  if (agent) {
    free(s->user_agent);
    s->user_agent = agent;
  }
  if (GOT(SHEADERS)) set_names(L, &s->hnames, top + 1);
  if (GOT(SQUERY)) set_names(L, &s->qnames, top + 2);
  if (GOT(HTTP2))
    s->http_version = v[PYQ_HC_HTTP2].count ? CURL_HTTP_VERSION_2TLS
                                            : CURL_HTTP_VERSION_1_1;
  if (GOT(VERSION)) s->http_version = (long)v[PYQ_HC_VERSION].count;
  if (cache != s->cache) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->cache);
    s->cache = cache;
  }
  if (GOT(PROXY)) {
    free(s->proxy);
    s->proxy = proxy;
  }
  if (GOT(RETRIES)) s->retries = v[PYQ_HC_RETRIES].count;
  if (GOT(BACKOFF)) s->backoff = v[PYQ_HC_BACKOFF].num;
  if (GOT(MAXRA)) s->max_retry_after = v[PYQ_HC_MAXRA].num;
#undef GOT
  s->gen = next_gen++;
  lua_settop(L, top);
}

/* pyq.http.configure{...}: the default session's options and the shared
 * connection limits, every option checked before any is applied. */
static int http_configure (lua_State *L) {
  static const char fname[] = "pyq.http.configure";
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  pyq_http_value v[PYQ_HC_N];
  pyq_http_set present;
  if (!lua_istable(L, 1))
    return pyq_usage(L, "%s: expected a table of options, got %s", fname,
                     luaL_typename(L, 1));
  if (hp->cu == NULL) return pyq_usage(L, "%s: pyq.http is closed", fname);
  lua_settop(L, 1);
  present = pyq_http_read(L, 1, fname, pyq_http_configure_options, v);
  apply_session(L, 1, &hp->defaults, fname, v, present);
  if (present & PYQ_BIT(PYQ_HC_MAXCONN))
    curl_multi_setopt(pyq_curl_uv_multi(hp->cu), CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)v[PYQ_HC_MAXCONN].count);
  if (present & PYQ_BIT(PYQ_HC_MAXTOTAL))
    curl_multi_setopt(pyq_curl_uv_multi(hp->cu), CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)v[PYQ_HC_MAXTOTAL].count);
  if (present & PYQ_BIT(PYQ_HC_PERHOST))
    curl_multi_setopt(pyq_curl_uv_multi(hp->cu), CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)v[PYQ_HC_PERHOST].count);
  return 0;
}

/* A copy of what a packed list or string holds, or NULL for NULL. */
static int dup_field (char **to, const char *from, size_t n) {
  if (from == NULL) return 1;
  if ((*to = malloc(n)) == NULL) return 0;
  memcpy(*to, from, n);
  return 1;
}

static size_t packed_len (const char *names) {
  const char *p = names;
  if (p == NULL) return 0;
  while (*p) p += strlen(p) + 1;
  return (size_t)(p - names) + 1;
}

/* The request defaults of a session, checked as a request's options are
 * (in a call of its own: the check wants the request's stack). */
static int check_defaults (lua_State *L) {
  pyq_http_opts o;
  o.fname = "pyq.http.session";
  pyq_http_check(L, &o);
  curl_slist_free_all(pyq_http_headers(L, 3, &o));
  return 0;
}

/* The table of the request options among the session's at 1 (their rows
 * are PYQ_HTO_DEFAULT), checked; a registry ref, or LUA_NOREF for none. */
static int session_defaults (lua_State *L, pyq_http_set present) {
  int i, any = 0;
  lua_pushcfunction(L, check_defaults);
  lua_pushnil(L);
  lua_pushliteral(L, "http://localhost/");
  lua_newtable(L);
  for (i = 0; pyq_http_session_options[i].name; i++) {
    const char *name = pyq_http_session_options[i].name;
    if (pyq_http_session_options[i].to != PYQ_HTO_DEFAULT || !(present & PYQ_BIT(i)))
      continue;
    lua_getfield(L, 1, name);
    lua_setfield(L, -2, name);
    any = 1;
  }
  lua_pushvalue(L, -1);
  lua_insert(L, -5);   /* kept below the call */
  if (lua_pcall(L, 3, 0, 0) != LUA_OK)   /* raised again at the caller's line */
    return pyq_usage(L, "%s", pyq_errstr(L, -1));
  if (!any) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* 1 when a file can be made in path's folder: libcurl saves a cookie file
 * as a temporary file there that it renames. */
static int dir_writable (const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
  if (n >= sizeof dir) {
    errno = ENAMETOOLONG;
    return 0;
  }
  if (n == 0) memcpy(dir, ".", 2);
  else {
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  return access(dir, W_OK | X_OK) == 0;
}

/* The session's cookie jar: cookies = true, or a Netscape cookie file to
 * load now (a missing one is an empty jar) and save when it ends. */
static void session_jar (lua_State *L, session *s, const char *fname) {
  int type = lua_getfield(L, 1, "cookies");
  if (type == LUA_TNIL || (type == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  if (type != LUA_TBOOLEAN && (type != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
                               strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1)))
    pyq_usage(L, "%s: cookies must be true (a jar in memory) or the path of "
              "a cookie file, got %s", fname, pyq_got(L, -1));
  if ((s->share = curl_share_init()) == NULL) luaL_error(L, "not enough memory");
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (type == LUA_TSTRING) {
    CURL *e = NULL;
    FILE *fp = fopen(lua_tostring(L, -1), "r");
    if (fp == NULL && errno != ENOENT)
      pyq_usage(L, "%s: cookies: cannot read '%s': %s", fname,
                lua_tostring(L, -1), strerror(errno));
    if (fp) fclose(fp);
    if (!dir_writable(lua_tostring(L, -1)))   /* else lost, silently, at the end */
      pyq_usage(L, "%s: cookies: cannot write '%s': %s", fname,
                lua_tostring(L, -1), strerror(errno));
    if ((s->cookie_file = strdup(lua_tostring(L, -1))) == NULL ||
        (e = jar_handle(s)) == NULL)
      luaL_error(L, "not enough memory");
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, s->cookie_file);
    curl_easy_setopt(e, CURLOPT_COOKIELIST, "RELOAD");
    curl_easy_cleanup(e);
  }
  lua_pop(L, 1);
}

/* pyq.http.session{ ... } -> a session: the verbs as methods, starting
 * from http.configure's settings of the moment, with its own: base_url,
 * cookies, and defaults for its requests' options. */
static int http_session (lua_State *L) {
  static const char fname[] = "pyq.http.session";
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  pyq_http_value v[PYQ_HSO_N];
  pyq_http_set present;
  session_box *b;
  session *s, *d = &hp->defaults;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  if (!lua_istable(L, 1))
    return pyq_usage(L, "%s: expected a table of options, got %s", fname,
                     luaL_typename(L, 1));
  if (hp->cu == NULL) return pyq_usage(L, "%s: pyq.http is closed", fname);
  lua_settop(L, 1);
  present = pyq_http_read(L, 1, fname, pyq_http_session_options, v);
  b = lua_newuserdatauv(L, sizeof *b, 0);   /* 2: frees s if a check raises */
  b->s = NULL;
  luaL_setmetatable(L, SESSION_MT);
  if ((s = calloc(1, sizeof *s)) == NULL) return luaL_error(L, "not enough memory");
  b->s = s;
  s->refs = 1;
  s->defaults = s->cache = LUA_NOREF;
  if (d->cache != LUA_NOREF) {   /* the same settings: they never change */
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->cache);
    s->cache = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  s->http_version = d->http_version;
  s->retries = d->retries;
  s->backoff = d->backoff;
  s->max_retry_after = d->max_retry_after;
  if (!dup_field(&s->user_agent, d->user_agent, strlen(d->user_agent) + 1) ||
      !dup_field(&s->hnames, d->hnames, packed_len(d->hnames)) ||
      !dup_field(&s->qnames, d->qnames, packed_len(d->qnames)) ||
      !dup_field(&s->proxy, d->proxy, d->proxy ? strlen(d->proxy) + 1 : 0))
    return luaL_error(L, "not enough memory");
  apply_session(L, 1, s, fname, v, present);
  if (present & PYQ_BIT(PYQ_HSO_BASE)) {
    lua_getfield(L, 1, "base_url");
    pyq_http_base_url(L, -1, fname);
    if ((s->base_url = strdup(lua_tostring(L, -1))) == NULL)
      return luaL_error(L, "not enough memory");
    lua_pop(L, 2);
  }
  s->defaults = session_defaults(L, present);
  session_jar(L, s, fname);
  lua_settop(L, 2);
  return 1;
}

static int http_parse_headers (lua_State *L) {
  size_t len;
  const char *raw = luaL_checklstring(L, 1, &len);
  push_headers(L, raw, len);
  return 1;
}

static int http_mask_url (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  char out[2048];
  pyq_http_mask(luaL_checkstring(L, 1), out, sizeof out, hp->defaults.qnames, NULL);
  lua_pushstring(L, out);
  return 1;
}

static int http_count_retry (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  hp->retries++;
  return 0;
}

static int http_stats (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)hp->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, (lua_Integer)hp->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)hp->retries);
  lua_setfield(L, -2, "retries");
  lua_pushinteger(L, (lua_Integer)hp->cache_hits);
  lua_setfield(L, -2, "cache_hits");
  lua_pushinteger(L, (lua_Integer)hp->cache_misses);
  lua_setfield(L, -2, "cache_misses");
  return 1;
}

/* The response metatable comes from lualib/pyq/http.lua (res:json()). */
static int http_set_response_mt (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &response_key);
  return 0;
}

#define HTTP_MT "pyq.http.state"

static int http_gc (lua_State *L) {
  pyq_http_close(luaL_checkudata(L, 1, HTTP_MT));
  return 0;
}

void pyq_http_close (pyq_http *hp) {
  int i;
  if (hp->cu == NULL) return;
  for (i = 0; i < hp->npool; i++) xfer_destroy(hp->pool[i]);
  hp->npool = 0;
  pyq_curl_uv_close(hp->cu);
  hp->cu = NULL;
  curl_share_cleanup(hp->share);
  session_free_fields(&hp->defaults);
}

static void report_section (void *ud, FILE *out) {
  pyq_http_report(ud, out);
}

/* A verb as a C closure of f into the table on top, below which is the
 * state: upvalues the state, the method, the name for messages. */
static void add_verb (lua_State *L, const char *method, const char *name,
                      lua_CFunction f, const char *fmt) {
  lua_pushvalue(L, -2);   /* the state */
  if (method) lua_pushstring(L, method);
  else lua_pushnil(L);
  lua_pushfstring(L, fmt, name);
  lua_pushcclosure(L, f, 3);
  lua_setfield(L, -2, name);
}

void pyq_open_http (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"attempt", http_attempt}, {"configure", http_configure},
    {"gate", http_gate}, {"set_hooks", http_set_hooks},
    {"stats", http_stats}, {"set_response_mt", http_set_response_mt},
    {"parse_headers", http_parse_headers}, {"count_retry", http_count_retry},
    {"mask_url", http_mask_url}, {"cache_key", http_cache_key},
    {"time", http_time}, {"count_cache", http_count_cache},
    {NULL, NULL}
  };
  static const char *const verbs[] = {
    "GET", "get", "HEAD", "head", "DELETE", "delete", "POST", "post",
    "PUT", "put", "PATCH", "patch", "OPTIONS", "options", NULL
  };
  pyq_host *h = pyq_host_of(L);
  pyq_http *hp = lua_newuserdatauv(L, sizeof *hp, 0);
  char agent[128];
  int i;
  memset(hp, 0, sizeof *hp);
  hp->host = h;
  hp->defaults.refs = 1;   /* the state's: never released */
  hp->defaults.defaults = hp->defaults.cache = LUA_NOREF;
  hp->defaults.gen = next_gen++;
  hp->defaults.http_version = CURL_HTTP_VERSION_2TLS;
  hp->defaults.backoff = 0.5;
  hp->defaults.max_retry_after = 300;
  snprintf(agent, sizeof agent, "pyqhost/%s libcurl/%s", PYQ_VERSION,
           curl_version_info(CURLVERSION_NOW)->version);
  hp->defaults.user_agent = strdup(agent);
  if ((hp->cu = pyq_curl_uv_open(h->loop)) == NULL || hp->defaults.user_agent == NULL)
    luaL_error(L, "not enough memory");
  hp->share = curl_share_init();
  curl_share_setopt(hp->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(pyq_curl_uv_multi(hp->cu), CURLMOPT_PIPELINING,
                    CURLPIPE_MULTIPLEX);
  h->http = hp;
  pyq_report_section(h, report_section, hp);
  luaL_newmetatable(L, HTTP_MT);
  lua_pushcfunction(L, http_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  for (i = 0; verbs[i]; i += 2) add_verb(L, verbs[i], verbs[i + 1], http_verb, "pyq.http.%s");
  add_verb(L, NULL, "request", http_verb, "pyq.http.%s");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, http_session, 1);
  lua_setfield(L, -2, "session");
  /* the session's metatable: the verbs as methods, close, <close>, __gc */
  lua_pushvalue(L, -2);   /* the state, for add_verb */
  lua_createtable(L, 0, 9);
  for (i = 0; verbs[i]; i += 2) add_verb(L, verbs[i], verbs[i + 1], session_verb, "pyq.http.session:%s");
  add_verb(L, NULL, "request", session_verb, "pyq.http.session:%s");
  lua_pushcfunction(L, session_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, session_cookies);
  lua_setfield(L, -2, "cookies");
  luaL_newmetatable(L, SESSION_MT);
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, session_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, session_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, session_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 2);   /* the metatable and the state's copy */
  lua_remove(L, -2);
  /* keep the userdata alive as long as the module */
  lua_setfield(L, -2, "_http");
}
