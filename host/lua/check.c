/* check.c -- what every Lua-facing function uses to check its arguments
 * and to show a bad value or an error object in a message. */
#include <stdio.h>
#include <string.h>
#include "check.h"
#include "error.h"
#include "core/log.h"

int pyq_checkseconds (lua_State *L, int arg, const char *fname,
                      const char *what) {
  lua_Number s = lua_tonumber(L, arg);
  if (lua_type(L, arg) != LUA_TNUMBER || !(s >= 0))
    return pyq_usage(L, "%s: %s must be a non-negative number (seconds), "
                     "got %s", fname, what, lua_type(L, arg) == LUA_TNUMBER ?
                     lua_tostring(L, arg) : luaL_typename(L, arg));
  return 1;
}


int pyq_checklevel (lua_State *L, int idx, const char *fname,
                    const char *what) {
  int level;
  if (lua_isinteger(L, idx)) {
    lua_Integer n = lua_tointeger(L, idx);
    if (n >= 0 && n <= 1000) return (int)n;
  } else if (lua_type(L, idx) == LUA_TSTRING &&
             pyq_log_level_parse(lua_tostring(L, idx), &level)) {
    return level;
  }
  return pyq_usage(L, "%s: %s must be a level number (10 DEBUG .. 50 "
                   "CRITICAL, 0 none) or name, got %s", fname, what,
                   lua_type(L, idx) == LUA_TSTRING || lua_isnumber(L, idx) ?
                   lua_tostring(L, idx) : luaL_typename(L, idx));
}

/* "script.lua:12" for the function `level` frames up, or "?" */
void pyq_where (lua_State *L, int level, char *buf, size_t size) {
  lua_Debug ar;
  if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) &&
      ar.currentline > 0)
    snprintf(buf, size, "%s:%d", ar.short_src, ar.currentline);
  else
    snprintf(buf, size, "?");
}

/* Pushes how a bad value is shown in an error message: a number or a
 * boolean as it is, a string quoted (so "10" does not read as 10, and a
 * long one is cut), anything else by its type name. */
const char *pyq_got (lua_State *L, int idx) {
  char buf[80];
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER: case LUA_TBOOLEAN:
      return luaL_tolstring(L, idx, NULL);
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &n);
      snprintf(buf, sizeof buf, "\"%.*s%s\"", n > 60 ? 57 : (int)n, s,
               n > 60 ? "..." : "");
      return lua_pushstring(L, buf);
    default:
      return lua_pushstring(L, luaL_typename(L, idx));
  }
}

static int call_tostring (lua_State *L) {
  luaL_callmeta(L, 1, "__tostring");
  return 1;
}

/* Pushes the message of the error object at idx, as lua.c words it.  A
 * __tostring runs in a protected call: one that raises or returns no
 * string gives the type name, never an error while reporting one. */
const char *pyq_errstr (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
    return lua_pushstring(L, lua_tostring(L, idx));
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushcfunction(L, call_tostring);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, idx));
}

