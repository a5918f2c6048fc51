/* error.h -- pyq.Error, the error objects the host raises and hands to
 * scripts (error.c). */
#ifndef PYQ_ERROR_H
#define PYQ_ERROR_H

#include "core/host.h"

void pyq_error_push (lua_State *L, const char *kind, int err_idx,
                     lua_Integer index);
void pyq_open_error (lua_State *L);

#endif
