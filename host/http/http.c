/* http.c -- pyq.http's transfers: libcurl's multi interface on the loop.
 *
 * One CURLM drives every request, so connections, DNS answers and TLS
 * sessions are reused across tasks.  libcurl says which sockets to watch
 * (socket_cb: one uv_poll_t each) and when to call it back (timer_cb: one
 * uv_timer_t); both feed curl_multi_socket_action, and a finished transfer
 * resumes its task at once.  The response table is built in the task's
 * continuation, inside its coroutine, never in a libuv callback.  Easy
 * handles are pooled and keep their options; the options are checked by
 * http_input.c.
 *
 * Redirects are followed here, not by libcurl, so that credentials stay
 * with their origin: when a hop ends in a 3xx with a Location, check_done
 * puts the same handle back with the new URL (the task sleeps on), after
 * dropping the secret headers if the scheme, host or port changes and
 * refusing https -> http unless allowed. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>
#include "http.h"
#include "core/log.h"
#include "report/report.h"

/* Finished transfers kept for reuse, and the body buffer each may keep:
 * a pooled transfer keeps at most KEEP_BODY bytes of body buffer (its
 * header buffer is kept as it grew). */
#define POOL_MAX 256
#define KEEP_BODY 32768
#define LATENCY_BUCKETS 320

typedef struct sock_watch {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;             /* what libcurl asked to watch */
  pyq_http *http;
} sock_watch;

typedef struct buf { char *p; size_t len, cap; } buf;

/* The options last set on a pooled easy handle. */
typedef struct applied {
  int set;                /* 0: a new handle, nothing set yet */
  unsigned gen;           /* pyq_http.config_gen they were set under */
  long timeout_ms, ctimeout_ms, verify, verifyhost;
  curl_off_t max_body;
  long fresh;             /* CURLOPT_FRESH_CONNECT */
  int headers;            /* CURLOPT_HTTPHEADER points at a list */
  int plain_get;          /* no method or body options in effect */
} applied;

typedef struct xfer xfer;
struct xfer {
  applied applied;
  CURL *easy;
  pyq_fiber *f;
  pyq_http *http;
  struct curl_slist *headers;
  buf body, head;
  curl_off_t max_body;
  int too_big;
  CURLcode result;
  char method[24];
  char *url;
  char *why;              /* our own error text (a refused redirect) or NULL */
  char *hnames, *qnames;  /* sensitive_headers, sensitive_query (packed) */
  long timeout_ms;        /* for the whole request, every hop */
  long max_redirects, hops;
  curl_off_t spent;       /* microseconds in the hops before this one */
  int follow, allow_downgrade;
  int location;           /* this hop's answer has a Location header */
  int discard;            /* this hop's body is a redirect's: dropped */
  char err[CURL_ERROR_SIZE];
};

struct pyq_http {
  pyq_host *host;
  CURLM *multi;
  CURLSH *share;
  uv_timer_t *timer;      /* its own allocation: libuv may hold it after lua_close */
  struct xfer *pool[POOL_MAX];   /* finished transfers, options kept */
  int npool;
  int active;             /* transfers in the multi handle */
  int sockets;            /* sockets libcurl has open */
  unsigned config_gen;    /* bumped by configure: pooled handles re-apply */
  char *user_agent;
  char *hnames, *qnames;  /* configure's sensitive_headers, sensitive_query */
  long http_version;
  /* for the summary */
  uint64_t requests, bytes, retries, failures;
  uint64_t status[600];
  uint64_t latency[LATENCY_BUCKETS];   /* by log2(microseconds) in eighths */
};

static const char response_key = 'r';

/* ---- buffers and curl callbacks -------------------------------------- */

static int buf_add (buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *np;
    while (cap < b->len + n + 1) cap *= 2;
    if ((np = realloc(b->p, cap)) == NULL) return 0;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 1;
}

