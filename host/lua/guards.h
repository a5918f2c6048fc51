/* guards.h -- coroutine, pcall/xpcall and os.exit as the host needs them
 * (guards.c). */
#ifndef PYQ_GUARDS_H
#define PYQ_GUARDS_H

#include "core/sched.h"

#define PYQ_EXITING "pyq: exiting (os.exit)"

extern const pyq_reason pyq_exit_reason;

void pyq_open_guards (lua_State *L);

#endif
