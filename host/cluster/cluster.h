/* cluster.h -- pyq.Queue on Redis Streams: the main process's backend
 * (cluster.c); the worker role is lualib/pyq/cluster.lua. */
#ifndef PYQ_CLUSTER_H
#define PYQ_CLUSTER_H

#include <lua.h>

/* Registers the backend with pyq.Queue (its option cluster); after
 * pyq_open_queue. */
void pyq_open_cluster (lua_State *L);

#endif
