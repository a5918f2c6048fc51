/* sqlite.h -- pyq.sqlite (sqlite.c) on the grouped-commit databases of
 * db.c. */
#ifndef PYQ_SQLITE_H
#define PYQ_SQLITE_H

#include <lua.h>

int luaopen_pyq_sqlite (lua_State *L);
void pyq_open_sqlite (lua_State *L);   /* into package.preload */

#endif
