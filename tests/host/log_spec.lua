require 'busted.runner'()
local helper = require 'tests.helper'

describe("pyq.log", function()
  it("writes one line per message: UTC time, level, script:line, message", function()
    local r = helper.run{ script = "pyq.log.warning('hello %d', 42)\npyq.log.error('plain')" }
    local lines = {}
    for line in r.err:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(2, #lines)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ WARNING [^ ]+%.lua:1: hello 42$", lines[1])
    assert.matches(" ERROR [^ ]+%.lua:2: plain$", lines[2])
  end)

  it("filters by the threshold, default WARNING", function()
    local r = helper.run{ script = [[
      pyq.log.debug("d") pyq.log.info("i") pyq.log.warning("w")
      pyq.log.level = "DEBUG"
      pyq.log.debug("d2") pyq.log.log(25, "custom %s", "level") pyq.log.critical("c")
    ]] }
    assert.not_matches(" d\n", r.err, 1, true)
    assert.matches("WARNING [^\n]*: w\n", r.err)
    assert.matches("DEBUG [^\n]*: d2\n", r.err)
    assert.matches("Level 25 [^\n]*: custom level\n", r.err)
    assert.matches("CRITICAL [^\n]*: c\n", r.err)
  end)

  it("gets and sets the level by number or name", function()
    local saved = pyq.log.level
    assert.equal(30, saved)
    pyq.log.level = "error"
    assert.equal(40, pyq.log.level)
    pyq.log.level = 10
    assert.equal(10, pyq.log.level)
    assert.has_error(function() pyq.log.level = "chatty" end)
    assert.has_error(function() pyq.log.verbose = true end)   -- luacheck: ignore 122 (read-only)
    assert.has_error(function() pyq.log.log("nope", "x") end)
    pyq.log.level = saved
  end)
end)

describe("pyq.itertools.frozen_generator", function()
  local frozen_generator = pyq.itertools.frozen_generator

  it("yields index and a deep copy of each item", function()
    local list = { { id = 1, tags = { "a" } }, { id = 2, tags = {} } }
    local seen = {}
    for i, item in frozen_generator(list) do
      assert.are_not.equal(list[i], item)
      assert.same(list[i], item)
      item.filled = true
      item.tags[#item.tags + 1] = "x"
      seen[#seen + 1] = i
    end
    assert.same({ 1, 2 }, seen)
    assert.is_nil(list[1].filled)
    assert.same({ "a" }, list[1].tags)
  end)

  it("keeps cycles and metatables", function()
    local mt = { __index = { kind = "match" } }
    local item = setmetatable({}, mt)
    item.self = item
    for _, copy in frozen_generator({ item }) do
      assert.equal(copy, copy.self)
      assert.are_not.equal(item, copy)
      assert.equal(mt, getmetatable(copy))
      assert.equal("match", copy.kind)
    end
  end)

  it("rejects a non-table", function()
    assert.has_error(function() frozen_generator(5) end,
      "pyq.itertools.frozen_generator: list must be a table, got number")
  end)

  it("copies with the standard functions, whatever the script did to the globals", function()
    local r = helper.run{ script = [[
      local mt, rawequal, print, pcall = {}, rawequal, print, pcall
      type = function() return "number" end
      next = function() return nil end
      error = function() end
      debug.getmetatable, debug.setmetatable = function() end, function(t) return t end
      local item = setmetatable({ tags = { "a" } }, mt)
      local copy = pyq.itertools.deepcopy(item)
      print(copy ~= item, copy.tags ~= item.tags, copy.tags[1], rawequal(getmetatable(copy), mt))
      print(pcall(pyq.itertools.frozen_generator, 5))
    ]] }
    assert.equal(0, r.code, r.err)
    assert.equal("true\ttrue\ta\ttrue\n"
      .. "false\tpyq.itertools.frozen_generator: list must be a table, got number\n", r.out)
  end)

  it("feeds a queue without growing the list", function()
    local list = {}
    for i = 1, 100 do list[i] = { id = i } end
    local fill = pyq.async(function(item) item.data = string.rep("x", 100); return item.id end)
    local q <close> = pyq.Queue{ workers = 10 }
    for _, item in frozen_generator(list) do q:put(fill(item)) end
    assert.equal(100, #q:join())
    for i = 1, 100 do assert.is_nil(list[i].data) end
  end)
end)

describe("a log call that cannot be formatted", function()
  for _, flags in ipairs({ {}, { "-v" }, { "-vv" } }) do
    it("is reported on one line naming the call site, and the job goes on ("
       .. (flags[1] or "default level") .. ")", function()
      local r = helper.run{ flags = flags, script = [[
        pyq.log.warning("avg %d ms", 2.5)
        pyq.log.info("avg %d ms", 2.5)
        pyq.log.error(setmetatable({}, { __tostring = function() error("no text") end }))
        print("went on")
      ]] }
      assert.equal(0, r.code, r.err)
      assert.equal("went on\n", r.out)
      local _, lines = r.err:gsub("cannot format the message", "")
      assert.equal(flags[1] and 3 or 2, lines, r.err)
      assert.matches("ERROR [^\n]+:1: pyq.log.warning: cannot format the message: bad argument #2", r.err)
      assert.matches('(message "avg %d ms" with 1 argument)', r.err, 1, true)
      assert.matches(":3: pyq.log.error: cannot format the message: [^\n]*no text", r.err)
    end)
  end
end)
