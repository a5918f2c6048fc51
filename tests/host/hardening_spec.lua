require 'busted.runner'()
-- Issue 14: memory safety, interruptions that cannot be swallowed, exits
-- from finalizers, and errors that cannot be turned into text.
local helper = require 'tests.helper'

-- Runs `script` in the background, sends `sig` `after` seconds after the
-- script has started (a signal sent before the host installs its handler
-- is lost: bash starts background jobs with SIGINT ignored) and returns the
-- exit code and the milliseconds from the signal to the exit.
local function interrupt(script, sig, after)
  local ready = os.tmpname()
  os.remove(ready)
  local file = helper.tempfile(("io.open(%q, 'w'):close()\n"):format(ready) .. script)
  local out = helper.shell(([[bash -c '%s %s >/dev/null 2>&1 & pid=$!;
    (sleep 30; kill -9 $pid) >/dev/null 2>&1 & dog=$!;
    for i in $(seq 300); do [ -e %s ] && break; sleep 0.05; done; sleep %s;
    t0=$(date +%%s%%N); kill -%s $pid; wait $pid; code=$?; t1=$(date +%%s%%N); kill $dog 2>/dev/null;
    echo $code $(( (t1 - t0) / 1000000 ))']]):format(helper.pyqhost, file, ready, after, sig))
  os.remove(file)
  os.remove(ready)
  local code, ms = out:match("(%d+) (%d+)")
  return tonumber(code), tonumber(ms)
end

describe("hardening", function()
  it("keeps a freed worker's coroutine dead to Lua", function()
    local saved
    do
      local q <close> = pyq.Queue{ workers = 1 }
      q:put(pyq.async(function() saved = coroutine.running() end)())
    end
    local ok, err = coroutine.resume(saved)
    assert.is_false(ok)
    assert.equal("cannot resume dead coroutine", err)
    assert.equal("dead", coroutine.status(saved))
  end)

  it("refuses to resume a live worker", function()
    local saved
    local q <close> = pyq.Queue{ workers = 1 }
    q:put(pyq.async(function() saved = coroutine.running() end)())
    q:join()
    local ok, err = coroutine.resume(saved)
    assert.is_false(ok)
    assert.matches("cannot resume a task the host runs", err, 1, true)
  end)

  it("checks self in every metamethod", function()
    local q <close> = pyq.Queue{ maxsize = 0 }
    local mt = debug.getmetatable(q)
    local task_mt = debug.getmetatable(pyq.async(function() end)())
    local _, _, _, closing = q:completed()
    local closing_mt = debug.getmetatable(closing)
    debug.getmetatable(closing).__close(closing)
    local dir = os.tmpname()
    local w <close> = pyq.jsonl.open(dir)
    local w_mt = debug.getmetatable(w)
    local _, _, _, reader = pyq.jsonl.lines(dir)
    local r_mt = debug.getmetatable(reader)
    local _, state = debug.getupvalue(pyq.jsonl.open, 1)
    local _, scratch = debug.getupvalue(pyq.json.encode, 1)
    local err_obj
    do
      local eq <close> = pyq.Queue{ exception_handler = function() end }
      eq:put(pyq.async(function() error("x") end)())
      err_obj = eq:join{ all = true }[1]
    end
    local calls = {
      function() return mt.__len(42) end,
      function() return mt.__index(io.stdout, "pending") end,
      function() return mt.__tostring({}) end,
      function() return mt.__newindex({}, "exception_handler", print) end,
      function() return mt.__close(42) end,
      function() return mt.__gc(42) end,
      function() return task_mt.__tostring({}) end,
      function() return closing_mt.__close(42) end,
      function() return w_mt.__index(5, "path") end,
      function() return w_mt.__close(io.stdout) end,
      function() return w_mt.__gc({}) end,
      function() return w_mt.__tostring(42) end,
      function() return r_mt.__close(42) end,
      function() return debug.getmetatable(state).__gc(42) end,
      function() return debug.getmetatable(scratch).__gc(io.stdout) end,
      function() return debug.getmetatable(err_obj).__tostring({}) end,
    }
    for i, f in ipairs(calls) do
      local ok, err = pcall(f)
      assert.is_false(ok, "case " .. i)
      -- lauxlib's checks raise strings, the host's own a usage pyq.Error
      assert.is_true(type(err) == "string" or pyq.is_error(err, "usage"),
                     "case " .. i .. ": " .. tostring(err))
    end
    assert.is_true(pyq.is_error(err_obj), "the objects are still whole")
    w:write({ still = "works" })
  end)

  describe("os.exit", function()
    local cases = {
      { "in a __gc run at exit, with a queue never closed", [[
        local q = pyq.Queue{ workers = 1 }
        q:put(pyq.async(function() pyq.sleep(0.01) end)())
        setmetatable({}, { __gc = function() os.exit(3) end })
      ]], 3 },
      { "in a __gc run by a collection in the main task", [[
        setmetatable({}, { __gc = function() os.exit(5) end })
        collectgarbage(); collectgarbage()
      ]], 5 },
      { "in the main chunk's __close", [[
        local _ <close> = setmetatable({}, { __close = function() os.exit(4) end })
      ]], 4 },
      { "in a task's __close while os.exit unwinds the job", [[
        local q <close> = pyq.Queue{ workers = 2 }
        q:put(pyq.async(function()
          local _ <close> = setmetatable({}, { __close = function() os.exit(9) end })
          pyq.sleep(5)
        end)())
        pyq.sleep(0.02)
        os.exit(6)
      ]], 6 },
      { "in a __gc of a task's garbage", [[
        local q <close> = pyq.Queue{ workers = 2 }
        q:put(pyq.async(function()
          setmetatable({}, { __gc = function() os.exit(7) end })
          collectgarbage()
          pyq.sleep(5)
        end)())
      ]], 7 },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. " exits with its code, cleanly", function()
        local r = helper.run{ script = case[2], timeout = 20 }
        assert.equal(case[3], r.code, r.err)
        assert.not_matches("internal error", r.err, 1, true)
        assert.not_matches("AddressSanitizer", r.err, 1, true)
      end)
    end
  end)

  it("in a __close while an interrupt unwinds keeps the interrupt's exit code", function()
    local code = interrupt([[
      local _ <close> = setmetatable({}, { __close = function() os.exit(8) end })
      pyq.sleep(5)
    ]], "INT", 0.3)
    assert.equal(130, code)
  end)

  it("reports an error object whose __tostring raises, then closes everything", function()
    local dir = helper.tempdir()
    local r = helper.run{ flags = { "--summary" }, script = ([[
      local out <close> = pyq.jsonl.open(%q)
      for i = 1, 100 do out:write({ i = i }) end
      error(setmetatable({}, { __tostring = function() error("no text") end }))
    ]]):format(dir .. "/out.jsonl") }
    local n = 0
    for _ in io.lines(dir .. "/out.jsonl") do n = n + 1 end
    os.execute("rm -rf " .. dir)
    assert.equal(1, r.code)
    assert.matches("(error object is a table value)", r.err, 1, true)
    assert.matches("pyqhost summary", r.err, 1, true)
    assert.equal(100, n)
  end)

  describe("the first SIGINT", function()
    -- "within 100 ms" of the signal, on top of what an idle job takes to
    -- exit on this machine now (process teardown; more under the sanitizers)
    local limit_ms
    setup(function()
      local code, idle = interrupt("pyq.sleep(5)", "INT", 0.3)
      assert.equal(130, code)
      -- the sanitizers slow every step several times, and their timings
      -- vary with whatever else the machine runs
      limit_ms = (100 + idle) * (helper.sanitized and 3 or 1)
    end)
    local cpu = "local x = 0; for i = 1, 1e5 do x = x + i end; return x"
    local cases = {
      { "pcall in a loop", "while true do pcall(function() " .. cpu .. " end) end" },
      { "xpcall in a loop", "while true do xpcall(function() " .. cpu .. " end, debug.traceback) end" },
      { "a hand-made coroutine", "local co = coroutine.create(function() while true do " .. cpu:gsub("return x", "") .. " end end); print(coroutine.resume(co)); while true do end" },
      { "a coroutine.wrap generator", "local g = coroutine.wrap(function() while true do pcall(function() " .. cpu .. " end) end end); g(); while true do end" },
      { "a queue task with pcall", [[
        local q <close> = pyq.Queue{ workers = 1 }
        q:put(pyq.async(function() while true do pcall(function() ]] .. cpu .. [[ end) end end)())
      ]] },
      { "a task that catches its wait's error", [[
        local q <close> = pyq.Queue{ workers = 1 }
        q:put(pyq.async(function() while true do pcall(pyq.sleep, 0.001) end end)())
      ]] },
    }
    for _, case in ipairs(cases) do
      it("stops " .. case[1] .. " within 100 ms", function()
        local code, ms = interrupt(case[2], "INT", 0.3)
        assert.equal(130, code)
        assert.is_true(ms <= limit_ms, "took " .. tostring(ms) .. " ms")
      end)
    end
  end)

  it("keeps pyq.std read-only after a script replaced error", function()
    local r = helper.run{ script = [[
      local std, pcall, print = require "pyq.std", pcall, print
      error = function() end
      print(pcall(function() std.type = print end))
      print(std.type == print)
    ]] }
    assert.equal(0, r.code, r.err)
    assert.matches("^false\t[^\n]*: pyq.std is read%-only\nfalse\n$", r.out)
  end)

  it("loads the library's modules with the start-up require, whatever a script put in the global", function()
    local r = helper.run{ script = [[
      require = function() return {} end
      print(pyq.url.parse("http://a.example/b").host, type(pyq.http.get), type(pyq.html.parse))
    ]] }
    assert.equal(0, r.code, r.err)
    assert.equal("a.example\tfunction\tfunction\n", r.out)
  end)
end)
