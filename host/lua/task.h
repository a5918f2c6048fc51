/* task.h -- task objects: pyq.async, pyq.await (task.c).
 *
 * A task is a function with its arguments (or a fresh coroutine) that a
 * queue or pyq.await runs later; it is claimed once. */
#ifndef PYQ_TASK_H
#define PYQ_TASK_H

#include "core/host.h"

int pyq_task_check (lua_State *L, int idx, const char *fname);
void pyq_task_take (lua_State *L, int idx);
int pyq_task_unpack (lua_State *L);
void pyq_task_new (lua_State *L, int nargs);
/* The name of the task at idx (made by a pyq.async(name, fn)) is pushed:
 * 1; or 0 and nothing pushed. */
int pyq_task_name (lua_State *L, int idx);
/* Pushes the function named name by pyq.async(name, fn): 1; or 0. */
int pyq_task_named (lua_State *L, const char *name);
void pyq_open_task (lua_State *L);

#endif
