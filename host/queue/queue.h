/* queue.h -- pyq.Queue: the queue object and its workers (queue.c). */
#ifndef PYQ_QUEUE_H
#define PYQ_QUEUE_H

#include "core/sched.h"

typedef struct pyq_queue pyq_queue;

void pyq_open_queue (lua_State *L);

#endif
