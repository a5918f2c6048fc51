/* wait_test.c -- the wait protocol of core/sched.h on a real loop and Lua
 * state: park, wake, fail (before and after a wake), cancel, freeing a
 * parked fiber, a deadline cutting a sleep short.  No layer above the core
 * is opened: errors are plain strings here (h->push_error is NULL). */
#include <stdlib.h>
#include <string.h>
#include "unit.h"
#include "core/sched.h"
#include "core/timer.h"

static pyq_host host;

typedef struct waited { int disarmed; } waited;
typedef struct outcome { int status; char value[128]; int ended; } outcome;

static void *alloc (void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) { free(p); return NULL; }
  return realloc(p, nsize);
}

static void host_open (void) {
  memset(&host, 0, sizeof host);
  pyq_list_init(&host.ready);
  pyq_list_init(&host.on_interrupt);
  host.loop = uv_default_loop();
  host.L = lua_newstate(alloc, &host);
  *(pyq_fiber **)lua_getextraspace(host.L) = NULL;
}

static void close_handle (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void count_open (uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) ++*(int *)arg;
}

/* Every wait's handles are gone once the fibers are: a sleeper timer or a
 * deadline left behind would be counted here. */
static void host_close (void) {
  int open = 0;
  uv_run(host.loop, UV_RUN_NOWAIT);   /* close callbacks still pending */
  uv_walk(host.loop, count_open, &open);
  CHECK_INT(open, 0);
  lua_close(host.L);
  uv_walk(host.loop, close_handle, NULL);
  uv_run(host.loop, UV_RUN_DEFAULT);
}

static void disarm (pyq_fiber *f, void *on) {
  (void)f;
  ((waited *)on)->disarmed++;
}

static const pyq_wait_ops test_wait = {"test", disarm};
static const pyq_reason boom = {"test", "boom"};
static const pyq_reason other = {"test", "other"};
static waited the_wait;
static outcome the_outcome;

/* The continuation: the wait's values, or its error raised. */
static int body_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  (void)status;
  if (!pyq_resumed(L, f)) return lua_error(L);
  return f->got;
}

static int body (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  return pyq_park(L, f, &test_wait, &the_wait, body_k);
}

static void finish (pyq_fiber *f, int status) {
  const char *s = lua_tostring(f->L, -1);
  the_outcome.status = status;
  the_outcome.ended = 1;
  snprintf(the_outcome.value, sizeof the_outcome.value, "%s", s ? s : "?");
  if (status != LUA_OK) lua_resetthread(f->L);
  pyq_fiber_free(f);
}

static pyq_fiber *start (lua_CFunction fn) {
  pyq_fiber *f = pyq_fiber_new(host.L, &host, sizeof *f);
  f->finish = finish;
  lua_pushcfunction(f->L, fn);
  memset(&the_wait, 0, sizeof the_wait);
  memset(&the_outcome, 0, sizeof the_outcome);
  pyq_post(&host, &f->job);
  return f;
}

/* A zero-delay timer that does `what` to the fiber from a libuv callback. */
enum { DO_WAKE, DO_FAIL, DO_WAKE_THEN_FAIL, DO_CANCEL };
typedef struct poke { uv_timer_t t; pyq_fiber *f; int what; } poke;

static void poked (uv_timer_t *t) {
  poke *p = t->data;
  switch (p->what) {
    case DO_WAKE:
      lua_pushinteger(p->f->L, 42);
      pyq_wake(p->f, 1);
      break;
    case DO_FAIL:
      pyq_fail(p->f, &boom);
      break;
    case DO_WAKE_THEN_FAIL:
      lua_pushinteger(p->f->L, 42);
      pyq_wake(p->f, 1);
      pyq_fail(p->f, &boom);
      break;
    case DO_CANCEL:
      pyq_cancel(p->f, &boom);
      pyq_run_cancel(p->f, &other);   /* the first reason stays */
      CHECK(p->f->run.cancel == &boom);
      break;
  }
  uv_close((uv_handle_t *)t, NULL);
}

static void poke_soon (poke *p, pyq_fiber *f, int what) {
  p->f = f;
  p->what = what;
  uv_timer_init(host.loop, &p->t);
  p->t.data = p;
  uv_timer_start(&p->t, poked, 0, 0);
}

static void test_wake (void) {
  poke p;
  host_open();
  poke_soon(&p, start(body), DO_WAKE);
  pyq_sched_run(&host);
  CHECK(the_outcome.ended);
  CHECK_INT(the_outcome.status, LUA_OK);
  CHECK(strcmp(the_outcome.value, "42") == 0);
  CHECK_INT(the_wait.disarmed, 0);   /* woken by its callback: no disarm */
  host_close();
}

static void test_fail (void) {
  poke p;
  host_open();
  poke_soon(&p, start(body), DO_FAIL);
  pyq_sched_run(&host);
  CHECK_INT(the_outcome.status, LUA_ERRRUN);
  CHECK(strcmp(the_outcome.value, "boom") == 0);
  CHECK_INT(the_wait.disarmed, 1);   /* the wait is undone exactly once */
  host_close();
}

static void test_wake_then_fail (void) {
  poke p;
  host_open();
  poke_soon(&p, start(body), DO_WAKE_THEN_FAIL);
  pyq_sched_run(&host);
  /* the failure wins over results not yet delivered; nothing to disarm */
  CHECK_INT(the_outcome.status, LUA_ERRRUN);
  CHECK(strcmp(the_outcome.value, "boom") == 0);
  CHECK_INT(the_wait.disarmed, 0);
  host_close();
}

static void test_cancel (void) {
  poke p;
  host_open();
  poke_soon(&p, start(body), DO_CANCEL);
  pyq_sched_run(&host);
  CHECK_INT(the_outcome.status, LUA_ERRRUN);
  CHECK(strcmp(the_outcome.value, "boom") == 0);
  CHECK_INT(the_wait.disarmed, 1);
  host_close();
}

static void test_free_parked (void) {
  pyq_fiber *f;
  host_open();
  f = start(body);
  pyq_list_remove(&f->job.link);
  pyq_fiber_resume(f);               /* runs until it parks */
  CHECK(f->flags & PYQ_F_PARKED);
  pyq_fiber_free(f);                 /* e.g. an idle worker at close */
  CHECK_INT(the_wait.disarmed, 1);
  CHECK(!the_outcome.ended);
  pyq_sched_run(&host);
  host_close();
}

/* A deadline of 10 ms cuts a 10 s sleep short: the sleep's timer is
 * disarmed (the loop does not wait 10 s) and the wait raises "timed out". */
static int deadline_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  int ok = pyq_resumed(L, f);
  (void)status;
  lua_pushstring(L, pyq_deadline_pop(f) ? "fired" : "not fired");
  if (!ok) lua_concat(L, 2);   /* the error's text, then the scope's */
  return 1;
}

static int deadline_body (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  pyq_deadline_push(L, f, 0.01);
  return pyq_sleep_park(L, f, 10.0, deadline_k);
}

static void test_deadline (void) {
  double t0;
  host_open();
  start(deadline_body);
  t0 = pyq_clock();
  pyq_sched_run(&host);
  CHECK(pyq_clock() - t0 < 5.0);
  CHECK_INT(the_outcome.status, LUA_OK);
  CHECK(strcmp(the_outcome.value, PYQ_TIMED_OUT "fired") == 0);
  host_close();
}

int main (void) {
  test_wake();
  test_fail();
  test_wake_then_fail();
  test_cancel();
  test_free_parked();
  test_deadline();
  CHECK_INT(uv_loop_close(uv_default_loop()), 0);
  return unit_done("wait");
}