static size_t on_body (char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  n *= size;
  if (x->discard) return n;
  if ((curl_off_t)(x->body.len + n) > x->max_body) {
    x->too_big = 1;
    return 0;
  }
  return buf_add(&x->body, p, n) ? n : 0;
}

/* Keeps the last answer's header block; notes a Location, and at the end
 * of a redirect's headers decides that its body is not kept. */
static size_t on_header (char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  n *= size;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* next answer */
    x->head.len = 0;
    x->location = 0;
  } else if (n >= 9 && strncasecmp(p, "location:", 9) == 0) {
    x->location = 1;
  } else if (n <= 2 && (p[0] == '\r' || p[0] == '\n') && x->location &&
             x->follow) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    x->discard = code >= 300 && code < 400 && code != 304;
  }
  return buf_add(&x->head, p, n) ? n : 0;
}

/* ---- the multi handle on the loop ------------------------------------- */

/* libcurl's timer keeps the loop alive only while transfers are in flight:
 * between jobs it may ask for housekeeping the process need not wait for. */
static void xfer_add (xfer *x) {
  pyq_http *hp = x->http;
  curl_multi_add_handle(hp->multi, x->easy);
  if (hp->active++ == 0) uv_ref((uv_handle_t *)hp->timer);
}

static void xfer_remove (xfer *x) {
  pyq_http *hp = x->http;
  curl_multi_remove_handle(hp->multi, x->easy);
  if (--hp->active == 0) uv_unref((uv_handle_t *)hp->timer);
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
    if (pyq_http_secret(h->data, nlen, x->http->hnames, x->hnames) ||
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
  pyq_http_mask(x->url, from, sizeof from, x->http->qnames, x->qnames);
  pyq_http_mask(to, shown, sizeof shown, x->http->qnames, x->qnames);
  snprintf(text, sizeof text, fmt, from, shown);
  x->why = strdup(text);
  x->result = code;
  return 0;
}

/* After a hop: a redirect to follow puts the handle back into the multi
 * handle with the new URL and returns 1; 0 when the transfer is over. */
static int follow_redirect (xfer *x) {
  pyq_http *hp = x->http;
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
  if ((to = strdup(loc)) == NULL ||
      (x->headers && !same_origin(x->url, to) && !origin_headers(x, &headers))) {
    free(to);
    x->result = CURLE_OUT_OF_MEMORY;
    return 0;
  }
  curl_multi_remove_handle(hp->multi, e);
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
  x->body.len = 0;
  x->discard = x->location = 0;
  if (curl_multi_add_handle(hp->multi, e) != CURLM_OK) {
    x->result = CURLE_OUT_OF_MEMORY;
    return 0;
  }
  return 1;
}

static void check_done (pyq_http *hp) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(hp->multi, &left)) != NULL) {
    xfer *x;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    x->result = m->data.result;
    if (x->discard && follow_redirect(x)) continue;
    xfer_remove(x);
    pyq_wake_now(x->f, 0);
  }
}

/* A poll error (a reset connection) is passed on as readable and writable:
 * libcurl then reads the socket itself and reports what the read says
 * ("Recv failure: Connection reset by peer"), not "select/poll returned
 * error". */
static void on_poll (uv_poll_t *p, int status, int events) {
  sock_watch *w = p->data;
  int flags = 0, running;
  if (status < 0) events = w->events;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(w->http->multi, w->fd, flags, &running);
  check_done(w->http);
}

static void watch_free (uv_handle_t *h) { free(h->data); }

static int socket_cb (CURL *e, curl_socket_t fd, int what, void *ud,
                      void *sockp) {
  pyq_http *hp = ud;
  sock_watch *w = sockp;
  int events = 0;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      uv_poll_stop(&w->poll);
      uv_close((uv_handle_t *)&w->poll, watch_free);
      curl_multi_assign(hp->multi, fd, NULL);
    }
    return 0;
  }
  if (w == NULL) {
    if ((w = calloc(1, sizeof *w)) == NULL) return -1;
    w->fd = fd;
    w->http = hp;
    w->poll.data = w;
    if (uv_poll_init_socket(hp->host->loop, &w->poll, fd) != 0) {
      free(w);
      return -1;
    }
    curl_multi_assign(hp->multi, fd, w);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  w->events = events;
  uv_poll_start(&w->poll, events, on_poll);
  return 0;
}

