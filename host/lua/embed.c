/* embed.c -- finds the pyq Lua library inside the executable.
 *
 * At build time tools/embed_lualib.cmake turns each lualib/pyq/ file into a
 * byte array of pyq_embedded_lualib, so a copied or installed pyqhost is one
 * file.  A package searcher, placed right after package.preload, loads `pyq`
 * and `pyq.*` from there under the chunk name @pyq/<name>.lua (tracebacks
 * stay readable, and the embedded library wins over any pyq/ on
 * package.path).  For development, PYQ_LUALIB=dir makes the same searcher
 * read dir/pyq/<name>.lua instead, with no fallback to the embedded copy, so
 * an edit shows without a rebuild and a missing file is not hidden. */
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "embed.h"

/* A module of the library (pyq.std excepted) runs with an environment that
 * holds only the start-up `require`: lualib reads no other global
 * (.luacheckrc checks it), and a script that replaced `require` before
 * the module's first use cannot break it.  pyq.std reads the start-up
 * globals it copies, at start-up. */
static void own_env (lua_State *L, const char *name) {
  if (strcmp(name, "pyq.std") == 0) return;
  lua_pushvalue(L, lua_upvalueindex(2));
  if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
}

static int is_pyq (const char *name) {
  return strncmp(name, "pyq", 3) == 0 && (name[3] == '\0' || name[3] == '.');
}

/* Like package.searchers[2] on dir/pyq/<name>.lua (pyq/init.lua for pyq). */
static int search_dir (lua_State *L, const char *dir, const char *name) {
  const char *file;
  int st;
  if (strcmp(name, "pyq") == 0)
    file = lua_pushfstring(L, "%s/pyq/init.lua", dir);
  else
    file = lua_pushfstring(L, "%s/%s.lua", dir, luaL_gsub(L, name, ".", "/"));
  st = luaL_loadfilex(L, file, "t");
  if (st == LUA_ERRFILE) {
    lua_pushfstring(L, "no file '%s' (PYQ_LUALIB)", file);
    return 1;
  }
  if (st != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, file, lua_tostring(L, -1));
  own_env(L, name);
  lua_pushstring(L, file);
  return 2;
}

static int search_pyq (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *dir = lua_tostring(L, lua_upvalueindex(1));
  const pyq_embedded *m;
  if (!is_pyq(name)) return 0;   /* not ours: nothing to add to the message */
  if (dir != NULL) return search_dir(L, dir, name);
  for (m = pyq_embedded_lualib; m->module != NULL; m++) {
    if (strcmp(m->module, name) != 0) continue;
    if (luaL_loadbufferx(L, m->bytes, m->size, m->chunkname, "t") != LUA_OK)
      return luaL_error(L, "error loading module '%s' from pyqhost:\n\t%s",
                        name, lua_tostring(L, -1));
    own_env(L, name);
    lua_pushliteral(L, ":embedded:");
    return 2;
  }
  lua_pushfstring(L, "no module '%s' built into pyqhost", name);
  return 1;
}

/* Inserts search_pyq as package.searchers[2]. */
void pyq_open_lualib (lua_State *L) {
  const char *dir = getenv("PYQ_LUALIB");
  lua_Integer i;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  for (i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  if (dir != NULL && *dir != '\0') lua_pushstring(L, dir);
  else lua_pushnil(L);
  lua_createtable(L, 0, 1);   /* the modules' environment */
  lua_getglobal(L, "require");
  lua_setfield(L, -2, "require");
  lua_pushcclosure(L, search_pyq, 2);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
