/* main.c -- the pyqhost command line.
 *
 * Sets up the host (Lua state, libuv loop, module paths), then runs each
 * -e/-l chunk and the script as the main task, one after another, each to
 * the end of the loop.  Exit codes: 0 success, 1 an uncaught error, 2 a
 * usage error or an unreadable script. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <lualib.h>
#include "host.h"
#include "http.h"

#define USAGE \
  "usage: %s [options] [script [args]]\n" \
  "Runs a Lua 5.4 script on a libuv event loop with the pyq API.\n" \
  "  -e CODE           run CODE first\n" \
  "  -l NAME           require NAME first (as global NAME)\n" \
  "  -v, -vv           log INFO, DEBUG and above (default WARNING)\n" \
  "  -q                log ERROR and above\n" \
  "  --log-level LEVEL log threshold, a name or number\n" \
  "  --progress        show progress for every queue\n" \
  "  --summary         print a summary of queues and HTTP at exit\n" \
  "  -h, --help        show this help\n" \
  "  -V, --version     show the version\n" \
  "  --                stop handling options\n" \
  "  -                 read the script from stdin\n"

typedef struct pre_chunk { char kind; const char *text; } pre_chunk;

typedef struct options {
  pre_chunk *pre;
  int npre;
  int script;       /* argv index of the script, or 0 */
  int log_level;
  int progress, summary;
} options;

static void *host_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  pyq_host *h = ud;
  void *p;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    free(ptr);
    h->mem -= osize;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p != NULL) h->mem += nsize - osize;
  return p;
}

static int host_panic (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "pyqhost: %s\n", msg ? msg : "unrecoverable error");
  fflush(NULL);
  exit(1);
}

static int usage_error (const char *prog, const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", prog);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n" USAGE, prog);
  return 2;
}

/* Returns 0 to go on, or an exit code. */
static int parse_args (int argc, char **argv, options *o) {
  int i;
  o->pre = calloc((size_t)argc, sizeof *o->pre);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (a[1] == 'e' || a[1] == 'l') {
      const char *v = a[2] ? a + 2 : argv[++i];
      if (v == NULL)
        return usage_error("pyqhost", "'%s' needs an argument", a);
      o->pre[o->npre].kind = a[1];
      o->pre[o->npre++].text = v;
    } else if (strcmp(a, "-v") == 0) {
      o->log_level = PYQ_INFO;
    } else if (strcmp(a, "-vv") == 0) {
      o->log_level = PYQ_DEBUG;
    } else if (strcmp(a, "-q") == 0) {
      o->log_level = PYQ_ERROR;
    } else if (strncmp(a, "--log-level", 11) == 0 &&
               (a[11] == '=' || a[11] == '\0')) {
      const char *v = a[11] == '=' ? a + 12 : argv[++i];
      if (v == NULL)
        return usage_error("pyqhost", "'%s' needs an argument", a);
      if (!pyq_log_level_parse(v, &o->log_level))
        return usage_error("pyqhost", "bad log level '%s'", v);
    } else if (strcmp(a, "--progress") == 0) {
      o->progress = 1;
    } else if (strcmp(a, "--summary") == 0) {
      o->summary = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      printf(USAGE, "pyqhost");
      exit(0);
    } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      printf("pyqhost %s (%s, libuv %s)\n", PYQ_VERSION, LUA_RELEASE,
             uv_version_string());
      exit(0);
    } else {
      return usage_error("pyqhost", "unrecognized option '%s'", a);
    }
  }
  o->script = i < argc ? i : 0;
  if (o->script == 0 && o->npre == 0)
    return usage_error("pyqhost", "%sno script given", "");
  return 0;
}

/* Prepends the project's lualib/ (the source tree's when run from the
 * build tree, else the installed one) to package.path. */
