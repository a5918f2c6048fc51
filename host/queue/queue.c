/* queue.c -- pyq.Queue, the seed's worker queue.
 *
 * Pending tasks live in the queue's backend (backend.h; the in-memory ring
 * of ring.c), which keeps them in the user value Q_BACKEND.  Workers are
 * long-lived fibers that pop one task after another and call it with
 * lua_pcallk, so a task that never waits costs no coroutine switch; a
 * worker is spawned only when a task is waiting for one, and parks on the
 * idle list when the backend is empty (or ends, when many already idle).
 *
 * A task's state while it runs is its fiber's run record (core/sched.h:
 * the queue, its put index, its cancellation); the worker is only the
 * fiber that runs it.  Its end is accounted in one place (task_end): the
 * outcome counted once, its first result stored under its put index in
 * Q_RESULTS -- which is the table join returns, so collecting a million
 * results is no second pass -- a failure's pyq.Error kept in Q_ERRORS for
 * join{ all = true }, or, while a completed() loop runs, the outcome
 * appended to the Q_STREAM fifo in the order tasks finish.
 *
 * Producers that find the queue full wait on the putters list; room is
 * handed to them in order by reserving a slot before waking them.  join,
 * close, cancel and completed() wait on a list of their own until a
 * condition holds (until()), and nowhere else. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "queue.h"
#include "backend.h"
#include "core/log.h"
#include "core/timer.h"
#include "lua/check.h"
#include "lua/error.h"
#include "lua/task.h"
#include "report/report.h"

enum { Q_BACKEND = 1, Q_RESULTS, Q_HANDLER, Q_ERRORS, Q_STREAM,
       Q_NUV = Q_STREAM };

struct pyq_queue {
  pyq_job dispatch;       /* ready while tasks wait for a worker */
  pyq_link member;        /* in host->queues until closed */
  pyq_link fibers;        /* its workers */
  pyq_link idle, putters, joiners;
  pyq_link cancellers;    /* cancel() calls waiting for running tasks to end */
  pyq_link streamers;     /* a completed() loop waiting for an outcome */
  pyq_host *host;
  pyq_backend *be;        /* the pending tasks; NULL once closed */
  int ref;                /* anchors the userdata until closed */
  int log_level;
  int closed;
  int streaming;          /* a completed() loop takes the outcomes */
  int partial;            /* a loop was left early: some outcomes were given */
  lua_Integer workers, maxsize;
  lua_Integer spawned, reserved, stuck;
  lua_Integer counter;     /* puts since the last join */
  lua_Integer kept;        /* non-nil results in Q_RESULTS */
  lua_Integer unwinding;   /* cancelled running tasks not ended yet */
  lua_Integer shead, stail;   /* Q_STREAM: outcomes [shead, stail) */
  pyq_qstats *st;         /* counts; outlives the queue for the summary */
};

/* A worker: a fiber with its place among its queue's workers.  What it
 * runs is in its run record (f.run), set afresh for each task. */
typedef struct worker {
  pyq_fiber f;            /* first: a worker is its fiber */
  pyq_link member;        /* in its queue's list of workers */
  pyq_queue *queue;
} worker;

#define W(f) ((worker *)(f))

/* The fiber bits a queue owns. */
enum {
  W_BUSY = PYQ_F_OWNER,          /* worker: running a task */
  W_RESERVED = PYQ_F_OWNER << 1, /* put waiter: a slot is held for it */
  W_UNWINDING = PYQ_F_OWNER << 2, /* worker: queue:cancel() waits for its
                                    task to end */
  W_OWN_TB = PYQ_F_OWNER << 3    /* worker: its task gave the traceback of
                                    the error it raises */
};

/* The queues not yet closed, for the core's hooks; the queue metatable's
 * address, which tells a queue from other userdata without a registry
 * lookup (it is anchored in the registry for the state's life). */
typedef struct queues {
  pyq_link open;
  const void *mt;
  pyq_store_wrap_fn store_open;   /* the job store's, once registered */
  pyq_store_open_fn cluster_open; /* the cluster queue's, once registered */
} queues;

static const char queue_key = 'q';

static pyq_link *open_queues (pyq_host *h) {
  return &((queues *)h->tasks.ud)->open;
}

/* Bounds workers, maxsize and total: the ring is a Lua array. */
#define COUNT_MAX INT_MAX

/* Idle workers kept for the next tasks; a big queue gives the rest back. */
#define IDLE_KEEP 256

static pyq_queue *toqueue (lua_State *L, int idx) {
  pyq_queue *q = lua_touserdata(L, idx);
  int ok = 0;
  if (q != NULL && lua_getmetatable(L, idx)) {
    ok = lua_topointer(L, -1) == ((queues *)pyq_host_of(L)->tasks.ud)->mt;
    lua_pop(L, 1);
  }
  return ok ? q : NULL;
}

/* A wrong self raises a plain string, as every module's metamethods do
 * (tests/host/hardening_spec.lua); the queue's __close is its close. */
static pyq_queue *checkqueue (lua_State *L, const char *fname) {
  pyq_queue *q = toqueue(L, 1);
  if (q == NULL)
    luaL_error(L, "%s: expected a pyq.Queue as self, got %s (call it as "
               "queue:%s)", fname, luaL_typename(L, 1), strrchr(fname, '.') + 1);
  if (q->st == NULL)   /* reached from another finalizer after its __gc */
    luaL_error(L, "%s: the queue was collected", fname);
  return q;
}

static int queue_idle (const pyq_queue *q) {
  return q->st->running == 0 && q->st->pending == 0 && q->reserved == 0;
}

static void wake_all (pyq_link *list) {
  pyq_link *n;
  while ((n = pyq_list_shift(list)) != NULL)
    pyq_wake(pyq_container(n, pyq_fiber, wait), 0);
}

/* The queue went idle: joins return, a completed() loop ends. */
static void wake_joiners (pyq_queue *q) {
  wake_all(&q->joiners);
  wake_all(&q->streamers);
}

/* Hands free slots to waiting producers, first come first served. */
static void give_room (pyq_queue *q) {
  pyq_link *n;
  while (q->st->pending + q->reserved < q->maxsize &&
         (n = pyq_list_shift(&q->putters)) != NULL) {
    pyq_fiber *f = pyq_container(n, pyq_fiber, wait);
    if (f->run.owner == q) q->stuck--;
    f->flags |= W_RESERVED;
    q->reserved++;
    pyq_wake(f, 0);
  }
}

static void putter_disarm (pyq_fiber *f, void *on) {
  pyq_queue *q = on;
  if (f->run.owner == q) q->stuck--;
  pyq_list_remove(&f->wait);
}

/* ---- pending tasks: the backend ----------------------------------------- */

/* Gives the claimed task at idx to the backend; the queue is at index 1.
 * st->pending counts what this queue pushed and no worker popped yet (what
 * join waits for), kept here rather than asked of the backend per task. */
static void enqueue (lua_State *L, pyq_queue *q, int idx, int kidx) {
  /* counted once pushed: a put the backend refuses takes no put index */
  q->be->ops->push(q->be, L, 1, idx, kidx, q->counter + 1);
  q->counter++;
  q->st->pending++;
  q->st->put++;
  if (q->st->running < q->workers) pyq_post(q->host, &q->dispatch);
}

/* f starts the task at put index idx. */
static void task_begin (pyq_queue *q, pyq_fiber *f, lua_Integer idx) {
  q->st->pending--;
  q->st->running++;
  pyq_run_begin(f, q, idx);
  f->flags |= W_BUSY;
  give_room(q);
}

/* ---- outcomes ------------------------------------------------------------ */

