/* error.h -- pyq.Error, the error objects the host raises and hands to
 * scripts (error.c). */
#ifndef PYQ_ERROR_H
#define PYQ_ERROR_H

#include "core/host.h"

/* Pushes a new pyq.Error {kind, message}; the caller may set more fields
 * (method, url, status) on it before raising it with lua_error. */
void pyq_error_new (lua_State *L, const char *kind, const char *msg);
/* Raises a pyq.Error of kind; the message is lua_pushfstring's, after the
 * caller's position as luaL_error puts it. */
int pyq_raise (lua_State *L, const char *kind, const char *fmt, ...);
/* Raises a "usage" pyq.Error whose message starts with the caller's
 * position, as luaL_error's does: for bad arguments and bad calls. */
int pyq_usage (lua_State *L, const char *fmt, ...);
/* The kind of the pyq.Error at idx, or NULL when it is not one. */
const char *pyq_error_kind (lua_State *L, int idx);
/* Pushes a task outcome object ("failed", "cancelled") for the error value
 * at err_idx: {kind, message, error, index}. */
void pyq_error_push (lua_State *L, const char *kind, int err_idx,
                     lua_Integer index);
void pyq_open_error (lua_State *L);

#endif
