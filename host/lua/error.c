/* error.c -- pyq.Error: an error the host hands to a script as a value.
 *
 * join{ all = true } and queue:completed() give a failed or cancelled
 * task's outcome as one of these instead of raising it: a table with the
 * `kind` ("failed", "cancelled"), the `message` (text), the original
 * `error` value, and the task's put `index`.  tostring gives the message;
 * pyq.is_error(v [, kind]) tells them from results. */
#include <string.h>
#include "error.h"
#include "check.h"

static const char error_key = 'e';

/* Pushes an error object of `kind` for the error value at err_idx. */
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
  lua_rawgetp(L, LUA_REGISTRYINDEX, &error_key);
  lua_setmetatable(L, -2);
}

static int is_error_object (lua_State *L, int idx) {
  int ok;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &error_key);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok;
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
    const char *kind = luaL_checkstring(L, 2);
    lua_getfield(L, 1, "kind");
    yes = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), kind) == 0;
  }
  lua_pushboolean(L, yes);
  return 1;
}

void pyq_open_error (lua_State *L) {
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
}
