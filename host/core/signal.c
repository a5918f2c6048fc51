/* signal.c -- SIGINT and SIGTERM: stop the job cleanly, and nothing lost.
 *
 * The first signal cancels every queue and makes the main task's current
 * wait raise "interrupted", so to-be-closed variables (output files among
 * them) are closed on the way out; the exit code is 128 + the signal.  Code
 * that runs without waiting is stopped by a Lua hook set from the handler,
 * as lua.c does, on the innermost running coroutine (h->co when the task
 * resumed one of its own), and on every interrupted task or coroutine
 * resumed afterwards.  The interruption cannot be swallowed: pcall, xpcall
 * and coroutine.resume raise it again in an interrupted task (as asyncio's
 * CancelledError escapes `except Exception`).  A second signal exits at
 * once.  (Those wrappers live in lua/guards.c.)  SIGPIPE is ignored: a
 * write to a closed stdout is noticed where it fails and interrupts the job
 * the same way (pyq_interrupt with SIGPIPE, exit code 141). */
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "log.h"
#include "signal.h"

static pyq_host *signal_host;   /* a signal handler has no other way in */

static const pyq_reason by_sigint = {"interrupted", "pyq: interrupted (SIGINT)"};
static const pyq_reason by_sigterm = {"interrupted",
                                      "pyq: interrupted (SIGTERM)"};
static const pyq_reason by_sigpipe = {"interrupted",
                                      "pyq: interrupted (stdout was closed)"};
static const pyq_reason by_other = {"interrupted", "pyq: interrupted"};

const pyq_reason *pyq_interrupt_reason (int sig) {
  switch (sig) {
    case SIGINT: return &by_sigint;
    case SIGTERM: return &by_sigterm;
    case SIGPIPE: return &by_sigpipe;
    default: return &by_other;
  }
}

/* Count and return events only: a call hook could raise before a C
 * __close method runs and skip it. */
#define HOOK_MASK (LUA_MASKCOUNT | LUA_MASKRET)

static void interrupt_hook (lua_State *L, lua_Debug *ar) {
  pyq_host *h = signal_host;
  pyq_fiber *f = pyq_fiber_of(L);
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (f == NULL) f = h->current;   /* a coroutine the task resumed */
  if (f != NULL) pyq_run_cancel(f, pyq_interrupt_reason(h->signal));
  pyq_raise_reason(L, pyq_interrupt_reason(h->signal));
}

/* Why the running task was interrupted (by a signal, os.exit or a closed
 * stdout), else NULL. */
const pyq_reason *pyq_interrupted (pyq_host *h) {
  pyq_fiber *f = h->current;
  if ((h->signal || h->exit_requested || h->on_soft_sigint) && f != NULL &&
      pyq_cancelled(f))
    return f->run.cancel;
  return NULL;
}

/* About to run L after a signal: stop it at its first instruction.  (A
 * task resumed with its wait's error is not armed: it unwinds anyway, and
 * the hook would cut short its Lua __close handlers.) */
void pyq_interrupt_arm (pyq_host *h, lua_State *L) {
  if (h->signal) lua_sethook(L, interrupt_hook, HOOK_MASK, 1);
}

/* A soft SIGINT (the REPL's Ctrl-C) stops the line's code once, without
 * marking anything cancelled: the REPL catches it and prompts again. */
static void soft_hook (lua_State *L, lua_Debug *ar) {
  pyq_host *h = signal_host;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  h->soft_sigint = 0;   /* taken here: nothing left to fail */
  if (h->main) pyq_run_cancel(h->main, &by_sigint);   /* pcall re-raises it */
  pyq_raise_reason(L, &by_sigint);
}

/* About to resume the main task with a soft SIGINT pending (it came
 * between two lines' turns): the line's code stops at once. */
void pyq_soft_arm (pyq_host *h, pyq_fiber *f) {
  if (h->soft_sigint && f == h->main && !(f->flags & PYQ_F_FAILING))
    lua_sethook(f->L, soft_hook, HOOK_MASK, 1);
}

/* A line of the REPL begins: a soft SIGINT that came before it (at the
 * prompt, handled there) leaves no hook on it. */
void pyq_soft_clear (pyq_fiber *f) {
  if (lua_gethook(f->L) == soft_hook) lua_sethook(f->L, NULL, 0, 0);
}

