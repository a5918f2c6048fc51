/* repl.c -- the interactive prompt: readline on the host's loop.
 *
 * `pyqhost` on a terminal with no script, or `pyqhost -i [script]`, runs
 * lualib/pyq/repl.lua as the main task.  It reads each line through
 * core.readline, a wait like any other: readline's callback interface is
 * fed by a uv_poll on stdin, so while the prompt waits the loop runs every
 * other task (queues put at the prompt go on while the user types).  The
 * line then runs in the main task, so `pyq.http.get(...)` or `q:join()`
 * work at the prompt as in a script.
 *
 * Ctrl-C is a soft SIGINT here (h->on_soft_sigint): at the prompt it
 * clears the line; while a line runs it fails the line's current wait (or
 * stops its code, through a hook signal.c sets) and the session goes on.
 * Output the host writes while the prompt shows (log lines, progress,
 * print from tasks) takes the prompt off the screen first and puts it back
 * after (h->hold_screen, h->release_screen).  History is kept in
 * ~/.pyqhost_history.  readline's callbacks take no userdata: the one
 * REPL of the process is found through a file-level pointer. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <readline/readline.h>
#include <readline/history.h>
#include "repl.h"
#include "pyqhost.h"
#include "core/signal.h"
#include "lua/check.h"
#include "lua/error.h"

#define HISTORY_KEEP 1000

typedef struct repl {
  pyq_host *h;
  uv_poll_t *poll;        /* stdin; malloc'd: libuv may hold it after Lua */
  pyq_fiber *waiter;      /* the main task at the prompt */
  int installed;          /* readline's handler is installed */
  int held;               /* the prompt was taken off the screen */
  char history[PATH_MAX];
} repl;

static repl *the_repl;

static void stop_reading (repl *r) {
  if (r->installed) {
    rl_callback_handler_remove();
    r->installed = 0;
  }
  uv_poll_stop(r->poll);
}

static void on_line (char *line) {
  repl *r = the_repl;
  pyq_fiber *f = r->waiter;
  stop_reading(r);
  r->waiter = NULL;
  if (f != NULL) {
    if (line == NULL) {
      lua_pushnil(f->L);
    } else {
      if (*line) {
        add_history(line);
        if (r->history[0]) append_history(1, r->history);
      }
      lua_pushstring(f->L, line);
    }
    pyq_wake(f, 1);
  }
  free(line);
}

static void on_readable (uv_poll_t *p, int status, int events) {
  (void)p; (void)events;
  if (status < 0) {   /* stdin is gone: as end of input */
    on_line(NULL);
    return;
  }
  rl_callback_read_char();
}

static void readline_disarm (pyq_fiber *f, void *on) {
  repl *r = on;
  (void)f;
  stop_reading(r);
  r->waiter = NULL;
}

static const pyq_wait_ops readline_wait = {"pyq.repl.readline", readline_disarm};

/* stdin is not a terminal (-i with a pipe or a file): its lines are read
 * as they come, with no editing, prompt or history; the loop waits for
 * each line, as a script read from stdin would. */
static int read_plain (lua_State *L, repl *r) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, stdin);
  (void)r;
  if (n < 0) {
    free(line);
    lua_pushnil(L);
    return 1;
  }
  if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
  lua_pushlstring(L, line, (size_t)n);
  free(line);
  return 1;
}

/* core.readline(prompt) -> the line, nil at end of input (Ctrl-D), or
 * false when Ctrl-C dropped what was being typed */
static int repl_readline (lua_State *L) {
  repl *r = lua_touserdata(L, lua_upvalueindex(1));
  pyq_fiber *f;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.repl.readline: prompt must be a string, got %s",
                     pyq_got(L, 1));
  f = pyq_fiber_check(L, "pyq.repl.readline");
  if (r->poll == NULL) return read_plain(L, r);
  if (r->waiter != NULL)
    return pyq_usage(L, "pyq.repl.readline: the prompt is already waiting");
  fflush(stdout);
  r->waiter = f;
  r->held = 0;
  rl_callback_handler_install(lua_tostring(L, 1), on_line);
  r->installed = 1;
  uv_poll_start(r->poll, UV_READABLE, on_readable);
  return pyq_park(L, f, &readline_wait, r, NULL);
}

static void hold_screen (pyq_host *h) {
  repl *r = the_repl;
  (void)h;
  if (!r->installed || r->held) return;
  r->held = 1;
  rl_clear_visible_line();
  fflush(rl_outstream ? rl_outstream : stdout);   /* before stderr's line */
}

