-- pyq.Queue{ cluster = "redis://..." } (issue 12): a main process and
-- `pyqhost --worker` processes on a redis-server the spec starts on a free
-- loopback port (tests/helper.lua start_redis) against the fixture API;
-- the redis layer's deadlines and reconnection; the options' errors.
require 'busted.runner'()
local helper = require 'tests.helper'
local core = require 'pyq.core'

-- The job every process runs: fetch match documents from the fixture API.
local JOB = [[
local url, base, n, delay = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 0)
local fetch = pyq.async("fetch_match", function(id, region)
  if delay > 0 then pyq.sleep(delay) end
  if id == "NA1_7" then error("no such match: " .. id) end
  local doc = pyq.http.get(base .. "/lol/match/v5/matches/" .. id):json()
  return { id = doc.metadata and doc.metadata.matchId or id, region = region }
end)
if pyq.worker then return end
local failed = {}
local opts = { workers = 3, exception_handler = function(e) failed[#failed + 1] = tostring(e) end }
if url ~= "local" then opts.cluster, opts.name, opts.visibility = url, "matches", 1 end
local queue <close> = pyq.Queue(opts)
for i = 1, n do queue:put(fetch("NA1_" .. i, "americas")) end
local results = queue:join()
for _, r in ipairs(results) do print(r.id, r.region) end
for _, f in ipairs(failed) do io.stderr:write("FAILED ", f, "\n") end
]]

describe("a cluster queue", function()
  local redis, api
  setup(function()
    redis = helper.start_redis()
    api = helper.start_api()
  end)
  teardown(function()
    redis.stop()
    api.stop()
  end)

  it("gives the results of a local run, in put order, with two worker processes, and removes its keys", function()
    local w1 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0")
    local w2 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0")
    local main = helper.run{ script = JOB, args = { redis.url, api.base, "300", "0.01" } }
    local here = helper.run{ script = JOB, args = { "local", api.base, "300" } }
    assert.equal(0, main.code, main.err)
    assert.equal(here.out, main.out)
    assert.equal(299, select(2, main.out:gsub("\n", "")))
    assert.matches("NA1_1%s+americas\nNA1_2%s", main.out)
    -- the failure reached the main process's handler, naming where it ran
    assert.matches("FAILED [^\n]*no such match: NA1_7", main.err)
    local c1, _, e1 = helper.wait_exit(w1)
    local c2, _, e2 = helper.wait_exit(w2)
    assert.equal(0, c1, e1)
    assert.equal(0, c2, e2)
    assert.equal("", redis.cli("--scan --pattern 'pyq:*:*'"))
    -- what stays: the count of jobs started, by which a worker knows it missed one
    assert.matches("^%d+\n?$", redis.cli("get pyq:jobs"))
  end)

  it("runs again the tasks of a worker killed with -9, after visibility", function()
    local w1 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0 0.4")
    local w2 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0 0.4")
    local main = helper.spawn("-v", JOB, redis.url .. " " .. api.base .. " 60 0.4")
    pyq.sleep(0.8)
    os.execute("kill -9 " .. w1.pid)
    local code, out, err = helper.wait_exit(main)
    assert.equal(0, code, err)
    assert.matches("took over %d+ tasks unacknowledged for 1s", err)
    assert.equal(59, select(2, out:gsub("\n", "")))
    for i = 1, 60 do
      if i ~= 7 then assert.matches("NA1_" .. i .. "%s+americas\n", out) end
    end
    helper.wait_exit(w1)
    assert.equal(0, (helper.wait_exit(w2)))
  end)

  it("stops on SIGINT to the main process (exit 130) with its keys removed, and its workers end (exit 0)", function()
    local w1 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0 0.2")
    local main = helper.spawn("", JOB, redis.url .. " " .. api.base .. " 200 0.2")
    pyq.sleep(0.8)
    os.execute("kill -INT " .. main.pid)
    local code = helper.wait_exit(main)
    assert.equal(130, code)
    assert.equal("", redis.cli("--scan --pattern 'pyq:*:*'"))
    local c1, _, e1 = helper.wait_exit(w1)
    assert.equal(0, c1, e1)
  end)

  it("has its tasks per process printed by --cluster-status while it runs", function()
    -- 20,000 other keys: a worker pages through SCAN to find the job's meta
    redis.cli([[eval "for i = 1, 20000 do redis.call('SET', 'fill:' .. i, i) end" 0]])
    local w1 = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0 0.2")
    local main = helper.spawn("", JOB, redis.url .. " " .. api.base .. " 60 0.2")
    pyq.sleep(1)
    local st = helper.run{ nofile = true, flags = { "--cluster-status", redis.url, "matches" } }
    assert.equal(0, st.code, st.err)
    assert.matches("process%s+running%s+done%s+failed%s+last read\n", st.out)
    assert.matches("\nworker@[^\n]- +%d+ +[1-9]%d* +[01] +[%d.]+s ago\n", st.out)
    -- the main process first, with the tasks it ran itself
    assert.matches("^[^\n]*\nmain@[^\n]- +%d+ +[1-9]%d* +[01] +[%d.]+s ago\n", st.out)
    assert.matches("pending %(not taken yet%) +%d+", st.out)
    assert.equal(0, (helper.wait_exit(main)))
    assert.equal(0, (helper.wait_exit(w1)))
    st = helper.run{ nofile = true, flags = { "--cluster-status", redis.url, "matches" } }
    assert.equal(1, st.code)
    assert.matches("no cluster job named 'matches'", st.err)
    redis.cli([[eval "for i = 1, 20000 do redis.call('DEL', 'fill:' .. i) end" 0]])
    local gone = ("redis://127.0.0.1:%d/0"):format(helper.closed_port())
    st = helper.run{ nofile = true, flags = { "--cluster-status", gone, "matches" } }
    assert.equal(1, st.code)
    -- the redis layer's WARNING (it retries after a backoff), then why
    local why = "pyqhost: --cluster-status " .. gone .. " matches: Connection refused\n"
    assert.equal(why, st.err:sub(-#why), st.err)
    assert.truthy(st.err:find("WARNING redis: " .. gone .. ": Connection refused; reconnecting in 0.1s", 1, true), st.err)
  end)

  it("has a worker with no job to serve wait for one, say so after 5 s, and stop on SIGINT", function()
    local w = helper.spawn("--worker " .. redis.url, JOB, "x " .. api.base .. " 0")
    pyq.sleep(5.5)
    os.execute("kill -INT " .. w.pid)
    local code, _, err = helper.wait_exit(w)
    assert.equal(130, code)
    local _, n = err:gsub("WARNING [^\n]*no cluster job at " .. redis.url:gsub("%p", "%%%0")
      .. " yet; waiting for one %(SIGINT or SIGTERM stops%)", "")
    assert.equal(1, n, err)
  end)

  it("loses nothing when Redis stops answering during a read (entries delivered into a dropped connection)", function()
    -- the read's deadline drops the connection while Redis, stopped, still
    -- holds the blocked XREADGROUP: resumed, it delivers into the closed
    -- socket; the main process reads its pending entries again
    local job = [[
      local t = pyq.async("t300", function(i) pyq.sleep(0.3) return i end)
      local q <close> = pyq.Queue{ workers = 1, cluster = arg[1], name = "lostread", cluster_timeout = 6 }
      for i = 1, 10 do q:put(t(i)) end
      print(table.concat(q:join(), " "))
    ]]
    local main = helper.spawn("", job, redis.url)
    pyq.sleep(1)
    os.execute("kill -STOP " .. redis.pid)
    pyq.sleep(4)   -- past the read's deadline (2 + 1 s), inside cluster_timeout
    redis.resume()
    local code, out, err = helper.wait_exit(main)
    assert.equal(0, code, err)
    assert.equal("1 2 3 4 5 6 7 8 9 10\n", out)
    assert.matches("no reply within", err)
  end)

  it("does not take a Redis for dead while every worker of the main process is busy (it PINGs)", function()
    local job = [[
      local slow = pyq.async("slow15", function(i) pyq.sleep(1.5) return i end)
      local q <close> = pyq.Queue{ workers = 1, cluster = arg[1], name = "busy", cluster_timeout = 1, visibility = 20 }
      q:put(slow(7)); q:put(slow(8))   -- the second waits in the stream: a task unfinished
      print(table.concat(q:join(), " "))
    ]]
    local r = helper.run{ script = job, args = { redis.url }, timeout = 30 }
    assert.equal(0, r.code, r.err)
    assert.equal("7 8\n", r.out)
  end)

  it("does not take over its own tasks running longer than visibility", function()
    local job = [[
      local slow = pyq.async("slow_own", function(i) pyq.sleep(2.2) return i end)
      local q <close> = pyq.Queue{ workers = 2, cluster = arg[1], name = "own", visibility = 1 }
      for i = 1, 4 do q:put(slow(i)) end
      print(table.concat(q:join(), " "))
    ]]
    local r = helper.run{ script = job, args = { redis.url }, flags = { "-v" }, timeout = 30 }
    assert.equal(0, r.code, r.err)
    assert.equal("1 2 3 4\n", r.out)
    assert.is_nil(r.err:find("took over", 1, true), r.err)
  end)

  it("fails join with a redis error after cluster_timeout when Redis stops answering, logged", function()
    local job = [[
      local sq = pyq.async("sq", function(i) return i * i end)
      local q <close> = pyq.Queue{ workers = 1, cluster = arg[1], name = "stopped", cluster_timeout = 1.5 }
      for i = 1, 3 do q:put(sq(i)) end
      os.execute("kill -STOP " .. arg[2])
      local ok, err = pcall(q.join, q)
      os.execute("kill -CONT " .. arg[2])
      print(ok, pyq.is_error(err, "redis"), err)
    ]]
    local r = helper.run{ script = job, args = { redis.url, tostring(redis.pid) }, timeout = 30 }
    redis.resume()
    assert.matches("^false\ttrue\t[^\n]*cluster_timeout", r.out)
    assert.truthy(r.out:find("did not answer within " .. redis.url .. " (cluster_timeout 1.5 s)", 1, true), r.out)
    assert.matches("WARNING redis: redis://127.0.0.1:%d+/0: no reply within", r.err)
    redis.cli("del pyq:stopped:tasks pyq:stopped:results pyq:stopped:meta")
  end)

  -- 100,000 no-op tasks, then HTTP tasks, through one queue.
  local BIG = [[
local url, base, n, m = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local noop = pyq.async("noop", function(i) return i end)
local fetch = pyq.async("fetch_id", function(id)
  return pyq.http.get(base .. "/lol/match/v5/matches/" .. id):json().metadata.matchId
end)
if pyq.worker then return end
local opts = { workers = 25 }
if url ~= "local" then opts.cluster, opts.name = url, "big" end
local q <close> = pyq.Queue(opts)
for i = 1, n do q:put(noop(i)) end
local r, sum = q:join(), 0
for i, v in ipairs(r) do assert(v == i, "result " .. i .. " is " .. tostring(v)) sum = sum + v end
print(#r, sum)
for i = 1, m do q:put(fetch("NA1_" .. i)) end
print(table.concat(q:join(), "\n"))
]]

  it("runs 100,000 no-op tasks and 5,000 HTTP tasks with two worker processes as a local run does", function()
    local w1 = helper.spawn("--worker " .. redis.url, BIG, "x " .. api.base .. " 0 0")
    local w2 = helper.spawn("--worker " .. redis.url, BIG, "x " .. api.base .. " 0 0")
    local main = helper.run{ script = BIG, args = { redis.url, api.base, "100000", "5000" },
                             flags = { "--summary" }, timeout = 180 }
    local here = helper.run{ script = BIG, args = { "local", api.base, "100000", "5000" }, timeout = 180 }
    assert.equal(0, main.code, main.err)
    assert.equal(0, here.code, here.err)
    assert.matches("^100000\t5000050000\nNA1_1\nNA1_2\n", main.out)
    assert.equal(here.out, main.out)
    assert.matches("put 105000 = done 105000 %+ failed 0", main.err)
    local c1, _, e1 = helper.wait_exit(w1)
    local c2, _, e2 = helper.wait_exit(w2)
    assert.equal(0, c1, e1)
    assert.equal(0, c2, e2)
    assert.equal("", redis.cli("--scan --pattern 'pyq:*:*'"))
  end)

  it("runs scripts/cluster_matches.lua as the README shows: a worker is the same command with --worker in front", function()
    local script = helper.read_file(helper.source .. "/scripts/cluster_matches.lua")
    local args = redis.url .. " " .. api.base
    local w = helper.spawn("--worker " .. redis.url, script, args)
    local main = helper.spawn("", script, args .. " 80")
    local code, out, err = helper.wait_exit(main)
    local wc, _, werr = helper.wait_exit(w)
    assert.equal(0, code, err)
    assert.equal(0, wc, werr)
    assert.matches("^80 matches in [%d.]+ s; first NA1_1, last NA1_80\n$", out)
  end)

  it("gives a failure in a worker process as raised there: a pyq.Error's fields, a table, the traceback", function()
    local job = [[
      local fail = pyq.async("spec_fail", function(i, how)
        pyq.sleep(0.1)
        if how == "error" then error(pyq.Error("quota", "daily quota used up", { remaining = i }))
        elseif how == "table" then error({ code = i })
        elseif how == "encode" then return { f = print }
        elseif how == "empty" then error({})
        else error("plain " .. i) end
      end)
      if pyq.worker then return end
      local got = {}
      local q <close> = pyq.Queue{ workers = 1, cluster = arg[1], name = "errs",
        exception_handler = function(e, tb) got[#got + 1] = { e = e, tb = tb } end }
      local hows = { "error", "table", "encode", "plain", "empty" }
      for i = 1, 25 do q:put(fail(i, hows[i % 5 + 1])) end
      q:join()
      local remote = 0
      for _, g in ipairs(got) do
        local e, where = g.e, type(g.e) == "table" and g.e.process or tostring(g.e)
        if where:match("^worker@") then
          remote = remote + 1
          local raised = not (type(e) == "table" and e.kind == "encode")   -- a result: nothing raised
          assert(not raised or g.tb:match("^stack traceback %(worker@[^)]+%):\n") and g.tb:match("%.lua:%d+: in "), g.tb)
          if type(e) == "table" and e.kind == "quota" then assert(type(e.remaining) == "number", "remaining")
          elseif type(e) == "table" and e.kind == "encode" then
            assert(not e.message:find("pyq.json.encode", 1, true), e.message)
          elseif type(e) == "table" and e.kind == nil and e.code == nil then
            assert(pyq.json.encode(e):match('^{"process":'), "a plain table")
          elseif type(e) == "table" and e.kind == nil then assert(type(e.code) == "number", "code") end
        end
      end
      print(#got, remote)
    ]]
    local w = helper.spawn("--worker " .. redis.url, job, redis.url)
    local r = helper.run{ script = job, args = { redis.url }, timeout = 60 }
    local wc, _, werr = helper.wait_exit(w)
    assert.equal(0, r.code, r.err)
    assert.equal(0, wc, werr)
    local n, remote = r.out:match("^(%d+)\t(%d+)\n$")
    assert.equal("25", n, r.out)
    assert.is_true(tonumber(remote) > 0, r.out)
  end)

  it("takes over at once the tasks of a worker stopped with SIGTERM (exit 143), well inside visibility", function()
    local job = [[
      local slow = pyq.async("slow_sq", function(i) pyq.sleep(0.2) return i * i end)
      if pyq.worker then return end
      local q <close> = pyq.Queue{ workers = 3, cluster = arg[1], name = "handback", visibility = 30 }
      for i = 1, 60 do q:put(slow(i)) end
      local sum = 0
      for _, v in ipairs(q:join()) do sum = sum + v end
      print(sum)
    ]]
    local w1 = helper.spawn("--worker " .. redis.url, job, "")
    local t0 = pyq.now()
    local main = helper.spawn("-v", job, redis.url)
    pyq.sleep(1.2)
    os.execute("kill -TERM " .. w1.pid)
    local wc, _, werr = helper.wait_exit(w1)
    -- its summary names the job, not pyq's own lines
    assert.matches("\n  queue cluster job handback: put %d+ = done %d+", werr)
    -- the worker that stopped is marked, its "stops" entry not counted as a task
    local st = helper.run{ nofile = true, flags = { "--cluster-status", redis.url, "handback" } }
    local code, out, err = helper.wait_exit(main)
    assert.equal(0, st.code, st.err)
    -- (running: what it held until the main process has claimed it)
    assert.matches("\nworker@[^\n]- +%d+ +%d+ +0 +[%d.]+s ago  %(stopped%)\n", st.out)
    assert.equal(143, wc)
    assert.equal(0, code, err)
    assert.equal("73810\n", out)   -- 1 + 4 + ... + 3600: each once
    assert.is_true(pyq.now() - t0 < 15, err)
    assert.matches("worker@[^\n]* stops", err)
    assert.matches("took over [1-9]%d* tasks from a worker that stopped", err)
  end)

  -- Keyed tasks recorded in a store kept by the main process.
  local KEYED = [[
local url, dir, n = arg[1], arg[2], tonumber(arg[3])
local sq = pyq.async("keyed_sq", function(i) pyq.sleep(0.1) return i * i end)
if pyq.worker then return end
local q <close> = pyq.Queue{ workers = 4, cluster = url, name = "keyed", visibility = 1,
                             store = dir .. "/job.sqlite" }
for i = 1, n do q:put(sq(i), { key = "k" .. i }) end
local sum = 0
for _, v in ipairs(q:join()) do sum = sum + v end
print(sum)
]]

  it("records keyed tasks once when a worker killed with -9 had run some, and a re-run skips them all", function()
    local dir = helper.tempdir()
    local w1 = helper.spawn("--worker " .. redis.url, KEYED, "x x 0")
    local w2 = helper.spawn("--worker " .. redis.url, KEYED, "x x 0")
    local main = helper.spawn("--summary", KEYED, redis.url .. " " .. dir .. " 120")
    pyq.sleep(1)
    os.execute("kill -9 " .. w1.pid)
    local code, out, err = helper.wait_exit(main)
    assert.equal(0, code, err)
    assert.equal("583220\n", out)   -- the sum of i^2 to 120
    assert.matches("put 120 = done 120 %+ failed 0 %+ cancelled 0 in", err)
    helper.wait_exit(w1)
    assert.equal(0, (helper.wait_exit(w2)))
    local st <close> = pyq.store.open(dir .. "/job.sqlite")
    assert.equal(120, st:count("keyed"))
    local again = helper.run{ script = KEYED, args = { redis.url, dir, "120" }, flags = { "--summary" } }
    assert.equal(0, again.code, again.err)
    assert.equal("583220\n", again.out)
    assert.matches("put 120 = done 0 %+ failed 0 %+ cancelled 0 %+ skipped 120", again.err)
    assert.equal("", redis.cli("--scan --pattern 'pyq:*:*'"))
  end)

  it("completes across a Redis restarted mid-job with its append-only file", function()
    local aof = helper.start_redis{ aof = true }
    local w1 = helper.spawn("--worker " .. aof.url, JOB, "x " .. api.base .. " 0 0.05")
    local main = helper.spawn("", JOB, aof.url .. " " .. api.base .. " 200 0.05")
    pyq.sleep(1)
    aof.restart()
    local code, out, err = helper.wait_exit(main)
    local here = helper.run{ script = JOB, args = { "local", api.base, "200" } }
    assert.equal(0, code, err)
    assert.equal(here.out, out)
    assert.matches("redis: redis://127.0.0.1:%d+/0: connected again", err)
    local wc, _, we = helper.wait_exit(w1)
    assert.equal(0, wc, we)
    aof.stop()
  end)

  it("names bad options and tasks that cannot travel", function()
    local function err(f) return tostring(helper.error_of(f)) end
    local sq = pyq.async("spec_sq", function(i) return i end)
    assert.matches("cluster must be a redis:// URL", err(function() pyq.Queue{ cluster = 5, name = "x" } end))
    assert.matches('cluster "http://x" must start with redis://', err(function() pyq.Queue{ cluster = "http://x", name = "x" } end))
    assert.matches("bad port", err(function() pyq.Queue{ cluster = "redis://h:0", name = "x" } end))
    assert.matches("needs a name", err(function() pyq.Queue{ cluster = redis.url } end))
    assert.matches("name must be letters", err(function() pyq.Queue{ cluster = redis.url, name = "a b" } end))
    assert.matches("visibility must be a number of seconds", err(function()
      pyq.Queue{ cluster = redis.url, name = "x", visibility = 0 } end))
    assert.matches("cluster_timeout needs cluster", err(function() pyq.Queue{ cluster_timeout = 3 } end))
    assert.matches('a task named "spec_sq" exists already', err(function() pyq.async("spec_sq", print) end))
    assert.matches("name must be a non%-empty string", err(function() pyq.async("", print) end))
    assert.matches("pyq.async: name must be a string, got 5", err(function() pyq.async(5, print) end))
    local q <close> = pyq.Queue{ cluster = redis.url, name = "opts" }
    -- maxsize counts tasks anywhere: room for several processes by default
    assert.equal(500, q.maxsize)
    local here <close> = pyq.Queue{ workers = 25 }
    assert.equal(50, here.maxsize)
    assert.matches("takes tasks of named async functions", err(function() q:put(pyq.async(print)(1)) end))
    assert.matches("must be JSON%-encodable", err(function() q:put(sq(print)) end))
    assert.matches("argument 1 of a cluster task is nil", err(function() q:put(sq(nil)) end))
    -- a refused put takes no put index: the next put is the first
    q:put(sq(4))
    local all = q:join{ all = true }
    assert.equal(1, all.n)
    assert.equal(1, q.puts)
    assert.equal(4, all[1])
  end)

  it("gives keyed tasks answered by the store their own put index beside tasks that go through Redis", function()
    local db = helper.fresh(".sqlite")
    local cube = pyq.async("spec_cube", function(i) return i * i * i end)
    do
      local q <close> = pyq.Queue{ cluster = redis.url, name = "mixed", store = db }
      for _, i in ipairs{ 1, 2, 3, 5 } do q:put(cube(i), { key = "k" .. i }) end
      q:join()
    end
    local q <close> = pyq.Queue{ workers = 10, cluster = redis.url, name = "mixed", store = db }
    for i = 1, 7 do q:put(cube(i), { key = "k" .. i }) end
    local seen = {}
    for i, ok, v in q:completed() do
      assert.is_true(ok)
      assert.is_nil(seen[i])
      seen[i] = v
    end
    assert.same({ 1, 8, 27, 64, 125, 216, 343 }, seen)
    assert.equal(4, q.skipped)
    assert.equal(3, q.done)
  end)

  it("fails a result that is not JSON-encodable when the main process ran the task, as a worker would", function()
    local fn = pyq.async("spec_fn", function(i) return i > 0 and print or nil end)
    -- a result is what a worker would have sent back: decoded from its JSON
    local odd = pyq.async("spec_odd", function() return { "a\255b", pyq.json.null, 3 } end)
    local q0 <close> = pyq.Queue{ cluster = redis.url, name = "enc0" }
    q0:put(odd())
    local got = q0:join()[1]
    assert.equal("a\u{FFFD}b", got[1])
    assert.equal(pyq.json.null, got[2])
    assert.equal(3, got[3])
    local sq = pyq.async("spec_sq2", function(i) return i * i end)
    local fails = {}
    local function handler(e) fails[#fails + 1] = e end
    local q <close> = pyq.Queue{ cluster = redis.url, name = "enc", exception_handler = handler }
    q:put(fn(1)); q:put(sq(5)); q:put(fn(0))
    assert.same({ 25 }, q:join())
    assert.equal(1, #fails)
    assert.is_true(pyq.is_error(fails[1], "encode"))
    assert.matches("^main@[^:]+:%d+: the result is not JSON%-encodable", fails[1].message)
    assert.matches("^main@", fails[1].process)
    -- with a store: the failure is not recorded, so a re-run runs it again
    local db = helper.fresh(".sqlite")
    fails = {}
    local s <close> = pyq.Queue{ cluster = redis.url, name = "enc2", store = db, exception_handler = handler }
    s:put(fn(1), { key = "f" }); s:put(sq(6), { key = "s" })
    assert.same({ 36 }, s:join())
    assert.equal(1, #fails)
    assert.is_true(pyq.is_error(fails[1], "encode"))
    s:close()
    local st <close> = pyq.store.open(db)
    assert.same({ "s" }, st:keys("enc2"))
  end)
end)

describe("a redis connection", function()
  it("answers commands, raises Redis's errors, times out on a stopped server and reconnects", function()
    local redis = helper.start_redis()
    local c <close> = core._redis(redis.url, 0.5)
    assert.equal("OK", c:call("SET", "k", 41))
    assert.equal(42, c:call("INCR", "k"))
    local e = helper.error_of(c.call, c, "NOPE")
    assert.is_true(pyq.is_error(e, "redis"))
    redis.pause()
    local t0 = pyq.now()
    e = helper.error_of(c.call, c, "GET", "k")
    assert.is_true(pyq.is_error(e, "redis"))
    assert.matches("no reply within 0.5s", tostring(e))
    assert.is_true(pyq.now() - t0 < 2)
    redis.resume()
    assert.equal("42", c:call("GET", "k"))
    redis.stop()
  end)

  it("says a refused connection is refused, and tries again after a backoff, not in a loop", function()
    local c <close> = core._redis(("redis://127.0.0.1:%d/0"):format(helper.closed_port()), 0.5)
    assert.matches("Connection refused", tostring(helper.error_of(c.call, c, "PING")))
    local cpu = os.clock()
    pyq.sleep(1)
    assert.is_true(os.clock() - cpu < 0.2, "CPU seconds while refused: " .. (os.clock() - cpu))
  end)
end)
