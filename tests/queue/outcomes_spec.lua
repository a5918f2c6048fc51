require 'busted.runner'()
-- Issue 8 "Outcomes that tell the truth" and issue 14 "Honest books":
-- what join, completed, cancel and the handler report about each task.

local echo = pyq.async(function(v, delay)
  if delay then pyq.sleep(delay) end
  return v
end)
local fail = pyq.async(function(msg, delay)
  if delay then pyq.sleep(delay) end
  error(msg, 0)
end)

local function books(q)
  return q.puts == q.done + q.failed + q.cancelled
end

describe("join{ all = true }", function()
  it("gives one entry per put in put order: results, nils and errors", function()
    local q <close> = pyq.Queue{ workers = 3, exception_handler = function() end }
    q:put(echo("a", 0.02)); q:put(echo(nil)); q:put(fail("bad")); q:put(echo(4))
    local r = q:join{ all = true }
    assert.equal(4, r.n)
    assert.equal("a", r[1])
    assert.is_nil(r[2])
    assert.is_true(pyq.is_error(r[3]))
    assert.is_true(pyq.is_error(r[3], "failed"))
    assert.is_false(pyq.is_error(r[3], "cancelled"))
    assert.same({ "failed", "bad", "bad", 3 }, { r[3].kind, r[3].message, r[3].error, r[3].index })
    assert.equal("bad", tostring(r[3]))
    assert.equal(4, r[4])
    assert.same({}, q:join(), "the round was cleared")
  end)

  it("keeps a failure's original error value", function()
    local q <close> = pyq.Queue{ exception_handler = function() end }
    local obj = { code = 42 }
    q:put(pyq.async(function() error(obj) end)())
    local r = q:join{ all = true }
    assert.equal(obj, r[1].error)
    assert.equal("(error object is a table value)", r[1].message)
  end)

  it("marks cancelled tasks, pending and running, as cancelled errors", function()
    local q <close> = pyq.Queue{ workers = 1 }
    q:put(echo(1)); q:put(echo(2, 5)); q:put(echo(3)); q:put(echo(4))
    pyq.sleep(0.05)                      -- 1 done, 2 running, 3 and 4 pending
    assert.equal(3, q:cancel())
    local r = q:join{ all = true }
    assert.equal(4, r.n)
    assert.equal(1, r[1])
    for i = 2, 4 do
      assert.is_true(pyq.is_error(r[i], "cancelled"), "entry " .. i)
      assert.equal(i, r[i].index)
    end
    assert.matches("cancelled", r[3].message)
  end)

  it("leaves the plain join as it was: only non-nil results", function()
    local q <close> = pyq.Queue{ exception_handler = function() end }
    q:put(echo(1)); q:put(fail("x")); q:put(echo(nil)); q:put(echo(4))
    assert.same({ 1, 4 }, q:join())
  end)

  it("checks types of the results only, and refuses bad options", function()
    local q <close> = pyq.Queue{ exception_handler = function() end }
    q:put(echo("a")); q:put(fail("x"))
    local r = q:join{ all = true, type = "string" }
    assert.equal("a", r[1])
    assert.matches("unknown option 'al'", select(2, pcall(q.join, q, { al = true })), 1, true)
    assert.matches("all must be a boolean", select(2, pcall(q.join, q, { all = 1 })), 1, true)
    assert.matches("type_name", select(2, pcall(q.join, q, { type = "str" })), 1, true)
  end)
end)

describe("a typed join", function()
  it("raises on a mismatch and keeps the results for the next join", function()
    local q <close> = pyq.Queue{}
    q:put(echo("a")); q:put(echo(2)); q:put(echo("c"))
    local ok, err = pcall(q.join, q, "string")
    assert.is_false(ok)
    assert.matches("result of task 2 is a number, expected string", err, 1, true)
    assert.same({ "a", 2, "c" }, q:join())
  end)
end)

