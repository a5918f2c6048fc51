/* signal.c -- SIGINT and SIGTERM: stop the job cleanly, and nothing lost.
 *
 * The first signal cancels every queue and makes the main task's current
 * wait raise "interrupted", so to-be-closed variables (output files among
 * them) are closed on the way out; the exit code is 128 + the signal.  Code
 * that runs without waiting is stopped by a Lua hook set from the handler,
 * as lua.c does.  A second signal exits at once. */
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "host.h"

static pyq_host *signal_host;   /* a signal handler has no other way in */

static const char *message (int sig) {
  return sig == SIGINT ? "pyq: interrupted (SIGINT)" : "pyq: interrupted (SIGTERM)";
}

static void interrupt_hook (lua_State *L, lua_Debug *ar) {
  pyq_fiber *f = pyq_fiber_of(L);
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (f != NULL) {
    f->flags |= PYQ_F_CANCELLED;
    f->cancel_msg = message(signal_host->signal);
  }
  luaL_error(L, "%s", message(signal_host->signal));
}

static void on_signal (int sig) {
  pyq_host *h = signal_host;
  if (h->signal) {
    static const char msg[] = "pyqhost: interrupted again, exiting at once\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(128 + sig);
  }
  h->signal = sig;
  if (h->current != NULL)
    lua_sethook(h->current->L, interrupt_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  uv_async_send(&h->signal_async);
}

static void on_async (uv_async_t *a) {
  pyq_host *h = a->data;
  int n = pyq_queue_cancel_all(h, message(h->signal));
  pyq_log(h, PYQ_WARNING, "pyqhost", "%s: cancelled %d tasks",
          message(h->signal), n);
  if (h->main) pyq_cancel(h->main, message(h->signal));
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
}
