require 'busted.runner'()
local helper = require 'tests.helper'

local echo = pyq.async(function(v, delay)
  if delay then pyq.sleep(delay) end
  return v
end)

local fail = pyq.async(function(msg) error(msg, 0) end)

describe("pyq.Queue options", function()
  it("has the seed's defaults", function()
    local q <close> = pyq.Queue()
    assert.equal(25, q.workers_num)
    assert.equal(50, q.maxsize)
    assert.equal(0, q.log_level)
    assert.is_function(q.exception_handler)
  end)

  it("derives maxsize from workers and accepts 0 for unbounded", function()
    local a <close> = pyq.Queue{ workers = 3 }
    local b <close> = pyq.Queue{ workers = 3, maxsize = 0 }
    local c <close> = pyq.Queue{ workers = 3, maxsize = 1 }
    assert.same({ 6, 0, 1 }, { a.maxsize, b.maxsize, c.maxsize })
  end)

  it("rejects bad workers", function()
    for _, v in ipairs({ 0, -1, 1.5, "4", true }) do
      local ok, err = pcall(pyq.Queue, { workers = v })
      assert.is_false(ok)
      assert.matches("pyq.Queue: workers must be an integer greater than 0", err, 1, true)
    end
  end)

  it("rejects bad maxsize, naming it", function()
    for _, v in ipairs({ -1, 2.5, "x", {} }) do
      local ok, err = pcall(pyq.Queue, { maxsize = v })
      assert.is_false(ok)
      assert.matches("maxsize", err, 1, true)
    end
  end)

  it("takes log levels as numbers or names", function()
    local a <close> = pyq.Queue{ log_level = 20 }
    local b <close> = pyq.Queue{ log_level = "debug" }
    local c = pyq.Queue{ log_level = "CRITICAL" }
    assert.same({ 20, 10, 50 }, { a.log_level, b.log_level, c.log_level })
    pyq.log.level = 60
    c:close()
    pyq.log.level = "WARNING"
    local ok, err = pcall(pyq.Queue, { log_level = "loud" })
    assert.is_false(ok)
    assert.matches("log_level", err, 1, true)
  end)

  it("rejects unknown keys, naming them", function()
    local ok, err = pcall(pyq.Queue, { worker = 4 })
    assert.is_false(ok)
    assert.matches("unknown option 'worker'", err, 1, true)
    ok, err = pcall(pyq.Queue, { [1] = 4 })
    assert.is_false(ok)
    assert.matches("option names must be strings", err, 1, true)
  end)

  it("rejects a non-function exception_handler and a non-table argument", function()
    local ok, err = pcall(pyq.Queue, { exception_handler = 5 })
    assert.is_false(ok)
    assert.matches("exception_handler must be a function", err, 1, true)
    ok, err = pcall(pyq.Queue, 25)
    assert.is_false(ok)
    assert.matches("expected a table of options", err, 1, true)
  end)
end)

