/* sched.c -- fibers, the one routine that resumes them, and the run loop.
 *
 * The wait protocol is described in sched.h.  The run loop runs the jobs
 * that were ready at the start of a turn, then polls libuv: without waiting
 * while more jobs are ready, blocking otherwise, and stops when neither has
 * anything left; then it asks the task owner to unstick what nothing can
 * wake, and goes on while that cancelled something. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched.h"
#include "signal.h"
#include "timer.h"

static void fiber_job (pyq_host *h, pyq_job *j) {
  (void)h;
  pyq_fiber_resume(pyq_container(j, pyq_fiber, job));
}

pyq_fiber *pyq_fiber_new (lua_State *L, pyq_host *h, size_t size) {
  lua_State *co = lua_newthread(L);
  pyq_fiber *f = calloc(1, size);
  if (f == NULL) luaL_error(L, "not enough memory");
  f->host = h;
  f->L = co;
  f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->job.run = fiber_job;
  pyq_list_init(&f->job.link);
  pyq_list_init(&f->wait);
  *(pyq_fiber **)lua_getextraspace(co) = f;
  return f;
}

/* A thread suspended in a wait (an idle worker) is reset first: a task may
 * have kept it (coroutine.running()), and once its fiber is gone the
 * resume guard no longer knows it; reset, it is dead to Lua. */
void pyq_fiber_free (pyq_fiber *f) {
  if (lua_status(f->L) == LUA_YIELD) lua_resetthread(f->L);
  pyq_list_remove(&f->job.link);
  if (f->wop != NULL) f->wop->disarm(f, f->on);   /* still parked */
  pyq_list_remove(&f->wait);
  pyq_run_end(f);
  *(pyq_fiber **)lua_getextraspace(f->L) = NULL;
  luaL_unref(f->L, LUA_REGISTRYINDEX, f->ref);
  free(f);
}

/* A yield that did not come through pyq_park: plain coroutine.yield. */
static const pyq_reason stray = {"usage", "coroutine.yield: a task cannot "
  "yield to the host by itself; wait with pyq.sleep, queue:put, queue:join, "
  "pyq.await or pyq.http"};

static void stray_yield (pyq_fiber *f, int nres) {
  lua_pop(f->L, nres);
  pyq_push_error(f->L, &stray);
  f->finish(f, LUA_ERRRUN);
}

void pyq_fiber_resume (pyq_fiber *f) {
  pyq_host *h = f->host;
  pyq_fiber *prev = h->current;
  int nres, status;
  f->got = f->nargs;
  f->nargs = 0;
  if (h->signal && !(f->flags & PYQ_F_FAILING)) pyq_interrupt_arm(h, f->L);
  if (h->soft_sigint) pyq_soft_arm(h, f);
  f->flags &= ~(PYQ_F_PARKED | PYQ_F_FAILING);
  f->wop = NULL;   /* f->on stays for the continuation to read */
  h->current = f;
  status = lua_resume(f->L, NULL, f->got, &nres);
  h->current = prev;
  if (status != LUA_YIELD)
    f->finish(f, status);
  else if (!(f->flags & PYQ_F_PARKED))
    stray_yield(f, nres);
  else
    lua_pop(f->L, nres);
}

/* A usage error (luaL_error's text), typed once lua/error.c is open. */
static int usage (lua_State *L, const char *fmt, ...) {
  pyq_reason why = {"usage", NULL};
  va_list ap;
  luaL_where(L, 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  why.msg = lua_tostring(L, -1);
  return pyq_raise_reason(L, &why);
}

pyq_fiber *pyq_fiber_check (lua_State *L, const char *fname) {
  pyq_fiber *f = pyq_fiber_of(L);
  if (f == NULL)
    usage(L, "%s: cannot wait here: this coroutine is not run by the host "
              "(wait from the main script, a queue task or pyq.await)", fname);
  if ((f->flags & PYQ_F_NOWAIT) && f->nowait)
    usage(L, "%s: cannot wait in %s", fname, f->nowait);
  if (f->flags & PYQ_F_NOWAIT)
    usage(L, "%s: cannot wait in an exception_handler (it runs between "
               "two tasks of the worker; put a task into a queue for slow "
               "work)", fname);
  if (!lua_isyieldable(L))
    usage(L, "%s: cannot wait here: a C function is on the call stack "
              "(a __close or __gc handler, or a callback of table.sort, "
              "string.gsub and the like)", fname);
  if (f->run.cancel != NULL) pyq_raise_reason(L, f->run.cancel);
  if (f->run.expired) pyq_raise_reason(L, &pyq_timeout_reason);
  return f;
}

/* The continuation of a wait whose results need no work. */
static int wait_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  (void)status;
  if (!pyq_resumed(L, f)) return lua_error(L);
  return f->got;
}

/* Yields f until pyq_wake or pyq_fail; k continues the waiting function.
 * ops->disarm(f, on) undoes the wait if it fails first. */
int pyq_park (lua_State *L, pyq_fiber *f, const pyq_wait_ops *ops, void *on,
              lua_KFunction k) {
  f->flags |= PYQ_F_PARKED;
  f->wop = ops;
  f->on = on;
  return lua_yieldk(L, 0, (lua_KContext)f, k ? k : wait_k);
}

/* In a wait's continuation: 1 with the result values on top, or 0 with the
 * error to raise on top. */
int pyq_resumed (lua_State *L, pyq_fiber *f) {
  int base = lua_gettop(L) - f->got + 1;
  if (lua_toboolean(L, base)) {
    lua_remove(L, base);
    f->got--;
    return 1;
  }
  lua_settop(L, base + 1);
  return 0;
}