static void on_timeout (uv_timer_t *t) {
  pyq_http *hp = t->data;
  int running;
  curl_multi_socket_action(hp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(hp);
}

static int timer_cb (CURLM *m, long ms, void *ud) {
  pyq_http *hp = ud;
  (void)m;
  if (ms < 0) uv_timer_stop(hp->timer);
  else uv_timer_start(hp->timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

/* ---- transfers ---------------------------------------------------------- */

/* Back to the pool: the easy handle keeps its options, small buffers stay. */
static void xfer_free (xfer *x) {
  pyq_http *hp = x->http;
  curl_slist_free_all(x->headers);
  x->headers = NULL;
  free(x->url);
  free(x->why);
  free(x->hnames);
  free(x->qnames);
  x->url = x->why = x->hnames = x->qnames = NULL;
  x->f = NULL;
  x->hops = 0;
  x->spent = 0;
  x->discard = x->location = 0;
  if (x->easy && hp->npool < POOL_MAX) {
    if (x->body.cap > KEEP_BODY) {
      free(x->body.p);
      x->body.p = NULL;
      x->body.cap = 0;
    }
    x->body.len = x->head.len = 0;
    x->too_big = 0;
    x->err[0] = '\0';
    hp->pool[hp->npool++] = x;
    return;
  }
  if (x->easy) curl_easy_cleanup(x->easy);
  free(x->body.p);
  free(x->head.p);
  free(x);
}

static xfer *xfer_new (pyq_http *hp) {
  xfer *x;
  if (hp->npool > 0) return hp->pool[--hp->npool];
  if ((x = calloc(1, sizeof *x)) == NULL) return NULL;
  x->http = hp;
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
  xfer_remove(x);
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
  lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
  lua_setfield(L, -2, "body");
  lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len);
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
  hp->bytes += x->body.len;
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

static int request_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  xfer *x = f->on;
  (void)status;
  f->on = NULL;
  if (!pyq_resumed(L, f)) {   /* cancelled or timed out after it finished */
    if (x) xfer_free(x);
    return lua_error(L);
  }
  count(x);
  if (x->result != CURLE_OK) {   /* errors get logged: no secrets in them */
    char shown[1024], size[64];
    long oserr = 0;
    pyq_http_mask(x->url, shown, sizeof shown, x->http->qnames, x->qnames);
    if (x->result == CURLE_COULDNT_CONNECT)   /* say "Connection refused" */
      curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
    if (x->too_big || x->result == CURLE_FILESIZE_EXCEEDED) {
      snprintf(size, sizeof size, "%lld", (long long)x->max_body);
      lua_pushfstring(L, "pyq.http: %s %s: the response body is over max_body "
                      "(%s bytes)", x->method, shown, size);
    } else if (x->why)
      lua_pushfstring(L, "pyq.http: %s %s: %s", x->method, shown, x->why);
    else
      lua_pushfstring(L, "pyq.http: %s %s: %s%s%s%s", x->method, shown,
                      error_text(x), oserr ? " (" : "",
                      oserr ? strerror((int)oserr) : "", oserr ? ")" : "");
    xfer_free(x);
    return lua_error(L);
  }
  push_response(L, x);
  if (x->http->host->log_level <= PYQ_DEBUG) log_response(x);
  xfer_free(x);
  return 1;
}

/* ---- pyq.http.request ---------------------------------------------------- */

/* libcurl's sockets are counted, to know when none can be idle. */
static curl_socket_t open_socket (void *ud, curlsocktype purpose,
                                  struct curl_sockaddr *a) {
  pyq_http *hp = ud;
  curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
  (void)purpose;
  if (fd != CURL_SOCKET_BAD) hp->sockets++;
  return fd;
}

static int close_socket (void *ud, curl_socket_t fd) {
  pyq_http *hp = ud;
  hp->sockets--;
  return close(fd);
}

/* Options that never change on a handle of ours. */
static void setup_fixed (pyq_http *hp, xfer *x) {
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_SHARE, hp->share);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, hp);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, hp);
}