/* The REPL's Ctrl-C from the loop: the line's task is cancelled (its waits
 * and pcall raise it until the line ends: the REPL then begins a fresh run
 * record) and its current wait fails now. */
void pyq_soft_interrupt (pyq_host *h) {
  if (h->main == NULL) return;
  /* a hook the handler set while the task was in C on its way to this
   * wait would fire later, in the prompt's own code: this is its work */
  if (lua_gethook(h->main->L) == soft_hook) lua_sethook(h->main->L, NULL, 0, 0);
  pyq_cancel(h->main, &by_sigint);
}

static void on_signal (int sig) {
  pyq_host *h = signal_host;
  /* the REPL's Ctrl-C, unless a first one is still waiting (a line stuck in
   * C code) or the prompt is gone (Ctrl-D with tasks left): then as usual */
  if (sig == SIGINT && h->on_soft_sigint != NULL && !h->signal &&
      h->main != NULL && !h->soft_sigint) {
    /* code of the main task that runs without waiting stops at once; a
     * wait is failed by the hook, from the loop */
    if (h->current != NULL && h->current == h->main)
      lua_sethook(h->co ? h->co : h->current->L, soft_hook, HOOK_MASK, 1);
    h->soft_sigint = 1;
    uv_async_send(&h->signal_async);
    return;
  }
  if (h->signal) {
    static const char msg[] = "pyqhost: interrupted again, exiting at once\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(128 + sig);
  }
  h->signal = sig;
  if (h->co != NULL)
    lua_sethook(h->co, interrupt_hook, HOOK_MASK, 1);
  else if (h->current != NULL)
    lua_sethook(h->current->L, interrupt_hook, HOOK_MASK, 1);
  uv_async_send(&h->signal_async);
}

void pyq_on_interrupt (pyq_host *h, pyq_job *hook) {
  pyq_list_push(&h->on_interrupt, &hook->link);
}

/* Output owners flush first: what is written so far reaches the disk even
 * if unwinding then takes long or a second signal cuts it short.  A hook
 * may unlink itself. */
static void run_hooks (pyq_host *h) {
  pyq_link *l = h->on_interrupt.next;
  while (l != &h->on_interrupt) {
    pyq_link *next = l->next;
    pyq_job *hook = pyq_container(l, pyq_job, link);
    hook->run(h, hook);
    l = next;
  }
}

/* Handles the first interruption, once: from the async callback when the
 * loop polls, or from the run loop's turn (pyq_signal_check) when the loop
 * has nothing referenced to poll for, since an unreferenced async is then
 * never looked at. */
static void handle (pyq_host *h) {
  int n;
  if (h->signal_handled) return;
  h->signal_handled = 1;
  run_hooks(h);
  n = pyq_cancel_all(h, pyq_interrupt_reason(h->signal));
  pyq_log(h, PYQ_WARNING, "pyqhost", "%s: cancelled %d tasks",
          pyq_interrupt_reason(h->signal)->msg, n);
  if (h->main) pyq_cancel(h->main, pyq_interrupt_reason(h->signal));
}

static void soft (pyq_host *h) {
  h->soft_sigint = 0;
  if (h->on_soft_sigint) h->on_soft_sigint(h);
}

static void on_async (uv_async_t *a) {
  pyq_host *h = a->data;
  if (h->soft_sigint) soft(h);
  if (h->signal) handle(h);
}

void pyq_signal_check (pyq_host *h) {
  if (h->soft_sigint) soft(h);
  if (h->signal && !h->signal_handled) handle(h);
}

/* From host code (not a signal handler): interrupt the job as a signal
 * would; sig is SIGPIPE for a closed stdout.  The first one wins. */
void pyq_interrupt (pyq_host *h, int sig) {
  if (h->signal) return;
  h->signal = sig;
  uv_async_send(&h->signal_async);
}

void pyq_signal_init (pyq_host *h) {
  struct sigaction sa;
  signal_host = h;
  uv_async_init(h->loop, &h->signal_async, on_async);
  h->signal_async.data = h;
  uv_unref((uv_handle_t *)&h->signal_async);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* a closed pipe or an exceeded file-size limit is an error where the
   * write fails, not a silent death that skips every <close> */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
}
