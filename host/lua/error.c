/* error.c -- pyq.Error: every error the host raises, as a value.
 *
 * An error object is a table {kind = ..., message = ..., <fields>} with a
 * shared metatable: tostring gives the message (the text scripts saw when
 * errors were strings), `kind` says what happened without parsing it, and
 * pyq.is_error(v [, kind]) tells it from anything else.  Kinds: usage (a
 * bad argument or call), cancelled, timeout, interrupted (a signal or a
 * closed stdout), exit (os.exit unwinding), deadlock, and those of the
 * modules (transport, too_big, status, decode, io, ...).
 *
 * join{ all = true } and queue:completed() give a task's outcome as one of
 * these too: kind "failed" or "cancelled", `error` the value the task
 * raised (itself often a pyq.Error), `index` its put index.
 *
 * The core raises through h->push_error, which this file sets, so the
 * scheduler makes typed errors without calling up into this layer. */
#include <stdarg.h>
#include <string.h>
#include "error.h"
#include "check.h"

static const char error_key = 'e';

static void set_meta (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &error_key);
  lua_setmetatable(L, -2);
}

void pyq_error_new (lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  set_meta(L);
}

static void push_error (lua_State *L, const char *kind, const char *msg) {
  pyq_error_new(L, kind, msg);
}

static int raise_where (lua_State *L, const char *kind, const char *fmt,
                        va_list ap) {
  luaL_where(L, 1);
  lua_pushvfstring(L, fmt, ap);
  lua_concat(L, 2);
  pyq_error_new(L, kind, lua_tostring(L, -1));
  return lua_error(L);
}

/* As luaL_error, with a kind: the message starts with the position of the
 * Lua code that called the function ("script.lua:3: pyq.sleep: ..."), as
 * it did when errors were strings. */
int pyq_raise (lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return raise_where(L, kind, fmt, ap);
}

int pyq_usage (lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return raise_where(L, "usage", fmt, ap);
}

/* Pushes an outcome object of `kind` for the error value at err_idx. */
void pyq_error_push (lua_State *L, const char *kind, int err_idx,
                     lua_Integer index) {
  err_idx = lua_absindex(L, err_idx);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  pyq_errstr(L, err_idx);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, err_idx);
  lua_setfield(L, -2, "error");
  lua_pushinteger(L, index);
  lua_setfield(L, -2, "index");
  set_meta(L);
}

static int is_error_object (lua_State *L, int idx) {
  int ok;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &error_key);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok;
}

const char *pyq_error_kind (lua_State *L, int idx) {
  const char *kind;
  if (!is_error_object(L, idx)) return NULL;
  lua_getfield(L, idx, "kind");
  kind = lua_tostring(L, -1);
  lua_pop(L, 1);   /* the string stays: the table holds it */
  return kind;
}

static int error_tostring (lua_State *L) {
  luaL_argcheck(L, is_error_object(L, 1), 1, "expected a pyq.Error");
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "pyq.Error");
  return 1;
}

/* pyq.is_error(v [, kind]) */
static int is_error (lua_State *L) {
  int yes = is_error_object(L, 1);
  if (yes && !lua_isnoneornil(L, 2)) {
    const char *kind;
    if (lua_type(L, 2) != LUA_TSTRING)
      return pyq_usage(L, "pyq.is_error: kind must be a string, got %s",
                       pyq_got(L, 2));
    kind = lua_tostring(L, 2);
    lua_getfield(L, 1, "kind");
    yes = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), kind) == 0;
  }
  lua_pushboolean(L, yes);
  return 1;
}

/* pyq.Error(kind, message [, fields]) -> an error object, for scripts and
 * pyq's Lua half to raise typed errors of their own. */
static int error_new (lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.Error: kind must be a string, got %s",
                     pyq_got(L, 1));
  if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
    return pyq_usage(L, "pyq.Error: message must be a string, got %s",
                     pyq_got(L, 2));
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    return pyq_usage(L, "pyq.Error: fields must be a table, got %s",
                     pyq_got(L, 3));
  pyq_error_new(L, lua_tostring(L, 1), lua_tostring(L, 2));
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) == LUA_TSTRING &&
          (strcmp(lua_tostring(L, -2), "kind") == 0 ||
           strcmp(lua_tostring(L, -2), "message") == 0)) {
        lua_pop(L, 1);
        continue;
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

void pyq_open_error (lua_State *L) {
  pyq_host_of(L)->push_error = push_error;
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "pyq.Error");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "pyq.Error");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &error_key);
  lua_pushcfunction(L, is_error);
  lua_setfield(L, -2, "is_error");
  lua_pushcfunction(L, error_new);
  lua_setfield(L, -2, "Error");
}