/* A pooled handle keeps its options: each is set again only when this
 * request wants another value, which spares most setopt calls. */
/* Seconds as libcurl's milliseconds, rounded up: 0 would mean no limit. */
static long ms (double seconds) { return (long)ceil(seconds * 1000); }

#define APPLY(field, opt, value) do { \
    if (!a->set || a->field != (value)) { \
      a->field = (value); \
      curl_easy_setopt(e, opt, a->field); \
    } \
  } while (0)

static void setup (pyq_http *hp, xfer *x, const pyq_http_opts *o,
                   const char *body, size_t bodylen) {
  CURL *e = x->easy;
  applied *a = &x->applied;
  int get = strcmp(x->method, "GET") == 0, plain = get && body == NULL;
  if (!a->set) setup_fixed(hp, x);
  if (!a->set || a->gen != hp->config_gen) {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, hp->http_version);
    curl_easy_setopt(e, CURLOPT_USERAGENT, hp->user_agent);
    a->gen = hp->config_gen;
  }
  curl_easy_setopt(e, CURLOPT_URL, x->url);
  APPLY(timeout_ms, CURLOPT_TIMEOUT_MS, x->timeout_ms);
  APPLY(ctimeout_ms, CURLOPT_CONNECTTIMEOUT_MS, ms(o->connect_timeout));
  APPLY(verify, CURLOPT_SSL_VERIFYPEER, (long)o->verify);
  APPLY(verifyhost, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  APPLY(max_body, CURLOPT_MAXFILESIZE_LARGE, x->max_body);
  /* With every socket busy there is no connection to reuse, and looking for
   * one costs libcurl a walk over all of the host's connections: with
   * thousands in flight that walk dominates.  Plain http only: an https
   * connection may take more transfers (HTTP/2). */
  APPLY(fresh, CURLOPT_FRESH_CONNECT,
        (long)(hp->sockets <= hp->active && strncasecmp(x->url, "http:", 5) == 0));
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
    }
    if (strcmp(x->method, "HEAD") == 0)
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (!plain)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
  }
  a->plain_get = plain;
  a->set = 1;
}

/* ---- DEBUG logging (credentials masked by http_input.c) --------------- */