/* Appends an outcome for the completed() loop; the value is on top (kept). */
static void stream_push (lua_State *L, int qidx, pyq_queue *q,
                         lua_Integer idx, int ok) {
  lua_Integer at = q->stail * 3;
  lua_getiuservalue(L, qidx, Q_STREAM);
  lua_pushinteger(L, idx);
  lua_rawseti(L, -2, at + 1);
  lua_pushboolean(L, ok);
  lua_rawseti(L, -2, at + 2);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, at + 3);
  lua_pop(L, 1);
  q->stail++;
  wake_all(&q->streamers);
}

/* Keeps the outcome on top (kept there) for join or completed(). */
static void keep (lua_State *L, int qidx, pyq_queue *q, lua_Integer idx,
                  int ok) {
  if (q->streaming) {
    stream_push(L, qidx, q, idx, ok);
  } else if (!lua_isnil(L, -1)) {
    lua_getiuservalue(L, qidx, ok ? Q_RESULTS : Q_ERRORS);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, idx);
    lua_pop(L, 1);
    if (ok) q->kept++;
  }
}

/* keep() for a result, which is taken off the stack: a task's first
 * result goes straight to the join table, in three calls. */
static void keep_result (lua_State *L, int qidx, pyq_queue *q,
                         lua_Integer idx) {
  if (q->streaming || lua_type(L, -1) == LUA_TNIL) {
    keep(L, qidx, q, idx, 1);
    lua_pop(L, 1);
    return;
  }
  lua_getiuservalue(L, qidx, Q_RESULTS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, idx);
  lua_pop(L, 1);
  q->kept++;
}

/* Drops the pending tasks as cancelled.  Their put indices are the last
 * `pending` ones; join{ all = true } gets an error for each, remembered
 * as one range rather than one entry per task. */
static lua_Integer drop_pending (lua_State *L, pyq_queue *q,
                                 const pyq_reason *why) {
  lua_Integer i, n, lo;
  if (q->be == NULL) return 0;   /* closed: nothing is pending */
  n = q->be->ops->drop(q->be, L, 1);
  lo = q->counter - n + 1;
  q->st->pending = q->be->ops->pending(q->be);   /* what it still holds */
  q->st->cancelled += n;
  if (n > 0 && q->streaming) {
    pyq_push_error(L, why);
    for (i = lo; i <= q->counter; i++) {
      pyq_error_push(L, "cancelled", -1, i);
      stream_push(L, 1, q, i, 0);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  } else if (n > 0) {
    lua_getiuservalue(L, 1, Q_ERRORS);
    if (lua_getfield(L, -1, "dropped") != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, "dropped");
    }
    i = (lua_Integer)lua_rawlen(L, -1);
    lua_pushinteger(L, lo);
    lua_rawseti(L, -2, i + 1);
    lua_pushinteger(L, q->counter);
    lua_rawseti(L, -2, i + 2);
    pyq_push_error(L, why);
    lua_rawseti(L, -2, i + 3);
    lua_pop(L, 2);
  }
  give_room(q);
  return n;
}

/* ---- a task's end ---------------------------------------------------------- */

/* Calls exception_handler(err, traceback) for the error on top (kept).  It
 * runs between two tasks and cannot wait: lua_pcall, not lua_pcallk, so a
 * wait in it raises instead of suspending the worker half-way. */
static void call_handler (lua_State *L, pyq_fiber *f) {
  lua_getiuservalue(L, 1, Q_HANDLER);
  lua_pushvalue(L, -2);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, f) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushliteral(L, "stack traceback: (not available)");
  }
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, f);
  f->flags |= PYQ_F_NOWAIT;
  if (lua_pcall(L, 2, 0, 0) != LUA_OK && !pyq_cancelled(f)) {
    f->host->unhandled++;   /* a handler that fails has not handled it */
    pyq_log(f->host, PYQ_ERROR, W(f)->queue->st->where,
            "exception_handler failed: %s", pyq_errstr(L, -1));
  }
  f->flags &= ~PYQ_F_NOWAIT;
}

/* A failure that ended the worker itself (a stray coroutine.yield, memory)
 * goes to the queue's exception_handler like any other, run on the host's
 * own thread since the worker's is gone; with the queue closed, it is
 * logged and counted as unhandled. */
static void report_escaped (pyq_host *h, pyq_queue *q, lua_State *co) {
  lua_State *H = h->L;
  int top = lua_gettop(H);
  lua_pushvalue(co, -1);
  lua_xmove(co, H, 1);   /* the error itself (a pyq.Error keeps its kind) */
  if (q->ref == LUA_NOREF) {
    h->unhandled++;
    pyq_log(h, PYQ_ERROR, q->st->where, "task failed: %s", pyq_errstr(H, -1));
    lua_settop(H, top);
    return;
  }
  lua_rawgeti(H, LUA_REGISTRYINDEX, q->ref);
  lua_getiuservalue(H, -1, Q_HANDLER);
  lua_pushvalue(H, top + 1);
  lua_pushliteral(H, "stack traceback: (not available: the task's "
                  "coroutine ended)");
  if (lua_pcall(H, 2, 0, 0) != LUA_OK) {
    h->unhandled++;
    pyq_log(h, PYQ_ERROR, q->st->where, "exception_handler failed: %s",
            pyq_errstr(H, -1));
  }
  lua_settop(H, top);
}

/* The task on f ended; its result or error is on top of L, which is the
 * worker's thread with the queue at qidx, or its dead thread (escaped:
 * the error ended the worker) with the queue at qidx or, once closed, 0.
 * The one place a task's end is accounted: its outcome counted once, kept
 * for join or completed(), told to the backend, a failure handed to the
 * exception_handler; then the worker is free and joins may return. */
static void task_end (lua_State *L, int qidx, pyq_fiber *f, int failed,
                      int escaped) {
  pyq_queue *q = W(f)->queue;
  lua_Integer idx = f->run.idx;
  int outcome = pyq_cancelled(f) ? PYQ_OUT_CANCELLED
              : failed ? PYQ_OUT_FAILED : PYQ_OUT_DONE, settled = 0;
  if (q->be && q->be->ops->settle &&
      (settled = q->be->ops->settle(q->be, L, idx, outcome)) ==
      PYQ_SETTLE_FAILED) {
    lua_replace(L, -2);   /* its result could not be kept: the error fails it */
    outcome = PYQ_OUT_FAILED;
  }
  if (outcome == PYQ_OUT_DONE) {
    if (settled == PYQ_SETTLE_SKIPPED) q->st->skipped++;
    else q->st->done++;
    if (qidx) keep_result(L, qidx, q, idx);   /* takes the result */
  } else {
    if (outcome == PYQ_OUT_FAILED) q->st->failed++;
    else q->st->cancelled++;
    if (qidx) {
      pyq_error_push(L, outcome == PYQ_OUT_FAILED ? "failed" : "cancelled", -1,
                     idx);
      keep(L, qidx, q, idx, 0);
      lua_pop(L, 1);
    }
    if (outcome == PYQ_OUT_FAILED) {
      if (escaped) report_escaped(f->host, q, L);
      else call_handler(L, f);
    }
  }
  q->st->running--;
  if ((f->flags & W_UNWINDING) && --q->unwinding == 0)
    wake_all(&q->cancellers);
  f->flags &= ~(W_BUSY | W_UNWINDING);
  pyq_run_end(f);
  if (queue_idle(q)) wake_joiners(q);
}

/* ---- workers ----------------------------------------------------------- */

static int worker_next (lua_State *L, pyq_fiber *f);