static void release_screen (pyq_host *h) {
  repl *r = the_repl;
  (void)h;
  if (!r->installed || !r->held) return;
  r->held = 0;
  rl_forced_update_display();
}

/* Ctrl-C: a fresh prompt, or the running line stops. */
static void soft_sigint (pyq_host *h) {
  repl *r = the_repl;
  if (r->installed) {   /* the line, and a statement begun, are dropped */
    pyq_fiber *f = r->waiter;
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_replace_line("", 0);
    fputs("^C\n", rl_outstream ? rl_outstream : stdout);
    fflush(rl_outstream ? rl_outstream : stdout);
    stop_reading(r);
    r->waiter = NULL;
    if (f != NULL) {
      lua_pushboolean(f->L, 0);   /* readline's answer: start over */
      pyq_wake(f, 1);
    }
    return;
  }
  pyq_soft_interrupt(h);
}

/* The continuation of repl_call: the line's run record ends with it (a
 * Ctrl-C's cancellation too), so the next line starts clean. */
static int call_k (lua_State *L, int status, lua_KContext ctx) {
  pyq_fiber *f = pyq_fiber_of(L);
  (void)ctx;
  if (f != NULL) pyq_run_end(f);
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 1);
  return lua_gettop(L);
}

/* core repl call(handler, fn) -> true, results | false, handler(err): a
 * protected call that, unlike pcall, lets a Ctrl-C stop at the line's end
 * rather than raising it again, since the prompt is what it returns to. */
static int repl_call (lua_State *L) {
  pyq_fiber *f = pyq_fiber_of(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  /* a Ctrl-C from before this line (the prompt's) does not stop it */
  if (f != NULL) pyq_soft_clear(f);
  return call_k(L, lua_pcallk(L, 0, LUA_MULTRET, 1, 0, call_k), 0);
}

static void poll_closed (uv_handle_t *p) { free(p); }

static int repl_gc (lua_State *L) {
  repl *r = lua_touserdata(L, 1);
  if (r->h == NULL) return 0;
  if (r->poll != NULL) {
    stop_reading(r);
    uv_close((uv_handle_t *)r->poll, poll_closed);
    r->poll = NULL;
  }
  r->h->on_soft_sigint = NULL;
  r->h->hold_screen = r->h->release_screen = NULL;
  if (the_repl == r) the_repl = NULL;
  r->h = NULL;
  return 0;
}

/* Runs lualib's pyq.repl as the main task; returns the exit code so far. */
int pyq_repl_run (pyq_host *h) {
  lua_State *L = h->L;
  repl *r = lua_newuserdatauv(L, sizeof *r, 0);
  const char *home = getenv("HOME");
  memset(r, 0, sizeof *r);
  r->h = h;
  if ((r->poll = malloc(sizeof *r->poll)) == NULL) {
    lua_pop(L, 1);
    fprintf(stderr, "pyqhost: not enough memory\n");
    return 1;
  }
  if (!isatty(STDIN_FILENO) ||   /* a pipe or a file: plain lines */
      uv_poll_init(h->loop, r->poll, STDIN_FILENO) != 0) {
    free(r->poll);
    r->poll = NULL;
  }
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, repl_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  the_repl = r;
  rl_catch_signals = 0;      /* the host owns SIGINT and SIGWINCH */
  rl_catch_sigwinch = 0;
  rl_readline_name = "pyqhost";
  using_history();
  if (home && *home &&
      snprintf(r->history, sizeof r->history, "%s/.pyqhost_history", home) <
      (int)sizeof r->history) {
    if (read_history(r->history) != 0)
      write_history(r->history);   /* made now: lines are appended to it */
    history_truncate_file(r->history, HISTORY_KEEP);
  } else {
    r->history[0] = '\0';
  }
  h->on_soft_sigint = soft_sigint;
  h->hold_screen = hold_screen;
  h->release_screen = release_screen;
  /* pyq.repl's main(readline) runs as the main task */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "pyq.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "pyqhost: %s\n", lua_tostring(L, -1));
    lua_pop(L, 2);
    return 1;
  }
  lua_getfield(L, -1, "main");
  lua_remove(L, -2);
  lua_pushvalue(L, -2);   /* the repl userdata, for the readline closure */
  lua_pushcclosure(L, repl_readline, 1);
  lua_pushcfunction(L, repl_call);
  lua_rotate(L, -4, -1);  /* main, readline, call, r */
  lua_setfield(L, LUA_REGISTRYINDEX, "pyq.repl.state");   /* anchored */
  return pyq_host_run_main(h, 2);
}
