/* host.h -- the pyqhost runtime shared by every file in host/.
 *
 * One pyq_host per process holds the Lua state, the libuv loop and the
 * scheduler's lists.  It is the allocator's userdata, so any lua_State finds
 * it with pyq_host_of().  Every coroutine the host runs (the main task, queue
 * workers) is a pyq_fiber, reachable from its lua_State's extra space; a
 * coroutine without one was created by the user and cannot wait. */
#ifndef PYQ_HOST_H
#define PYQ_HOST_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

/* Intrusive circular doubly-linked list; an unlinked node points to itself. */
typedef struct pyq_link { struct pyq_link *prev, *next; } pyq_link;

#define pyq_container(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

static inline void pyq_list_init (pyq_link *l) { l->prev = l->next = l; }
static inline int pyq_list_empty (const pyq_link *l) { return l->next == l; }
static inline int pyq_linked (const pyq_link *n) { return n->next != n; }

static inline void pyq_list_push (pyq_link *head, pyq_link *n) {
  n->prev = head->prev; n->next = head;
  head->prev->next = n; head->prev = n;
}

static inline void pyq_list_remove (pyq_link *n) {
  n->prev->next = n->next; n->next->prev = n->prev;
  n->prev = n->next = n;
}

static inline pyq_link *pyq_list_shift (pyq_link *head) {
  pyq_link *n = head->next;
  if (n == head) return NULL;
  pyq_list_remove(n);
  return n;
}

typedef struct pyq_host pyq_host;
typedef struct pyq_fiber pyq_fiber;
typedef struct pyq_queue pyq_queue;
typedef struct pyq_http pyq_http;
typedef struct pyq_deadline pyq_deadline;

/* A queue's counts, made by report.c; once the queue is collected
 * (pyq_report_release) they are folded into the summary's totals. */
typedef struct pyq_qstats {
  pyq_link link;          /* in host->stats */
  pyq_link watch;         /* in report.c's progress block until drawn final */
  char where[160];        /* script:line that created the queue */
  lua_Integer total;      /* expected tasks, for progress; 0 unknown */
  lua_Integer put, done, failed, cancelled, pending, running;
  double started, closed_at;   /* seconds; closed_at 0 while open */
  int progress;           /* drawn by report.c */
  int released;           /* its queue is gone (pyq_report_release) */
} pyq_qstats;

/* Something the scheduler runs on its next turn: a fiber to resume, or a
 * queue that wants workers started. */
typedef struct pyq_job {
  pyq_link link;
  void (*run) (pyq_host *h, struct pyq_job *j);
} pyq_job;

/* Undoes whatever a parked fiber waits on (stops a timer, leaves a list). */
typedef void (*pyq_disarm_fn) (pyq_fiber *f);

enum {
  PYQ_F_PARKED = 1,      /* yielded through pyq_park */
  PYQ_F_CANCELLED = 2,   /* every wait raises cancel_msg until the task ends */
  PYQ_F_BUSY = 4,        /* worker: running a task */
  PYQ_F_RESERVED = 8,    /* put waiter: a slot is held for it */
  PYQ_F_UNWINDING = 16,  /* worker: queue:cancel() waits for its task to end */
  PYQ_F_HANDLER = 32,    /* worker: running exception_handler, cannot wait */
  PYQ_F_FAILING = 64     /* posted to resume with its wait's error */
};

struct pyq_fiber {
  pyq_job job;            /* in the ready list while it waits to resume */
  pyq_link wait;          /* in one wait list: idle workers, putters, joiners */
  pyq_link member;        /* in its queue's list of workers */
  pyq_host *host;
  lua_State *L;
  int ref;                /* anchors L in the registry */
  int nargs;              /* values pushed on L for the next resume */
  int got;                /* values the last resume delivered */
  unsigned flags;
  pyq_disarm_fn disarm;   /* set while parked */
  const char *cancel_msg; /* error raised by waits of a cancelled task */
  pyq_queue *queue;       /* the queue it works for; NULL for the main task */
  void *on;               /* what the current wait is on (a queue) */
  uv_timer_t *timer;      /* pyq.sleep and put delays; made on first use */
  pyq_deadline *deadline; /* innermost pyq.timeout scope */
  int expired;            /* deadlines in the chain that fired */
  lua_Integer idx;        /* worker: put index of the task it runs */
  void (*finish) (pyq_fiber *f, int status);  /* its coroutine ended */
};

/* What the core (scheduler, signals, the host's life) needs from the layer
 * that owns the tasks, registered by that layer when it opens (queue.c),
 * so the core never calls upward by name.  Each is NULL until then. */
typedef struct pyq_owner {
  int (*cancel_all) (pyq_host *h, const char *msg);  /* how many cancelled */
  int (*unstick) (pyq_host *h);      /* cancel tasks nothing can wake */
  int (*live_fibers) (pyq_host *h);  /* for the leak check at exit */
  void (*unclosed) (pyq_host *h);    /* warn about, and stop, what was
                                        never closed */
} pyq_owner;