/* The task ended with status; its result or error is on top. */
static void worker_ran (lua_State *L, pyq_fiber *f, int status) {
  task_end(L, 1, f, status != LUA_OK && status != LUA_YIELD, 0);
  lua_settop(L, 2);
}

static int worker_ran_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  worker_ran(L, f, status);
  return worker_next(L, f);
}

/* Undoes a wait on one of the queue's lists (idle workers, putters,
 * joiners, cancellers, streamers). */
static void leave_list (pyq_fiber *f, void *on) {
  (void)on;
  pyq_list_remove(&f->wait);
}

static const pyq_wait_ops idle_wait = {"pyq.Queue worker", leave_list};
static const pyq_wait_ops list_wait = {"pyq.Queue", leave_list};
static const pyq_wait_ops put_wait = {"queue:put", putter_disarm};

static void worker_free (pyq_fiber *f) {
  pyq_list_remove(&W(f)->member);
  pyq_fiber_free(f);
}

static int worker_woken (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, 2);
  return worker_next(L, (pyq_fiber *)ctx);
}

/* Runs tasks until the backend has none, then parks (on the idle list, or
 * in the backend's own wait); ends once closed.  Stack: 1 the queue, 2 the
 * message handler; a popped task's function and arguments above them. */
static int worker_next (lua_State *L, pyq_fiber *f) {
  pyq_queue *q = W(f)->queue;
  for (;;) {
    const pyq_wait_ops *ops = NULL;
    void *on = NULL;
    lua_Integer idx = 0;
    int nargs;
    if (q->closed) return 0;
    switch (q->be->ops->pop(q->be, L, 1, &idx, &ops, &on)) {
    case PYQ_POP_EMPTY:
      /* this worker is idle too: beyond IDLE_KEEP idle ones, it ends */
      if (q->spawned - q->st->running > IDLE_KEEP) return 0;
      pyq_list_push(&q->idle, &f->wait);
      return pyq_park(L, f, &idle_wait, q, worker_woken);
    case PYQ_POP_WAIT:
      return pyq_park(L, f, ops, on, worker_woken);
    }
    task_begin(q, f, idx);
    nargs = pyq_task_unpack(L);
    worker_ran(L, f, lua_pcallk(L, nargs, 1, 2, (lua_KContext)f, worker_ran_k));
  }
}

/* Message handler: keeps the task's traceback for exception_handler,
 * unless the task gave one (pyq_queue_traceback). */
static int worker_msgh (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  int own;
  if (f == NULL) return 1;
  own = f->flags & W_OWN_TB;   /* this error's, set just before it */
  f->flags &= ~W_OWN_TB;
  if (own || pyq_cancelled(f)) return 1;
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, f);
  return 1;
}

void pyq_queue_traceback (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  if (f == NULL || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, f);
  f->flags |= W_OWN_TB;
}

static int worker_main (lua_State *L) {
  lua_settop(L, 1);
  lua_pushcfunction(L, worker_msgh);
  return worker_next(L, pyq_fiber_of(L));
}

/* The worker's coroutine ended: the queue closed, or an error escaped the
 * worker loop (a stray coroutine.yield, memory), which ends its task. */
static void worker_finish (pyq_fiber *f, int status) {
  pyq_queue *q = W(f)->queue;
  pyq_host *h = f->host;
  if (status != LUA_OK && (f->flags & W_BUSY)) {
    int top = 0;
    if (q->ref != LUA_NOREF) {   /* still open: keep the error for join */
      top = lua_gettop(f->L);
      lua_rawgeti(f->L, LUA_REGISTRYINDEX, q->ref);
      lua_insert(f->L, top);
    }
    task_end(f->L, top, f, 1, 1);
  }
  if (status != LUA_OK) lua_resetthread(f->L);
  q->spawned--;
  worker_free(f);
  if (!q->closed && q->st->pending > 0) pyq_post(h, &q->dispatch);
  if (queue_idle(q)) wake_joiners(q);
}

static pyq_fiber *spawn (pyq_host *h, pyq_queue *q) {
  pyq_fiber *f = pyq_fiber_new(h->L, h, sizeof(worker));
  W(f)->queue = q;
  pyq_list_init(&W(f)->member);
  f->finish = worker_finish;
  pyq_list_push(&q->fibers, &W(f)->member);
  lua_pushcfunction(f->L, worker_main);
  lua_rawgeti(f->L, LUA_REGISTRYINDEX, q->ref);
  f->nargs = 1;
  q->spawned++;
  return f;
}

/* Starts workers while tasks wait and the limit allows. */
static void dispatch (pyq_host *h, pyq_job *j) {
  pyq_queue *q = pyq_container(j, pyq_queue, dispatch);
  while (q->st->pending > 0 && q->st->running < q->workers && !q->closed) {
    pyq_link *n = pyq_list_shift(&q->idle);
    pyq_fiber *f;
    /* workers parked in a backend's wait (PYQ_POP_WAIT) are not running
     * but are there: the backend wakes them */
    if (n == NULL && q->spawned >= q->workers) break;
    f = n ? pyq_container(n, pyq_fiber, wait) : spawn(h, q);
    pyq_fiber_resume(f);
  }
}

/* ---- put ---------------------------------------------------------------- */

static int must_wait (const pyq_queue *q) {
  return q->maxsize > 0 && (q->st->pending + q->reserved >= q->maxsize ||
                            !pyq_list_empty(&q->putters));
}

static int put_woken (lua_State *L, int status, lua_KContext ctx);

static void check_open (lua_State *L, pyq_queue *q, const char *fname) {
  if (q->closed) pyq_usage(L, "%s: the queue is closed", fname);
}

/* The key at 4, for push: 0 when the put has none. */
#define KEY_IDX(L) (lua_isnil(L, 4) ? 0 : 4)

/* A keyed put (key at 4) asks the store.  A key recorded by an earlier
 * run is not run: the task at 2 (claimed first when `claim`) is replaced
 * by the store's stand-in that gives the recorded result back, which goes
 * through the queue in put order like any task (join and completed() see
 * it as if it had run) and is counted as skipped; the key is let go.
 * Returns PYQ_KEY_NEW, PYQ_KEY_DONE or PYQ_KEY_BUSY (the caller raises,
 * after handing on any slot it holds). */
static int recall (lua_State *L, pyq_queue *q, int claim) {
  int r;
  if (lua_isnil(L, 4)) return PYQ_KEY_NEW;
  if ((r = q->be->ops->recall(q->be, L, 4)) != PYQ_KEY_DONE) return r;
  if (claim) pyq_task_take(L, 2);
  lua_replace(L, 2);
  lua_pushnil(L);
  lua_replace(L, 4);
  return r;
}

static int key_busy (lua_State *L) {
  return pyq_usage(L, "pyq.Queue.put: key %s is already pending or running in "
                   "this queue (a key runs once at a time)", pyq_got(L, 4));
}

static int put_or_wait (lua_State *L, pyq_queue *q) {
  pyq_fiber *f;
  if (!must_wait(q)) {
    enqueue(L, q, 2, KEY_IDX(L));
    return 0;
  }
  f = pyq_fiber_check(L, "pyq.Queue.put");
  if (f->run.owner == q && (f->flags & W_BUSY) && q->stuck + 1 >= q->st->running &&
      q->st->running >= q->workers)
  {   /* with the caller's position, as a usage error has */
    luaL_where(L, 1);
    lua_pushliteral(L, "pyq.Queue.put: deadlock: the queue is full and every "
                    "worker is waiting to put into it (raise maxsize, use "
                    "maxsize = 0, or put from outside the queue)");
    lua_concat(L, 2);
    pyq_error_new(L, "deadlock", lua_tostring(L, -1));
    return lua_error(L);
  }
  if (f->run.owner == q) q->stuck++;
  pyq_list_push(&q->putters, &f->wait);
  return pyq_park(L, f, &put_wait, q, put_woken);
}

