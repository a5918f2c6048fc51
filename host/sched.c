/* sched.c -- fibers and the one routine that resumes them.
 *
 * A wait is always the same three steps: the waiting C function arms a
 * libuv callback (or joins a wait list) and calls pyq_park, which yields to
 * the host; the callback pushes the result on the fiber's stack and calls
 * pyq_wake (or pyq_cancel pushes an error instead), which puts the fiber on
 * the ready list; the run loop resumes it through pyq_fiber_resume, and the
 * wait's continuation returns the values or raises the error.
 *
 * The run loop runs the jobs that were ready at the start of a turn, then
 * polls libuv: without waiting while more jobs are ready, blocking otherwise,
 * and stops when neither has anything left. */
#include <stdio.h>
#include <stdlib.h>
#include "host.h"

static void fiber_job (pyq_host *h, pyq_job *j) {
  (void)h;
  pyq_fiber_resume(pyq_container(j, pyq_fiber, job));
}

pyq_fiber *pyq_fiber_new (lua_State *L, pyq_host *h) {
  lua_State *co = lua_newthread(L);
  pyq_fiber *f = calloc(1, sizeof *f);
  if (f == NULL) luaL_error(L, "not enough memory");
  f->host = h;
  f->L = co;
  f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->job.run = fiber_job;
  pyq_list_init(&f->job.link);
  pyq_list_init(&f->wait);
  pyq_list_init(&f->member);
  *(pyq_fiber **)lua_getextraspace(co) = f;
  return f;
}

static void timer_free (uv_handle_t *t) { free(t); }

/* A thread suspended in a wait (an idle worker) is reset first: a task may
 * have kept it (coroutine.running()), and once its fiber is gone the
 * resume guard no longer knows it; reset, it is dead to Lua. */
void pyq_fiber_free (pyq_fiber *f) {
  if (lua_status(f->L) == LUA_YIELD) lua_resetthread(f->L);
  pyq_list_remove(&f->job.link);
  pyq_list_remove(&f->wait);
  pyq_list_remove(&f->member);
  if (f->timer) uv_close((uv_handle_t *)f->timer, timer_free);
  pyq_deadlines_free(f);
  *(pyq_fiber **)lua_getextraspace(f->L) = NULL;
  luaL_unref(f->L, LUA_REGISTRYINDEX, f->ref);
  free(f);
}

/* A yield that did not come through pyq_park: plain coroutine.yield. */
static void stray_yield (pyq_fiber *f, int nres) {
  lua_pop(f->L, nres);
  lua_pushliteral(f->L, "coroutine.yield: a task cannot yield to the host "
                  "by itself; wait with pyq.sleep, queue:put, queue:join, "
                  "pyq.await or pyq.http");
  f->finish(f, LUA_ERRRUN);
}

void pyq_fiber_resume (pyq_fiber *f) {
  pyq_host *h = f->host;
  pyq_fiber *prev = h->current;
  int nres, status;
  f->got = f->nargs;
  f->nargs = 0;
  if (h->signal && !(f->flags & PYQ_F_FAILING)) pyq_interrupt_arm(h, f->L);
  f->flags &= ~(PYQ_F_PARKED | PYQ_F_FAILING);
  f->disarm = NULL;
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

pyq_fiber *pyq_fiber_check (lua_State *L, const char *fname) {
  pyq_fiber *f = pyq_fiber_of(L);
  if (f == NULL)
    luaL_error(L, "%s: cannot wait here: this coroutine is not run by the host "
              "(wait from the main script, a queue task or pyq.await)", fname);
  if (f->flags & PYQ_F_HANDLER)
    luaL_error(L, "%s: cannot wait in an exception_handler (it runs between "
               "two tasks of the worker; put a task into a queue for slow "
               "work)", fname);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s: cannot wait here: a C function is on the call stack "
              "(a __close or __gc handler, or a callback of table.sort, "
              "string.gsub and the like)", fname);
  if (f->flags & PYQ_F_CANCELLED) {
    lua_pushstring(L, f->cancel_msg);
    lua_error(L);
  }
  if (f->expired) {
    lua_pushliteral(L, PYQ_TIMED_OUT);
    lua_error(L);
  }
  return f;
}

