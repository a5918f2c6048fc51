/* timer.c -- timed waits and deadlines on the loop.
 *
 * A timed wait (pyq.sleep, a rate-limited put) parks the fiber on a timer
 * of its own, made for the wait and closed when it ends, so the fiber
 * carries nothing for it.  A pyq.timeout scope is a pyq_deadline on the
 * task's run record, chained for nesting; when it fires, the fiber's
 * current wait fails, and so does every wait until the scope ends and
 * turns the error into "timed out". */
#include <math.h>
#include <stdlib.h>
#include "timer.h"

typedef struct sleeper {
  uv_timer_t timer;
  pyq_fiber *f;
} sleeper;

static void sleeper_closed (uv_handle_t *t) {
  free(t->data);
}

static void sleeper_fired (uv_timer_t *t) {
  sleeper *s = t->data;
  pyq_wake(s->f, 0);
  uv_close((uv_handle_t *)t, sleeper_closed);
}

static void sleeper_disarm (pyq_fiber *f, void *on) {
  sleeper *s = on;
  (void)f;
  uv_close((uv_handle_t *)&s->timer, sleeper_closed);
}

static const pyq_wait_ops sleep_wait = {"pyq.sleep", sleeper_disarm};

/* Starts t to fire `seconds` from now (not from the loop's cached time,
 * which lags after long CPU work); huge delays are clamped. */
static void start_after (pyq_host *h, uv_timer_t *t, uv_timer_cb cb,
                         double seconds) {
  double ms = ceil(seconds * 1000.0);
  uv_update_time(h->loop);
  uv_timer_start(t, cb, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
}

/* Parks f for `seconds`; k continues (NULL: the wait returns nothing). */
int pyq_sleep_park (lua_State *L, pyq_fiber *f, double seconds,
                    lua_KFunction k) {
  sleeper *s = malloc(sizeof *s);
  if (s == NULL) return luaL_error(L, "not enough memory");
  s->f = f;
  uv_timer_init(f->host->loop, &s->timer);
  s->timer.data = s;
  start_after(f->host, &s->timer, sleeper_fired, seconds);
  return pyq_park(L, f, &sleep_wait, s, k);
}

static void deadline_closed (uv_handle_t *t) {
  free(t->data);
}

static void deadline_fired (uv_timer_t *t) {
  pyq_deadline *d = t->data;
  d->fired = 1;
  d->f->run.expired++;
  pyq_fail(d->f, &pyq_timeout_reason);
}

pyq_deadline *pyq_deadline_push (lua_State *L, pyq_fiber *f, double s) {
  pyq_deadline *d = calloc(1, sizeof *d);
  if (d == NULL) luaL_error(L, "not enough memory");
  d->f = f;
  d->seconds = s;
  d->outer = f->run.deadline;
  f->run.deadline = d;
  uv_timer_init(f->host->loop, &d->timer);
  d->timer.data = d;
  start_after(f->host, &d->timer, deadline_fired, s);
  return d;
}

/* Ends the innermost scope; 1 if its deadline fired. */
int pyq_deadline_pop (pyq_fiber *f) {
  pyq_deadline *d = f->run.deadline;
  int fired = d->fired;
  f->run.deadline = d->outer;
  if (fired) f->run.expired--;
  uv_close((uv_handle_t *)&d->timer, deadline_closed);
  return fired;
}

void pyq_deadlines_free (pyq_fiber *f) {
  while (f->run.deadline) pyq_deadline_pop(f);
}
