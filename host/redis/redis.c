/* redis.c -- hiredis's async context on the host's loop, with deadlines,
 * reconnection and a small Lua surface (core._redis) for the host's own
 * Lua code and the specs.
 *
 * hiredis asks for read and write interest through the ev hooks of its
 * context; they start and stop a uv_poll on the socket (ours, not the
 * bundled adapter, which ignores poll errors: here one drops the
 * connection).  Every command is a request in r->reqs, in the order it
 * was issued, which is the order Redis answers; a 100 ms tick fails the
 * requests whose deadline passed: an unsent one alone, a sent one by
 * dropping the connection (the replies are in order, so everything behind
 * it is stuck too).  A dropped or refused connection comes back after a
 * backoff (0.1 s doubling to 5 s), logged; requests issued meanwhile are
 * kept formatted and sent when it is back.  The poll and the timers are
 * referenced only while requests wait, so an idle connection does not
 * keep the loop alive.  hiredis 0.14 resolves a host name with a blocking
 * getaddrinfo when it connects: give an address where that matters. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <hiredis/async.h>
#include "redis.h"
#include "core/log.h"
#include "lua/check.h"
#include "lua/error.h"

#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
#define TICK_MS 100

struct pyq_redis_req {
  pyq_link link;          /* in r->reqs, in issue order */
  pyq_redis *r;
  pyq_redis_fn fn;        /* NULL once cancelled */
  void *ud;
  char *cmd;              /* formatted, until sent */
  size_t len;
  double deadline, timeout;
  int sent;
};

/* The poll of one context: freed when its handle has closed, which may be
 * after the context is gone (cleanup clears ac). */
typedef struct rev {
  uv_poll_t poll;
  redisAsyncContext *ac;
  pyq_redis *r;
  int events;
} rev;

struct pyq_redis {
  pyq_host *h;
  redisAsyncContext *ac;  /* NULL while down */
  rev *ev;
  uv_timer_t tick, retry;
  int handles;            /* open timers, for the free */
  pyq_link reqs;
  int nreqs;
  char url[256], host[128];
  int port, db;
  double timeout, backoff, last;
  int down;               /* lost: the next connect logs its return */
  int closing;
  int linger;             /* pyq_redis_close: freed once nothing waits */
  char why[256];          /* why the connection was lost */
  double send_logged;     /* when a failed send was last logged */
  long send_failed;       /* failed sends not logged since */
};

static void start (pyq_redis *r);
static void lost (pyq_redis *r);
static void on_tick (uv_timer_t *t);

int pyq_redis_parse_url (const char *url, char *host, size_t hn, int *port,
                         int *db, const char **why) {
  const char *p, *e;
  char *end;
  long v;
  *port = 6379;
  *db = 0;
  if (strncasecmp(url, "redis://", 8) != 0) {   /* a scheme has no case */
    *why = "must start with redis://";
    return 0;
  }
  p = url + 8;
  if (memchr(p, '@', strcspn(p, "/"))) {   /* before the port's ':' too */
    *why = "has a user or password: Redis AUTH is not supported (keep the "
           "server on a private network)";
    return 0;
  }
  e = p + strcspn(p, ":/");
  if (e == p || (size_t)(e - p) >= hn) {
    *why = "needs a host (redis://host:port/db)";
    return 0;
  }
  memcpy(host, p, e - p);
  host[e - p] = '\0';
  if (*e == ':') {
    v = strtol(e + 1, &end, 10);
    if (end == e + 1 || v < 1 || v > 65535 || (*end && *end != '/')) {
      *why = "has a bad port (1 to 65535)";
      return 0;
    }
    *port = (int)v;
    e = end;
  }
  if (*e == '/' && e[1]) {
    v = strtol(e + 1, &end, 10);
    if (end == e + 1 || *end || v < 0 || v > 1000000) {
      *why = "has a bad database number (an integer from 0)";
      return 0;
    }
    *db = (int)v;
  } else if (*e && strcmp(e, "/") != 0) {
    *why = "has something after the port";
    return 0;
  }
  return 1;
}

/* ---- references: only waiting requests keep the loop alive ------------ */

