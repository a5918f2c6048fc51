require "busted.runner"()
-- Typed errors: what the host raises is a pyq.Error with a kind, and its
-- tostring is the message scripts saw when errors were strings.
local helper = require "tests.helper"

local failure = helper.error_of

describe("pyq.Error", function()
  it("is raised for bad arguments with kind usage and the caller's position", function()
    local err = failure(function() pyq.sleep(-1) end)
    assert.is_true(pyq.is_error(err, "usage"))
    assert.is_false(pyq.is_error(err, "timeout"))
    assert.equal("usage", err.kind)
    assert.matches("errors_spec.lua:%d+: pyq.sleep: seconds must be a non%-negative number", tostring(err))
    assert.equal(tostring(err), err.message)
  end)

  it("is raised when waiting where nothing can wait, with kind usage", function()
    local co = coroutine.wrap(function() pyq.sleep(0) end)
    local err = failure(co)
    assert.is_true(pyq.is_error(err, "usage"), tostring(err))
    assert.matches("cannot wait here", tostring(err), 1, true)
  end)

  it("has kind timeout when pyq.timeout fires, for the wait and for the scope", function()
    local inner
    local err = failure(pyq.await, pyq.timeout(0.02, pyq.async(function()
      local _, e = pcall(pyq.sleep, 5)
      inner = e
      error(e)
    end)()))
    assert.is_true(pyq.is_error(inner, "timeout"), tostring(inner))
    assert.is_true(pyq.is_error(err, "timeout"), tostring(err))
    assert.matches("pyq.timeout: timed out after", tostring(err), 1, true)
  end)

  it("has kind cancelled in a cancelled task, and join{all} keeps it inside the outcome", function()
    local seen
    local q <close> = pyq.Queue{ workers = 1 }
    q:put(pyq.async(function()
      local _, e = pcall(pyq.sleep, 5)
      seen = e
      error(e)
    end)())
    pyq.sleep(0.01)
    q:cancel()
    assert.is_true(pyq.is_error(seen, "cancelled"), tostring(seen))
    assert.equal("pyq: task cancelled", tostring(seen))
    local outcomes = q:join{ all = true }
    assert.is_true(pyq.is_error(outcomes[1], "cancelled"))
    assert.is_true(pyq.is_error(outcomes[1].error, "cancelled"))
  end)

  it("gives the outcome of a failed task the task's own typed error", function()
    local q <close> = pyq.Queue{ exception_handler = function() end }
    q:put(pyq.timeout(0.01, pyq.async(function() pyq.sleep(5) end)()))
    local o = q:join{ all = true }[1]
    assert.is_true(pyq.is_error(o, "failed"))
    assert.is_true(pyq.is_error(o.error, "timeout"))
    assert.equal(1, o.index)
  end)

  it("has kind deadlock for tasks and a main task that nothing can wake", function()
    local r = helper.run{ script = [[
      local a, b = pyq.Queue{ exception_handler = function(e)
        io.stderr:write("task=", e.kind, "\n")
      end }, pyq.Queue{}
      a:put(pyq.async(function() b:join() end)())
      b:put(pyq.async(function() a:join() end)())
      xpcall(a.join, function(e) io.stderr:write("main=", e.kind, "\n") end, a)
    ]], timeout = 20 }
    assert.matches("main=deadlock", r.err, 1, true)
  end)

  it("has kinds decode and io in pyq.json and pyq.jsonl", function()
    local err = failure(pyq.json.decode, "{")
    assert.is_true(pyq.is_error(err, "decode"), tostring(err))
    assert.matches("pyq.json.decode:", tostring(err), 1, true)
    err = failure(pyq.json.encode, { 1, nil, 3, n = 1 })
    assert.is_true(pyq.is_error(err, "encode"), tostring(err))
    err = failure(pyq.jsonl.open, helper.tmpdir .. "/no/such/dir/x.jsonl")
    assert.is_true(pyq.is_error(err, "io"), tostring(err))
    err = failure(pyq.jsonl.open, helper.tmpdir .. "/x.jsonl", { flush = -1 })
    assert.is_true(pyq.is_error(err, "usage"), tostring(err))
  end)

  it("has kind interrupted when a signal stops the job, seen by an xpcall handler", function()
    local job = helper.spawn("", [[
      io.stdout:setvbuf("no")
      print("ready")
      xpcall(function() pyq.sleep(30) end, function(e)
        io.stderr:write("kind=", tostring(pyq.is_error(e) and e.kind), "\n")
        return e
      end)
    ]])
    for _ = 1, 200 do
      local f = io.open(job.out)
      local s = f and f:read("a") or ""
      if f then f:close() end
      if s:find("ready") then break end
      pyq.sleep(0.02)
    end
    os.execute("kill -INT " .. job.pid)
    local code, _, err = helper.wait_exit(job)
    assert.equal(130, code)
    assert.matches("kind=interrupted", err, 1, true)
    assert.matches("pyq: interrupted (SIGINT)", err, 1, true)
  end)

  it("has kind usage for a task that yields by itself", function()
    local got
    local q <close> = pyq.Queue{ exception_handler = function(e) got = e end }
    q:put(pyq.async(function() coroutine.yield() end)())
    q:join()
    assert.is_true(pyq.is_error(got, "usage"), tostring(got))
    assert.matches("a task cannot yield to the host by itself", tostring(got), 1, true)
  end)

  it("has kind exit while os.exit unwinds, seen by an xpcall handler", function()
    local r = helper.run{ script = [[
      xpcall(function() os.exit(7) end, function(e)
        io.stderr:write("kind=", tostring(pyq.is_error(e) and e.kind), "\n")
        return e
      end)
    ]] }
    assert.equal(7, r.code)
    assert.matches("kind=exit", r.err, 1, true)
  end)

  it("can be made by scripts with pyq.Error(kind, message, fields)", function()
    local e = pyq.Error("quota", "daily quota used up", { remaining = 0, kind = "ignored" })
    assert.is_true(pyq.is_error(e, "quota"))
    assert.equal("daily quota used up", tostring(e))
    assert.equal(0, e.remaining)
    local ok, got = pcall(error, e)
    assert.is_false(ok)
    assert.equal(e, got)
    assert.matches("pyq.Error: kind must be a string, got no value",
                   tostring(failure(pyq.Error)), 1, true)
    assert.matches("pyq.Error: fields must be a table, got 3",
                   tostring(failure(pyq.Error, "k", "m", 3)), 1, true)
    assert.matches("pyq.is_error: kind must be a string, got 5",
                   tostring(failure(pyq.is_error, e, 5)), 1, true)
  end)
end)
