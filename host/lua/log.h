/* log.h -- pyq.log (log.c). */
#ifndef PYQ_LUA_LOG_H
#define PYQ_LUA_LOG_H

#include <lua.h>

void pyq_open_log (lua_State *L);

#endif