static void refresh (pyq_redis *r) {
  if (r->nreqs > 0) {
    if (!uv_is_active((uv_handle_t *)&r->tick))
      uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    uv_ref((uv_handle_t *)&r->retry);
    if (r->ev) uv_ref((uv_handle_t *)&r->ev->poll);
  } else {
    uv_timer_stop(&r->tick);
    uv_unref((uv_handle_t *)&r->retry);
    if (r->ev) uv_unref((uv_handle_t *)&r->ev->poll);
  }
}

/* The request ends: its callback (unless cancelled) and it goes. */
static void finish (pyq_redis_req *q, redisReply *reply, const char *err) {
  pyq_redis *r = q->r;
  pyq_list_remove(&q->link);
  r->nreqs--;
  if (q->fn) q->fn(q->ud, reply, err);
  free(q->cmd);
  free(q);
  if (r->closing) return;
  if (r->linger && r->nreqs == 0) pyq_redis_free(r);
  else refresh(r);
}

/* ---- hiredis's event hooks ----------------------------------------------- */

static void on_poll (uv_poll_t *handle, int status, int events) {
  rev *e = handle->data;
  if (e->ac == NULL) return;
  if (status < 0) {
    pyq_redis *r = e->r;
    redisAsyncContext *ac = e->ac;
    int err = 0;
    socklen_t n = sizeof err;
    /* a refused connect shows as a poll error: the socket says why */
    if (getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &n) == 0 && err)
      snprintf(r->why, sizeof r->why, "%s", strerror(err));
    else
      snprintf(r->why, sizeof r->why, "poll error: %s", uv_strerror(status));
    r->ac = NULL;
    redisAsyncFree(ac);
    lost(r);   /* after the backoff, logged: not a connect() per turn */
    return;
  }
  if (events & UV_READABLE) redisAsyncHandleRead(e->ac);
  if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void ev_update (rev *e, int add, int del) {
  e->events = (e->events | add) & ~del;
  if (e->events) uv_poll_start(&e->poll, e->events, on_poll);
  else uv_poll_stop(&e->poll);
}

static void ev_add_read (void *p) { ev_update(p, UV_READABLE, 0); }
static void ev_del_read (void *p) { ev_update(p, 0, UV_READABLE); }
static void ev_add_write (void *p) { ev_update(p, UV_WRITABLE, 0); }
static void ev_del_write (void *p) { ev_update(p, 0, UV_WRITABLE); }

static void ev_closed (uv_handle_t *handle) {
  free(handle->data);
}

static void ev_cleanup (void *p) {
  rev *e = p;
  e->ac = NULL;
  if (e->r->ev == e) e->r->ev = NULL;
  uv_close((uv_handle_t *)&e->poll, ev_closed);
}

/* ---- the connection's life ---------------------------------------------- */

static void on_reply (redisAsyncContext *ac, void *reply, void *privdata) {
  pyq_redis_req *q = privdata;
  pyq_redis *r = q->r;
  if (reply == NULL) {   /* the context is going */
    const char *why = r->why[0] ? r->why : ac->err ? ac->errstr
                    : "connection lost";
    finish(q, NULL, why);
    return;
  }
  r->last = pyq_clock();
  r->backoff = BACKOFF_MIN;
  finish(q, reply, NULL);
}

/* Hands q to hiredis (the connection is up); a refusal (the context is
 * going) leaves it unsent, for the next connection or its deadline. */
static void send_req (pyq_redis *r, pyq_redis_req *q) {
  if (redisAsyncFormattedCommand(r->ac, on_reply, q, q->cmd, q->len)
      != REDIS_OK) return;
  q->sent = 1;
  free(q->cmd);
  q->cmd = NULL;
}

/* Sends the requests not sent yet, in order: after a (re)connect.  While
 * connected, every request is sent as it is issued. */
static void flush (pyq_redis *r) {
  pyq_link *l, *next;
  for (l = r->reqs.next; l != &r->reqs && r->ac; l = next) {
    pyq_redis_req *q = pyq_container(l, pyq_redis_req, link);
    next = l->next;
    if (!q->sent) send_req(r, q);
  }
}

static void on_retry (uv_timer_t *t) {
  start(t->data);
}

