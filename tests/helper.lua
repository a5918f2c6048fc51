-- Helpers for specs that drive a real pyqhost process.
--
-- Every file a spec makes goes into one private temporary directory per spec
-- process, M.tmpdir, removed when the process ends: busted ends a spec with
-- os.exit, which pyqhost turns into an unwind and lua_close, and lua_close
-- runs the __gc of M's sentinel (anchored by package.loaded), so the
-- directory goes on success, failure and errors alike.  os.tmpname is
-- replaced by M.tmpname for the same reason: Lua's makes /tmp/lua_* files
-- that nothing removes.
local M = {}

M.pyqhost = os.getenv("PYQHOST") or "build/pyqhost"
M.source = os.getenv("PYQ_SOURCE") or "."

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

do
  -- 755: nginx's workers (user nobody) read the files start_nginx_h2 puts there
  local p = assert(io.popen([[d=$(mktemp -d "${TMPDIR:-/tmp}/pyqspec.XXXXXX") && chmod 755 "$d" && echo "$d"]]))
  M.tmpdir = p:read("l")
  p:close()
  assert(M.tmpdir and M.tmpdir ~= "", "tests/helper.lua: mktemp -d failed")
  local execute, rmdir = os.execute, "rm -rf " .. M.quote(M.tmpdir)
  M._sentinel = setmetatable({}, { __gc = function() execute(rmdir) end })
end

local serial = 0
--- A path in M.tmpdir that does not exist yet.
function M.fresh(suffix)
  serial = serial + 1
  return ("%s/t%d%s"):format(M.tmpdir, serial, suffix or "")
end

--- A new, empty directory in M.tmpdir.
function M.tempdir()
  local dir = M.fresh()
  assert(os.execute("mkdir " .. M.quote(dir)))
  return dir
end

--- Like os.tmpname (the file is created, empty), in M.tmpdir.
function M.tmpname()
  local path = M.fresh()
  assert(io.open(path, "w")):close()
  return path
end
os.tmpname = M.tmpname

function M.tempfile(text, suffix)
  local path = M.fresh(suffix or ".lua")
  local f = assert(io.open(path, "w"))
  f:write(text or "")
  f:close()
  return path
end

--- The contents of a file ("" when it cannot be opened).
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function slurp(path)
  local s = M.read_file(path)
  os.remove(path)
  return s
end