static int put_woken (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = (pyq_fiber *)ctx;
  pyq_queue *q = lua_touserdata(L, 1);
  int ok = pyq_resumed(L, f), reserved = f->flags & W_RESERVED;
  (void)status;
  if (reserved) {
    f->flags &= ~W_RESERVED;
    q->reserved--;
  }
  if (!ok || q->closed) {
    if (reserved) give_room(q);
    if (!ok) return lua_error(L);
    check_open(L, q, "pyq.Queue.put");
  }
  lua_settop(L, 4);
  if (recall(L, q, 0) == PYQ_KEY_BUSY) {   /* put meanwhile by another */
    if (reserved) give_room(q);
    return key_busy(L);
  }
  enqueue(L, q, 2, KEY_IDX(L));
  return 0;
}

static int put_delayed (lua_State *L, int status, lua_KContext ctx) {
  pyq_queue *q = lua_touserdata(L, 1);
  (void)status;
  if (!pyq_resumed(L, (pyq_fiber *)ctx)) return lua_error(L);
  lua_settop(L, 4);
  check_open(L, q, "pyq.Queue.put");
  if (recall(L, q, 0) == PYQ_KEY_BUSY) return key_busy(L);
  return put_or_wait(L, q);
}

/* put(task, { key = k, delay = s }): leaves the delay at 3 and the key at
 * 4 (nil when absent), as put(task, delay) has them. */
static void put_options (lua_State *L, pyq_queue *q) {
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    lua_pop(L, 1);
    if (k == NULL || (strcmp(k, "key") != 0 && strcmp(k, "delay") != 0))
      pyq_usage(L, "pyq.Queue.put: unknown option %s (expected key or delay)",
                pyq_got(L, -1));
  }
  lua_getfield(L, 3, "key");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
      pyq_usage(L, "pyq.Queue.put: key must be a non-empty string, got %s",
                pyq_got(L, -1));
    if (q->be != NULL && q->be->ops->recall == NULL)
      pyq_usage(L, "pyq.Queue.put: key needs a queue with a store "
                "(pyq.Queue{ store = path })");
  }
  lua_getfield(L, 3, "delay");
  lua_replace(L, 3);
}

static int queue_put (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.put");
  int delayed;
  lua_settop(L, 3);
  pyq_task_check(L, 2, "pyq.Queue.put");
  if (lua_type(L, 3) == LUA_TTABLE) put_options(L, q);
  else lua_pushnil(L);   /* no key */
  delayed = lua_type(L, 3) != LUA_TNIL;
  if (delayed) pyq_checkseconds(L, 3, "pyq.Queue.put", "delay");
  check_open(L, q, "pyq.Queue.put");
  switch (recall(L, q, 1)) {   /* before the delay: a skipped put has none */
  case PYQ_KEY_BUSY: return key_busy(L);
  case PYQ_KEY_DONE: return put_or_wait(L, q);
  }
  pyq_task_take(L, 2);
  if (delayed && lua_tonumber(L, 3) > 0) {
    pyq_fiber *f = pyq_fiber_check(L, "pyq.Queue.put");
    return pyq_sleep_park(L, f, lua_tonumber(L, 3), put_delayed);
  }
  return put_or_wait(L, q);
}

/* ---- waiting until: join, close, cancel, completed() ------------------- */

/* A wait on one of the queue's lists until a condition holds, then what
 * follows it; the four calls that wait for the queue's tasks are these,
 * and `until` is the only place they park.  The continuation checks again,
 * since the state may have changed between the wake-up and the resume. */
typedef struct waiter {
  const char *fname;
  size_t list;                                 /* offsetof(pyq_queue, ...) */
  int (*ready) (const pyq_queue *q);
  int (*then) (lua_State *L, pyq_queue *q);
  int (*failed) (lua_State *L, pyq_queue *q);  /* the wait raised; or NULL */
  int top;                                     /* the call's arguments */
  lua_KFunction k;                             /* until_k with this */
} waiter;

static int until (lua_State *L, pyq_queue *q, const waiter *w) {
  pyq_fiber *f;
  if (w->ready(q)) return w->then(L, q);
  f = pyq_fiber_check(L, w->fname);
  pyq_list_push((pyq_link *)((char *)q + w->list), &f->wait);
  return pyq_park(L, f, &list_wait, NULL, w->k);
}

static int until_k (lua_State *L, const waiter *w) {
  pyq_queue *q = lua_touserdata(L, 1);
  if (!pyq_resumed(L, pyq_fiber_of(L)))
    return w->failed ? w->failed(L, q) : lua_error(L);
  lua_settop(L, w->top);
  return until(L, q, w);
}

static lua_Integer cancel (lua_State *L, pyq_queue *q, const pyq_reason *why);

/* The backend gave up (backend.h): joins and closes stop waiting. */
static int broken (const pyq_queue *q) {
  return q->be != NULL && q->be->failure != NULL;
}

static void queue_broken (pyq_backend *b) {
  wake_joiners(b->queue);
}

static int idle (const pyq_queue *q) { return queue_idle(q) || broken(q); }

static int own_task (lua_State *L, pyq_queue *q) {
  pyq_fiber *f = pyq_fiber_of(L);
  return f != NULL && f->run.owner == q && (f->flags & W_BUSY);
}

static void check_not_own (lua_State *L, pyq_queue *q, const char *fname) {
  if (own_task(L, q))
    pyq_usage(L, "%s: called from one of the queue's own tasks, which it "
              "would wait for forever", fname);
}

/* ---- join ----------------------------------------------------------------- */

static const char *const type_names[] = {
  "nil", "boolean", "number", "string", "table", "function", "thread",
  "userdata", NULL
};

/* Starts a new round: what join and completed() give is the tasks put
 * from here on.  The queue is at index 1. */
static void round_reset (lua_State *L, pyq_queue *q) {
  if (q->be && q->be->ops->commit) q->be->ops->commit(q->be);
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_RESULTS);
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_ERRORS);
  q->counter = 0;
  q->kept = 0;
  q->partial = 0;
}

/* Fills out[lo..hi] (out at index out) with "cancelled" errors for the
 * pending tasks cancel() dropped, remembered in Q_ERRORS.dropped as
 * ranges. */