struct pyq_host {
  lua_State *L;
  uv_loop_t *loop;
  pyq_link ready;         /* jobs for the scheduler's next turn */
  pyq_link queues;        /* queues not yet closed */
  pyq_fiber *current;     /* the fiber being resumed, if any */
  lua_State *co;          /* innermost coroutine it resumed by hand, if any */
  pyq_fiber *main;        /* the main task while it runs */
  pyq_http *http;         /* pyq.http's multi handle */
  pyq_owner tasks;        /* hooks of the layer that owns the tasks */
  int log_level;
  int exit_code;
  lua_Integer unhandled;  /* task failures that reached the default handler */
  double started;         /* seconds, for the summary */
  pyq_link stats;         /* pyq_qstats of every queue */
  int progress_all;       /* --progress */
  int progress_tty;       /* stderr is a terminal */
  int progress_lines;     /* live lines now on the terminal */
  uv_timer_t progress_timer;
  struct pyq_report *report;  /* report.c's own state */
  volatile int signal;    /* SIGINT or SIGTERM received, or 0 */
  int signal_handled;     /* queues cancelled for it (signal.c) */
  int exit_requested;     /* os.exit was called; exit_code holds its code */
  int closing;            /* lua_close runs: os.exit only records its code */
  int warnings_on;        /* warn("@on") / warn("@off") */
  char warning[1024];     /* a Lua warning being put together */
  uv_async_t signal_async;
  pyq_link on_interrupt;  /* pyq_job hooks run when the job is interrupted */
};

/* A pyq.timeout scope: its timer, on the fiber's chain of scopes. */
struct pyq_deadline {
  uv_timer_t timer;
  pyq_fiber *f;
  pyq_deadline *outer;
  double seconds;
  int fired;
};

/* Every wait of a cancelled task raises this, so users recognise it. */
#define PYQ_CANCELLED "pyq: task cancelled"
#define PYQ_TIMED_OUT "pyq.timeout: timed out"

/* Monotonic seconds (pyq.now's clock). */
static inline double pyq_clock (void) { return (double)uv_hrtime() / 1e9; }

static inline pyq_host *pyq_host_of (lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return (pyq_host *)ud;
}

static inline pyq_fiber *pyq_fiber_of (lua_State *L) {
  return *(pyq_fiber **)lua_getextraspace(L);
}

/* host.c: the host's life */
int pyq_cancel_all (pyq_host *h, const char *msg);
int pyq_host_open (pyq_host *h, int log_level);
int pyq_host_run_main (pyq_host *h, int nargs);
int pyq_host_close (pyq_host *h, int code);

/* sched.c: fibers, parking and the run loop */
pyq_fiber *pyq_fiber_new (lua_State *L, pyq_host *h);
void pyq_fiber_free (pyq_fiber *f);
void pyq_fiber_resume (pyq_fiber *f);
pyq_fiber *pyq_fiber_check (lua_State *L, const char *fname);
int pyq_park (lua_State *L, pyq_fiber *f, pyq_disarm_fn disarm, lua_KFunction k);
int pyq_resumed (lua_State *L, pyq_fiber *f);
void pyq_wake (pyq_fiber *f, int n);
void pyq_wake_now (pyq_fiber *f, int n);
void pyq_fail (pyq_fiber *f, const char *msg);
void pyq_cancel (pyq_fiber *f, const char *msg);
void pyq_post (pyq_host *h, pyq_job *j);
void pyq_run (pyq_host *h);
void pyq_open_sched (lua_State *L);
void pyq_check_leaks (pyq_host *h);

/* timer.c */
void pyq_timer_start (pyq_fiber *f, double seconds);
void pyq_timer_disarm (pyq_fiber *f);
int pyq_checkseconds (lua_State *L, int arg, const char *fname, const char *what);
void pyq_open_timer (lua_State *L);
void pyq_deadlines_free (pyq_fiber *f);

/* task.c */
int pyq_task_check (lua_State *L, int idx, const char *fname);
void pyq_task_take (lua_State *L, int idx);
int pyq_task_unpack (lua_State *L);
void pyq_task_new (lua_State *L, int nargs);
void pyq_open_task (lua_State *L);

/* queue.c */
void pyq_open_queue (lua_State *L);

/* error.c */
void pyq_error_push (lua_State *L, const char *kind, int err_idx,
                     lua_Integer index);
void pyq_open_error (lua_State *L);

/* log.c */
enum { PYQ_DEBUG = 10, PYQ_INFO = 20, PYQ_WARNING = 30, PYQ_ERROR = 40,
       PYQ_CRITICAL = 50 };
void pyq_log (pyq_host *h, int level, const char *where, const char *fmt, ...);
void pyq_log_line (pyq_host *h, int level, const char *where, const char *msg);
int pyq_log_level_parse (const char *s, int *level);
int pyq_checklevel (lua_State *L, int idx, const char *fname, const char *what);
void pyq_where (lua_State *L, int level, char *buf, size_t size);
const char *pyq_errstr (lua_State *L, int idx);
const char *pyq_got (lua_State *L, int idx);
void pyq_open_log (lua_State *L);

/* report.c */
pyq_qstats *pyq_report_queue (pyq_host *h);
void pyq_report_closed (pyq_host *h, pyq_qstats *st);
/* The queue is gone (its __gc): st is never used again by the caller. */
void pyq_report_release (pyq_host *h, pyq_qstats *st);
void pyq_progress_watch (pyq_host *h, pyq_qstats *st);
void pyq_progress_clear (pyq_host *h);
void pyq_report_summary (pyq_host *h);
void pyq_open_report (lua_State *L);
void pyq_report_close (pyq_host *h);

/* signal.c */
void pyq_signal_init (pyq_host *h);
void pyq_interrupt (pyq_host *h, int sig);
void pyq_signal_check (pyq_host *h);
const char *pyq_interrupted (pyq_host *h);
void pyq_interrupt_arm (pyq_host *h, lua_State *L);
void pyq_open_signal (lua_State *L);
/* Owners of buffered output register a pyq_job here (its link unused
 * otherwise); it runs, from the loop, when SIGINT, SIGTERM or a closed
 * stdout interrupts the job, so data reaches the disk before unwinding. */
void pyq_on_interrupt (pyq_host *h, pyq_job *hook);

int luaopen_pyq_core (lua_State *L);

#endif
