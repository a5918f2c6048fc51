/* guards.c -- the standard functions a task could use to go behind the
 * scheduler's back, replaced by ones that cannot.
 *
 * coroutine.resume/wrap/close refuse the host's own threads and track the
 * script's coroutines (so a signal's hook reaches the innermost one);
 * pcall and xpcall raise an interruption again instead of swallowing it;
 * os.exit unwinds every task instead of leaving without closing files;
 * print, io.write and file:write let the report erase its live lines
 * first and turn a closed stdout into an interruption. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <lualib.h>
#include "guards.h"
#include "core/signal.h"


static int finish_pcall (lua_State *L, int status, lua_KContext extra) {
  const pyq_reason *why = pyq_interrupted(pyq_host_of(L));
  if (why != NULL) return pyq_raise_reason(L, why);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

/* lbaselib's pcall and xpcall, raising again in an interrupted task. */
static int host_pcall (lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
  return finish_pcall(L, status, 0);
}

static int host_xpcall (lua_State *L) {
  int status, n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
  return finish_pcall(L, status, 2);
}

void pyq_open_signal (lua_State *L) {
  lua_pushcfunction(L, host_pcall);
  lua_setglobal(L, "pcall");
  lua_pushcfunction(L, host_xpcall);
  lua_setglobal(L, "xpcall");
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
  const pyq_reason *why = pyq_interrupted(pyq_host_of(L));
  if (why != NULL) pyq_raise_reason(L, why);
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

/* ---- output ------------------------------------------------------------- */

enum { W_PRINT, W_IO_WRITE, W_FILE_WRITE };

/* A write found stdout closed (SIGPIPE is ignored): the job ends as on
 * SIGTERM (core/signal.c), and the code that wrote stops here as the signal's
 * hook would stop it. */
static int closed_stdout (lua_State *L, pyq_host *h) {
  pyq_fiber *f = pyq_fiber_of(L);
  pyq_interrupt(h, SIGPIPE);   /* handled at the run loop's next turn */
  if (f != NULL) pyq_run_cancel(f, pyq_interrupt_reason(SIGPIPE));
  return pyq_raise_reason(L, pyq_interrupt_reason(SIGPIPE));
}

/* print, io.write and file:write: the report erases its live lines first
 * (h->before_output: print and io.write always, a file when it is their
 * terminal), and a write to a closed stdout interrupts the job. */
static int guarded_write (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
  FILE *f = stdout;
  if (kind == W_FILE_WRITE) {
    luaL_Stream *p = luaL_testudata(L, 1, LUA_FILEHANDLE);
    f = p ? p->f : NULL;
  }
  if (h->before_output) h->before_output(h, kind == W_FILE_WRITE ? f : NULL);
  if (f == stdout) clearerr(stdout);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (h->hold_screen) {   /* the REPL's prompt is on the screen */
    h->hold_screen(h);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (f != NULL) fflush(f);
    h->release_screen(h);
  } else {
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  }
  if (f == stdout && ferror(stdout) && errno == EPIPE)
    return closed_stdout(L, h);
  return lua_gettop(L);
}

static void wrap (lua_State *L, int t, const char *name, int kind) {
  lua_getfield(L, t, name);
  lua_pushinteger(L, kind);
  lua_pushcclosure(L, guarded_write, 2);
  lua_setfield(L, t, name);
}

/* ---- os.exit ------------------------------------------------------------ */

const pyq_reason pyq_exit_reason = {"exit", PYQ_EXITING};

/* os.exit(code [, close]): every task is cancelled and the current one
 * raises, so the job unwinds and the host exits with `code` after closing
 * everything (whatever `close` says). */
static int host_exit (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  pyq_fiber *f = pyq_fiber_of(L);
  int code = lua_isboolean(L, 1) ? (lua_toboolean(L, 1) ? 0 : 1)
                                 : (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  if (h->closing) {   /* a __gc at exit: nothing is left to unwind */
    if (!h->exit_requested) h->exit_code = code;
    h->exit_requested = 1;
    return 0;
  }
  if (!h->exit_requested) {
    h->exit_requested = 1;
    h->exit_code = code;
    pyq_cancel_all(h, &pyq_exit_reason);
    if (h->main && h->main != f) pyq_cancel(h->main, &pyq_exit_reason);
  }
  if (f != NULL) pyq_run_cancel(f, &pyq_exit_reason);
  return pyq_raise_reason(L, &pyq_exit_reason);
}

void pyq_open_guards (lua_State *L) {
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, guarded_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, guarded_wrap);
  lua_setfield(L, -2, "wrap");
  lua_getfield(L, -1, "close");
  lua_pushcclosure(L, guarded_close, 1);
  lua_setfield(L, -2, "close");
  lua_pop(L, 1);
  lua_pushcfunction(L, host_pcall);
  lua_setglobal(L, "pcall");
  lua_pushcfunction(L, host_xpcall);
  lua_setglobal(L, "xpcall");
  lua_getglobal(L, "os");
  lua_pushcfunction(L, host_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  wrap(L, lua_gettop(L), "print", W_PRINT);
  lua_getfield(L, -1, "io");
  wrap(L, lua_gettop(L), "write", W_IO_WRITE);
  luaL_getmetatable(L, LUA_FILEHANDLE);
  lua_getfield(L, -1, "__index");
  wrap(L, lua_gettop(L), "write", W_FILE_WRITE);
  lua_pop(L, 4);
}

