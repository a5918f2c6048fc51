/* store.h -- the job store: keyed tasks recorded in SQLite so that a
 * re-run skips what an earlier run finished (store.c). */
#ifndef PYQ_STORE_H
#define PYQ_STORE_H

#include <lua.h>

/* Registers the store with pyq.Queue (its options store and name) and
 * pyq.store in package.preload; after pyq_open_queue. */
void pyq_open_store (lua_State *L);
int luaopen_pyq_store (lua_State *L);

#endif