void pyq_post (pyq_host *h, pyq_job *j) {
  if (!pyq_linked(&j->link)) pyq_list_push(&h->ready, &j->link);
}

/* The n values on top of f->L become the wait's results. */
void pyq_wake (pyq_fiber *f, int n) {
  lua_checkstack(f->L, 2);
  lua_pushboolean(f->L, 1);
  if (n > 0) lua_rotate(f->L, -(n + 1), 1);
  f->nargs = n + 1;
  f->wop = NULL;
  pyq_post(f->host, &f->job);
}

/* pyq_wake, and when no fiber is running (a libuv callback) the fiber runs
 * at once: a finished transfer's task then starts its next request while
 * libcurl still holds the connection, instead of a turn later, which saves
 * the socket's removal from and return to the poll set. */
void pyq_wake_now (pyq_fiber *f, int n) {
  pyq_wake(f, n);
  if (f->host->current == NULL) {
    pyq_list_remove(&f->job.link);
    pyq_fiber_resume(f);
  }
}

/* A task starts on f: a fresh run record. */
void pyq_run_begin (pyq_fiber *f, void *owner, lua_Integer idx) {
  pyq_run_end(f);
  f->run.owner = owner;
  f->run.idx = idx;
}

/* The task on f ended: its scopes' timers go, its cancellation with it. */
void pyq_run_end (pyq_fiber *f) {
  pyq_deadlines_free(f);
  memset(&f->run, 0, sizeof f->run);
}

/* Marks the task on f cancelled: every wait raises msg until it ends.  The
 * one place a task becomes cancelled; the first reason stays. */
void pyq_run_cancel (pyq_fiber *f, const pyq_reason *why) {
  if (f->run.cancel == NULL) f->run.cancel = why;
}

/* The task stops at its current wait (or its next one, if it is running
 * now) with msg raised; every later wait raises it again until it ends. */
void pyq_cancel (pyq_fiber *f, const pyq_reason *why) {
  pyq_run_cancel(f, why);
  pyq_fail(f, f->run.cancel);
}

/* Cancels every task of the owning layer; returns how many. */
int pyq_cancel_all (pyq_host *h, const pyq_reason *why) {
  return h->tasks.cancel_all ? h->tasks.cancel_all(h, why) : 0;
}

const pyq_reason pyq_cancelled_reason = {"cancelled", PYQ_CANCELLED};
const pyq_reason pyq_timeout_reason = {"timeout", PYQ_TIMED_OUT};
const pyq_reason pyq_deadlock_reason = {"deadlock", "pyq: deadlock: the "
  "task waits for something that can never happen"};
const pyq_reason pyq_main_deadlock_reason = {"deadlock", "pyq: deadlock: the "
  "main task waits for something that can never happen"};

/* Pushes the error for why: a pyq.Error once lua/error.c is open. */
void pyq_push_error (lua_State *L, const pyq_reason *why) {
  pyq_host *h = pyq_host_of(L);
  lua_checkstack(L, 4);
  if (h->push_error) h->push_error(L, why->kind, why->msg);
  else lua_pushstring(L, why->msg);
}

int pyq_raise_reason (lua_State *L, const pyq_reason *why) {
  pyq_push_error(L, why);
  return lua_error(L);
}

/* A parked fiber's wait raises why's error (once). */
void pyq_fail (pyq_fiber *f, const pyq_reason *why) {
  if (!(f->flags & PYQ_F_PARKED)) return;
  if (f->wop != NULL) {
    f->wop->disarm(f, f->on);
    f->on = NULL;   /* the disarmed object may be gone */
  } else {
    lua_pop(f->L, f->nargs);   /* woken already: its results go */
  }
  f->wop = NULL;
  lua_checkstack(f->L, 2);
  lua_pushboolean(f->L, 0);
  pyq_push_error(f->L, why);
  f->nargs = 2;
  f->flags |= PYQ_F_FAILING;
  pyq_post(f->host, &f->job);
}

static void run_turn (pyq_host *h) {
  pyq_link batch, *n;
  if (pyq_list_empty(&h->ready)) return;
  batch = h->ready;
  batch.next->prev = batch.prev->next = &batch;
  pyq_list_init(&h->ready);
  while ((n = pyq_list_shift(&batch)) != NULL) {
    pyq_job *j = pyq_container(n, pyq_job, link);
    j->run(h, j);
  }
}

/* Nothing can wake the main task or some parked tasks any more: raise in
 * them so they end instead of the process hanging or leaving silently. */
static int unstick (pyq_host *h) {
  if (h->main && (h->main->flags & PYQ_F_PARKED)) {
    pyq_cancel(h->main, &pyq_main_deadlock_reason);
    return 1;
  }
  return h->tasks.unstick ? h->tasks.unstick(h) : 0;
}

void pyq_sched_run (pyq_host *h) {
  do {
    for (;;) {
      run_turn(h);
      pyq_signal_check(h);
      if (!pyq_list_empty(&h->ready)) uv_run(h->loop, UV_RUN_NOWAIT);
      else if (!uv_loop_alive(h->loop)) break;
      else uv_run(h->loop, UV_RUN_ONCE);
    }
  } while (unstick(h));
}

/* At exit every fiber must be gone: a leftover one is a leak of its thread's
 * registry reference and its handles.  Sanitizer builds make that fatal. */
void pyq_check_leaks (pyq_host *h) {
  int n = (h->main != NULL) +
          (h->tasks.live_fibers ? h->tasks.live_fibers(h) : 0);
  if (n == 0) return;
  fprintf(stderr, "pyqhost: internal error: %d fibers left at exit\n", n);
#ifdef PYQ_SANITIZE
  abort();
#endif
}
