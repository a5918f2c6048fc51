/* sleep.h -- pyq.sleep, pyq.now, pyq.timeout (sleep.c). */
#ifndef PYQ_SLEEP_H
#define PYQ_SLEEP_H

#include <lua.h>

void pyq_open_time (lua_State *L);

#endif
