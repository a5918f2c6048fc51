/* main.c -- the pyqhost command line.
 *
 * Parses the options, opens the host (host.c), then runs each -e/-l chunk
 * and the script as the main task, one after another, each to the end of
 * the loop.  Exit codes: 0 success, 1 an uncaught error, 2 a usage error or
 * an unreadable script, 128 + the signal when interrupted, or os.exit's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "host.h"

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

static int load_error (pyq_host *h, int status) {
  fprintf(stderr, "%s: %s\n", h->progname, lua_tostring(h->L, -1));
  lua_pop(h->L, 1);
  return status == LUA_ERRFILE ? 2 : 1;
}

static int run_pre (pyq_host *h, const pre_chunk *c) {
  if (c->kind == 'e') {
    int st = luaL_loadbuffer(h->L, c->text, strlen(c->text), "=(command line)");
    if (st != LUA_OK) return load_error(h, st);
    return pyq_host_run_main(h, 0);
  }
  luaL_loadstring(h->L, "local name = ...; _G[name] = require(name)");
  lua_pushstring(h->L, c->text);
  return pyq_host_run_main(h, 1);
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
  return pyq_host_run_main(h, argc - script - 1);
}

int main (int argc, char **argv) {
  pyq_host host;
  options o = {NULL, 0, 0, PYQ_WARNING, 0, 0};
  int i, code = parse_args(argc, argv, &o);
  if (code != 0) {
    free(o.pre);
    return code;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!pyq_host_open(&host, o.log_level)) return 1;
  host.progname = "pyqhost";
  host.progress_all = o.progress;
  create_arg(host.L, argc, argv, o.script ? o.script : argc);
  for (i = 0; i < o.npre && code == 0 && !host.exit_requested; i++)
    code = run_pre(&host, &o.pre[i]);
  if (code == 0 && o.script && !host.exit_requested)
    code = run_script(&host, argc, argv, o.script);
  if (o.summary || host.log_level <= PYQ_INFO || host.signal)
    pyq_report_summary(&host);
  if (host.signal) code = 128 + host.signal;
  code = pyq_host_close(&host, code);
  curl_global_cleanup();
  free(o.pre);
  return code;
}
