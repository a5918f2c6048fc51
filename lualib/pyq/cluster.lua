-- pyq.cluster: the worker role of a cluster job, `pyqhost --worker URL
-- job.lua` (host/cluster/cluster.c is the main process's side and says
-- what the keys hold).
--
-- worker(url, chunk, ...) runs the script with pyq.worker = true, so it
-- defines its named tasks (pyq.async(name, fn)) and skips its producing
-- part, then looks for the jobs on that Redis (a pyq:<name>:meta key) every
-- 0.2 s and serves each in a task of its own: one blocking XREADGROUP at a
-- time feeds a local queue of the job's `workers`, whose tasks run the
-- named function, add the outcome to pyq:<name>:results and XACK.  A job
-- ends when the main process deletes its keys (XREADGROUP answers
-- NOGROUP); the worker returns once every job it served has ended.
-- SIGINT/SIGTERM cancel what runs; as the serving task unwinds it drops
-- its reading connection (no more tasks come to it) and adds a "stops"
-- entry (b, p) to pyq:<name>:results, on which the main process takes
-- over at once what this process holds (XPENDING, XCLAIM) rather than
-- after `visibility`.  A worker killed with -9 says nothing: `visibility`
-- covers it.
local std = require "pyq.std"
local core = require "pyq.core"

local M = {}

local function process_name()
  local f = std.io.open("/proc/self/stat")
  local pid = f and f:read("n") or 0
  if f then f:close() end
  f = std.io.open("/proc/sys/kernel/hostname")
  local host = f and f:read("l") or "localhost"
  if f then f:close() end
  return ("worker@%s:%d"):format(host, pid)
end

local function fields(list)
  local t = {}
  for i = 1, #list - 1, 2 do t[list[i]] = list[i + 1] end
  return t
end

-- A failure's parts that travel: the fields of a pyq.Error beyond kind
-- and message, or a plain table raised as the error, as JSON ("" when
-- none, or when nothing of it encodes).
local function error_extra(json, err)
  local t, any = {}, false
  for k, v in std.next, err do
    if std.type(k) == "string" and k ~= "kind" and k ~= "message" and k ~= "traceback"
       and std.pcall(json.encode, v) then
      t[k], any = v, true
    end
  end
  if not any then return "" end
  local ok, s = std.pcall(json.encode, json.object(t))
  return ok and s or ""
end

