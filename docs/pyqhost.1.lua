-- The command line of pyqhost, written once: tools/gen_man.lua makes the
-- man page pyqhost(1) from this table at build time, and
-- tests/host/docs_spec.lua checks that `pyqhost --help` and the README's
-- "Running a script" block list exactly these options.
return {
  name = "pyqhost",
  summary = "run Lua 5.4 collection jobs on an event loop",
  synopsis = {
    "pyqhost [options] [script [args...]]",
    "pyqhost init [dir]",
  },
  description = {
    "pyqhost runs a Lua 5.4 script as the main task of a libuv event loop, with the pyq API: " ..
    "queues of tasks run by workers (pyq.Queue), HTTP on libcurl's multi interface (pyq.http), " ..
    "JSON, JSON Lines and SQLite outputs, timers, logging, progress and an exit summary. " ..
    "Every task is a coroutine; a wait (pyq.sleep, queue:put, queue:join, an HTTP request) " ..
    "suspends it and the loop runs the others.",
    "With no script and no -e, the script is read from standard input, or the interactive " ..
    "prompt starts when standard input is a terminal. The prompt runs each line as the main " ..
    "task, so waits work there; Ctrl-C stops the running line, Ctrl-D exits.",
    "pyqhost init writes a job skeleton into dir (default .): job.lua, .luarc.json for the " ..
    "Lua language server and .luacheckrc; it never overwrites a file.",
  },
  options = {
    { "-e", "CODE", "run CODE first" },
    { "-l", "NAME", "require NAME first (as global NAME)" },
    { "-i", nil, "enter the interactive prompt after the script" },
    { "-v, -vv", nil, "log INFO, DEBUG and above (default WARNING)" },
    { "-q", nil, "log ERROR and above" },
    { "--log-level", "LEVEL", "log threshold, a name or number" },
    { "--progress", nil, "show progress for every queue" },
    { "--summary", nil, "print a summary of queues and HTTP at exit" },
    { "--summary-json", "FILE", "write that summary to FILE as JSON (written whole, or not at all)" },
    { "--cluster-status", "URL NAME", "print the cluster job NAME's tasks per process: running, done, failed; and those not taken yet" },
    { "--worker", "URL", "run the script with pyq.worker = true, then serve its cluster queues on redis://host:port/db until they end" },
    { "-h, --help", nil, "show this help" },
    { "-V, --version", nil, "show the versions of pyqhost, Lua, libuv, libcurl" },
    { "--", nil, "stop handling options" },
    { "-", nil, "read the script from stdin" },
  },
  exit_status = {
    { "0", "success" },
    { "1", "an uncaught error in the main task, a syntax error, or a main task waiting for " ..
           "something that can never happen" },
    { "2", "a usage error or an unreadable script" },
    { "3", "the job ran to the end but a task failed and its error went to the default " ..
           "exception handler" },
    { "130, 143", "interrupted by SIGINT, SIGTERM" },
    { "141", "a write to a closed standard output" },
    { "n", "os.exit(n)" },
  },
  environment = {
    { "PYQ_LUALIB", "load the pyq Lua library from DIR/pyq/ instead of the copy built into " ..
                    "the executable" },
    { "HOME", "the prompt keeps its history in $HOME/.pyqhost_history" },
    { "http_proxy, https_proxy, no_proxy", "as libcurl reads them" },
  },
  files = {
    { "~/.pyqhost_history", "the prompt's history (the last 1,000 lines)" },
    { "/usr/share/pyqhost/meta", "definitions of the pyq API for the Lua language server" },
    { "/usr/share/doc/pyqhost/examples", "example jobs" },
  },
}