static void fill_dropped (lua_State *L, int out) {
  lua_Integer r, n, i;
  lua_getiuservalue(L, 1, Q_ERRORS);
  if (lua_getfield(L, -1, "dropped") != LUA_TTABLE) {
    lua_pop(L, 2);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (r = 1; r + 2 <= n; r += 3) {
    lua_Integer lo, hi;
    lua_rawgeti(L, -1, r);
    lua_rawgeti(L, -2, r + 1);
    lua_rawgeti(L, -3, r + 2);
    lo = lua_tointeger(L, -3);
    hi = lua_tointeger(L, -2);
    for (i = lo; i <= hi; i++) {
      pyq_error_push(L, "cancelled", -1, i);
      lua_rawseti(L, out, i);
    }
    lua_pop(L, 3);
  }
  lua_pop(L, 2);
}

/* Returns the results in put order and starts a new round.  Stack: 1 the
 * queue, 2 the type name or nil, 3 all.  With all, one entry per put (n
 * of them): the result, nil, or a pyq.Error; else the non-nil results.
 * Q_RESULTS already holds each result under its put index, so it is the
 * table returned: with every task's result there (kept == counter) a plain
 * join does nothing more; otherwise the results move down over the holes,
 * or join{ all = true } adds the errors.  The types are checked before
 * anything is changed, so a mismatch raises and the results stay for the
 * next join. */
static int collect (lua_State *L, pyq_queue *q) {
  lua_Integer i, n = 0, count = q->counter;
  const char *want = lua_tostring(L, 2);
  int all = lua_toboolean(L, 3);
  lua_settop(L, 3);
  if (broken(q)) {   /* the tasks are lost: cancel them, raise why */
    pyq_error_new(L, "redis", q->be->failure);
    cancel(L, q, &pyq_cancelled_reason);
    return lua_error(L);
  }
  lua_getiuservalue(L, 1, Q_RESULTS);                      /* 4 */
  for (i = 1; want && i <= count; i++) {
    int t = lua_rawgeti(L, 4, i);
    lua_pop(L, 1);
    if (t != LUA_TNIL && strcmp(lua_typename(L, t), want) != 0) {
      lua_rawgeti(L, 4, i);
      return pyq_usage(L, "pyq.Queue.join: result of task %d is a %s, "
                       "expected %s (the results are kept)", (int)i,
                       luaL_typename(L, -1), want);
    }
  }
  if (all) {
    if (q->kept < count) {
      lua_getiuservalue(L, 1, Q_ERRORS);                   /* 5 */
      lua_pushnil(L);
      while (lua_next(L, 5)) {
        if (lua_isinteger(L, -2)) {
          lua_pushvalue(L, -2);
          lua_insert(L, -2);
          lua_rawset(L, 4);
        } else {
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
      fill_dropped(L, 4);
    }
    lua_pushinteger(L, count);
    lua_setfield(L, 4, "n");
  } else if (q->kept < count) {
    for (i = 1; i <= count; i++) {
      if (lua_rawgeti(L, 4, i) == LUA_TNIL) lua_pop(L, 1);
      else if (++n < i) lua_rawseti(L, 4, n);
      else lua_pop(L, 1);
    }
    for (i = n + 1; i <= count; i++) {
      lua_pushnil(L);
      lua_rawseti(L, 4, i);
    }
  }
  round_reset(L, q);
  return 1;
}

static int join_k (lua_State *L, int status, lua_KContext ctx);

static const waiter join_wait = {
  "pyq.Queue.join", offsetof(pyq_queue, joiners), idle, collect, NULL, 3,
  join_k
};

static int join_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return until_k(L, &join_wait);
}

static void check_type_name (lua_State *L, int idx) {
  const char *t = lua_tostring(L, idx);
  int i;
  for (i = 0; t && lua_type(L, idx) == LUA_TSTRING && type_names[i]; i++)
    if (strcmp(type_names[i], t) == 0) return;
  pyq_usage(L, "pyq.Queue.join: type_name must be a type() name such as "
            "\"string\" or \"table\", got %s", t ? t : luaL_typename(L, idx));
}

/* join([type_name]) or join{ all = bool, type = type_name }: leaves the
 * type name (or nil) at 2 and all at 3. */
static void join_args (lua_State *L) {
  lua_settop(L, 2);
  if (lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      lua_pop(L, 1);
      if (k == NULL || (strcmp(k, "all") != 0 && strcmp(k, "type") != 0))
        pyq_usage(L, "pyq.Queue.join: unknown option '%s' (expected all "
                  "or type)", luaL_tolstring(L, -1, NULL));
    }
    if (lua_getfield(L, 2, "all") != LUA_TNIL && !lua_isboolean(L, -1))
      pyq_usage(L, "pyq.Queue.join: all must be a boolean, got %s",
                luaL_typename(L, -1));
    lua_getfield(L, 2, "type");
    lua_replace(L, 2);
    lua_pushboolean(L, lua_toboolean(L, 3));
    lua_replace(L, 3);
  } else {
    lua_pushboolean(L, 0);
  }
  if (!lua_isnil(L, 2)) check_type_name(L, 2);
}

static int queue_join (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.join");
  join_args(L);
  check_not_own(L, q, "pyq.Queue.join");
  return until(L, q, &join_wait);
}

/* ---- completed(): outcomes in the order they finish ------------------- */

/* Moves the outcomes of the round's finished tasks into the stream, in put
 * order.  A task that returned nil left nothing behind, but it is known to
 * have finished: its index is neither pending (the last `pending` ones) nor
 * held by a busy worker. */
static void stream_start (lua_State *L, pyq_queue *q) {
  lua_Integer i, last = q->counter - q->st->pending;
  pyq_link *l;
  lua_getiuservalue(L, 1, Q_RESULTS);      /* 2 */
  lua_getiuservalue(L, 1, Q_ERRORS);       /* 3 */
  lua_newtable(L);                         /* 4: dropped, then busy */
  fill_dropped(L, 4);
  for (l = q->fibers.next; l != &q->fibers; l = l->next) {
    pyq_fiber *f = &pyq_container(l, worker, member)->f;
    if (f->flags & W_BUSY) {
      lua_pushboolean(L, 1);
      lua_rawseti(L, 4, f->run.idx);
    }
  }
  q->streaming = 1;
  q->shead = q->stail = 0;
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_STREAM);
  for (i = 1; i <= last; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TNIL) {
      stream_push(L, 1, q, i, 1);
    } else if (lua_rawgeti(L, 3, i) != LUA_TNIL) {
      stream_push(L, 1, q, i, 0);
    } else if (lua_rawgeti(L, 4, i) == LUA_TTABLE) {
      stream_push(L, 1, q, i, 0);
    } else if (lua_isnil(L, -1) && !q->partial) {
      stream_push(L, 1, q, i, 1);   /* finished with nil */
    }
    lua_settop(L, 4);
  }
  lua_pop(L, 3);
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_RESULTS);
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_ERRORS);
  q->kept = 0;
}

/* The loop ended or was left: outcomes not taken go back to join. */
static void stream_stop (lua_State *L, pyq_queue *q) {
  lua_Integer at;
  if (!q->streaming) return;
  q->streaming = 0;
  lua_getiuservalue(L, 1, Q_STREAM);
  for (at = q->shead; at < q->stail; at++) {
    lua_rawgeti(L, -1, at * 3 + 1);
    lua_rawgeti(L, -2, at * 3 + 2);
    lua_rawgeti(L, -3, at * 3 + 3);
    keep(L, 1, q, lua_tointeger(L, -3), lua_toboolean(L, -2));
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
  q->shead = q->stail = 0;
  lua_newtable(L);
  lua_setiuservalue(L, 1, Q_STREAM);
}

/* An outcome to give, or the round is over. */
static int stream_ready (const pyq_queue *q) {
  return !q->streaming || q->shead < q->stail || queue_idle(q);
}

/* Gives the next outcome: i, ok, value; nothing once the queue is idle and
 * every outcome was given, which ends the round as join does. */
static int stream_give (lua_State *L, pyq_queue *q) {
  lua_Integer at;
  if (!q->streaming) return 0;
  if (q->shead == q->stail) {
    stream_stop(L, q);
    round_reset(L, q);
    return 0;
  }
  at = q->shead++;
  lua_getiuservalue(L, 1, Q_STREAM);
  lua_rawgeti(L, 2, at * 3 + 1);
  lua_rawgeti(L, 2, at * 3 + 2);
  lua_rawgeti(L, 2, at * 3 + 3);
  lua_pushnil(L);   /* let the value go */
  lua_rawseti(L, 2, at * 3 + 3);
  if (q->shead == q->stail) {   /* drained: start the fifo afresh */
    q->shead = q->stail = 0;
    lua_newtable(L);
    lua_setiuservalue(L, 1, Q_STREAM);
  }
  return 3;
}

static int completed_k (lua_State *L, int status, lua_KContext ctx);

static const waiter completed_wait = {
  "pyq.Queue.completed", offsetof(pyq_queue, streamers), stream_ready,
  stream_give, NULL, 1, completed_k
};

static int completed_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return until_k(L, &completed_wait);
}