describe("queue:put and queue:join", function()
  it("returns first results in put order, not finish order", function()
    local q <close> = pyq.Queue{ workers = 10 }
    for i = 1, 10 do q:put(echo(i, (11 - i) * 0.003)) end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, q:join())
  end)

  it("drops nil results and errors", function()
    local q <close> = pyq.Queue{ workers = 2, exception_handler = function() end }
    q:put(echo(1)); q:put(echo(nil)); q:put(fail("x")); q:put(echo(4))
    assert.same({ 1, 4 }, q:join())
    assert.equal(1, q.failed)
    assert.equal(3, q.done)
  end)

  it("runs at most `workers` tasks at once, starting them in put order", function()
    local running, peak, started = 0, 0, {}
    local job = pyq.async(function(i)
      started[#started + 1] = i
      running = running + 1
      peak = math.max(peak, running)
      pyq.sleep(0.01)
      running = running - 1
    end)
    local q <close> = pyq.Queue{ workers = 3 }
    for i = 1, 12 do q:put(job(i)) end
    q:join()
    assert.equal(3, peak)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, started)
  end)

  it("clears the results and the counter at each join", function()
    local q <close> = pyq.Queue{ workers = 2 }
    q:put(echo("a")); q:put(echo("b"))
    assert.equal(2, q.counter)
    assert.same({ "a", "b" }, q:join())
    assert.equal(0, q.counter)
    q:put(echo("c"))
    assert.same({ "c" }, q:join())
    assert.same({}, q:join())
  end)

  it("checks result types with join(type_name)", function()
    local q <close> = pyq.Queue{}
    q:put(echo("a")); q:put(echo("b"))
    assert.same({ "a", "b" }, q:join("string"))
    q:put(echo("a")); q:put(echo(2))
    local ok, err = pcall(q.join, q, "string")
    assert.is_false(ok)
    assert.matches("result of task 2 is a number, expected string", err, 1, true)
    assert.same({ "a", 2 }, q:join(), "a failed typed join keeps the results")
    ok, err = pcall(q.join, q, "str")
    assert.is_false(ok)
    assert.matches("type_name", err, 1, true)
  end)

  it("refuses a join from one of the queue's own tasks", function()
    local q <close> = pyq.Queue{ workers = 2 }
    local got
    q.exception_handler = function(err) got = err end
    q:put(pyq.async(function() return q:join() end)())
    q:join()
    assert.matches("own tasks", got, 1, true)
  end)

  it("waits for the delay before putting", function()
    local q <close> = pyq.Queue{}
    local t0 = pyq.now()
    q:put(echo(1), 0.05)
    assert.is_true(pyq.now() - t0 >= 0.045)
    assert.same({ 1 }, q:join())
  end)

  it("applies backpressure while maxsize tasks are pending", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 1 }
    local t0 = pyq.now()
    for i = 1, 4 do q:put(echo(i, 0.03)) end
    -- task 1 runs, task 2 pending: the 3rd and 4th puts each waited a task
    assert.is_true(pyq.now() - t0 >= 0.055)
    assert.same({ 1, 2, 3, 4 }, q:join())
  end)

  it("serves waiting producers in order", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 1 }
    local producers <close> = pyq.Queue{ workers = 3 }
    q:put(echo("first", 0.02))
    q:put(echo("second"))
    for _, name in ipairs({ "p1", "p2", "p3" }) do
      producers:put(pyq.async(function() q:put(echo(name)) end)())
    end
    producers:join()
    assert.same({ "first", "second", "p1", "p2", "p3" }, q:join())
  end)

  it("never waits on an unbounded queue", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 0 }
    for i = 1, 1000 do q:put(echo(i)) end
    assert.equal(1000, #q)
    assert.equal(1000, #q:join())
  end)

  it("refuses bad puts with clear messages and enqueues nothing", function()
    local q <close> = pyq.Queue{}
    local cases = {
      { 42, "got number" },
      { {}, "got table" },
      { echo, "call it" },
      { nil, "got nil" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(q.put, q, case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    for _, d in ipairs({ -1, 0 / 0, "soon" }) do
      local ok, err = pcall(q.put, q, echo(1), d)
      assert.is_false(ok)
      assert.matches("delay", err, 1, true)
    end
    local co = coroutine.create(function() coroutine.yield() end)
    coroutine.resume(co)
    local ok, err = pcall(q.put, q, co)
    assert.is_false(ok)
    assert.matches("already started or is dead", err, 1, true)
    coroutine.resume(co)
    ok = pcall(q.put, q, co)
    assert.is_false(ok)
    local task = echo(1)
    q:put(task)
    ok, err = pcall(q.put, q, task)
    assert.is_false(ok)
    assert.matches("already queued or started", err, 1, true)
    assert.equal(1, q.counter)
    assert.same({ 1 }, q:join())
  end)

  it("refuses a put on a closed queue", function()
    local q = pyq.Queue{}
    q:close()
    local ok, err = pcall(q.put, q, echo(1))
    assert.is_false(ok)
    assert.matches("closed", err, 1, true)
  end)

  it("accepts a fresh coroutine as a task", function()
    local q <close> = pyq.Queue{}
    local co = coroutine.create(function() pyq.sleep(0); return "co" end)
    q:put(co)
    assert.equal("dead", coroutine.status(co))
    assert.same({ "co" }, q:join())
  end)

  it("lets tasks put into their own queue and into others", function()
    local other <close> = pyq.Queue{ workers = 2 }
    local q <close> = pyq.Queue{ workers = 2, maxsize = 0 }
    local spawn
    spawn = pyq.async(function(n)
      if n > 0 then q:put(spawn(n - 1)) end
      other:put(echo(n))
      return n
    end)
    q:put(spawn(5))
    assert.same({ 5, 4, 3, 2, 1, 0 }, q:join())
    assert.same({ 5, 4, 3, 2, 1, 0 }, other:join())
  end)

  it("raises instead of hanging when every worker waits to put into its full queue", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 1 }
    local err
    q.exception_handler = function(e) err = e end
    q:put(pyq.async(function()
      q:put(echo(1))
      q:put(echo(2))
    end)())
    q:join()
    assert.matches("deadlock", err, 1, true)
  end)
end)

describe("queue fields", function()
  it("counts pending, running, done, failed and cancelled", function()
    local q <close> = pyq.Queue{ workers = 2, exception_handler = function() end }
    for i = 1, 3 do q:put(echo(i, 0.05)) end
    q:put(fail("no"))
    pyq.sleep(0.01)
    assert.equal(2, q.running)
    assert.equal(2, q.pending)
    assert.equal(2, #q)
    assert.equal(4, q.counter)
    q:join()
    assert.same({ 3, 1, 0, 0, 0 }, { q.done, q.failed, q.cancelled, q.running, q.pending })
  end)

  it("are read-only except exception_handler", function()
    local q <close> = pyq.Queue{}
    for _, k in ipairs({ "workers_num", "maxsize", "counter", "done", "pending" }) do
      local ok, err = pcall(function() q[k] = 1 end)
      assert.is_false(ok)
      assert.matches("read-only", err, 1, true)
    end
    local seen
    q.exception_handler = function(e) seen = e end
    q:put(fail("boom"))
    q:join()
    assert.equal("boom", seen)
  end)

  it("calls the handler with the error and the task's traceback", function()
    local got = {}
    local q <close> = pyq.Queue{ exception_handler = function(e, tb) got = { e, tb } end }
    local deep = pyq.async(function() local function inner() error("deep", 0) end inner() end)
    q:put(deep())
    q:join()
    assert.equal("deep", got[1])
    assert.matches("stack traceback", got[2], 1, true)
    assert.matches("inner", got[2], 1, true)
  end)

  it("gives each failure its own traceback, also after a task cancelled while failing", function()
    local got = {}
    local q <close> = pyq.Queue{ workers = 1, exception_handler = function(e, tb) got[#got + 1] = { e, tb } end }
    local function first_task()
      local _ <close> = setmetatable({}, { __close = function() pcall(pyq.sleep, 0.3) end })
      error("first", 0)
    end
    local function second_task() error("second", 0) end
    q:put(pyq.async(first_task)())
    pyq.sleep(0.1)
    q:cancel()   -- while first_task's __close waits: no handler for it
    pyq.sleep(0.4)
    q:put(pyq.async(second_task)())
    q:join()
    assert.equal(1, #got)
    assert.equal("second", got[1][1])
    local line = function(fn) return ("queue_spec.lua:%d:"):format(debug.getinfo(fn, "S").linedefined) end
    assert.matches(line(second_task), got[1][2], 1, true)
    assert.is_nil(got[1][2]:find(line(first_task), 1, true))
  end)
end)

describe("closing", function()
  it("joins every task when the scope is left normally", function()
    local finished = 0
    local q
    do
      local queue <close> = pyq.Queue{ workers = 3 }
      q = queue
      for _ = 1, 9 do
        queue:put(pyq.async(function() pyq.sleep(0.005); finished = finished + 1 end)())
      end
    end
    assert.equal(9, finished)
    assert.is_true(q.closed)
  end)

  it("cancels when the scope is left by an error", function()
    local closed, started = {}, 0
    local slow = pyq.async(function(i)
      started = started + 1
      local guard <close> = setmetatable({}, { __close = function() closed[#closed + 1] = i end })
      pyq.sleep(10)
    end)
    local q
    local t0 = pyq.now()
    local ok, err = pcall(function()
      local queue <close> = pyq.Queue{ workers = 2 }
      q = queue
      for i = 1, 5 do queue:put(slow(i)) end
      pyq.sleep(0.01)
      error("oops", 0)
    end)
    assert.is_false(ok)
    assert.equal("oops", err)
    pyq.sleep(0)
    assert.equal(2, started)
    assert.same({ 1, 2 }, closed)
    assert.equal(5, q.cancelled)
    assert.is_true(pyq.now() - t0 < 1)
  end)

  it("keeps nothing from tasks that return nil", function()
    local nop = pyq.async(function() end)
    local q <close> = pyq.Queue{ workers = 25 }
    q:put(nop()); q:join()
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    for _ = 1, 1000000 do q:put(nop()) end
    q:join()
    collectgarbage(); collectgarbage()
    local after = collectgarbage("count")
    assert.is_true(after - before < 64, ("heap grew by %.1f KiB"):format(after - before))
  end)
end)

describe("queue logging and lifetime (a real pyqhost process)", function()
  it("logs its life at log_level", function()
    local r = helper.run{ flags = { "-v" }, script = [[
      local q <close> = pyq.Queue{ workers = 3, log_level = 20 }
      q:put(pyq.async(function() end)())
    ]] }
    assert.equal(0, r.code)
    assert.matches("INFO [^\n]*:1: spawned 3 workers", r.err)
    assert.matches("INFO [^\n]*:1: joined 3 workers", r.err)
  end)

  it("logs nothing at log_level 0", function()
    local r = helper.run{ flags = { "-vv" }, script = [[
      local q <close> = pyq.Queue{ workers = 3 }
      q:put(pyq.async(function() end)())
    ]] }
    assert.not_matches("workers", r.err)
    assert.matches("^pyqhost summary", r.err)
  end)

  it("logs failures with their traceback at WARNING by default, and handler errors at ERROR", function()
    local r = helper.run{ script = [[
      local q <close> = pyq.Queue{}
      q:put(pyq.async(function() error("kaput") end)())
      q:join()
      q.exception_handler = function() error("handler broke") end
      q:put(pyq.async(function() error("again") end)())
      q:join()
      q:put(pyq.async(function() return 1 end)())
      print(#q:join())
    ]] }
    assert.equal(3, r.code, "the first failure reached the default handler")
    assert.equal("1\n", r.out)
    assert.matches("WARNING [^\n]*: task failed: [^\n]*kaput\nstack traceback:", r.err)
    assert.matches("ERROR [^\n]*exception_handler failed: [^\n]*handler broke", r.err)
  end)

  it("warns how many tasks an error cancelled and lets the error go on", function()
    local r = helper.run{ script = [[
      local q <close> = pyq.Queue{ workers = 2 }
      for i = 1, 5 do
        q:put(pyq.async(function()
          local f <close> = setmetatable({}, { __close = function() io.write("closed\n") end })
          pyq.sleep(10)
        end)())
      end
      pyq.sleep(0.01)
      error("the original error")
    ]] }
    assert.equal(1, r.code)
    assert.matches("WARNING [^\n]*cancelled 5 tasks", r.err)
    assert.matches("pyqhost: [^\n]*the original error", r.err)
    assert.equal("closed\nclosed\n", r.out)
  end)

  it("runs a queue that was never closed to the end and warns where it was made", function()
    local r = helper.run{ script = [[
      local q = pyq.Queue{ workers = 2 }
      for i = 1, 4 do q:put(pyq.async(function() pyq.sleep(0.01) io.write(i, "\n") end)()) end
    ]] }
    assert.equal(0, r.code)
    assert.equal("1\n2\n3\n4\n", r.out)
    assert.matches("WARNING [^\n]*:1: pyq.Queue was never closed", r.err)
  end)

  it("fails a task that yields to the host with coroutine.yield", function()
    local r = helper.run{ script = [[
      local q <close> = pyq.Queue{}
      q:put(pyq.async(function() coroutine.yield("x") end)())
      q:put(pyq.async(function() return "ok" end)())
      local res = q:join()
      print(q.failed, res[1])
    ]] }
    assert.equal(3, r.code, "nobody handled the failure")
    assert.equal("1\tok\n", r.out)
    assert.matches("cannot yield to the host", r.err, 1, true)
  end)
end)

describe("the queue's errors", function()
  local function usage(f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert.is_true(pyq.is_error(err, "usage"), tostring(err))
    return tostring(err)
  end

  it("are pyq.Error objects of kind usage whose text is the old message", function()
    assert.equal("pyq.Queue: workers must be an integer greater than 0, got 0",
                 usage(pyq.Queue, { workers = 0 }))
    assert.matches("queue_spec.lua:%d+: pyq.Queue: workers must be",
                   usage(function() return pyq.Queue{ workers = 0 } end))
    assert.matches("unknown option 'worker'", usage(pyq.Queue, { worker = 4 }), 1, true)
    assert.matches("expected a table of options", usage(pyq.Queue, 25), 1, true)
    assert.matches("progress must be a boolean", usage(pyq.Queue, { progress = 1 }), 1, true)
    assert.matches("exception_handler must be a function",
                   usage(pyq.Queue, { exception_handler = 5 }), 1, true)
    local q <close> = pyq.Queue{}
    assert.matches("pyq.Queue: field 'workers_num' is read-only",
                   usage(function() q.workers_num = 3 end), 1, true)
    assert.matches("fields are named by strings, got number",
                   usage(function() q[1] = 3 end), 1, true)
    assert.matches("unknown option 'al'", usage(q.join, q, { al = true }), 1, true)
    assert.matches("all must be a boolean", usage(q.join, q, { all = 1 }), 1, true)
    assert.matches("type_name must be a type() name", usage(q.join, q, "str"), 1, true)
    q:put(echo(1))
    assert.matches("result of task 1 is a number, expected string",
                   usage(q.join, q, "string"), 1, true)
    q:close()
    assert.matches("pyq.Queue.put: the queue is closed", usage(q.put, q, echo(2)), 1, true)
  end)

  it("name a put that could never complete a deadlock", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 1 }
    local seen
    q:put(pyq.async(function()
      q:put(echo(1))                        -- fills the queue
      local _, err = pcall(function() q:put(echo(2)) end)
      seen = err
    end)())
    q:join()
    assert.is_true(pyq.is_error(seen, "deadlock"), tostring(seen))
    assert.matches("queue_spec.lua:%d+: pyq.Queue.put: deadlock: the queue is full", tostring(seen))
  end)

  it("from another completed() loop and from the queue's own tasks are usage errors", function()
    local q <close> = pyq.Queue{ maxsize = 0 }
    q:put(echo(1, 0.01))
    local seen
    q:put(pyq.async(function() seen = select(2, pcall(q.join, q)) end)())
    for _ in q:completed() do
      assert.matches("another completed() loop", usage(q.completed, q), 1, true)
    end
    assert.is_true(pyq.is_error(seen, "usage"))
    assert.matches("called from one of the queue's own tasks", tostring(seen), 1, true)
  end)
end)

describe("join over many tasks", function()
  -- join hands back the table the results were stored in: holes (nils,
  -- failures, cancelled tasks) are closed up in place, or filled with
  -- errors for join{ all = true }.
  local mixed = pyq.async(function(i)
    if i % 5 == 0 then error("e" .. i, 0) end
    if i % 3 ~= 0 then return i end
  end)

  it("gives the non-nil results in put order, and no more", function()
    local q <close> = pyq.Queue{ workers = 7, exception_handler = function() end }
    for i = 1, 3000 do q:put(mixed(i)) end
    local r = q:join()
    local want = {}
    for i = 1, 3000 do
      if i % 5 ~= 0 and i % 3 ~= 0 then want[#want + 1] = i end
    end
    assert.equal(#want, #r)
    assert.same(want, r)
    assert.is_nil(next(q:join()), "the next round starts empty")
  end)

  it("gives one entry per put with all = true", function()
    local q <close> = pyq.Queue{ workers = 7, exception_handler = function() end }
    for i = 1, 3000 do q:put(mixed(i)) end
    local r = q:join{ all = true }
    assert.equal(3000, r.n)
    for i = 1, 3000 do
      if i % 5 == 0 then
        assert.is_true(pyq.is_error(r[i], "failed"), "entry " .. i)
        assert.equal(i, r[i].index)
      elseif i % 3 == 0 then
        assert.is_nil(r[i], "entry " .. i)
      else
        assert.equal(i, r[i], "entry " .. i)
      end
    end
  end)

  it("gives every result when none is missing, as a plain sequence", function()
    local q <close> = pyq.Queue{ workers = 5 }
    local sq = pyq.async(function(i) return i * i end)
    for i = 1, 5000 do q:put(sq(i)) end
    local r = q:join()
    assert.equal(5000, #r)
    for i = 1, 5000 do assert.equal(i * i, r[i]) end
    for i = 1, 3 do q:put(sq(i)) end
    local all = q:join{ all = true }
    assert.same({ 1, 4, 9, n = 3 }, all)
  end)
end)

describe("a closed queue", function()
  it("cancels nothing and still answers its fields", function()
    local q = pyq.Queue{ workers = 2 }
    q:put(echo(1))
    q:close()
    assert.equal(0, q:cancel())
    assert.same({ true, 0, 0, 1, 1 }, { q.closed, #q, q.running, q.done, q.puts })
    assert.matches("closed", tostring(q), 1, true)
    assert.same({}, q:join())
  end)
end)
