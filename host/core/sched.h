/* sched.h -- fibers, the wait protocol and the run loop (sched.c).
 *
 * Every coroutine the host runs (the main task, queue workers) is a
 * pyq_fiber, reachable from its lua_State's extra space; a coroutine
 * without one was made by the script and cannot wait.
 *
 * A wait is always the same three steps: the waiting C function arms a
 * libuv callback (or joins a wait list) and calls pyq_park with a
 * pyq_wait_ops record and the object it waits on; the callback pushes its
 * results and calls pyq_wake, or a cancellation or deadline calls pyq_fail,
 * which disarms the wait through its ops; the run loop then resumes the
 * fiber in pyq_fiber_resume, the one place coroutines are resumed, and the
 * wait's continuation returns the values or raises the error. */
#ifndef PYQ_SCHED_H
#define PYQ_SCHED_H

#include "host.h"

typedef struct pyq_deadline pyq_deadline;

/* What a parked fiber waits on: a name for messages and the function that
 * undoes the wait (stops a timer, leaves a list, removes a transfer).
 * disarm gets the object given to pyq_park and runs only when the wait
 * fails before its callback woke it. */
typedef struct pyq_wait_ops {
  const char *what;       /* "pyq.sleep", "queue:put", "pyq.http", ... */
  void (*disarm) (pyq_fiber *f, void *on);
} pyq_wait_ops;

/* Why a task stops: its error's kind and message.  The host's reasons are
 * constants (pyq_cancelled_reason, ...), compared by address. */
struct pyq_reason {       /* the typedef is host.h's (C99: one typedef) */
  const char *kind;       /* "cancelled", "timeout", "interrupted", ... */
  const char *msg;        /* the message its pyq.Error carries */
};

/* What a task carries while a fiber runs it: who runs it and where it came
 * in, whether it is cancelled and why, and its pyq.timeout scopes.  Set
 * afresh for each task (pyq_run_begin); one function marks it cancelled. */
typedef struct pyq_run {
  void *owner;            /* the queue running it; NULL for the main task */
  lua_Integer idx;        /* its put index (1-based); 0 for the main task */
  const pyq_reason *cancel;  /* set: every wait raises it until it ends */
  pyq_deadline *deadline; /* innermost pyq.timeout scope */
  int expired;            /* scopes in the chain whose deadline fired */
} pyq_run;

enum {
  PYQ_F_PARKED = 1,      /* yielded through pyq_park */
  PYQ_F_FAILING = 2,     /* posted to resume with its wait's error */
  PYQ_F_NOWAIT = 4,      /* runs code that must not wait (a handler) */
  PYQ_F_OWNER = 256      /* bits from here on belong to the fiber's owner */
};

struct pyq_fiber {
  pyq_job job;            /* in the ready list while it waits to resume */
  pyq_link wait;          /* in one wait list of the owner's */
  pyq_host *host;
  lua_State *L;
  int ref;                /* anchors L in the registry */
  int nargs;              /* values pushed on L for the next resume */
  int got;                /* values the last resume delivered */
  unsigned flags;
  const char *nowait;     /* with PYQ_F_NOWAIT: what runs, for the message */
  const pyq_wait_ops *wop;  /* set while parked */
  void *on;                 /* what it is parked on, for wop->disarm */
  pyq_run run;
  void (*finish) (pyq_fiber *f, int status);  /* its coroutine ended */
};

/* Every wait of a cancelled task raises this, so users recognise it. */
#define PYQ_CANCELLED "pyq: task cancelled"
#define PYQ_TIMED_OUT "pyq.timeout: timed out"
extern const pyq_reason pyq_cancelled_reason, pyq_timeout_reason,
                        pyq_deadlock_reason, pyq_main_deadlock_reason;

static inline pyq_fiber *pyq_fiber_of (lua_State *L) {
  return *(pyq_fiber **)lua_getextraspace(L);
}

static inline int pyq_cancelled (const pyq_fiber *f) {
  return f->run.cancel != NULL;
}

/* A fiber of `size` bytes (at least sizeof(pyq_fiber), which comes first),
 * so an owner can keep its own fields beside the fiber's. */
pyq_fiber *pyq_fiber_new (lua_State *L, pyq_host *h, size_t size);
void pyq_fiber_free (pyq_fiber *f);
void pyq_fiber_resume (pyq_fiber *f);
pyq_fiber *pyq_fiber_check (lua_State *L, const char *fname);

int pyq_park (lua_State *L, pyq_fiber *f, const pyq_wait_ops *ops, void *on,
              lua_KFunction k);
int pyq_resumed (lua_State *L, pyq_fiber *f);
void pyq_wake (pyq_fiber *f, int n);
void pyq_wake_now (pyq_fiber *f, int n);
void pyq_fail (pyq_fiber *f, const pyq_reason *why);
void pyq_push_error (lua_State *L, const pyq_reason *why);
int pyq_raise_reason (lua_State *L, const pyq_reason *why);

void pyq_run_begin (pyq_fiber *f, void *owner, lua_Integer idx);
void pyq_run_end (pyq_fiber *f);
void pyq_run_cancel (pyq_fiber *f, const pyq_reason *why);
void pyq_cancel (pyq_fiber *f, const pyq_reason *why);
int pyq_cancel_all (pyq_host *h, const pyq_reason *why);

void pyq_post (pyq_host *h, pyq_job *j);
void pyq_sched_run (pyq_host *h);
void pyq_check_leaks (pyq_host *h);

#endif