static void set_paths (lua_State *L) {
  char exe[PATH_MAX], real_exe_dir[PATH_MAX], real_build[PATH_MAX];
  size_t size = sizeof exe;
  const char *lualib = PYQ_SOURCE_LUALIB;
  char *slash;
  if (uv_exepath(exe, &size) == 0 && (slash = strrchr(exe, '/')) != NULL) {
    *slash = '\0';
    if (!realpath(exe, real_exe_dir) || !realpath(PYQ_BUILD_DIR, real_build) ||
        strcmp(real_exe_dir, real_build) != 0) {
      lua_pushfstring(L, "%s/%s", exe, PYQ_INSTALL_LUALIB);
      lualib = lua_tostring(L, -1);
    }
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lualib, lualib,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

/* os.exit from a task: the state cannot be closed under a running
 * coroutine, so flush and leave. */
static int host_exit (lua_State *L) {
  int code = lua_isboolean(L, 1) ? (lua_toboolean(L, 1) ? 0 : 1)
                                 : (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  exit(code);
}

static void main_finish (pyq_fiber *f, int status) {
  pyq_host *h = f->host;
  h->main = NULL;
  h->main_done = 1;
  if (status != LUA_OK) {
    if (h->signal)   /* the interruption unwound it: no traceback */
      lua_pushstring(h->L, pyq_errstr(f->L, -1));
    else
      luaL_traceback(h->L, f->L, pyq_errstr(f->L, -1), 0);
    lua_resetthread(f->L);
    pyq_progress_clear(h);
    fprintf(stderr, "%s: %s\n", h->progname, lua_tostring(h->L, -1));
    fflush(stderr);
    lua_pop(h->L, 1);
    h->exit_code = 1;
    pyq_queue_cancel_all(h, PYQ_CANCELLED);
  }
  pyq_fiber_free(f);
}

/* Runs the function and nargs arguments on h->L as the main task, then the
 * loop until nothing is left to do. */
static int run_main (pyq_host *h, int nargs) {
  pyq_fiber *f = pyq_fiber_new(h->L, h);
  f->flags |= PYQ_F_MAIN;
  f->finish = main_finish;
  pyq_list_push(&h->fibers, &f->member);
  lua_xmove(h->L, f->L, nargs + 1);
  f->nargs = nargs;
  h->main = f;
  pyq_post(h, &f->job);
  pyq_run(h);
  return h->exit_code;
}

static int load_error (pyq_host *h, int status) {
  fprintf(stderr, "%s: %s\n", h->progname, lua_tostring(h->L, -1));
  lua_pop(h->L, 1);
  return status == LUA_ERRFILE ? 2 : 1;
}

static int run_pre (pyq_host *h, const pre_chunk *c) {
  if (c->kind == 'e') {
    int st = luaL_loadbuffer(h->L, c->text, strlen(c->text), "=(command line)");
    if (st != LUA_OK) return load_error(h, st);
    return run_main(h, 0);
  }
  luaL_loadstring(h->L, "local name = ...; _G[name] = require(name)");
  lua_pushstring(h->L, c->text);
  return run_main(h, 1);
}

static void create_arg (lua_State *L, int argc, char **argv, int script) {
  int i;
  lua_createtable(L, argc - script, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int run_script (pyq_host *h, int argc, char **argv, int script) {
  const char *name = argv[script];
  int i, st;
  if (strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
    name = NULL;
  st = luaL_loadfile(h->L, name);
  if (st != LUA_OK) return load_error(h, st);
  for (i = script + 1; i < argc; i++) lua_pushstring(h->L, argv[i]);
  return run_main(h, argc - script - 1);
}

/* 10,000 requests in flight need as many sockets. */
static void raise_nofile (void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

static int open_host (pyq_host *h, int log_level) {
  lua_State *L;
  memset(h, 0, sizeof *h);
  pyq_list_init(&h->ready);
  pyq_list_init(&h->fibers);
  pyq_list_init(&h->queues);
  pyq_list_init(&h->stats);
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
  luaL_openlibs(L);
  set_paths(L);
  pyq_open_sched(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, host_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
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

static void close_host (pyq_host *h) {
  pyq_queue_report_unclosed(h);
  if (h->http) pyq_http_close(h->http);
  pyq_report_close(h);
  uv_walk(h->loop, close_handle, NULL);
  uv_run(h->loop, UV_RUN_DEFAULT);
  lua_close(h->L);
  uv_loop_close(h->loop);
}

int main (int argc, char **argv) {
  pyq_host host;
  options o = {NULL, 0, 0, PYQ_WARNING, 0, 0};
  int i, code = parse_args(argc, argv, &o);
  if (code != 0) return code;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!open_host(&host, o.log_level)) return 1;
  host.progname = "pyqhost";
  host.progress_all = o.progress;
  create_arg(host.L, argc, argv, o.script ? o.script : argc);
  for (i = 0; i < o.npre && code == 0; i++) code = run_pre(&host, &o.pre[i]);
  if (code == 0 && o.script) code = run_script(&host, argc, argv, o.script);
  if (o.summary || host.log_level <= PYQ_INFO || host.signal)
    pyq_report_summary(&host);
  if (host.signal) code = 128 + host.signal;
  close_host(&host);
  curl_global_cleanup();
  free(o.pre);
  return code;
}
