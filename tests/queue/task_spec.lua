require 'busted.runner'()
local helper = require 'tests.helper'

describe("pyq.async", function()
  it("makes tasks that run nothing until started", function()
    local ran = false
    local job = pyq.async(function(a, b) ran = true; return a + b, a * b end)
    local task = job(2, 3)
    assert.equal("pyq.task", getmetatable(task))
    assert.is_false(ran)
    assert.same({ 5, 6 }, { pyq.await(task) })
    assert.is_true(ran)
  end)

  it("refuses a non-function", function()
    for _, v in ipairs({ 1, "f", {}, nil }) do
      local ok, err = pcall(pyq.async, v)
      assert.is_false(ok)
      assert.matches("pyq.async: expected a function", err, 1, true)
    end
  end)

  it("keeps nil arguments in place", function()
    local job = pyq.async(function(...) return select("#", ...), ... end)
    assert.same({ n = 4, 3, nil, 2, nil }, table.pack(pyq.await(job(nil, 2, nil))))
  end)
end)

describe("pyq.await", function()
  it("returns every value and re-raises errors", function()
    local job = pyq.async(function(x)
      pyq.sleep(0.001)
      if x then return 1, nil, 3 end
      error({ code = 7 })
    end)
    assert.same({ n = 3, 1, nil, 3 }, table.pack(pyq.await(job(true))))
    local ok, err = pcall(pyq.await, job(false))
    assert.is_false(ok)
    assert.same({ code = 7 }, err)
  end)

  it("accepts a fresh coroutine and refuses a started task", function()
    assert.equal("co", pyq.await(coroutine.create(function() return "co" end)))
    local task = pyq.async(function() end)()
    pyq.await(task)
    local ok, err = pcall(pyq.await, task)
    assert.is_false(ok)
    assert.matches("already queued or started", err, 1, true)
    ok, err = pcall(pyq.await, 5)
    assert.is_false(ok)
    assert.matches("pyq.await: expected a task", err, 1, true)
  end)
end)

describe("pyq.sleep and pyq.now", function()
  it("suspends for about the given time", function()
    local t0 = pyq.now()
    pyq.sleep(0.05)
    local dt = pyq.now() - t0
    assert.is_true(dt >= 0.049 and dt < 0.5, "slept " .. dt)
  end)

  it("yields to the loop with 0", function()
    local order = {}
    local q <close> = pyq.Queue{}
    q:put(pyq.async(function() order[#order + 1] = "task" end)())
    order[#order + 1] = "before"
    pyq.sleep(0)
    order[#order + 1] = "after"
    assert.same({ "before", "task", "after" }, order)
  end)

  it("rejects negative, NaN and non-number durations", function()
    for _, v in ipairs({ -1, 0 / 0, "1", nil, {} }) do
      local ok, err = pcall(pyq.sleep, v)
      assert.is_false(ok)
      assert.matches("pyq.sleep: seconds must be a non-negative number", err, 1, true)
    end
  end)

  it("gives monotonic float seconds", function()
    local a = pyq.now()
    pyq.sleep(0.002)
    local b = pyq.now()
    assert.equal("float", math.type(a))
    assert.is_true(b > a)
  end)
end)

describe("waiting where the host cannot suspend", function()
  it("is an error inside a coroutine resumed by hand", function()
    local co = coroutine.wrap(function() pyq.sleep(0.01) end)
    local ok, err = pcall(co)
    assert.is_false(ok)
    assert.matches("cannot wait here: this coroutine is not run by the host", err, 1, true)
  end)

  it("is an error under a C function", function()
    local ok, err = pcall(table.sort, { 3, 2, 1 }, function(a, b) pyq.sleep(0) return a < b end)
    assert.is_false(ok)
    assert.matches("cannot wait here: a C function", err, 1, true)
  end)

  it("cannot resume or close the host's own coroutines", function()
    local q <close> = pyq.Queue{}
    local worker
    q:put(pyq.async(function() worker = coroutine.running(); pyq.sleep(0.02) end)())
    pyq.sleep(0.005)
    local ok, err = coroutine.resume(worker)
    assert.is_false(ok)
    assert.matches("cannot resume a task the host runs", err, 1, true)
    ok, err = pcall(coroutine.close, worker)
    assert.is_false(ok)
    assert.matches("cannot close a task the host runs", err, 1, true)
  end)

  it("is an error in a __close handler run while an error unwinds", function()
    local r = helper.run{ script = [[
      local x <close> = setmetatable({}, { __close = function()
        local ok, err = pcall(pyq.sleep, 0)
        print(ok, err)
      end })
      error("first")
    ]] }
    assert.equal(1, r.code)
    assert.matches("false\t[^\n]*cannot wait here", r.out)
  end)

  it("waits inside a __close handler on a normal exit", function()
    local t0 = pyq.now()
    do
      local guard <close> = setmetatable({}, { __close = function() pyq.sleep(0.02) end })
    end
    assert.is_true(pyq.now() - t0 >= 0.019)
  end)
end)
