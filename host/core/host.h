/* host.h -- the one pyq_host of a process, which every layer reaches.
 *
 * The host holds the Lua state, the libuv loop, the scheduler's lists and
 * one pointer per subsystem (report, http, the task owner's hooks).  It is
 * the Lua allocator's userdata, so any lua_State finds it with
 * pyq_host_of().  Subsystems keep their own state in their own structs;
 * the host only holds what several layers read (the log level, the exit
 * code, the signal). */
#ifndef PYQ_HOST_H
#define PYQ_HOST_H

#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include "list.h"

typedef struct pyq_host pyq_host;
typedef struct pyq_fiber pyq_fiber;
typedef struct pyq_reason pyq_reason;

/* Something the scheduler runs on its next turn: a fiber to resume, or a
 * queue that wants workers started. */
typedef struct pyq_job {
  pyq_link link;
  void (*run) (pyq_host *h, struct pyq_job *j);
} pyq_job;

/* What the core (scheduler, signals, the host's life) needs from the layer
 * that owns the tasks, registered by that layer when it opens (the queue),
 * so the core never calls upward by name.  Each is NULL until then. */
typedef struct pyq_owner {
  int (*cancel_all) (pyq_host *h, const pyq_reason *why);  /* how many */
  int (*unstick) (pyq_host *h);      /* cancel tasks nothing can wake */
  int (*live_fibers) (pyq_host *h);  /* for the leak check at exit */
  void (*unclosed) (pyq_host *h);    /* warn about, and stop, what was
                                        never closed */
  void *ud;                          /* the owner's own state */
} pyq_owner;

struct pyq_report;
struct pyq_http;

struct pyq_host {
  lua_State *L;
  uv_loop_t *loop;
  /* scheduler (core/sched.c) */
  pyq_link ready;         /* jobs for the scheduler's next turn */
  pyq_fiber *current;     /* the fiber being resumed, if any */
  lua_State *co;          /* innermost coroutine it resumed by hand, if any */
  pyq_fiber *main;        /* the main task while it runs */
  pyq_owner tasks;        /* hooks of the layer that owns the tasks */
  /* the job's outcome */
  int exit_code;
  lua_Integer unhandled;  /* task failures that reached the default handler */
  int exit_requested;     /* os.exit was called; exit_code holds its code */
  int closing;            /* lua_close runs: os.exit only records its code */
  int write_errors;       /* output was lost (a failed commit): exit >= 1 */
  /* signals (core/signal.c) */
  volatile int signal;    /* SIGINT, SIGTERM or SIGPIPE received, or 0 */
  int signal_handled;     /* tasks cancelled for it */
  uv_async_t signal_async;
  pyq_link on_interrupt;  /* pyq_job hooks run when the job is interrupted */
  /* set (by the REPL): SIGINT calls this from the loop instead of
   * interrupting the job */
  void (*on_soft_sigint) (pyq_host *h);
  volatile int soft_sigint;   /* such a SIGINT is waiting to be handled */
  /* log (core/log.c) */
  int log_level;
  /* erases live output (the report's progress lines) before a write to f;
   * f is NULL for a log line, print and io.write */
  void (*before_output) (pyq_host *h, FILE *f);
  /* around the host's own writes to the terminal (log lines, progress,
   * print): the REPL takes its prompt off the screen and puts it back */
  void (*hold_screen) (pyq_host *h);
  void (*release_screen) (pyq_host *h);
  /* pushes a pyq.Error of kind with msg (lua/error.c); NULL: a string */
  void (*push_error) (lua_State *L, const char *kind, const char *msg);
  int warnings_on;        /* warn("@on") / warn("@off") */
  char warning[1024];     /* a Lua warning being put together */
  const void *task_mt;    /* lua/task.c: the task metatable's address, so
                             telling a task costs no registry lookup */
  /* subsystems, each NULL until opened */
  struct pyq_report *report;
  struct pyq_http *http;
  int progress_all;       /* --progress: every queue shows progress */
  double started;         /* seconds, for the summary */
};

/* Monotonic seconds (pyq.now's clock). */
static inline double pyq_clock (void) { return (double)uv_hrtime() / 1e9; }

static inline pyq_host *pyq_host_of (lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return (pyq_host *)ud;
}

#endif
