/* host.c -- the host's life: open the Lua state and the loop, run a
 * chunk as the main task, close everything.
 *
 * The Lua state allocates through host_alloc, whose userdata is the host,
 * so every lua_State finds it.  os.exit unwinds instead of leaving: it
 * cancels every task and the main task, so to-be-closed variables run and
 * the host closes normally with the code asked for. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <lualib.h>
#include "pyqhost.h"
#include "core/signal.h"
#include "lua/check.h"
#include "lua/embed.h"
#include "lua/guards.h"
#include "http/http.h"
#include "report/report.h"


/* The allocator's userdata is how any lua_State finds the host. */
static void *host_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int host_panic (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "pyqhost: %s\n", msg ? msg : "unrecoverable error");
  fflush(NULL);
  exit(1);
}

/* Lua warnings (errors in __gc, warn()) become WARNING log lines; unlike
 * lua's they are on from the start, and warn("@off") silences them. */
static void host_warn (void *ud, const char *msg, int tocont) {
  pyq_host *h = ud;
  size_t n = strlen(h->warning);
  if (!tocont && n == 0 && *msg == '@') {   /* control message */
    if (strcmp(msg, "@on") == 0) h->warnings_on = 1;
    else if (strcmp(msg, "@off") == 0) h->warnings_on = 0;
    return;
  }
  snprintf(h->warning + n, sizeof h->warning - n, "%s", msg);
  if (tocont) return;
  /* os.exit in a __gc unwinds by an error that Lua reports as a warning:
   * it is how the exit works, not a problem */
  if (h->warnings_on && !(h->exit_requested && strstr(h->warning, PYQ_EXITING)))
    pyq_log(h, PYQ_WARNING, "lua", "%s", h->warning);
  h->warning[0] = '\0';
}

static void main_finish (pyq_fiber *f, int status) {
  pyq_host *h = f->host;
  h->main = NULL;
  if (status != LUA_OK && h->exit_requested) {
    lua_resetthread(f->L);
  } else if (status != LUA_OK) {
    /* the message is made on the host's own thread: a __tostring that
     * raises is caught there (pyq_errstr), never a panic */
    lua_pushvalue(f->L, -1);
    lua_xmove(f->L, h->L, 1);
    pyq_errstr(h->L, -1);
    if (h->signal)   /* the interruption unwound it: no traceback */
      lua_pushvalue(h->L, -1);
    else
      luaL_traceback(h->L, f->L, lua_tostring(h->L, -1), 0);
    lua_resetthread(f->L);
    pyq_progress_clear(h);
    fprintf(stderr, "pyqhost: %s\n", lua_tostring(h->L, -1));
    fflush(stderr);
    lua_pop(h->L, 3);
    h->exit_code = 1;
    pyq_cancel_all(h, &pyq_cancelled_reason);
  }
  pyq_fiber_free(f);
}


/* Runs the function and nargs arguments on h->L as the main task, then the
 * loop until nothing is left to do; returns the exit code so far. */
int pyq_host_run_main (pyq_host *h, int nargs) {
  pyq_fiber *f = pyq_fiber_new(h->L, h, sizeof *f);
  f->finish = main_finish;
  lua_xmove(h->L, f->L, nargs + 1);
  f->nargs = nargs;
  h->main = f;
  pyq_post(h, &f->job);
  pyq_sched_run(h);
  return h->exit_code;
}

/* 10,000 requests in flight need as many sockets. */
static void raise_nofile (void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

int pyq_host_open (pyq_host *h, int log_level) {
  lua_State *L;
  memset(h, 0, sizeof *h);
  pyq_list_init(&h->ready);
  pyq_list_init(&h->on_interrupt);
  h->log_level = log_level;
  h->started = (double)uv_hrtime() / 1e9;
  h->loop = uv_default_loop();
  h->L = L = lua_newstate(host_alloc, h);
  if (L == NULL) return 0;
  /* threads copy the main thread's extra space: no fiber there */
  *(pyq_fiber **)lua_getextraspace(L) = NULL;
  raise_nofile();
  pyq_signal_init(h);
  lua_atpanic(L, host_panic);
  lua_setwarnf(L, host_warn, h);
  h->warnings_on = 1;
  luaL_openlibs(L);
  pyq_open_lualib(L);   /* require finds pyq in the executable */
  pyq_open_guards(L);
  pyq_open_report(L);
  luaL_requiref(L, "pyq.core", luaopen_pyq_core, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "pyq");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "pyqhost: cannot load the pyq library: %s\n",
            lua_tostring(L, -1));
    return 0;
  }
  lua_setglobal(L, "pyq");
  lua_settop(L, 0);
  return 1;
}

static void close_handle (uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

/* Closes everything; returns the exit code, which an os.exit in a __gc
 * run by lua_close may still set.  The Lua state goes first, while
 * everything its finalizers may reach (the loop, the report's records) is
 * still there; with h->closing set, os.exit only records its code. */
int pyq_host_close (pyq_host *h, int code) {
  int exited = h->exit_requested;
  if (h->tasks.unclosed) h->tasks.unclosed(h);
  pyq_check_leaks(h);
  if (h->http) pyq_http_close(h->http);
  h->closing = 1;
  lua_close(h->L);
  if (!exited && h->exit_requested) code = h->exit_code;   /* the first wins */
  if (code == 0 && h->write_errors) code = 1;   /* a commit at close failed */
  pyq_report_close(h);
  uv_walk(h->loop, close_handle, NULL);
  uv_run(h->loop, UV_RUN_DEFAULT);
  uv_loop_close(h->loop);
  return code;
}


/* The summary of queues and HTTP, for main.c. */
void pyq_host_summary (pyq_host *h) {
  pyq_report_summary(h);
}

int pyq_host_summary_json (pyq_host *h, const char *path, int exit_code) {
  return pyq_report_summary_json(h, path, exit_code);
}
