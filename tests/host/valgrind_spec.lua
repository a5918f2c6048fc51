require 'busted.runner'()
-- Memory errors that AddressSanitizer cannot see: those made inside the
-- system's libuv and libcurl (not instrumented), such as a handle of theirs
-- that lives in memory lua_close has freed.  Valgrind watches every load
-- and store.  Skipped in the sanitizer build (the two do not mix).
local helper = require 'tests.helper'

local valgrind = io.open("/usr/bin/valgrind") and not helper.sanitized

local function under_valgrind(script, args)
  local file = helper.tempfile(script)
  local out = helper.shell(("valgrind -q --error-exitcode=99 %s %s %s 2>&1; echo \"rc=$?\""):format(
    helper.quote(helper.pyqhost), helper.quote(file), args or ""))
  os.remove(file)
  return out
end

describe("under valgrind", function()
  local api
  setup(function() if valgrind then api = helper.start_api() end end)
  teardown(function() if api then api.stop() end end)

  local cases = {
    { "a job with HTTP, JSONL and a queue, to its end", [[
      local base = ...
      local out <close> = pyq.jsonl.open(os.tmpname())
      local q <close> = pyq.Queue{ workers = 4 }
      for i = 1, 20 do
        q:put(pyq.async(function() out:write({ i = i, status = pyq.http.get(base .. "/bytes/" .. i).status }) end)())
      end
    ]], 0 },
    { "os.exit in a __gc at exit, a queue and a writer never closed", [[
      local base = ...
      local q = pyq.Queue{ workers = 1 }
      q:put(pyq.async(function() pyq.http.get(base .. "/delay/0.05") end)())
      pyq.jsonl.open(os.tmpname()):write({ a = 1 })
      setmetatable({}, { __gc = function() os.exit(3) end })
    ]], 3 },
    { "an error in the main task with transfers in flight", [[
      local base = ...
      local q = pyq.Queue{ workers = 5 }
      for _ = 1, 5 do q:put(pyq.async(function() pyq.http.get(base .. "/delay/5") end)()) end
      pyq.sleep(0.2)
      error("stop")
    ]], 1 },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      if not valgrind then pending("valgrind is not installed, or this is the sanitizer build") return end
      local out = under_valgrind(case[2], api.base)
      assert.matches("rc=" .. case[3] .. "\n", out, 1, true)
      assert.not_matches("==%d+==", out)
    end)
  end
end)
