/* check.h -- argument checks and how values show in messages (check.c).
 *
 * Every Lua-facing function checks its arguments with these or with
 * luaL_argcheck/luaL_checkoption, and names itself and the argument in the
 * message: "pyq.sleep: seconds must be a non-negative number, got -1". */
#ifndef PYQ_CHECK_H
#define PYQ_CHECK_H

#include <stddef.h>
#include "core/host.h"

int pyq_checkseconds (lua_State *L, int arg, const char *fname,
                      const char *what);
int pyq_checklevel (lua_State *L, int idx, const char *fname, const char *what);
void pyq_where (lua_State *L, int level, char *buf, size_t size);
const char *pyq_got (lua_State *L, int idx);
const char *pyq_errstr (lua_State *L, int idx);

#endif