static void log_request (pyq_http *hp, xfer *x) {
  char url[1024], line[2048];
  size_t n;
  struct curl_slist *h;
  pyq_http_mask(x->url, url, sizeof url, hp->qnames, x->qnames);
  n = (size_t)snprintf(line, sizeof line, "%s %s", x->method, url);
  for (h = x->headers; h && n < sizeof line; h = h->next) {
    const char *colon = strchr(h->data, ':');
    size_t nlen = colon ? (size_t)(colon - h->data) : strlen(h->data);
    int secret = pyq_http_secret(h->data, nlen, hp->hnames, x->hnames);
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
  pyq_http_mask(x->url, url, sizeof url, x->http->qnames, x->qnames);
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
static int expired (lua_State *L, pyq_http *hp, const pyq_http_opts *o,
                    const char *url, const char *qnames) {
  char shown[1024];
  pyq_http_mask(url, shown, sizeof shown, hp->qnames, qnames);
  hp->requests++;
  hp->failures++;
  lua_pushfstring(L, "pyq.http: %s %s: %s timed out after 0 milliseconds "
                  "(%s = 0)", o->method, shown,
                  o->timeout == 0 ? "Operation" : "Connection",
                  o->timeout == 0 ? "timeout" : "connect_timeout");
  return lua_error(L);
}

static int http_request (lua_State *L) {
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  pyq_http_opts o;
  pyq_fiber *f;
  struct curl_slist *headers;
  xfer *x;
  size_t bodylen = 0;
  const char *body;
  /* send(method, url, opts, fname): http.lua's verbs and request() */
  o.fname = lua_type(L, 4) == LUA_TSTRING ? lua_tostring(L, 4) : "pyq.http.request";
  lua_settop(L, 3);
  if (hp->multi == NULL) return luaL_error(L, "%s: pyq.http is closed", o.fname);
  /* 4: sensitive_headers, 5: sensitive_query, 6: url, 7: body */
  pyq_http_check(L, &o);
  f = pyq_fiber_check(L, o.fname);
  if (o.timeout == 0 || o.connect_timeout == 0)
    return expired(L, hp, &o, lua_tostring(L, 6), lua_tostring(L, 5));
  body = lua_tolstring(L, 7, &bodylen);
  headers = pyq_http_headers(L, 3, &o);
  if (body != NULL && !o.has_type) {   /* not libcurl's x-www-form-urlencoded */
    struct curl_slist *h = curl_slist_append(headers,
                                             "Content-Type: application/octet-stream");
    if (h == NULL) {
      curl_slist_free_all(headers);
      return luaL_error(L, "not enough memory");
    }
    headers = h;
  }
  if ((x = xfer_new(hp)) == NULL) {
    curl_slist_free_all(headers);
    return luaL_error(L, "not enough memory");
  }
  x->headers = headers;
  x->f = f;
  x->max_body = o.max_body;
  x->timeout_ms = ms(o.timeout);
  x->follow = o.follow;
  x->max_redirects = o.max_redirects;
  x->allow_downgrade = o.allow_downgrade;
  strcpy(x->method, o.method);
  if ((x->url = strdup(lua_tostring(L, 6))) == NULL) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  if ((!lua_isnil(L, 4) && (x->hnames = copy_names(L, 4)) == NULL) ||
      (!lua_isnil(L, 5) && (x->qnames = copy_names(L, 5)) == NULL)) {
    xfer_free(x);
    return luaL_error(L, "not enough memory");
  }
  setup(hp, x, &o, body, bodylen);
  if (hp->host->log_level <= PYQ_DEBUG) log_request(hp, x);
  xfer_add(x);
  return pyq_park(L, f, &xfer_wait, x, request_k);
}

/* Replaces a configure list (sensitive_headers, ...) by the value on top. */
static void set_names (lua_State *L, char **list, const char *key) {
  char *names;
  pyq_http_names(L, "pyq.http.configure", key);
  if ((names = copy_names(L, lua_gettop(L))) == NULL)
    luaL_error(L, "not enough memory");
  free(*list);
  *list = names;
}

/* pyq.http.configure{ user_agent, max_connections, max_per_host, http2,
 * sensitive_headers, sensitive_query } */
static int http_configure (lua_State *L) {
  static const char *const keys[] = {
    "user_agent", "max_connections", "max_per_host", "http2",
    "sensitive_headers", "sensitive_query", NULL
  };
  pyq_http *hp = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  if (hp->multi == NULL) return luaL_error(L, "pyq.http.configure: pyq.http is closed");
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    pyq_http_key_index(L, "pyq.http.configure", keys);
    lua_pop(L, 1);
  }
  if (lua_getfield(L, 1, "user_agent") != LUA_TNIL) {
    size_t n;
    const char *ua = lua_tolstring(L, -1, &n);
    char *copy;
    if (lua_type(L, -1) != LUA_TSTRING || !pyq_http_header_safe(ua, n))
      return luaL_error(L, "pyq.http.configure: user_agent must be a string "
                        "without CR or LF");
    if ((copy = strdup(ua)) == NULL) return luaL_error(L, "not enough memory");
    free(hp->user_agent);
    hp->user_agent = copy;
  }
  if (lua_getfield(L, 1, "max_connections") != LUA_TNIL)
    curl_multi_setopt(hp->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)pyq_http_to_count(L, "pyq.http.configure", "max_connections"));
  if (lua_getfield(L, 1, "max_per_host") != LUA_TNIL)
    curl_multi_setopt(hp->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)pyq_http_to_count(L, "pyq.http.configure", "max_per_host"));
  if (lua_getfield(L, 1, "http2") != LUA_TNIL)
    hp->http_version = pyq_http_to_bool(L, "pyq.http.configure", "http2")
                       ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1;
  lua_getfield(L, 1, "sensitive_headers");   /* nil leaves the list alone */
  if (!lua_isnil(L, -1)) set_names(L, &hp->hnames, "sensitive_headers");
  lua_getfield(L, 1, "sensitive_query");
  if (!lua_isnil(L, -1)) set_names(L, &hp->qnames, "sensitive_query");
  hp->config_gen++;
  return 0;
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
  pyq_http_mask(luaL_checkstring(L, 1), out, sizeof out, hp->qnames, NULL);
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