/* The continuation of a wait whose results need no work. */
static int wait_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  (void)status;
  if (!pyq_resumed(L, f)) return lua_error(L);
  return f->got;
}

int pyq_park (lua_State *L, pyq_fiber *f, pyq_disarm_fn disarm,
              lua_KFunction k) {
  f->flags |= PYQ_F_PARKED;
  f->disarm = disarm;
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
  f->disarm = NULL;
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

/* The task stops at its current wait (or its next one, if it is running
 * now) with msg raised; every later wait raises it again until it ends. */
void pyq_cancel (pyq_fiber *f, const char *msg) {
  f->flags |= PYQ_F_CANCELLED;
  f->cancel_msg = msg;
  pyq_fail(f, msg);
}

/* A parked fiber's wait raises msg (once). */
void pyq_fail (pyq_fiber *f, const char *msg) {
  if (!(f->flags & PYQ_F_PARKED)) return;
  if (f->disarm) f->disarm(f);
  else lua_pop(f->L, f->nargs);
  f->disarm = NULL;
  lua_checkstack(f->L, 2);
  lua_pushboolean(f->L, 0);
  lua_pushstring(f->L, msg);
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
    pyq_cancel(h->main, "pyq: deadlock: the main task waits for something "
               "that can never happen");
    return 1;
  }
  return h->tasks.unstick ? h->tasks.unstick(h) : 0;
}

void pyq_run (pyq_host *h) {
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

/* coroutine.resume and coroutine.close on a fiber's thread would run a task
 * behind the scheduler's back: resume answers false and a message, as it
 * does for a dead coroutine; close raises, as it does for a running one.
 * Coroutines of the script's own are resumed here rather than by lcorolib,
 * so the host knows which one runs (a signal's hook goes there) and an
 * interruption that ended one is raised again in the task. */
static int host_task (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  return co != NULL && co != L && pyq_fiber_of(co) != NULL;
}

static int call_original (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* lcorolib's auxresume, with h->co kept: the results or the error are
 * moved to L; returns their count, or -1 with the error on top. */
static int resume_co (lua_State *L, lua_State *co, int narg) {
  pyq_host *h = pyq_host_of(L);
  lua_State *prev = h->co;
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  h->co = co;
  if (h->signal) pyq_interrupt_arm(h, co);
  status = lua_resume(co, L, narg, &nres);
  h->co = prev;
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static void raise_if_interrupted (lua_State *L) {
  const char *msg = pyq_interrupted(pyq_host_of(L));
  if (msg != NULL) {
    lua_pushstring(L, msg);
    lua_error(L);
  }
}

static int guarded_resume (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  int r;
  luaL_argexpected(L, co != NULL, 1, "coroutine");
  if (host_task(L)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "coroutine.resume: cannot resume a task the host runs");
    return 2;
  }
  r = resume_co(L, co, lua_gettop(L) - 1);
  raise_if_interrupted(L);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

/* lcorolib's auxwrap on resume_co. */
static int wrapped (lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_co(L, co, lua_gettop(L));
  raise_if_interrupted(L);
  if (r < 0) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) {   /* close its tbc variables */
      stat = lua_resetthread(co);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int guarded_wrap (lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrapped, 1);
  return 1;
}

static int guarded_close (lua_State *L) {
  if (!host_task(L)) return call_original(L);
  return luaL_error(L, "coroutine.close: cannot close a task the host runs");
}

void pyq_open_sched (lua_State *L) {
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, guarded_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, guarded_wrap);
  lua_setfield(L, -2, "wrap");
  lua_getfield(L, -1, "close");
  lua_pushcclosure(L, guarded_close, 1);
  lua_setfield(L, -2, "close");
  lua_pop(L, 1);
  pyq_open_signal(L);
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
