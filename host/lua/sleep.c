/* sleep.c -- pyq.sleep, pyq.now and pyq.timeout on core/timer.c.
 *
 * pyq.timeout(seconds, task) makes a task that opens a deadline scope on
 * the running task's record, runs the inner task in a protected call, and
 * turns the scope's firing into "pyq.timeout: timed out after N s". */
#include "check.h"
#include "error.h"
#include "task.h"
#include "sleep.h"
#include "core/timer.h"

static int pyq_sleep (lua_State *L) {
  pyq_fiber *f;
  pyq_checkseconds(L, 1, "pyq.sleep", "seconds");
  f = pyq_fiber_check(L, "pyq.sleep");
  return pyq_sleep_park(L, f, lua_tonumber(L, 1), NULL);
}

static int pyq_now (lua_State *L) {
  lua_pushnumber(L, pyq_clock());
  return 1;
}

static int timeout_done (lua_State *L, int status, pyq_fiber *f) {
  double s = f->run.deadline->seconds;
  if (pyq_deadline_pop(f))
    return pyq_raise(L, "timeout", "%s after %f s", PYQ_TIMED_OUT, (lua_Number)s);
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
  pyq_deadline_push(L, f, lua_tonumber(L, 1));
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

void pyq_open_time (lua_State *L) {
  lua_pushcfunction(L, pyq_timeout);
  lua_setfield(L, -2, "timeout");
  lua_pushcfunction(L, pyq_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, pyq_now);
  lua_setfield(L, -2, "now");
}