/* The loop's iterator: i, ok, value of the next task to finish. */
static int completed_next (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.completed");
  lua_settop(L, 1);
  return until(L, q, &completed_wait);
}

/* The loop was left early (break, an error): what it did not take goes
 * back to join; a later loop in the same round cannot tell the tasks it
 * gave from those that returned nil, so it gives only kept outcomes. */
static int completed_close (lua_State *L) {
  pyq_queue *q;
  if (!lua_istable(L, 1))
    return luaL_error(L, "pyq.Queue.completed: expected the loop's closing "
                      "value, got %s", luaL_typename(L, 1));
  lua_rawgeti(L, 1, 1);
  lua_replace(L, 1);
  if ((q = toqueue(L, 1)) != NULL && q->streaming) {
    stream_stop(L, q);
    q->partial = 1;
  }
  return 0;
}

static const char completed_key = 'c';

/* for i, ok, value in queue:completed() do ... end */
static int queue_completed (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.completed");
  lua_settop(L, 1);
  check_not_own(L, q, "pyq.Queue.completed");
  if (q->streaming)
    return pyq_usage(L, "pyq.Queue.completed: another completed() loop "
                     "over this queue is running");
  stream_start(L, q);
  lua_pushcfunction(L, completed_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_createtable(L, 1, 0);   /* the loop's closing value */
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &completed_key);
  lua_setmetatable(L, -2);
  return 4;
}

/* Frees the workers not running a task: idle ones, and any parked in a
 * backend's wait (freeing a parked fiber disarms its wait). */
static void stop_workers (pyq_queue *q) {
  pyq_link *l = q->fibers.next;
  while (l != &q->fibers) {
    pyq_fiber *f = &pyq_container(l, worker, member)->f;
    l = l->next;
    if (!(f->flags & W_BUSY) && (f->flags & PYQ_F_PARKED)) {
      q->spawned--;
      worker_free(f);
    }
  }
}

static const pyq_reason put_closed = {"usage",
  "pyq.Queue.put: the queue is closed"};

/* The queue takes no more puts and lets its backend go; the queue is at
 * index 1. */
static void mark_closed (lua_State *L, pyq_queue *q) {
  q->closed = 1;
  q->streaming = 0;
  pyq_list_remove(&q->dispatch.link);
  pyq_list_remove(&q->member);
  while (!pyq_list_empty(&q->putters))
    pyq_fail(pyq_container(q->putters.next, pyq_fiber, wait), &put_closed);
  wake_all(&q->streamers);
  stop_workers(q);
  if (q->be) q->be->ops->close(q->be, L, 1);
  q->be = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, q->ref);
  q->ref = LUA_NOREF;
  pyq_report_closed(q->host, q->st);
}

/* Drops the pending tasks and cancels the running ones at their current
 * wait; returns how many.  The queue is at index 1. */
static lua_Integer cancel (lua_State *L, pyq_queue *q, const pyq_reason *why) {
  lua_Integer n = drop_pending(L, q, why);
  pyq_link *l;
  for (l = q->fibers.next; l != &q->fibers; l = l->next) {
    pyq_fiber *f = &pyq_container(l, worker, member)->f;
    if ((f->flags & W_BUSY) && !pyq_cancelled(f)) {
      pyq_cancel(f, why);
      f->flags |= W_UNWINDING;
      q->unwinding++;
      n++;
    }
  }
  if (queue_idle(q)) wake_joiners(q);
  return n;
}

/* Every task has ended: the round is dropped and the workers stop. */
static int close_finish (lua_State *L, pyq_queue *q) {
  if (q->closed) return 0;
  round_reset(L, q);
  mark_closed(L, q);
  if (q->log_level > 0)
    pyq_log(q->host, q->log_level, q->st->where, "joined %d workers",
            (int)q->workers);
  return 0;
}

/* The closing call was cancelled while it waited: the queue is cancelled
 * and closed, and the error goes on. */
static int close_failed (lua_State *L, pyq_queue *q) {
  if (!q->closed) {
    cancel(L, q, &pyq_cancelled_reason);
    mark_closed(L, q);
  }
  return lua_error(L);
}

static int closed_or_idle (const pyq_queue *q) {
  return q->closed || queue_idle(q) || broken(q);
}

static int close_k (lua_State *L, int status, lua_KContext ctx);

static const waiter close_wait = {
  "pyq.Queue.close", offsetof(pyq_queue, joiners), closed_or_idle,
  close_finish, close_failed, 1, close_k
};

static int close_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return until_k(L, &close_wait);
}

/* __close(q, err) and queue:close(): joins (results dropped) and stops the
 * workers; leaving by an error cancels instead, without waiting, since the
 * error may be unwinding a dead coroutine where nothing can yield. */
static int queue_close (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.close");
  if (q->closed) return 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = cancel(L, q, &pyq_cancelled_reason);
    mark_closed(L, q);
    if (n > 0)
      pyq_log(q->host, PYQ_WARNING, q->st->where, "cancelled %d tasks: the "
              "queue's scope was left by an error: %s", (int)n,
              pyq_errstr(L, 2));
    return 0;
  }
  lua_settop(L, 1);
  check_not_own(L, q, "pyq.Queue.close");
  return until(L, q, &close_wait);
}

static int unwound (const pyq_queue *q) { return q->unwinding == 0; }
static int cancel_done (lua_State *L, pyq_queue *q) { (void)L; (void)q; return 1; }

static int cancel_k (lua_State *L, int status, lua_KContext ctx);

static const waiter cancel_wait = {
  "pyq.Queue.cancel", offsetof(pyq_queue, cancellers), unwound, cancel_done,
  NULL, 2, cancel_k
};

static int cancel_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return until_k(L, &cancel_wait);
}

/* Returns once the cancelled running tasks have unwound (their <close>
 * variables closed, counted as cancelled), when the caller can wait; from
 * one of the queue's own tasks, an exception handler, a cancelled task or
 * where nothing can suspend, it returns at once and they unwind at their
 * next wait. */
static int queue_cancel (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.cancel");
  pyq_fiber *f = pyq_fiber_of(L);
  lua_settop(L, 1);
  lua_pushinteger(L, cancel(L, q, &pyq_cancelled_reason));
  if (q->unwinding == 0 || f == NULL || !lua_isyieldable(L) || own_task(L, q) ||
      pyq_cancelled(f) || (f->flags & PYQ_F_NOWAIT))
    return 1;
  return until(L, q, &cancel_wait);
}

/* queue:forget(key): the store drops the key's record, so a later put of
 * it runs; true if there was one. */
static int queue_forget (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.forget");
  lua_settop(L, 2);
  if (lua_type(L, 2) != LUA_TSTRING || lua_rawlen(L, 2) == 0)
    return pyq_usage(L, "pyq.Queue.forget: key must be a non-empty string, "
                     "got %s", pyq_got(L, 2));
  check_open(L, q, "pyq.Queue.forget");
  if (q->be->ops->forget == NULL)
    return pyq_usage(L, "pyq.Queue.forget: the queue has no store "
                     "(pyq.Queue{ store = path })");
  lua_pushboolean(L, q->be->ops->forget(q->be, L, 2));
  return 1;
}

/* ---- creation and fields ---------------------------------------------- */

/* Logs the failure, and counts it: a job with failures nobody handled
 * exits 3. */