-- Runs one task entry; its outcome goes back through Redis: the result as
-- JSON, or the error's message, kind, extra fields (x) and traceback (t).
local run = core.async(function(conn, keys, me, id, f)
  local json = std.require "pyq.json"
  local fn = core._named(f.f or "")
  local ok, res, kind, tb
  if not fn then
    ok, res, kind = false, ("no pyq.async named '%s' in this script"):format(f.f), "usage"
  else
    local dok, args = std.pcall(json.decode, f.a or "[]")
    if not dok or std.type(args) ~= "table" then
      ok, res, kind = false, "the task's arguments are not a JSON array", "decode"
    else
      ok, res = std.xpcall(fn, function(e)
        -- the task's frames, not pyq's below them
        tb = std.debug.traceback(nil, 2):gsub("\n\t%[C%]: in function 'xpcall'.*$", "")
        return e
      end, std.table.unpack(args, 1, #args))
    end
  end
  local v, x = "", ""
  if ok and res ~= nil then
    local eok, s = std.pcall(json.encode, res)
    if eok then v = s
    else
      local why = std.tostring(core.is_error(s) and s.message or s):gsub("^pyq%.json%.encode: ", "")
      ok, res, kind, tb = false, "the result is not JSON-encodable: " .. why, "encode", nil
    end
  end
  if not ok then
    if core.is_error(res) then kind, v, x = res.kind, std.tostring(res.message), error_extra(json, res)
    elseif std.type(res) == "table" then   -- error({ code = 7 }): the table itself travels
      local eok, s = std.pcall(json.encode, res)
      v = std.tostring(res)
      if eok then x = "=" .. s end
    else v = std.tostring(res) end
  end
  -- NOMKSTREAM: once the main process removed the job, nothing comes back
  conn:send("XADD", keys.results, "NOMKSTREAM", "*", "s", f.s or "0", "o", ok and "1" or "0", "v", v,
            "k", kind or "", "p", me, "x", x, "t", tb or "")
  conn:send("XACK", keys.tasks, "pyq", id)
end)

-- Serves the job `name` until its keys are gone.
local serve = core.async(function(url, name, me, served)
  -- a later run of the same name is served again
  local _ <close> = std.setmetatable({}, { __close = function() served[name] = nil end })
  local keys = { tasks = "pyq:" .. name .. ":tasks", results = "pyq:" .. name .. ":results",
                 meta = "pyq:" .. name .. ":meta" }
  local conn <close> = core._redis(url)
  local rd <close> = core._redis(url, 5)
  local ended = false
  local _ <close> = std.setmetatable({}, { __close = function()
    if ended then return end   -- cancelled: this process stops
    rd:drop()
    conn:send("XADD", keys.results, "NOMKSTREAM", "*", "b", "1", "p", me)
  end })
  local meta = fields(conn:call("HGETALL", keys.meta))
  local workers = std.math.tointeger(std.tonumber(meta.workers)) or 25
  local queue <close> = core.Queue{ workers = workers, maxsize = workers }
  core._queue_label(queue, "cluster job " .. name)
  core.log.info("%s", ("serving %s (%d workers)"):format(name, workers))
  while true do
    local ok, reply = std.pcall(rd.call, rd, "XREADGROUP", "GROUP", "pyq", me, "COUNT", workers,
                                "BLOCK", 1000, "STREAMS", keys.tasks, ">")
    if not ok then
      local msg = std.tostring(core.is_error(reply) and reply.message or reply)
      -- the job ended: its keys are gone
      if msg:find("NOGROUP", 1, true) or msg:find("UNBLOCKED", 1, true) then break end
      core.log.warning("%s", ("%s: %s"):format(name, msg))
      core.sleep(0.5)
    elseif reply then
      for _, stream in std.ipairs(reply) do
        for _, e in std.ipairs(stream[2] or {}) do
          queue:put(run(conn, keys, me, e[1], fields(e[2])))
        end
      end
    end
  end
  ended = true
  core.log.info("%s", ("%s ended"):format(name))
end)

function M.worker(url, chunk, ...)
  local pyq = std.require "pyq"
  std.rawset(pyq, "worker", true)
  core._cluster_url(url)   -- the job's Redis, for http.limit's shared = true
  chunk(...)
  local me = process_name()
  local conn <close> = core._redis(url)
  local jobs <close> = core.Queue{ workers = 1000, maxsize = 0 }
  core._queue_label(jobs, "cluster jobs at " .. url)
  local served, seen, since, told = {}, false, core.now(), false
  -- pyq:jobs counts the jobs started on this Redis (cluster.c): one that
  -- starts and ends between two looks is missed by SCAN, not by it
  local function started()
    local ok, n = std.pcall(conn.call, conn, "GET", "pyq:jobs")
    return ok and (std.tonumber(n) or 0) or nil
  end
  local first = started()
  while true do
    local now = started()   -- before the SCAN: meta is set before the count
    first = first or now
    local ok, reply, cursor
    cursor = "0"
    repeat   -- the whole keyspace: a job's meta may be on any page
      ok, reply = std.pcall(conn.call, conn, "SCAN", cursor, "MATCH", "pyq:*:meta", "COUNT", 1000)
      if not ok then break end
      cursor = reply[1]
      for _, key in std.ipairs(reply[2]) do
        local name = key:match("^pyq:(.+):meta$")
        if name and not served[name] then
          served[name], seen = true, true
          jobs:put(serve(url, name, me, served))
        end
      end
    until cursor == "0"
    if seen and jobs.running == 0 and jobs.pending == 0 then break end   -- all ended
    if ok and not seen and now and first and now > first then
      core.log.info("%s", ("a job on %s started and ended before this worker saw it"):format(url))
      break
    end
    -- (a Redis that does not answer is the redis layer's to log, not "no job")
    if ok and not seen and not told and core.now() - since >= 5 then
      -- started before its job, or after it ended: it waits for the next
      told = true
      core.log.warning("%s", ("no cluster job at %s yet; waiting for one (SIGINT or SIGTERM stops)"):format(url))
    end
    core.sleep(0.2)
  end
end

-- pyqhost --cluster-status URL NAME: per process, the tasks it holds
-- (running: read and not finished) and the outcomes it gave (done,
-- failed); the tasks no process has taken yet.  Workers are counted from
-- the group's pending lists and the results stream; the main process,
-- which adds no results and whose pending list also holds what it buffers
-- and tasks taken over, from the counts it keeps in meta (running:/done:/failed:<process>, a quarter-second behind).  A
-- worker that stopped is marked so; "last read" is the group's idle time
-- of the consumer (a process with an idle worker reads every second).  Read-only; exit 1 when the job or
-- the Redis is not there.
local function status(url, name)
  local conn <close> = core._redis(url, 5)
  local tasks, results = "pyq:" .. name .. ":tasks", "pyq:" .. name .. ":results"
  local meta = fields(conn:call("HGETALL", "pyq:" .. name .. ":meta"))
  if not meta.main then
    std.io.stderr:write(("pyqhost: no cluster job named '%s' at %s\n"):format(name, url))
    return 1
  end
  local rows, order = {}, {}
  local function row(p)
    if not rows[p] then
      rows[p] = { running = 0, done = 0, failed = 0 }
      order[#order + 1] = p
    end
    return rows[p]
  end
  row(meta.main)
  local waiting = 0
  for _, g in std.ipairs(conn:call("XINFO", "GROUPS", tasks)) do
    local f = fields(g)
    if f.name == "pyq" then waiting = std.tonumber(f.lag) or 0 end
  end
  for _, c in std.ipairs(conn:call("XINFO", "CONSUMERS", tasks, "pyq")) do
    local f = fields(c)
    local r = row(f.name)
    r.running, r.idle = f.pending, (std.tonumber(f.idle) or 0) / 1000
  end
  local from = "-"
  repeat
    local batch = conn:call("XRANGE", results, from, "+", "COUNT", 10000)
    for _, e in std.ipairs(batch) do
      local f = fields(e[2])
      local r = row(f.p or "?")
      if f.b then r.stopped = true   -- a worker that stopped, not an outcome
      elseif f.o == "1" then r.done = r.done + 1
      else r.failed = r.failed + 1 end
      from = "(" .. e[1]
    end
  until #batch < 10000
  for k, v in std.pairs(meta) do   -- the main process's own counts
    local what, p = k:match("^(%a+):(.+)$")
    if p and rows[p] and rows[p][what] then rows[p][what] = std.tonumber(v) or 0 end
  end
  std.print(("%-40s %9s %9s %9s %9s"):format("process", "running", "done", "failed", "last read"))
  for _, p in std.ipairs(order) do
    local r = rows[p]
    local idle = r.idle and ("%.1fs ago"):format(r.idle) or "-"
    std.print(("%-40s %9d %9d %9d %9s%s"):format(p, r.running, r.done, r.failed, idle,
                                                 r.stopped and "  (stopped)" or ""))
  end
  std.print(("%-40s %9d"):format("pending (not taken yet)", waiting))
  return 0
end

function M.status(url, name)
  local ok, code = std.pcall(status, url, name)
  if not ok then
    local msg = std.tostring(core.is_error(code) and code.message or code)
    std.io.stderr:write(("pyqhost: --cluster-status %s %s: %s\n"):format(url, name, msg))
    code = 1
  end
  return std.os.exit(code)
end

return M
