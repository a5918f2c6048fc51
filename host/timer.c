/* timer.c -- pyq.sleep, pyq.now and pyq.timeout.
 *
 * Each fiber owns at most one uv_timer_t for its waits, made on its first
 * sleep and kept until the fiber ends: a fiber waits on one thing at a time.
 * A pyq.timeout scope has a timer of its own (a pyq_deadline, chained on the
 * fiber for nesting); when it fires, the fiber's current wait fails, and so
 * does every wait until the scope ends and turns the error into "timed
 * out". */
#include <math.h>
#include <stdlib.h>
#include "host.h"

static void timer_fired (uv_timer_t *t) {
  pyq_wake((pyq_fiber *)t->data, 0);
}

void pyq_timer_disarm (pyq_fiber *f) {
  uv_timer_stop(f->timer);
}

/* Starts t to fire `seconds` from now (not from the loop's cached time,
 * which lags after long CPU work); huge delays are clamped. */
static void start_after (pyq_host *h, uv_timer_t *t, uv_timer_cb cb,
                         double seconds) {
  double ms = ceil(seconds * 1000.0);
  uv_update_time(h->loop);
  uv_timer_start(t, cb, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
}

/* Arms f's timer; the caller then parks with pyq_timer_disarm. */
void pyq_timer_start (pyq_fiber *f, double seconds) {
  if (f->timer == NULL) {
    f->timer = malloc(sizeof *f->timer);
    if (f->timer == NULL) luaL_error(f->L, "not enough memory");
    uv_timer_init(f->host->loop, f->timer);
    f->timer->data = f;
  }
  start_after(f->host, f->timer, timer_fired, seconds);
}

int pyq_checkseconds (lua_State *L, int arg, const char *fname,
                      const char *what) {
  lua_Number s = lua_tonumber(L, arg);
  if (lua_type(L, arg) != LUA_TNUMBER || !(s >= 0))
    return luaL_error(L, "%s: %s must be a non-negative number (seconds), "
                     "got %s", fname, what, lua_type(L, arg) == LUA_TNUMBER ?
                     lua_tostring(L, arg) : luaL_typename(L, arg));
  return 1;
}

static int pyq_sleep (lua_State *L) {
  pyq_fiber *f;
  pyq_checkseconds(L, 1, "pyq.sleep", "seconds");
  f = pyq_fiber_check(L, "pyq.sleep");
  pyq_timer_start(f, lua_tonumber(L, 1));
  return pyq_park(L, f, pyq_timer_disarm, NULL);
}

static int pyq_now (lua_State *L) {
  lua_pushnumber(L, pyq_clock());
  return 1;
}

static void deadline_closed (uv_handle_t *t) {
  free(t->data);
}

static void deadline_fired (uv_timer_t *t) {
  pyq_deadline *d = t->data;
  d->fired = 1;
  d->f->expired++;
  pyq_fail(d->f, PYQ_TIMED_OUT);
}

static pyq_deadline *deadline_push (lua_State *L, pyq_fiber *f, double s) {
  pyq_deadline *d = calloc(1, sizeof *d);
  if (d == NULL) luaL_error(L, "not enough memory");
  d->f = f;
  d->seconds = s;
  d->outer = f->deadline;
  f->deadline = d;
  uv_timer_init(f->host->loop, &d->timer);
  d->timer.data = d;
  start_after(f->host, &d->timer, deadline_fired, s);
  return d;
}

/* Ends the innermost scope; 1 if its deadline fired. */
static int deadline_pop (pyq_fiber *f) {
  pyq_deadline *d = f->deadline;
  int fired = d->fired;
  f->deadline = d->outer;
  if (fired) f->expired--;
  uv_close((uv_handle_t *)&d->timer, deadline_closed);
  return fired;
}

void pyq_deadlines_free (pyq_fiber *f) {
  while (f->deadline) deadline_pop(f);
}

static int timeout_done (lua_State *L, int status, pyq_fiber *f) {
  double s = f->deadline->seconds;
  if (deadline_pop(f))
    return luaL_error(L, "%s after %f s", PYQ_TIMED_OUT, (lua_Number)s);
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  return lua_gettop(L) - 2;
}

static int timeout_k (lua_State *L, int status, lua_KContext ctx) {
  return timeout_done(L, status, (pyq_fiber *)ctx);
}

/* The body of a pyq.timeout task: 1 seconds, 2 the inner task. */
static int timeout_run (lua_State *L) {
  pyq_fiber *f = pyq_fiber_check(L, "pyq.timeout");
  int n;
  lua_settop(L, 2);
  deadline_push(L, f, lua_tonumber(L, 1));
  lua_pushvalue(L, 2);
  n = pyq_task_unpack(L);
  return timeout_done(L, lua_pcallk(L, n, LUA_MULTRET, 0, (lua_KContext)f,
                                    timeout_k), f);
}

/* pyq.timeout(seconds, task) -> a task that runs task, or raises an error
 * containing "timed out" if it is not done in time. */
static int pyq_timeout (lua_State *L) {
  pyq_checkseconds(L, 1, "pyq.timeout", "seconds");
  pyq_task_check(L, 2, "pyq.timeout");
  lua_settop(L, 2);
  pyq_task_take(L, 2);
  lua_pushcfunction(L, timeout_run);
  lua_insert(L, 1);
  pyq_task_new(L, 2);
  return 1;
}

void pyq_open_timer (lua_State *L) {
  lua_pushcfunction(L, pyq_timeout);
  lua_setfield(L, -2, "timeout");
  lua_pushcfunction(L, pyq_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, pyq_now);
  lua_setfield(L, -2, "now");
}
