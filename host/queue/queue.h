/* queue.h -- pyq.Queue: the queue object and its workers (queue.c). */
#ifndef PYQ_QUEUE_H
#define PYQ_QUEUE_H

#include "core/sched.h"

typedef struct pyq_queue pyq_queue;

void pyq_open_queue (lua_State *L);

/* In a task about to raise: the string on top (popped) is the traceback
 * exception_handler gets for that error, instead of this coroutine's (a
 * cluster's stand-in gives the one from the process that ran the task). */
void pyq_queue_traceback (lua_State *L);

#endif