/* The connection is gone (why in r->why): try again after the backoff. */
static void lost (pyq_redis *r) {
  if (r->closing) return;
  pyq_log(r->h, PYQ_WARNING, "redis", "%s: %s; reconnecting in %.1fs",
          r->url, r->why, r->backoff);
  r->down = 1;
  uv_timer_start(&r->retry, on_retry, (uint64_t)(r->backoff * 1000), 0);
  r->backoff = r->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : r->backoff * 2;
}

static void on_connect (const redisAsyncContext *ac, int status) {
  pyq_redis *r = ac->data;
  if (r == NULL || r->ac != ac) return;
  if (status != REDIS_OK) {
    snprintf(r->why, sizeof r->why, "cannot connect: %s", ac->errstr);
    r->ac = NULL;   /* hiredis frees it */
    lost(r);
    return;
  }
  if (r->down) pyq_log(r->h, PYQ_WARNING, "redis", "%s: connected again",
                       r->url);
  r->down = 0;
  r->why[0] = '\0';
}

static void on_disconnect (const redisAsyncContext *ac, int status) {
  pyq_redis *r = ac->data;
  (void)status;
  if (r == NULL || r->ac != ac) return;   /* dropped by us */
  snprintf(r->why, sizeof r->why, "connection lost: %s",
           ac->err ? ac->errstr : "closed by the server");
  r->ac = NULL;
  lost(r);
}

