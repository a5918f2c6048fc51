/* task.c -- pyq.async, pyq.await and the task object.
 *
 * A task is a small userdata: its function and arguments sit in the user
 * values, so a pending task costs one allocation and nothing runs until a
 * worker (or pyq.await) calls the function in its own coroutine.  A fresh
 * coroutine is accepted too: its function is moved out, and the coroutine
 * is left dead, so it can be started only once, like a task. */
#include <limits.h>
#include "task.h"
#include "check.h"
#include "error.h"
#include "core/sched.h"

typedef struct pyq_task {
  int taken;   /* queued or started: a task runs once */
  int nargs;
} pyq_task;

static const char task_key = 't';
static const char named_key = 'n';   /* name -> function, function -> name */

/* Makes a task of the function at index base and the n values above it;
 * the metatable is at index mt. */
static void make_task (lua_State *L, int base, int n, int mt) {
  pyq_task *t;
  int i;
  if (n >= USHRT_MAX - 1) pyq_usage(L, "pyq.async: too many arguments");
  t = lua_newuserdatauv(L, sizeof *t, n + 1);
  t->taken = 0;
  t->nargs = n;
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  for (i = 0; i <= n; i++) {
    lua_pushvalue(L, base + i);
    lua_setiuservalue(L, -2, i + 1);
  }
}

static int async_call (lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  make_task(L, 1, n, lua_upvalueindex(2));
  return 1;
}

/* Replaces the function and nargs values on top with a task. */
void pyq_task_new (lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_key);
  make_task(L, base, nargs, lua_gettop(L));
  lua_replace(L, base);
  lua_settop(L, base);
}

/* pyq.async(name, fn): the name is what a task of fn is known by in other
 * processes (cluster queues), so it is unique in the script. */
static void name_task (lua_State *L) {
  size_t n;
  const char *name = lua_tolstring(L, 1, &n);
  if (n == 0 || n > 200)
    pyq_usage(L, "pyq.async: name must be a non-empty string of at most 200 "
              "bytes, got %s", pyq_got(L, 1));
  lua_rawgetp(L, LUA_REGISTRYINDEX, &named_key);
  if (lua_getfield(L, -1, name) != LUA_TNIL)
    pyq_usage(L, "pyq.async: a task named %s exists already (a name is "
              "unique in the script)", pyq_got(L, 1));
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_remove(L, 1);
}

static int pyq_async (lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    if (lua_type(L, 2) != LUA_TFUNCTION)
      return pyq_usage(L, "pyq.async: expected a function after the name, "
                       "got %s", luaL_typename(L, 2));
    lua_settop(L, 2);
    name_task(L);
  }
  if (lua_type(L, 1) != LUA_TFUNCTION && lua_type(L, 2) == LUA_TFUNCTION)
    return pyq_usage(L, "pyq.async: name must be a string, got %s "
                     "(pyq.async(name, fn) or pyq.async(fn))", pyq_got(L, 1));
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return pyq_usage(L, "pyq.async: expected a function, got %s",
                     luaL_typename(L, 1));
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_key);
  lua_pushcclosure(L, async_call, 2);
  return 1;
}

/* A task by its metatable's address (kept by pyq_open_task): every put
 * checks and claims its task, and a registry lookup there cost ~10% of a
 * task's whole run. */
static pyq_task *totask (lua_State *L, int idx) {
  pyq_task *t = lua_touserdata(L, idx);
  int ok;
  if (t == NULL || !lua_getmetatable(L, idx)) return NULL;
  ok = lua_topointer(L, -1) == pyq_host_of(L)->task_mt;
  lua_pop(L, 1);
  return ok ? t : NULL;
}

static int fresh_coroutine (lua_State *co) {
  lua_Debug ar;
  return lua_status(co) == LUA_OK && !lua_getstack(co, 0, &ar) &&
         lua_gettop(co) == 1 && lua_type(co, 1) == LUA_TFUNCTION;
}

/* Raises unless the value at idx can be started as a task. */
int pyq_task_check (lua_State *L, int idx, const char *fname) {
  pyq_task *t = totask(L, idx);
  lua_State *co;
  if (t != NULL) {
    if (t->taken)
      return pyq_usage(L, "%s: this task was already queued or started "
                       "(a task runs once; call the async function again)",
                       fname);
    return 1;
  }
  co = lua_tothread(L, idx);
  if (co != NULL) {
    if (!fresh_coroutine(co))
      return pyq_usage(L, "%s: the coroutine was already started or is dead "
                       "(pass a new coroutine.create(fn))", fname);
    return 1;
  }
  if (lua_tocfunction(L, idx) == async_call)
    return pyq_usage(L, "%s: got an async function, not a task: call it "
                     "to make one, as in queue:put(fetch(id))", fname);
  return pyq_usage(L, "%s: expected a task (the result of calling a "
                   "pyq.async function, or coroutine.create(fn)), got %s",
                   fname, luaL_typename(L, idx));
}

/* Claims the checked task at idx; a coroutine is replaced there by its
 * function. */
void pyq_task_take (lua_State *L, int idx) {
  pyq_task *t = totask(L, idx);
  if (t != NULL) {
    t->taken = 1;
    return;
  }
  lua_State *co = lua_tothread(L, idx);
  idx = lua_absindex(L, idx);
  lua_xmove(co, L, 1);
  lua_replace(L, idx);
}

/* Replaces the claimed task on top with its function and arguments. */
int pyq_task_unpack (lua_State *L) {
  pyq_task *t = lua_touserdata(L, -1);
  int i, n;
  if (t == NULL) return 0;   /* a coroutine's function */
  n = t->nargs;
  luaL_checkstack(L, n + 1, "pyq: too many task arguments");
  for (i = 1; i <= n + 1; i++) lua_getiuservalue(L, -i, i);
  lua_rotate(L, -(n + 2), -1);
  lua_pop(L, 1);
  return n;
}

int pyq_task_name (lua_State *L, int idx) {
  if (totask(L, idx) == NULL) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &named_key);
  lua_getiuservalue(L, idx, 1);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 2);
    return 0;
  }
  lua_remove(L, -2);
  return 1;
}

int pyq_task_named (lua_State *L, const char *name) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &named_key);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_isfunction(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* core._named(name) -> the function of pyq.async(name, fn), or nil. */
static int task_named (lua_State *L) {
  if (!pyq_task_named(L, luaL_checkstring(L, 1))) lua_pushnil(L);
  return 1;
}

static int await_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L) - 1;
}

static int pyq_await (lua_State *L) {
  int n;
  lua_settop(L, 1);
  pyq_task_check(L, 1, "pyq.await");
  pyq_task_take(L, 1);
  lua_pushvalue(L, 1);
  n = pyq_task_unpack(L);
  lua_callk(L, n, LUA_MULTRET, 0, await_k);
  return await_k(L, LUA_OK, 0);
}

static int task_tostring (lua_State *L) {
  pyq_task *t = totask(L, 1);
  luaL_argexpected(L, t != NULL, 1, "pyq.task");
  lua_pushfstring(L, "pyq.task (%s): %p", t->taken ? "started" : "new", t);
  return 1;
}

void pyq_open_task (lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "pyq.task");
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "pyq.task");
  lua_setfield(L, -2, "__metatable");
  pyq_host_of(L)->task_mt = lua_topointer(L, -1);   /* anchored below */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &task_key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &named_key);
  lua_pushcfunction(L, task_named);
  lua_setfield(L, -2, "_named");
  lua_pushcfunction(L, pyq_async);
  lua_setfield(L, -2, "async");
  lua_pushcfunction(L, pyq_await);
  lua_setfield(L, -2, "await");
}
