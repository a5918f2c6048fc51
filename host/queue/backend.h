/* backend.h -- where a queue's pending tasks live: the seam between the
 * queue (queue.c: the Lua object, its workers, results and counts) and a
 * store of tasks (ring.c, the in-memory ring; a Redis stream next).
 *
 * A backend is an ops table and a per-queue state that starts with a
 * pyq_backend.  The queue calls it at five points and nowhere else:
 *   push     queue:put claimed a task: keep it (the task is at tidx, its
 *            put index given; kidx is its key's index, or 0 for a task
 *            without one).  The values a backend keeps belong to it:
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
 *            (the ring): a journal records it, Redis would XACK.  It
 *            returns PYQ_SETTLE_OK; PYQ_SETTLE_FAILED with an error pushed
 *            when a done task's result cannot be kept (the job store
 *            cannot encode it): the task then fails with that error; or
 *            PYQ_SETTLE_SKIPPED for a task that only gave back a recorded
 *            result (recall's stand-in): counted as skipped, not done.
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
 * record, then call the inner one's.  queue_new picks the backend: the
 * ring, or with the options `store`/`name` the job store (host/store/,
 * a layer above this one), which registers its open function with
 * pyq_queue_set_store.
 *
 * Keyed tasks (queue:put(task, { key = k })) need a backend that keeps
 * outcomes across runs, which answers two more calls (NULL elsewhere):
 *   recall   before a keyed put: PYQ_KEY_NEW (run it), PYQ_KEY_DONE (a
 *            stand-in task is pushed, a function that returns the recorded
 *            result: the queue puts it instead, and settle says skipped) or
 *            PYQ_KEY_BUSY (the key is pending or running in this queue).
 *   forget   queue:forget(key): drops the key's record; 1 if there was one.
 *   commit   a round ended (join, the end of a completed() loop): what is
 *            recorded reaches the disk now rather than at the turn's end.
 * And a backend whose pop waits answers one more (NULL elsewhere):
 *   nudge    a wrapper pushed a task of its own (the store's stand-ins,
 *            run here beside a cluster's stream): free one worker parked
 *            in pop, which calls pop again (the wrapper's comes first).
 * The key is a string at kidx. */
#ifndef PYQ_BACKEND_H
#define PYQ_BACKEND_H

#include "core/sched.h"

enum { PYQ_POP_TASK, PYQ_POP_EMPTY, PYQ_POP_WAIT };
enum { PYQ_OUT_DONE, PYQ_OUT_FAILED, PYQ_OUT_CANCELLED };   /* a task's outcome */
enum { PYQ_KEY_NEW, PYQ_KEY_DONE, PYQ_KEY_BUSY };           /* recall's answer */
enum { PYQ_SETTLE_OK, PYQ_SETTLE_FAILED, PYQ_SETTLE_SKIPPED }; /* settle's */

typedef struct pyq_backend pyq_backend;

typedef struct pyq_backend_ops {
  const char *name;
  void (*push) (pyq_backend *b, lua_State *L, int qidx, int tidx, int kidx,
                lua_Integer index);
  int (*pop) (pyq_backend *b, lua_State *L, int qidx, lua_Integer *index,
              const pyq_wait_ops **ops, void **on);
  int (*settle) (pyq_backend *b, lua_State *L, lua_Integer index,
                 int outcome);
  lua_Integer (*pending) (const pyq_backend *b);
  lua_Integer (*drop) (pyq_backend *b, lua_State *L, int qidx);
  void (*close) (pyq_backend *b, lua_State *L, int qidx);
  int (*recall) (pyq_backend *b, lua_State *L, int kidx);
  int (*forget) (pyq_backend *b, lua_State *L, int kidx);
  void (*commit) (pyq_backend *b);
  void (*nudge) (pyq_backend *b);
} pyq_backend_ops;

/* A backend that can give up (the cluster's Redis stopped answering) sets
 * `failure` to why and calls broken(b): the queue's join and close then
 * stop waiting, join raising a pyq.Error of kind "redis" with that
 * message.  The queue sets broken and queue after open. */
struct pyq_backend {
  const pyq_backend_ops *ops;
  const char *failure;   /* NULL while it works */
  void (*broken) (pyq_backend *b);
  void *queue;
};

/* The in-memory ring (ring.c): its state for the queue at qidx, keeping
 * its tasks in the queue's user value slot; NULL without memory. */
pyq_backend *pyq_ring_open (lua_State *L, int qidx, int slot);

/* Opens the cluster backend for pyq.Queue's options (the table at oidx):
 * cluster, name, visibility and cluster_timeout (host/cluster/, a layer
 * above this one), checked (usage errors name pyq.Queue and the option).
 * Raises on errors. */
typedef pyq_backend *(*pyq_store_open_fn) (lua_State *L, int oidx, int qidx,
                                           int slot);
void pyq_queue_set_cluster (pyq_host *h, pyq_store_open_fn open);
/* Opens the job store for the options `store` and `name`: checks them,
 * opens the database, and wraps inner (the cluster's backend; NULL: a
 * ring it opens for the queue at qidx in slot).  A wrapped backend's
 * failure becomes the store's.  Raises on errors (inner is then closed). */
typedef pyq_backend *(*pyq_store_wrap_fn) (lua_State *L, int oidx, int qidx,
                                           int slot, pyq_backend *inner);
void pyq_queue_set_store (pyq_host *h, pyq_store_wrap_fn open);

#endif