/* Opens a new context, selects the database and sends what waits. */
static void start (pyq_redis *r) {
  redisAsyncContext *ac;
  rev *e;
  if (r->closing) return;
  ac = redisAsyncConnect(r->host, r->port);
  if (ac == NULL || ac->err) {
    snprintf(r->why, sizeof r->why, "cannot connect: %s",
             ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    lost(r);
    return;
  }
  if ((e = calloc(1, sizeof *e)) == NULL ||
      uv_poll_init(r->h->loop, &e->poll, ac->c.fd) != 0) {
    free(e);
    redisAsyncFree(ac);
    snprintf(r->why, sizeof r->why, "cannot watch the socket");
    lost(r);
    return;
  }
  e->poll.data = e;
  e->ac = ac;
  e->r = r;
  ac->ev.data = e;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  ac->data = r;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  r->ac = ac;
  r->ev = e;
  if (r->db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->db);
  flush(r);
  refresh(r);
}

/* Fails the requests past their deadline: an unsent one by itself, a sent
 * one with the connection. */
static void on_tick (uv_timer_t *t) {
  pyq_redis *r = t->data;
  double now = pyq_clock();
  pyq_link *l, *next;
  for (l = r->reqs.next; l != &r->reqs; l = next) {
    pyq_redis_req *q = pyq_container(l, pyq_redis_req, link);
    next = l->next;
    if (q->deadline > now) continue;
    if (!q->sent) {
      finish(q, NULL, "timed out waiting for the connection");
    } else if (r->ac) {
      redisAsyncContext *ac = r->ac;
      snprintf(r->why, sizeof r->why, "no reply within %.1fs", q->timeout);
      r->ac = NULL;
      redisAsyncFree(ac);   /* fails every sent request */
      lost(r);
      return;
    }
  }
}

pyq_redis *pyq_redis_new (pyq_host *h, const char *url, double timeout) {
  pyq_redis *r = calloc(1, sizeof *r);
  const char *why;
  if (r == NULL) return NULL;
  r->h = h;
  snprintf(r->url, sizeof r->url, "%s", url);
  pyq_redis_parse_url(url, r->host, sizeof r->host, &r->port, &r->db, &why);
  r->timeout = timeout;
  r->backoff = BACKOFF_MIN;
  r->last = pyq_clock();
  pyq_list_init(&r->reqs);
  uv_timer_init(h->loop, &r->tick);
  uv_timer_init(h->loop, &r->retry);
  r->tick.data = r->retry.data = r;
  r->handles = 2;
  uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
  refresh(r);
  start(r);
  return r;
}

pyq_redis_req *pyq_redis_cmd (pyq_redis *r, double timeout, pyq_redis_fn fn,
                              void *ud, int argc, const char **argv,
                              const size_t *lens) {
  pyq_redis_req *q = calloc(1, sizeof *q);
  long long n;
  if (q == NULL) return NULL;
  if ((n = redisFormatCommandArgv(&q->cmd, argc, argv, lens)) < 0) {
    free(q);
    return NULL;
  }
  q->len = (size_t)n;
  q->r = r;
  q->fn = fn;
  q->ud = ud;
  q->timeout = timeout > 0 ? timeout : r->timeout;
  q->deadline = pyq_clock() + q->timeout;
  pyq_list_push(&r->reqs, &q->link);
  r->nreqs++;
  refresh(r);
  if (!uv_is_active((uv_handle_t *)&r->tick))
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
  if (r->ac) send_req(r, q);
  return q;
}

void pyq_redis_cancel (pyq_redis_req *q) {
  q->fn = NULL;
}

static void timer_closed (uv_handle_t *handle) {
  pyq_redis *r = handle->data;
  if (--r->handles == 0) free(r);
}

void pyq_redis_free (pyq_redis *r) {
  pyq_link *l;
  r->closing = 1;
  for (l = r->reqs.next; l != &r->reqs; l = l->next)
    pyq_container(l, pyq_redis_req, link)->fn = NULL;
  if (r->ac) {
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    redisAsyncFree(ac);   /* the sent requests end, silently */
  }
  while (!pyq_list_empty(&r->reqs))
    finish(pyq_container(r->reqs.next, pyq_redis_req, link), NULL, NULL);
  uv_close((uv_handle_t *)&r->tick, timer_closed);
  uv_close((uv_handle_t *)&r->retry, timer_closed);
}

void pyq_redis_close (pyq_redis *r) {
  pyq_link *l;
  for (l = r->reqs.next; l != &r->reqs; l = l->next)
    pyq_container(l, pyq_redis_req, link)->fn = NULL;
  r->linger = 1;
  if (r->nreqs == 0) pyq_redis_free(r);
}

double pyq_redis_last_reply (const pyq_redis *r) { return r->last; }
const char *pyq_redis_url (const pyq_redis *r) { return r->url; }

/* ---- core._redis: the Lua surface ---------------------------------------- */

static const char conn_key = 'r';

typedef struct conn { pyq_redis *r; } conn;

static conn *checkconn (lua_State *L, const char *fname) {
  conn *c = luaL_checkudata(L, 1, "pyq.redis");
  if (c->r == NULL) pyq_usage(L, "%s: the connection is closed", fname);
  return c;
}

/* Pushes a reply as Lua values: strings, integers, tables (a nil element
 * becomes false); an error reply is left to the caller. */
static void push_reply (lua_State *L, redisReply *x) {
  size_t i;
  luaL_checkstack(L, 3, "redis reply too deep");
  switch (x->type) {
  case REDIS_REPLY_STRING: case REDIS_REPLY_STATUS:
    lua_pushlstring(L, x->str, x->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, x->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, (int)x->elements, 0);
    for (i = 0; i < x->elements; i++) {
      if (x->element[i]->type == REDIS_REPLY_NIL) lua_pushboolean(L, 0);
      else push_reply(L, x->element[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  default:
    lua_pushnil(L);
  }
}

static void call_done (void *ud, redisReply *reply, const char *err) {
  pyq_fiber *f = ud;
  pyq_reason why = {"redis", err};
  if (reply && reply->type == REDIS_REPLY_ERROR) why.msg = reply->str;
  else if (reply) {
    push_reply(f->L, reply);
    pyq_wake(f, 1);
    return;
  }
  pyq_fail(f, &why);   /* the message is copied now */
}

static void call_disarm (pyq_fiber *f, void *on) {
  (void)f;
  pyq_redis_cancel(on);
}

static const pyq_wait_ops call_wait = {"redis", call_disarm};

/* Collects the command's words (strings or numbers) from index 2 on. */
static int words (lua_State *L, const char *fname, const char **argv,
                  size_t *lens, int max) {
  int i, n = lua_gettop(L) - 1;
  if (n < 1) pyq_usage(L, "%s: expected a command", fname);
  if (n > max) pyq_usage(L, "%s: at most %d words", fname, max);
  for (i = 0; i < n; i++) {
    int t = lua_type(L, i + 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      pyq_usage(L, "%s: word %d must be a string or a number, got %s",
                fname, i + 1, luaL_typename(L, i + 2));
    argv[i] = lua_tolstring(L, i + 2, &lens[i]);
  }
  return n;
}

#define MAX_WORDS 64

/* conn:call(word, ...) -> the reply; waits.  An error reply, a timeout or
 * a lost connection raises a pyq.Error of kind "redis". */
static int conn_call (lua_State *L) {
  conn *c = checkconn(L, "redis.call");
  const char *argv[MAX_WORDS];
  size_t lens[MAX_WORDS];
  int n = words(L, "redis.call", argv, lens, MAX_WORDS);
  pyq_fiber *f = pyq_fiber_check(L, "redis.call");
  pyq_redis_req *q = pyq_redis_cmd(c->r, 0, call_done, f, n, argv, lens);
  if (q == NULL) return luaL_error(L, "not enough memory");
  return pyq_park(L, f, &call_wait, q, NULL);
}

/* A lost connection fails every send in flight at once (a cache's 25
 * pipelined stores): one line a minute says so, with the count. */
static void send_done (void *ud, redisReply *reply, const char *err) {
  pyq_redis *r = ud;
  double now;
  if (reply && reply->type == REDIS_REPLY_ERROR) err = reply->str;
  if (err == NULL) return;
  now = pyq_clock();
  if (r->send_logged > 0 && now - r->send_logged < 60) {
    r->send_failed++;
    return;
  }
  if (r->send_failed > 0)
    pyq_log(r->h, PYQ_WARNING, "redis", "%s: %s (and %ld sends failed in "
            "the last minute)", r->url, err, r->send_failed);
  else
    pyq_log(r->h, PYQ_WARNING, "redis", "%s: %s", r->url, err);
  r->send_logged = now;
  r->send_failed = 0;
}

/* conn:send(word, ...): the command goes out without waiting (pipelined
 * with the others); a failure is logged (at most once a minute). */
static int conn_send (lua_State *L) {
  conn *c = checkconn(L, "redis.send");
  const char *argv[MAX_WORDS];
  size_t lens[MAX_WORDS];
  int n = words(L, "redis.send", argv, lens, MAX_WORDS);
  if (pyq_redis_cmd(c->r, 0, send_done, c->r, n, argv, lens) == NULL)
    return luaL_error(L, "not enough memory");
  return 0;
}

/* conn:close() and <close>: what was sent still goes out (a worker's
 * hand-back as it stops), then the connection goes. */
static int conn_close (lua_State *L) {
  conn *c = luaL_checkudata(L, 1, "pyq.redis");
  if (c->r) pyq_redis_close(c->r);
  c->r = NULL;
  return 0;
}

/* conn:drop(): the connection goes now, with what it has not sent or
 * not been answered (a blocking read that must not take more). */
static int conn_drop (lua_State *L) {
  conn *c = luaL_checkudata(L, 1, "pyq.redis");
  if (c->r) pyq_redis_free(c->r);
  c->r = NULL;
  return 0;
}

static int conn_tostring (lua_State *L) {
  conn *c = luaL_checkudata(L, 1, "pyq.redis");
  lua_pushfstring(L, "pyq.redis (%s)", c->r ? c->r->url : "closed");
  return 1;
}

/* core._redis(url[, timeout]) */
static int redis_open (lua_State *L) {
  const char *url = luaL_checkstring(L, 1), *why;
  char host[128];
  int port, db;
  double timeout = 5;
  conn *c;
  if (!pyq_redis_parse_url(url, host, sizeof host, &port, &db, &why))
    return pyq_usage(L, "core._redis: url %s", why);
  if (!lua_isnoneornil(L, 2)) {
    pyq_checkseconds(L, 2, "core._redis", "timeout");
    timeout = lua_tonumber(L, 2);
  }
  c = lua_newuserdatauv(L, sizeof *c, 0);
  c->r = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &conn_key);
  lua_setmetatable(L, -2);
  if ((c->r = pyq_redis_new(pyq_host_of(L), url, timeout)) == NULL)
    return luaL_error(L, "not enough memory");
  return 1;
}

void pyq_open_redis (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"call", conn_call}, {"send", conn_send}, {"close", conn_close},
    {"drop", conn_drop},
    {NULL, NULL}
  };
  luaL_newmetatable(L, "pyq.redis");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, conn_drop);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, conn_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &conn_key);
  lua_pushcfunction(L, redis_open);
  lua_setfield(L, -2, "_redis");
}
