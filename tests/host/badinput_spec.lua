-- Bad input across the host: every case ends with a clear message, never a
-- crash, a hang or a silent success.  (Missing scripts, syntax errors, table
-- error objects and usage errors are in cli_spec; errors in
-- exception_handler and plain coroutine.yield in queue_spec.)
require 'busted.runner'()
local helper = require 'tests.helper'

describe("bad input", function()
  describe("wrong argument types to every public function", function()
    local q = pyq.Queue{}
    local task = pyq.async(function() end)
    local cases = {
      { "pyq.async", pyq.async, 1 },
      { "pyq.await", pyq.await, 1 },
      { "pyq.sleep", pyq.sleep, "x" },
      { "pyq.timeout", pyq.timeout, "x", task() },
      { "pyq.timeout", pyq.timeout, 1, "x" },
      { "pyq.Queue", pyq.Queue, 1 },
      { "pyq.Queue.put", q.put, 1, task() },
      { "pyq.Queue.put", q.put, q, 1 },
      { "pyq.Queue.put", q.put, q, task(), "soon" },
      { "pyq.Queue.join", q.join, 1 },
      { "pyq.Queue.join", q.join, q, 1 },
      { "pyq.Queue.cancel", q.cancel, 1 },
      { "pyq.Queue.close", q.close, "x" },
      { "pyq.log.info", pyq.log.info },
      { "pyq.log.log", pyq.log.log, {}, "x" },
      { "pyq.http.request", pyq.http.request, 1 },
      { "pyq.http.get", pyq.http.get, {} },
      { "pyq.http.post", pyq.http.post, "http://127.0.0.1/", 5 },
      { "pyq.http.limit", pyq.http.limit, 1, "1/1s" },
      { "pyq.http.limit", pyq.http.limit, "host", 5 },
      { "pyq.http.configure", pyq.http.configure, 1 },
      { "pyq.json.decode", pyq.json.decode, 1 },
      { "pyq.json.encode", pyq.json.encode, print },
      { "pyq.jsonl.open", pyq.jsonl.open, 1 },
      { "pyq.itertools.frozen_generator", pyq.itertools.frozen_generator, 1 },
    }
    for i, case in ipairs(cases) do
      it(("%d: %s"):format(i, case[1]), function()
        local ok, err = pcall(case[2], table.unpack(case, 3))
        assert.is_false(ok)
        assert.matches(case[1] .. ":", tostring(err), 1, true)
      end)
    end

    it("names the field for queue and log assignments", function()
      local _, err = pcall(function() q.workers_num = 3 end)
      assert.matches("pyq.Queue: field 'workers_num' is read-only", err, 1, true)
      _, err = pcall(function() q.exception_handler = 5 end)
      assert.matches("pyq.Queue: exception_handler must be a function", err, 1, true)
      _, err = pcall(function() pyq.log.level = {} end)
      assert.matches("pyq.log.level: level", err, 1, true)
      q:close()
    end)
  end)

  describe("errors in handlers", function()
    it("from a __close handler on a normal exit fail the script with exit 1", function()
      local r = helper.run{ script = [[
        local x <close> = setmetatable({}, { __close = function() error("broken close") end })
      ]] }
      assert.equal(1, r.code)
      assert.matches("pyqhost: [^\n]*broken close", r.err)
    end)

    it("from a __close handler in a task fail that task only", function()
      local r = helper.run{ script = [[
        local q <close> = pyq.Queue{ exception_handler = function(e) print("handled", e) end }
        q:put(pyq.async(function()
          local x <close> = setmetatable({}, { __close = function() error("close in task", 0) end })
          return 1
        end)())
        q:put(pyq.async(function() return 2 end)())
        print(table.concat(q:join(), ","))
      ]] }
      assert.equal(0, r.code, r.err)
      assert.equal("handled\tclose in task\n2\n", r.out)
    end)

    it("from a __close handler while an error unwinds keep the process alive", function()
      local r = helper.run{ script = [[
        local x <close> = setmetatable({}, { __close = function() error("second", 0) end })
        error("first", 0)
      ]] }
      assert.equal(1, r.code)
      assert.matches("pyqhost: ", r.err, 1, true)
    end)

    it("from __gc become WARNING lines", function()
      local r = helper.run{ script = [[
        setmetatable({}, { __gc = function() error("gc broke") end })
        collectgarbage()
        collectgarbage()
        print("still here")
      ]] }
      assert.equal(0, r.code)
      assert.equal("still here\n", r.out)
      assert.matches("WARNING lua: [^\n]*gc broke", r.err)
      r = helper.run{ script = [[
        warn("shown") warn("@off") warn("hidden") warn("@on") warn("again")
      ]] }
      assert.matches("WARNING lua: shown\n", r.err, 1, true)
      assert.not_matches("hidden", r.err, 1, true)
      assert.matches("WARNING lua: again\n", r.err, 1, true)
    end)
  end)

  describe("memory exhaustion", function()
    local function under_ulimit(file)
      return helper.shell(("ulimit -v 200000; %s %s 2>&1; echo \"exit $?\""):format(
        helper.quote(helper.pyqhost), helper.quote(file)))
    end

    it("ends with Lua's 'not enough memory' and exit 1 under ulimit -v", function()
      if helper.sanitized then
        pending("AddressSanitizer needs more address space than ulimit -v leaves")
        return
      end
      local file = helper.tempfile([[
        local t = {}
        for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end
      ]])
      local out = under_ulimit(file)
      assert.matches("not enough memory", out, 1, true)
      assert.matches("exit 1\n$", out)
    end)

    it("in a task fails that task, and the host goes on", function()
      if helper.sanitized then
        pending("AddressSanitizer needs more address space than ulimit -v leaves")
        return
      end
      local file = helper.tempfile([[
        local q <close> = pyq.Queue{ exception_handler = function(e) print("task:", e) end }
        q:put(pyq.async(function()
          local t = {}
          for i = 1, 1e9 do t[i] = string.rep("y", 64) .. i end
        end)())
        q:join()
        collectgarbage()
        print("after", q.failed)
      ]])
      local out = under_ulimit(file)
      assert.matches("task:\tnot enough memory", out, 1, true)
      assert.matches("after\t1", out, 1, true)
      assert.matches("exit 0\n$", out)
    end)
  end)
end)