--- Runs pyqhost; opts: script (text) or file, flags, args, stdin (text; else
-- /dev/null), timeout.
-- Returns { code = exit code, out = stdout, err = stderr, script = path }.
function M.run(opts)
  local file = opts.file or M.tempfile(opts.script)
  local errfile = M.fresh(".err")
  local infile = opts.stdin and M.tempfile(opts.stdin, ".txt")
  local parts = { "timeout", "-s", "KILL", tostring(opts.timeout or 60), M.quote(M.pyqhost) }
  for _, f in ipairs(opts.flags or {}) do parts[#parts + 1] = M.quote(f) end
  if not opts.nofile then parts[#parts + 1] = M.quote(file) end
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = M.quote(a) end
  local cmd = table.concat(parts, " ") .. " 2>" .. M.quote(errfile)
    .. " <" .. (infile and M.quote(infile) or "/dev/null")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  if not opts.file then os.remove(file) end
  if infile then os.remove(infile) end
  return { code = code, out = out, err = slurp(errfile), script = file }
end

--- Starts tests/fixtures/api.py on a free loopback port.
-- flags: extra command-line flags ({ "--latency", "50" }).
-- Returns { port =, base = "http://127.0.0.1:PORT", stop = function }.
function M.start_api(flags)
  local stem = M.fresh()
  local portfile, pidfile = stem .. ".port", stem .. ".pid"
  local parts = { "PYTHONDONTWRITEBYTECODE=1 python3", M.quote(M.source .. "/tests/fixtures/api.py"), "--daemon",
                  "--port-file", M.quote(portfile), "--pid-file", M.quote(pidfile) }
  for _, f in ipairs(flags or {}) do parts[#parts + 1] = M.quote(f) end
  assert(os.execute(table.concat(parts, " ")), "the fixture API did not start")
  local f = assert(io.open(portfile))
  local port = assert(tonumber(f:read("l")))
  f:close()
  f = assert(io.open(pidfile))
  local pid = assert(tonumber(f:read("l")))
  f:close()
  os.remove(portfile)
  os.remove(pidfile)
  local api = { port = port, pid = pid, base = "http://127.0.0.1:" .. port }
  function api.stop()
    -- --daemon made it a process group leader: --processes workers go too
    os.execute("kill -- -" .. pid .. " 2>/dev/null || kill " .. pid .. " 2>/dev/null")
  end
  return api
end

--- Starts tests/fixtures/delay_server.py: every answer after `delay` s.
function M.start_delay_server(delay, processes)
  local stem = M.fresh()
  assert(os.execute(("PYTHONDONTWRITEBYTECODE=1 python3 %s --delay %s --processes %d --port-file %s --pid-file %s"):format(
    M.quote(M.source .. "/tests/fixtures/delay_server.py"), delay, processes or 1,
    M.quote(stem .. ".port"), M.quote(stem .. ".pid"))), "the delay server did not start")
  local function read(path)
    local f = assert(io.open(path))
    local v = tonumber(f:read("l"))
    f:close()
    os.remove(path)
    return v
  end
  local port, pid = read(stem .. ".port"), read(stem .. ".pid")
  return { port = port, base = "http://127.0.0.1:" .. port,
           stop = function() os.execute("kill -- -" .. pid .. " 2>/dev/null") end }
end

--- Resident set size of this process, in MiB.
function M.rss_mib()
  local f = assert(io.open("/proc/self/status"))
  local kib = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kib) / 1024
end

--- True when the suite runs under the sanitizers (slower, no ulimit -v).
M.sanitized = os.getenv("PYQ_SANITIZE") == "1"

--- Starts pyqhost in the background (flags and args are shell words);
-- returns { pid =, out =, err =, codef = } for wait_exit.
function M.spawn(flags, script, args)
  local file = M.tempfile(script)
  local out, err, pidf, codef = M.fresh(".out"), M.fresh(".err"), M.fresh(".pid"), M.fresh(".code")
  local cmd = ("(%s %s %s %s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s) &"):format(
    M.quote(M.pyqhost), flags, M.quote(file), args or "", out, err, pidf, codef)
  assert(os.execute(cmd))
  local pid
  for _ = 1, 100 do
    local f = io.open(pidf)
    pid = f and tonumber(f:read("l"))
    if f then f:close() end
    if pid then break end
    pyq.sleep(0.02)
  end
  return { pid = pid, out = out, err = err, pidf = pidf, codef = codef, script = file }
end

--- Waits (at most 30 s, then kills) for a spawned job; returns its exit
-- code, stdout and stderr.
function M.wait_exit(job)
  local code
  for _ = 1, 600 do
    local f = io.open(job.codef)
    code = f and tonumber(f:read("l"))
    if f then f:close() end
    if code then break end
    pyq.sleep(0.05)
  end
  if not code then os.execute("kill -KILL " .. job.pid .. " 2>/dev/null") end
  local function slurp(path)
    local f = io.open(path)
    local s = f and f:read("a") or ""
    if f then f:close() end
    os.remove(path)
    return s
  end
  for _, path in ipairs({ job.pidf, job.codef, job.script }) do os.remove(path) end
  return code, slurp(job.out), slurp(job.err)
end

--- Starts Debian's nginx on a free loopback port serving HTTPS with HTTP/2
-- (a self-signed certificate) from a folder with doc.json; nil when nginx
-- is not installed.  Its access log holds one connection number a request.
function M.start_nginx_h2()
  local nginx = "/usr/sbin/nginx"
  if not io.open(nginx) then return nil end
  local dir = M.fresh()
  assert(os.execute("mkdir -p " .. dir .. "/www"))
  assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1"):format(dir, dir)))
  local f = assert(io.open(dir .. "/www/doc.json", "w"))
  f:write('{"served":"nginx"}')
  f:close()
  local port = M.closed_port()
  f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write(([[
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 1024; }
http {
  log_format conn "$connection";
  access_log %s/access.log conn;
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    root %s/www;
    default_type application/json;
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, dir, port, dir, dir, dir))
  f:close()
  assert(os.execute(("%s -c %s/nginx.conf -p %s"):format(nginx, dir, dir)), "nginx did not start")
  for _ = 1, 50 do
    if io.open(dir .. "/nginx.pid") then break end
    pyq.sleep(0.02)
  end
  return {
    base = "https://127.0.0.1:" .. port,
    www = dir .. "/www",   -- the folder it serves
    connections = function()
      local seen, n = {}, 0
      for line in io.lines(dir .. "/access.log") do
        if not seen[line] then seen[line], n = true, n + 1 end
      end
      return n
    end,
    stop = function()
      os.execute(("kill $(cat %s/nginx.pid) 2>/dev/null; sleep 0.1; rm -rf %s"):format(dir, dir))
    end,
  }
end

--- Calls f(...) and returns the error value it must raise (a pyq.Error
-- stays one, for its kind and fields).
function M.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return err
end

--- Calls f(...) and returns the error it must raise, as a string.
function M.failure(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

--- Runs a shell command line; returns what it printed.
function M.shell(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

--- A loopback port nothing listens on (bound, then closed).
function M.closed_port()
  local p = io.popen([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
  local port = tonumber(p:read("l"))
  p:close()
  return port
end

-- The HTTP test services of issue 10 (tests/fixtures/httpbin_server.py,
-- proxy.py, bytes_server.py): each on a free loopback port, detached in a
-- process group of its own that stop() ends.
local function start_service(script, flags, name)
  local stem = M.fresh()
  local parts = { "PYTHONDONTWRITEBYTECODE=1 python3", M.quote(M.source .. "/tests/fixtures/" .. script),
                  "--port-file", M.quote(stem .. ".port"), "--pid-file", M.quote(stem .. ".pid") }
  for _, f in ipairs(flags or {}) do parts[#parts + 1] = M.quote(f) end
  assert(os.execute(table.concat(parts, " ")), name .. " did not start")
  local function read(path)
    local f = assert(io.open(path))
    local v = tonumber(f:read("l"))
    f:close()
    os.remove(path)
    return v
  end
  local port, pid = read(stem .. ".port"), read(stem .. ".pid")
  return { port = port, pid = pid, base = "http://127.0.0.1:" .. port,
           stop = function() os.execute("kill -- -" .. pid .. " 2>/dev/null") end }
end

--- Starts Debian's httpbin under gunicorn (tests/fixtures/httpbin_server.py):
-- cookies set by redirects, basic/digest auth, form and multipart echo,
-- /range, /stream, /drip, /gzip, /deflate, /brotli, ...  Its first answer
-- waits for the worker to boot (about a second).  Returns { port, base,
-- log (gunicorn's error log), stop }.
function M.start_httpbin()
  local log = M.fresh(".log")
  local s = start_service("httpbin_server.py", { "--log", log }, "httpbin")
  s.log = log
  return s
end

--- Starts the forward proxy (tests/fixtures/proxy.py); opts.auth =
-- "user:password" makes it answer 407 without those credentials.  Returns
-- { port, base, url (= base, for proxy options), requests = function
-- returning what passed through it ({method, target, proxy_auth} each,
-- oldest first), stop }.
function M.start_proxy(opts)
  local log = M.fresh(".jsonl")
  local flags = { "--log", log }
  if opts and opts.auth then flags[#flags + 1] = "--auth"; flags[#flags + 1] = opts.auth end
  local s = start_service("proxy.py", flags, "the proxy")
  s.url = s.base
  function s.requests()
    local json, seen = require "pyq.json", {}
    for line in io.lines(log) do
      local r = json.decode(line)
      if r.proxy_auth == json.null then r.proxy_auth = nil end
      seen[#seen + 1] = r
    end
    return seen
  end
  return s
end

--- Starts the byte generator (tests/fixtures/bytes_server.py):
-- /bytes/N[?rate=&cut=&chunked=1&no_ranges=1&etag=] sends N bytes (byte i
-- is i % 251) with Range support; /requests lists what it was asked.
-- Returns { port, base, url = function(n, query) -> URL, stop }; see
-- M.byte_pattern to check a body.
function M.start_bytes()
  local s = start_service("bytes_server.py", nil, "the byte generator")
  function s.url(n, query)
    return ("%s/bytes/%d%s"):format(s.base, n, query and "?" .. query or "")
  end
  return s
end

--- The bytes from offset `from` (0-based) to `to` (excluded) that the byte
-- generator sends.
function M.byte_pattern(from, to)
  local t = {}
  for i = from, to - 1 do t[#t + 1] = string.char(i % 251) end
  return table.concat(t)
end

--- Starts redis-server on a free loopback port, without persistence, its
-- files in a fresh directory (issue 12's cluster specs).  Returns { port,
-- pid, url = "redis://127.0.0.1:PORT/0", stop, pause (SIGSTOP), resume }.
-- opts.aof: persistence in an append-only file (fsync every second), so
-- r.restart() (a shutdown and a start on the same port and directory)
-- keeps the data.
function M.start_redis(opts)
  local dir = M.tempdir()
  local port = M.closed_port()
  local aof = opts and opts.aof and "yes" or "no"
  local pid
  local function start()
    os.remove(dir .. "/redis.pid")
    assert(os.execute(("cd %s && redis-server --port %d --bind 127.0.0.1 --save '' --appendonly %s "
      .. "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log --dir %s"):format(
      M.quote(dir), port, aof, M.quote(dir), M.quote(dir), M.quote(dir))), "redis-server did not start")
    pid = nil
    for _ = 1, 250 do
      local f = io.open(dir .. "/redis.pid")
      pid = f and tonumber(f:read("l"))
      if f then f:close() end
      if pid and M.shell(("redis-cli -p %d ping 2>/dev/null"):format(port)):match("PONG") then break end
      os.execute("sleep 0.02")
    end
    assert(pid, "redis-server did not start")
  end
  start()
  local r = { port = port, pid = pid, url = ("redis://127.0.0.1:%d/0"):format(port), dir = dir }
  function r.restart()
    os.execute(("kill %d; while kill -0 %d 2>/dev/null; do sleep 0.02; done"):format(r.pid, r.pid))
    start()
    r.pid = pid
  end
  function r.cli(args) return M.shell(("redis-cli -p %d %s 2>&1"):format(port, args)) end
  function r.pause() os.execute("kill -STOP " .. r.pid) end
  function r.resume() os.execute("kill -CONT " .. r.pid) end
  function r.stop() os.execute("kill -CONT " .. r.pid .. "; kill " .. r.pid .. " 2>/dev/null") end
  return r
end

return M