describe("queue:completed()", function()
  it("gives every task as it finishes: put index, ok, result or error", function()
    local q <close> = pyq.Queue{ workers = 4, maxsize = 0, exception_handler = function() end }
    q:put(echo("slow", 0.15)); q:put(echo("fast", 0.01)); q:put(fail("boom", 0.05)); q:put(echo(nil, 0.1))
    local seen = {}
    for i, ok, value in q:completed() do seen[#seen + 1] = { i, ok, value } end
    assert.equal(4, #seen)
    assert.same({ 2, true, "fast" }, seen[1])
    assert.same({ 3, false }, { seen[2][1], seen[2][2] })
    assert.is_true(pyq.is_error(seen[2][3], "failed"))
    assert.same({ 4, true }, { seen[3][1], seen[3][2] })
    assert.is_nil(seen[3][3])
    assert.same({ 1, true, "slow" }, seen[4])
    assert.same({}, q:join())
  end)

  it("also gives the tasks that finished before the loop, nil results included", function()
    local q <close> = pyq.Queue{ workers = 2 }     -- maxsize 4: puts wait, tasks run meanwhile
    for i = 1, 10 do q:put(echo(i % 2 == 0 and i or nil)) end
    local got = {}
    for i, ok, value in q:completed() do
      assert.is_true(ok)
      got[i] = value == nil and "nil" or value
    end
    for i = 1, 10 do assert.equal(i % 2 == 0 and i or "nil", got[i], "task " .. i) end
  end)

  it("hands what the loop did not take back to join when the loop is left", function()
    local q <close> = pyq.Queue{ workers = 1, maxsize = 0 }
    for i = 1, 5 do q:put(echo(i, 0.01)) end
    for i in q:completed() do if i == 2 then break end end
    assert.same({ 3, 4, 5 }, q:join())
  end)

  it("keeps memory flat over many results", function()
    local q <close> = pyq.Queue{ workers = 25 }
    local producer = pyq.async(function() for i = 1, 200000 do q:put(echo(i)) end end)
    local p <close> = pyq.Queue{ workers = 1 }
    p:put(producer())
    pyq.sleep(0)
    collectgarbage(); collectgarbage()
    local before, sum, n = collectgarbage("count"), 0, 0
    for _, _, v in q:completed() do sum, n = sum + v, n + 1 end
    p:join()
    for _, _, v in q:completed() do sum, n = sum + v, n + 1 end
    collectgarbage(); collectgarbage()
    assert.equal(200000, n)
    assert.equal(200000 * 200001 // 2, sum)
    assert.is_true(collectgarbage("count") - before < 2048, "heap grew by "
      .. (collectgarbage("count") - before) .. " KiB")
  end)

  it("refuses a second loop, and a loop from the queue's own task", function()
    local q <close> = pyq.Queue{ maxsize = 0 }
    q:put(echo(1, 0.01))
    local iter, state, ctl, closing = q:completed()
    local ok, err = pcall(q.completed, q)
    assert.is_false(ok)
    assert.matches("another completed() loop", err, 1, true)
    debug.getmetatable(closing).__close(closing)
    local got
    q.exception_handler = function(e) got = e end
    q:put(pyq.async(function() for _ in q:completed() do end end)())
    q:join()
    assert.matches("own tasks", got, 1, true)
    assert.is_function(iter); assert.equal(q, state); assert.is_nil(ctl)
  end)
end)

describe("queue:cancel()", function()
  it("returns after the running tasks have unwound: the books balance on return", function()
    local q <close> = pyq.Queue{ workers = 3 }
    local closed = 0
    local job = pyq.async(function()
      local _ <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
      pyq.sleep(10)
    end)
    for _ = 1, 8 do q:put(job()) end
    pyq.sleep(0.02)
    assert.equal(3, q.running)
    local t0 = pyq.now()
    assert.equal(8, q:cancel())
    assert.is_true(pyq.now() - t0 < 1)
    assert.equal(8, q.cancelled)
    assert.equal(0, q.running)
    assert.equal(3, closed)
    assert.is_true(books(q))
  end)

  it("returns at once from one of the queue's own tasks", function()
    local q <close> = pyq.Queue{ workers = 2 }
    local got
    q:put(echo(1, 10))
    q:put(pyq.async(function() pyq.sleep(0.01); got = q:cancel(); return q.running end)())
    q:join()
    assert.equal(2, got)
    assert.is_true(books(q))
  end)
end)

describe("exception handlers", function()
  it("are counted once even when they yield, and cannot wait", function()
    local helper = require 'tests.helper'
    local r = helper.run{ script = [[
      local q <close> = pyq.Queue{ workers = 1, exception_handler = function(e)
        coroutine.yield()
      end }
      q:put(pyq.async(function() error("x") end)())
      q:join()
      local q2 <close> = pyq.Queue{ workers = 1, exception_handler = function(e) pyq.sleep(0.01) end }
      q2:put(pyq.async(function() error("y") end)())
      q2:join()
      print(q.puts, q.done, q.failed, q.cancelled, q2.failed)
    ]], flags = { "--summary" } }
    assert.equal("1\t0\t1\t0\t1\n", r.out)
    assert.matches("exception_handler failed", r.err, 1, true)
    assert.matches("cannot wait in an exception_handler", r.err, 1, true)
    assert.matches("put 1 = done 0 + failed 1 + cancelled 0", r.err, 1, true)
  end)
end)

describe("the ring", function()
  it("gives its peak size back once drained", function()
    collectgarbage(); collectgarbage()
    local base = collectgarbage("count")
    local q <close> = pyq.Queue{ workers = 4, maxsize = 0 }
    local noop = pyq.async(function() end)
    for _ = 1, 300000 do q:put(noop()) end
    assert.is_true(collectgarbage("count") - base > 4096)
    q:join()
    collectgarbage(); collectgarbage()
    assert.is_true(collectgarbage("count") - base < 512, "heap still "
      .. (collectgarbage("count") - base) .. " KiB above")
  end)
end)

describe("exit code 3", function()
  local helper = require 'tests.helper'
  it("says why on one line even under -q", function()
    local r = helper.run{ flags = { "-q" }, script = [[
      local q <close> = pyq.Queue{}
      for i = 1, 3 do q:put(pyq.async(function() if i > 1 then error("no") end end)()) end
    ]] }
    assert.equal(3, r.code)
    assert.matches("ERROR pyqhost: 2 tasks failed and no exception_handler handled them (exit code 3)", r.err, 1, true)
    assert.not_matches("WARNING", r.err, 1, true)
  end)

  it("counts a failure whose handler raised as not handled", function()
    local r = helper.run{ script = [[
      local q <close> = pyq.Queue{ exception_handler = function() error("handler broke") end }
      q:put(pyq.async(function() error("task broke") end)())
    ]] }
    assert.equal(3, r.code)
    assert.matches("exception_handler failed: [^\n]*handler broke", r.err)
  end)

  it("comes with no summary when only the script itself raises the log level", function()
    local r = helper.run{ script = [[ pyq.log.level = "INFO" ]] }
    assert.equal(0, r.code)
    assert.not_matches("pyqhost summary", r.err, 1, true)
  end)
end)
