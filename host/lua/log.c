/* log.c -- pyq.log: the script's log lines, on core/log.c.
 *
 * pyq.log.info(fmt, ...) formats with string.format only when the level
 * passes, in a protected call: a bad format is reported as Python's logging
 * does and the job goes on.  pyq.log.level reads and sets the threshold. */
#include <string.h>
#include "check.h"
#include "error.h"
#include "log.h"
#include "core/log.h"

/* The stack level of the script's code that led to this call: pyq's own
 * Lua library (chunks "@pyq/...") logs on behalf of its caller. */
static int caller_level (lua_State *L) {
  lua_Debug ar;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "S", &ar);
    if (*ar.what != 'C' && strncmp(ar.source, "@pyq/", 5) != 0) return level;
  }
  return 1;
}

static int tolstring (lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* pyq.log.<name>(fmt, ...) with the level in upvalue 1, or
 * pyq.log.log(level, fmt, ...) when it has none. */
static int log_emit (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  int level, nargs, first = 1;
  char where[256];
  if (lua_isnoneornil(L, lua_upvalueindex(1))) {
    level = pyq_checklevel(L, 1, "pyq.log.log", "level");
    first = 2;
  } else {
    level = (int)lua_tointeger(L, lua_upvalueindex(1));
  }
  if (lua_isnone(L, first))
    return pyq_usage(L, "%s: expected a message",
                      lua_tostring(L, lua_upvalueindex(3)));
  if (level < h->log_level || level <= 0) return 0;
  pyq_where(L, caller_level(L), where, sizeof where);
  nargs = lua_gettop(L) - first + 1;   /* the message and its arguments */
  lua_pushvalue(L, first);             /* the message, kept for a report */
  lua_insert(L, first);
  if (nargs > 1) lua_pushvalue(L, lua_upvalueindex(2));   /* string.format */
  else lua_pushcfunction(L, tolstring);
  lua_insert(L, first + 1);
  if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
    /* as Python's logging does: say so, with the call's format, and go on */
    const char *err = pyq_errstr(L, -1);
    pyq_log_line(h, PYQ_ERROR, where, lua_pushfstring(L, "%s: cannot format "
                 "the message: %s (message \"%s\" with %d argument%s)",
                 lua_tostring(L, lua_upvalueindex(3)), err,
                 pyq_errstr(L, first), nargs - 1, nargs == 2 ? "" : "s"));
    return 0;
  }
  pyq_log_line(h, level, where, lua_tostring(L, -1));
  return 0;
}

static int log_index (lua_State *L) {
  if (strcmp(luaL_checkstring(L, 2), "level") != 0) return 0;
  lua_pushinteger(L, pyq_host_of(L)->log_level);
  return 1;
}

static int log_newindex (lua_State *L) {
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "level") != 0)
    return pyq_usage(L, "pyq.log: cannot set '%s' (only 'level')", k);
  pyq_host_of(L)->log_level = pyq_checklevel(L, 3, "pyq.log.level", "level");
  return 0;
}

static void push_emitter (lua_State *L, int level, const char *name) {
  if (level) lua_pushinteger(L, level); else lua_pushnil(L);
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "format");
  lua_remove(L, -2);
  lua_pushfstring(L, "pyq.log.%s", name);
  lua_pushcclosure(L, log_emit, 3);
  lua_setfield(L, -2, name);
}

void pyq_open_log (lua_State *L) {
  lua_createtable(L, 0, 6);
  push_emitter(L, PYQ_DEBUG, "debug");
  push_emitter(L, PYQ_INFO, "info");
  push_emitter(L, PYQ_WARNING, "warning");
  push_emitter(L, PYQ_ERROR, "error");
  push_emitter(L, PYQ_CRITICAL, "critical");
  push_emitter(L, 0, "log");
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, log_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, log_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "log");
}
