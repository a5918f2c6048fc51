/* main.c -- the pyqhost command line.
 *
 * Parses the options, opens the host (host.c), then runs each -e/-l chunk
 * and the script (or stdin, as lua does) as the main task, one after
 * another, each to the end of the loop.  Exit codes: 0 success, 1 an
 * uncaught error, 2 a usage error or an unreadable script, 3 task failures
 * left to the default exception handler, 128 + the signal when interrupted,
 * or os.exit's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include "pyqhost.h"
#include "repl.h"
#include "redis/redis.h"

#define USAGE \
  "usage: %s [options] [script [args]]\n" \
  "       %s init [dir]   (a job skeleton: job.lua, .luarc.json, .luacheckrc)\n" \
  "Runs a Lua 5.4 script on a libuv event loop with the pyq API.\n" \
  "  -e CODE           run CODE first\n" \
  "  -l NAME           require NAME first (as global NAME)\n" \
  "  -i                enter the interactive prompt after the script\n" \
  "  -v, -vv           log INFO, DEBUG and above (default WARNING)\n" \
  "  -q                log ERROR and above\n" \
  "  --log-level LEVEL log threshold, a name or number\n" \
  "  --progress        show progress for every queue\n" \
  "  --summary         print a summary of queues and HTTP at exit\n" \
  "  --summary-json FILE  write that summary to FILE as JSON\n" \
  "  --worker URL      run the script with pyq.worker = true, then serve its\n" \
  "                    cluster queues on redis://host:port/db until they end\n" \
  "  --cluster-status URL NAME  print the cluster job NAME's tasks per process\n" \
  "  -h, --help        show this help\n" \
  "  -V, --version     show the versions of pyqhost, Lua, libuv, libcurl\n" \
  "  --                stop handling options\n" \
  "  -                 read the script from stdin\n" \
  "With no script and no -e, the script is read from stdin, or the\n" \
  "interactive prompt starts when stdin is a terminal.\n" \
  "Exit status: 0 success; 1 an uncaught error; 2 a usage error or an\n" \
  "unreadable script; 3 a task failed and its error went to the default\n" \
  "exception handler (set exception_handler to handle failures); 130, 143\n" \
  "SIGINT, SIGTERM; 141 a write to a closed stdout; n os.exit(n).\n"

typedef struct pre_chunk { char kind; const char *text; } pre_chunk;

typedef struct options {
  pre_chunk *pre;
  int npre;
  int has_e;        /* an -e was given: no script means none, not stdin */
  int script;       /* argv index of the script, or 0 */
  int from_stdin;   /* no script given: read it from stdin */
  int interactive;  /* -i, or nothing to run on a terminal: the prompt */
  int log_level;
  int progress, summary;
  const char *summary_json;
  const char *worker;   /* --worker URL */
  const char *status[2];  /* --cluster-status URL NAME */
} options;

static int usage_error (const char *prog, const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", prog);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n" USAGE, prog, prog);
  return 2;
}

/* A bad URL is named before the script runs, not after. */
static int bad_redis_url (const char *opt, const char *url) {
  char host[128];
  int port, db;
  const char *why = "";
  if (url == NULL) {
    fprintf(stderr, "pyqhost: '%s' needs a redis://host:port/db URL\n", opt);
  } else if (!pyq_redis_parse_url(url, host, sizeof host, &port, &db, &why)) {
    fprintf(stderr, "pyqhost: '%s' %s: %s\n", opt, url, why);
  } else {
    return 0;
  }
  fprintf(stderr, USAGE, "pyqhost", "pyqhost");
  return 1;
}

static void print_version (void) {
  const curl_version_info_data *c = curl_version_info(CURLVERSION_NOW);
  printf("pyqhost %s (%s, libuv %s, libcurl %s", PYQ_VERSION, LUA_RELEASE,
         uv_version_string(), c->version);
  if (c->ssl_version) printf(" %s", c->ssl_version);
  if (c->nghttp2_version) printf(" nghttp2/%s", c->nghttp2_version);
  printf(")\n");
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
      if (a[1] == 'e') o->has_e = 1;
    } else if (strcmp(a, "-i") == 0) {
      o->interactive = 1;
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
    } else if (strcmp(a, "--summary-json") == 0) {
      if ((o->summary_json = argv[++i]) == NULL)
        return usage_error("pyqhost", "'%s' needs a file name", a);
    } else if (strcmp(a, "--worker") == 0) {
      if (bad_redis_url(a, o->worker = argv[++i])) return 2;
    } else if (strcmp(a, "--cluster-status") == 0) {
      if (bad_redis_url(a, o->status[0] = argv[++i])) return 2;
      if ((o->status[1] = argv[++i]) == NULL)
        return usage_error("pyqhost", "'%s' needs a redis:// URL and a job "
                           "name", a);
      o->has_e = 1;   /* no script: nothing is read from stdin */
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      printf(USAGE, "pyqhost", "pyqhost");
      exit(0);
    } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      print_version();
      exit(0);
    } else {
      return usage_error("pyqhost", "unrecognized option '%s'", a);
    }
  }
  o->script = i < argc ? i : 0;
  if (o->script == 0 && !o->has_e) {   /* as lua: stdin, or an interpreter */
    if (isatty(STDIN_FILENO)) o->interactive = 1;
    else if (!o->interactive) o->from_stdin = 1;
  }
  return 0;
}

static int load_error (pyq_host *h, int status) {
  fprintf(stderr, "pyqhost: %s\n", lua_tostring(h->L, -1));
  lua_pop(h->L, 1);
  return status == LUA_ERRFILE ? 2 : 1;
}

