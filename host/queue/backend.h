/* backend.h -- where a queue's pending tasks live: the seam between the
 * queue (queue.c: the Lua object, its workers, results and counts) and a
 * store of tasks (ring.c, the in-memory ring; a Redis stream next).
 *
 * A backend is an ops table and a per-queue state that starts with a
 * pyq_backend.  The queue calls it at five points and nowhere else:
 *   push     queue:put claimed a task: keep it (the task is at tidx, its
 *            put index given).  The values a backend keeps belong to it:
 *            the ring keeps them in a Lua table in the queue's user value
 *            `slot` (given at open), so the GC sees them through the queue;
 *            the queue is at qidx in every call that takes L.
 *   pop      a worker wants the oldest task: push it (as push got it) and
 *            its put index, and return PYQ_POP_TASK; or PYQ_POP_EMPTY (the
 *            worker idles until the next push); or, for a backend that
 *            must wait (Redis XREADGROUP), arm the read and return
 *            PYQ_POP_WAIT with *ops and *on set: the worker parks through
 *            the wait protocol (pyq_park with them, core/sched.h), the
 *            read's callback buffers what it got and wakes it with
 *            pyq_wake(f, 0) (or pyq_fail), and the worker calls pop again.
 *            Closing the queue frees a worker parked there, which runs the
 *            wait's disarm: the read must be cancelled by it.
 *   settle   the task at `index` ended (outcome below; its result or error
 *            on top of L, left there).  NULL when nothing is to be done
 *            (the ring): a journal records it, Redis would XACK.
 *   drop     queue:cancel(): forget every pending task; returns how many
 *            (they are the last ones put, the queue reports them).
 *   close    the queue is closed or collected: let go of everything.  The
 *            state is not used afterwards.
 * `pending` is what push has and pop has not given yet; the queue asks it
 * after a drop, and otherwise counts its own puts and pops (join waits for
 * the tasks put through this queue, not for a shared stream's backlog).
 *
 * Results are not the backend's: the queue keeps them for join and
 * completed() whatever the backend.  An observer (a SQLite journal of
 * puts and outcomes) is a backend that wraps another: its push and settle
 * record, then call the inner one's.  queue_new picks the backend (the
 * ring, always, today): a new one adds its open function below and an
 * option there. */
#ifndef PYQ_BACKEND_H
#define PYQ_BACKEND_H

#include "core/sched.h"

enum { PYQ_POP_TASK, PYQ_POP_EMPTY, PYQ_POP_WAIT };
enum { PYQ_OUT_DONE, PYQ_OUT_FAILED, PYQ_OUT_CANCELLED };   /* a task's outcome */

typedef struct pyq_backend pyq_backend;

typedef struct pyq_backend_ops {
  const char *name;
  void (*push) (pyq_backend *b, lua_State *L, int qidx, int tidx,
                lua_Integer index);
  int (*pop) (pyq_backend *b, lua_State *L, int qidx, lua_Integer *index,
              const pyq_wait_ops **ops, void **on);
  void (*settle) (pyq_backend *b, lua_State *L, lua_Integer index,
                  int outcome);
  lua_Integer (*pending) (const pyq_backend *b);
  lua_Integer (*drop) (pyq_backend *b, lua_State *L, int qidx);
  void (*close) (pyq_backend *b, lua_State *L, int qidx);
} pyq_backend_ops;

struct pyq_backend {
  const pyq_backend_ops *ops;
};

/* The in-memory ring (ring.c): its state for the queue at qidx, keeping
 * its tasks in the queue's user value slot; NULL without memory. */
pyq_backend *pyq_ring_open (lua_State *L, int qidx, int slot);

#endif