static int default_handler (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  pyq_host *h = pyq_host_of(L);
  const char *msg = pyq_errstr(L, 1);
  h->unhandled++;
  pyq_log(h, PYQ_WARNING, f && f->run.owner ? ((pyq_queue *)f->run.owner)->st->where : "pyq.Queue",
          "task failed: %s\n%s", msg, luaL_optstring(L, 2, ""));
  return 0;
}

static void check_handler (lua_State *L, int idx, const char *fname) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  pyq_usage(L, "%s: exception_handler must be a function, got %s", fname,
            luaL_typename(L, idx));
}

static lua_Integer opt_int (lua_State *L, const char *key, lua_Integer dflt,
                            lua_Integer min, const char *rule) {
  int isint;
  lua_Integer v;
  if (lua_getfield(L, 1, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  v = lua_tointegerx(L, -1, &isint);
  if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < min)
    pyq_usage(L, "pyq.Queue: %s must be %s, got %s", key, rule,
              pyq_got(L, -1));
  if (v > COUNT_MAX)
    pyq_usage(L, "pyq.Queue: %s must be at most %d, got %s", key, COUNT_MAX,
               lua_tostring(L, -1));
  lua_pop(L, 1);
  return v;
}

static void check_keys (lua_State *L) {
  static const char *const known[] = {
    "workers", "maxsize", "log_level", "exception_handler", "progress",
    "total", "store", "name", "cluster", "visibility", "cluster_timeout",
    NULL
  };
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int i;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      pyq_usage(L, "pyq.Queue: option names must be strings, got %s",
                luaL_typename(L, -1));
    for (i = 0; known[i]; i++)
      if (strcmp(known[i], lua_tostring(L, -1)) == 0) break;
    if (!known[i])
      pyq_usage(L, "pyq.Queue: unknown option '%s' (expected workers, "
                "maxsize, log_level, exception_handler, progress, total, "
                "store, name, cluster, visibility or cluster_timeout)", lua_tostring(L, -1));
  }
}

static int queue_new (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  lua_Integer workers, maxsize, total;
  int log_level = 0, progress;
  pyq_queue *q;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  if (lua_type(L, 1) != LUA_TTABLE)
    return pyq_usage(L, "pyq.Queue: expected a table of options, got %s",
                     luaL_typename(L, 1));
  lua_settop(L, 1);
  check_keys(L);
  workers = opt_int(L, "workers", 25, 1, "an integer greater than 0");
  /* a cluster's maxsize counts tasks anywhere: by default room for about
   * ten processes' workers, busy and with as many waiting */
  lua_getfield(L, 1, "cluster");
  maxsize = workers > COUNT_MAX / 20 ? COUNT_MAX
          : workers * (lua_isnil(L, -1) ? 2 : 20);
  lua_pop(L, 1);
  maxsize = opt_int(L, "maxsize", maxsize, 0,
                    "nil, 0 (unbounded) or an integer greater than 0");
  if (lua_getfield(L, 1, "log_level") != LUA_TNIL)
    log_level = pyq_checklevel(L, -1, "pyq.Queue", "log_level");
  lua_pop(L, 1);
  total = opt_int(L, "total", 0, 1, "an integer greater than 0");
  lua_getfield(L, 1, "progress");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    pyq_usage(L, "pyq.Queue: progress must be a boolean, got %s",
               luaL_typename(L, -1));
  progress = lua_toboolean(L, -1) || h->progress_all;
  lua_pop(L, 1);
  lua_getfield(L, 1, "exception_handler");
  check_handler(L, 2, "pyq.Queue");
  if (lua_isnil(L, 2)) {
    lua_pop(L, 1);
    lua_pushcfunction(L, default_handler);
  }
  q = lua_newuserdatauv(L, sizeof *q, Q_NUV);
  memset(q, 0, sizeof *q);
  if (lua_getfield(L, 1, "cluster") != LUA_TNIL) {
    pyq_store_open_fn open = ((queues *)h->tasks.ud)->cluster_open;
    pyq_store_wrap_fn wrap = ((queues *)h->tasks.ud)->store_open;
    lua_settop(L, 3);
    if (open == NULL)
      pyq_usage(L, "pyq.Queue: cluster is not available in this host");
    if (lua_getfield(L, 1, "store") != LUA_TNIL && wrap == NULL)
      pyq_usage(L, "pyq.Queue: store is not available in this host");
    lua_settop(L, 3);
    q->be = open(L, 1, 3, Q_BACKEND);   /* checks its options; may raise */
    if (q->be && wrap && lua_getfield(L, 1, "store") != LUA_TNIL) {
      lua_settop(L, 3);
      q->be = wrap(L, 1, 3, Q_BACKEND, q->be);   /* keyed tasks */
    }
    lua_settop(L, 3);
  } else if (lua_getfield(L, 1, "visibility") != LUA_TNIL) {
    pyq_usage(L, "pyq.Queue: visibility needs cluster (a redis:// URL)");
  } else if (lua_getfield(L, 1, "cluster_timeout") != LUA_TNIL) {
    pyq_usage(L, "pyq.Queue: cluster_timeout needs cluster (a redis:// URL)");
  } else if (lua_getfield(L, 1, "store") != LUA_TNIL ||
      lua_getfield(L, 1, "name") != LUA_TNIL) {
    pyq_store_wrap_fn open = ((queues *)h->tasks.ud)->store_open;
    lua_settop(L, 3);
    if (open == NULL)
      pyq_usage(L, "pyq.Queue: store is not available in this host");
    q->be = open(L, 1, 3, Q_BACKEND, NULL);   /* checks store and name */
  } else {
    lua_settop(L, 3);
    q->be = pyq_ring_open(L, 3, Q_BACKEND);
  }
  if (q->be == NULL) luaL_error(L, "not enough memory");
  q->be->broken = queue_broken;
  q->be->queue = q;
  if ((q->st = pyq_report_queue(h)) == NULL) luaL_error(L, "not enough memory");
  q->st->total = total;
  q->host = h;
  q->workers = workers;
  q->maxsize = maxsize;
  q->log_level = log_level;
  q->dispatch.run = dispatch;
  pyq_list_init(&q->dispatch.link);
  pyq_list_init(&q->fibers);
  pyq_list_init(&q->idle);
  pyq_list_init(&q->putters);
  pyq_list_init(&q->joiners);
  pyq_list_init(&q->cancellers);
  pyq_list_init(&q->streamers);
  pyq_list_push(open_queues(h), &q->member);
  q->ref = LUA_NOREF;
  pyq_where(L, 1, q->st->where, sizeof q->st->where);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &queue_key);
  lua_setmetatable(L, -2);
  lua_rotate(L, -2, 1);
  lua_setiuservalue(L, -2, Q_HANDLER);
  lua_newtable(L);
  lua_setiuservalue(L, -2, Q_RESULTS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, Q_ERRORS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, Q_STREAM);
  lua_pushvalue(L, -1);
  q->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (progress) pyq_progress_watch(h, q->st);
  if (log_level > 0)
    pyq_log(h, log_level, q->st->where, "spawned %d workers", (int)workers);
  return 1;
}

/* q.name: a method (every queue:put goes through here, so before the
 * check of self, which giving a method needs not: the method checks it),
 * else a field. */