/* -l NAME: NAME = require(NAME), called from C as lua does, so an error
 * names no chunk of ours. */
static int require_global (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getglobal(L, "require");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_setglobal(L, name);
  return 0;
}

static int run_pre (pyq_host *h, const pre_chunk *c) {
  if (c->kind == 'e') {
    int st = luaL_loadbuffer(h->L, c->text, strlen(c->text), "=(command line)");
    if (st != LUA_OK) return load_error(h, st);
    return pyq_host_run_main(h, 0);
  }
  lua_pushcfunction(h->L, require_global);
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

/* script is argv's index of the script, or argc for stdin.  With worker
 * (--worker URL), pyq.cluster.worker(URL, chunk, args...) runs instead:
 * the script with pyq.worker set, then the serving of its queues. */
static int run_script (pyq_host *h, int argc, char **argv, int script,
                       const char *worker) {
  const char *name = script < argc ? argv[script] : NULL;
  int i, st, extra = 0;
  if (name && strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
    name = NULL;
  if (worker) {
    lua_getglobal(h->L, "require");
    lua_pushliteral(h->L, "pyq.cluster");
    if (lua_pcall(h->L, 1, 1, 0) != LUA_OK) return load_error(h, LUA_ERRRUN);
    lua_getfield(h->L, -1, "worker");
    lua_remove(h->L, -2);
    lua_pushstring(h->L, worker);
    extra = 2;
  }
  st = luaL_loadfile(h->L, name);
  if (st != LUA_OK) return load_error(h, st);
  for (i = script + 1; i < argc; i++) lua_pushstring(h->L, argv[i]);
  return pyq_host_run_main(h, (script < argc ? argc - script - 1 : 0) + extra);
}

/* Where pyq's editor definitions are: installed, or in the source tree
 * this binary was built from. */
static const char *meta_dir (void) {
  static const char *const dirs[] = {PYQ_DATADIR "/meta", PYQ_SOURCE_DIR "/meta"};
  size_t i;
  for (i = 0; i < sizeof dirs / sizeof *dirs; i++)
    if (access(dirs[i], R_OK) == 0) return dirs[i];
  return dirs[0];
}

/* pyqhost init [dir]: lualib's pyq.skeleton writes the files. */
static int run_init (int argc, char **argv) {
  pyq_host host;
  int code;
  if (argc > 3) return usage_error("pyqhost", "init takes at most one "
                                   "directory, got '%s' too", argv[3]);
  if (!pyq_host_open(&host, PYQ_WARNING)) return 1;
  luaL_loadstring(host.L, "local dir, meta = ... "
                  "return os.exit(require('pyq.skeleton').main(dir, meta))");
  if (argc > 2) lua_pushstring(host.L, argv[2]);
  else lua_pushnil(host.L);
  lua_pushstring(host.L, meta_dir());
  code = pyq_host_run_main(&host, 2);
  return pyq_host_close(&host, code);
}

int main (int argc, char **argv) {
  pyq_host host;
  options o = {0};
  int i, summary, code;
  if (argc > 1 && strcmp(argv[1], "init") == 0) return run_init(argc, argv);
  o.log_level = PYQ_WARNING;
  code = parse_args(argc, argv, &o);
  if (code != 0) {
    free(o.pre);
    return code;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!pyq_host_open(&host, o.log_level)) return 1;
  host.progress_all = o.progress;
  create_arg(host.L, argc, argv, o.script ? o.script : argc);
  for (i = 0; i < o.npre && code == 0 && !host.exit_requested; i++)
    code = run_pre(&host, &o.pre[i]);
  if (o.status[0] && code == 0) {   /* pyq.cluster.status(url, name) */
    lua_getglobal(host.L, "require");
    lua_pushliteral(host.L, "pyq.cluster");
    lua_call(host.L, 1, 1);
    lua_getfield(host.L, -1, "status");
    lua_remove(host.L, -2);
    lua_pushstring(host.L, o.status[0]);
    lua_pushstring(host.L, o.status[1]);
    code = pyq_host_run_main(&host, 2);
  }
  if (code == 0 && (o.script || o.from_stdin) && !host.exit_requested)
    code = run_script(&host, argc, argv, o.script ? o.script : argc,
                      o.worker);
  if (o.interactive && code == 0 && !host.exit_requested && !host.signal) {
    code = pyq_repl_run(&host);
  }
  /* -v asks for the summary; a level the script sets for itself does not */
  summary = o.summary || o.log_level <= PYQ_INFO || host.signal;
  if (summary) pyq_host_summary(&host);
  if (code == 0 && host.write_errors) code = 1;   /* logged where it failed */
  if (host.signal) code = 128 + host.signal;
  else if (code == 0 && !host.exit_requested && host.unhandled > 0) {
    code = 3;   /* like xargs' 123: some task failed and nobody handled it */
    if (!summary)   /* the reason, even under -q, which hid the WARNINGs */
      pyq_log(&host, PYQ_ERROR, "pyqhost", "%lld task%s failed and no "
              "exception_handler handled %s (exit code 3)",
              (long long)host.unhandled, host.unhandled == 1 ? "" : "s",
              host.unhandled == 1 ? "it" : "them");
  }
  if (o.summary_json && pyq_host_summary_json(&host, o.summary_json, code) != 0) {
    pyq_log(&host, PYQ_ERROR, "pyqhost", "--summary-json: cannot write "
            "'%s': %s", o.summary_json, strerror(errno));
    if (code == 0) code = 1;
  }
  code = pyq_host_close(&host, code);
  curl_global_cleanup();
  free(o.pre);
  return code;
}