static void timer_closed (uv_handle_t *h) { free(h); }

void pyq_http_close (pyq_http *hp) {
  int i;
  if (hp->multi == NULL) return;
  for (i = 0; i < hp->npool; i++) {
    curl_easy_cleanup(hp->pool[i]->easy);
    free(hp->pool[i]->body.p);
    free(hp->pool[i]->head.p);
    free(hp->pool[i]);
  }
  hp->npool = 0;
  curl_multi_cleanup(hp->multi);
  curl_share_cleanup(hp->share);
  hp->multi = NULL;
  free(hp->user_agent);
  free(hp->hnames);
  free(hp->qnames);
  hp->user_agent = hp->hnames = hp->qnames = NULL;
  uv_close((uv_handle_t *)hp->timer, timer_closed);
  hp->timer = NULL;
}

static void report_section (void *ud, FILE *out) {
  pyq_http_report(ud, out);
}

void pyq_open_http (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"send", http_request}, {"configure", http_configure},
    {"stats", http_stats}, {"set_response_mt", http_set_response_mt},
    {"parse_headers", http_parse_headers}, {"count_retry", http_count_retry},
    {"mask_url", http_mask_url},
    {NULL, NULL}
  };
  pyq_host *h = pyq_host_of(L);
  pyq_http *hp = lua_newuserdatauv(L, sizeof *hp, 0);
  char agent[128];
  memset(hp, 0, sizeof *hp);
  hp->host = h;
  hp->http_version = CURL_HTTP_VERSION_2TLS;
  snprintf(agent, sizeof agent, "pyqhost/%s libcurl/%s", PYQ_VERSION,
           curl_version_info(CURLVERSION_NOW)->version);
  hp->user_agent = strdup(agent);
  hp->multi = curl_multi_init();
  hp->share = curl_share_init();
  curl_share_setopt(hp->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(hp->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(hp->multi, CURLMOPT_SOCKETDATA, hp);
  curl_multi_setopt(hp->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(hp->multi, CURLMOPT_TIMERDATA, hp);
  curl_multi_setopt(hp->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  if ((hp->timer = malloc(sizeof *hp->timer)) == NULL)
    luaL_error(L, "not enough memory");
  uv_timer_init(h->loop, hp->timer);
  uv_unref((uv_handle_t *)hp->timer);
  hp->timer->data = hp;
  h->http = hp;
  pyq_report_section(h, report_section, hp);
  luaL_newmetatable(L, HTTP_MT);
  lua_pushcfunction(L, http_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_remove(L, -2);
  /* keep the userdata alive as long as the module */
  lua_setfield(L, -2, "_http");
}