static int queue_index (lua_State *L) {
  pyq_queue *q;
  const char *k;
  lua_Integer v;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  q = checkqueue(L, "pyq.Queue.__index");
  k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "exception_handler") == 0) {
    lua_getiuservalue(L, 1, Q_HANDLER);
    return 1;
  }
  if (strcmp(k, "closed") == 0) {
    lua_pushboolean(L, q->closed);
    return 1;
  }
  if (strcmp(k, "workers_num") == 0) v = q->workers;
  else if (strcmp(k, "maxsize") == 0) v = q->maxsize;
  else if (strcmp(k, "log_level") == 0) v = q->log_level;
  else if (strcmp(k, "counter") == 0) v = q->counter;
  else if (strcmp(k, "pending") == 0) v = q->st->pending;
  else if (strcmp(k, "running") == 0) v = q->st->running;
  else if (strcmp(k, "done") == 0) v = q->st->done;
  else if (strcmp(k, "failed") == 0) v = q->st->failed;
  else if (strcmp(k, "cancelled") == 0) v = q->st->cancelled;
  else if (strcmp(k, "skipped") == 0) v = q->st->skipped;
  else if (strcmp(k, "puts") == 0) v = q->st->put;
  else if (strcmp(k, "total") == 0) v = q->st->total;
  else return 0;
  lua_pushinteger(L, v);
  return 1;
}

static int queue_newindex (lua_State *L) {
  const char *k;
  checkqueue(L, "pyq.Queue.__newindex");
  if (lua_type(L, 2) != LUA_TSTRING)
    return pyq_usage(L, "pyq.Queue: fields are named by strings, got %s",
                     luaL_typename(L, 2));
  k = lua_tostring(L, 2);
  if (strcmp(k, "exception_handler") != 0)
    return pyq_usage(L, "pyq.Queue: field '%s' is read-only", k);
  check_handler(L, 3, "pyq.Queue");
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) lua_pushcfunction(L, default_handler);
  lua_setiuservalue(L, 1, Q_HANDLER);
  return 0;
}

static int queue_len (lua_State *L) {
  lua_pushinteger(L, checkqueue(L, "pyq.Queue.__len")->st->pending);
  return 1;
}

/* The queue is garbage: its record goes to the report's totals (and is
 * never touched again).  At exit, lua_close collects queues never closed
 * too. */
static int queue_gc (lua_State *L) {
  pyq_queue *q = toqueue(L, 1);
  if (q == NULL)
    return luaL_error(L, "pyq.Queue.__gc: expected a pyq.Queue, got %s",
                      luaL_typename(L, 1));
  if (q->be) q->be->ops->close(q->be, L, 1);
  q->be = NULL;
  if (q->st == NULL) return 0;
  pyq_list_remove(&q->member);
  pyq_list_remove(&q->dispatch.link);
  pyq_report_release(q->host, q->st);
  q->st = NULL;
  return 0;
}

static int queue_tostring (lua_State *L) {
  pyq_queue *q = checkqueue(L, "pyq.Queue.__tostring");
  lua_pushfstring(L, "pyq.Queue (%s, %d workers, %d pending, %d running%s)",
                  q->st->where, (int)q->workers, (int)q->st->pending,
                  (int)q->st->running, q->closed ? ", closed" : "");
  return 1;
}

/* Cancels the busy tasks of open queues that nothing can wake. */
static int unstick_queues (pyq_host *h) {
  int n = 0;
  pyq_link *ql, *fl;
  for (ql = open_queues(h)->next; ql != open_queues(h); ql = ql->next) {
    pyq_queue *q = pyq_container(ql, pyq_queue, member);
    for (fl = q->fibers.next; fl != &q->fibers; fl = fl->next) {
      pyq_fiber *f = &pyq_container(fl, worker, member)->f;
      if ((f->flags & (W_BUSY | PYQ_F_PARKED)) ==
          (W_BUSY | PYQ_F_PARKED)) {
        pyq_log(h, PYQ_ERROR, q->st->where, "a task waits for something that "
                "can never happen; cancelling it");
        pyq_cancel(f, &pyq_deadlock_reason);
        n++;
      }
    }
  }
  return n;
}

static int cancel_queues (pyq_host *h, const pyq_reason *why) {
  pyq_link *l;
  int n = 0;
  for (l = open_queues(h)->next; l != open_queues(h); l = l->next) {
    pyq_queue *q = pyq_container(l, pyq_queue, member);
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, q->ref);
    lua_insert(h->L, 1);
    n += (int)cancel(h->L, q, why);
    lua_remove(h->L, 1);
  }
  return n;
}

/* Workers still alive: for the leak check at exit. */
static int live_workers (pyq_host *h) {
  int n = 0;
  pyq_link *ql, *fl;
  for (ql = open_queues(h)->next; ql != open_queues(h); ql = ql->next) {
    pyq_queue *q = pyq_container(ql, pyq_queue, member);
    for (fl = q->fibers.next; fl != &q->fibers; fl = fl->next) n++;
  }
  return n;
}

static void warn_unclosed (pyq_host *h) {
  pyq_link *l;
  for (l = open_queues(h)->next; l != open_queues(h); l = l->next) {
    pyq_queue *q = pyq_container(l, pyq_queue, member);
    pyq_log(h, PYQ_WARNING, q->st->where, "pyq.Queue was never closed: write "
            "`local queue <close> = pyq.Queue{...}` so leaving the scope "
            "joins it");
    stop_workers(q);
  }
}

/* core._open_queues() -> the queues not yet closed, oldest first: the
 * REPL closes them (joins) when the prompt ends. */
static int list_open (lua_State *L) {
  pyq_link *l, *open = open_queues(pyq_host_of(L));
  int n = 0;
  lua_newtable(L);
  for (l = open->next; l != open; l = l->next) {
    pyq_queue *q = pyq_container(l, pyq_queue, member);
    if (q->ref == LUA_NOREF) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, q->ref);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* core._queue_label(q, text): what logs and the summary call a queue
 * pyq's own Lua made (a worker's "cluster job x") rather than the line
 * that made it, which is pyq's, not the script's. */
static int queue_label (lua_State *L) {
  pyq_queue *q = checkqueue(L, "core._queue_label");
  const char *s = luaL_checkstring(L, 2);
  snprintf(q->st->where, sizeof q->st->where, "%s", s);
  return 0;
}

void pyq_open_queue (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  queues *qs;
  const void *mt;
  static const luaL_Reg methods[] = {
    {"put", queue_put}, {"join", queue_join}, {"close", queue_close},
    {"cancel", queue_cancel}, {"completed", queue_completed},
    {"forget", queue_forget}, {NULL, NULL}
  };
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, completed_close);
  lua_setfield(L, -2, "__close");
  lua_pushliteral(L, "pyq.Queue.completed");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &completed_key);
  lua_createtable(L, 0, 8);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, queue_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, queue_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, queue_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, queue_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, queue_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, queue_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "pyq.Queue");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "pyq.Queue");
  lua_setfield(L, -2, "__metatable");
  mt = lua_topointer(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &queue_key);
  lua_pushcfunction(L, queue_new);
  lua_setfield(L, -2, "Queue");
  qs = lua_newuserdatauv(L, sizeof *qs, 0);   /* freed with the state */
  pyq_list_init(&qs->open);
  qs->mt = mt;
  lua_rawsetp(L, LUA_REGISTRYINDEX, qs);
  h->tasks.ud = qs;
  h->tasks.cancel_all = cancel_queues;
  h->tasks.unstick = unstick_queues;
  h->tasks.live_fibers = live_workers;
  h->tasks.unclosed = warn_unclosed;
  lua_pushcfunction(L, list_open);
  lua_setfield(L, -2, "_open_queues");
  lua_pushcfunction(L, queue_label);
  lua_setfield(L, -2, "_queue_label");
}

void pyq_queue_set_store (pyq_host *h, pyq_store_wrap_fn open) {
  ((queues *)h->tasks.ud)->store_open = open;
}

void pyq_queue_set_cluster (pyq_host *h, pyq_store_open_fn open) {
  ((queues *)h->tasks.ud)->cluster_open = open;
}
