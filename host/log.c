/* log.c -- the host's log lines and pyq.log.
 *
 * A line is "UTC-timestamp LEVEL where: message", written to stderr with a
 * single write so lines from one process never interleave.  Levels are
 * Python's numbers; the threshold lives in the host (pyq.log.level). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "host.h"

static const struct { const char *name; int level; } levels[] = {
  {"DEBUG", PYQ_DEBUG}, {"INFO", PYQ_INFO}, {"WARNING", PYQ_WARNING},
  {"WARN", PYQ_WARNING}, {"ERROR", PYQ_ERROR}, {"CRITICAL", PYQ_CRITICAL},
  {"NOTSET", 0}, {NULL, 0}
};

static const char *level_name (int level, char *buf, size_t size) {
  int i;
  for (i = 0; levels[i].name; i++)
    if (levels[i].level == level && level != 0) return levels[i].name;
  snprintf(buf, size, "Level %d", level);
  return buf;
}

/* Accepts a level name in any case or a number; 1 if s was one. */
int pyq_log_level_parse (const char *s, int *level) {
  char *end;
  long n;
  int i;
  for (i = 0; levels[i].name; i++)
    if (strcasecmp(s, levels[i].name) == 0) {
      *level = levels[i].level;
      return 1;
    }
  n = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || n < 0 || n > 1000) return 0;
  *level = (int)n;
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
  return luaL_error(L, "%s: %s must be a level number (10 DEBUG .. 50 "
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

/* Writes a log line whatever the threshold. */
void pyq_log_line (pyq_host *h, int level, const char *where,
                   const char *msg) {
  char stamp[32], lbuf[16], line[8192];
  struct timeval tv;
  struct tm tm;
  int n;
  pyq_progress_clear(h);
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  n = snprintf(line, sizeof line, "%s.%03dZ %s %s: %s\n", stamp,
               (int)(tv.tv_usec / 1000), level_name(level, lbuf, sizeof lbuf),
               where, msg);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) {   /* long message: same line, two writes */
    fprintf(stderr, "%s.%03dZ %s %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            level_name(level, lbuf, sizeof lbuf), where, msg);
    return;
  }
  fwrite(line, 1, (size_t)n, stderr);
}

void pyq_log (pyq_host *h, int level, const char *where, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  if (level < h->log_level || level <= 0) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pyq_log_line(h, level, where, msg);
}

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
    return luaL_error(L, "%s: expected a message",
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
    return luaL_error(L, "pyq.log: cannot set '%s' (only 'level')", k);
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
