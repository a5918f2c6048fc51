require "busted.runner"()
-- The command line is documented once (docs/pyqhost.1.lua): the man page
-- is made from it, and `pyqhost --help` and the README's block must list
-- the same options.
local helper = require "tests.helper"

local doc = dofile(helper.source .. "/docs/pyqhost.1.lua")

-- The option names in a block of help text: words starting with a dash
-- at the start of a column (after two spaces), and the names joined to
-- them with ", " (-h, --help).
local function options_in(text)
  local set = {}
  for line in text:gmatch("[^\n]+") do
    for name, rest in ("  " .. line):gmatch("%s%s+(%-[%w%-]*)(,? ?%-?[%w%-]*)") do
      set[name] = true
      local joined = rest:match("^, (%-[%w%-]*)")
      if joined then set[joined] = true end
    end
  end
  return set
end

local function documented()
  local set = {}
  for _, o in ipairs(doc.options) do
    for name in o[1]:gmatch("%-[%w%-]*") do set[name] = true end
  end
  return set
end

local function keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

describe("the command line's documentation", function()
  it("lists in --help exactly the options of docs/pyqhost.1.lua", function()
    local r = helper.run{ nofile = true, flags = { "--help" } }
    assert.equal(0, r.code)
    assert.same(keys(documented()), keys(options_in(r.out)))
  end)

  it("lists in the README's block exactly those options", function()
    local readme = helper.read_file(helper.source .. "/README.md")
    local block = readme:match("## Running a script\n\n```\n(.-)```")
    assert.is_string(block)
    assert.same(keys(documented()), keys(options_in(block)))
  end)

  it("has a man page made from it at build time", function()
    local man = helper.read_file(helper.pyqhost:gsub("[^/]+$", "") .. "pyqhost.1")
    assert.matches('^%.TH PYQHOST 1', man)
    for _, o in ipairs(doc.options) do
      local first = o[1]:match("^[^,]+")
      assert.matches("\\fB" .. first:gsub("%-", "\\-"), man, 1, true)
    end
    assert.matches("pyqhost init", man, 1, true)
  end)
end)

describe("pyqhost init", function()
  it("writes a job skeleton that runs, and refuses to overwrite", function()
    local dir = helper.tempdir() .. "/job"
    local r = helper.run{ nofile = true, flags = { "init", dir } }
    assert.equal(0, r.code, r.err)
    for _, f in ipairs({ "job.lua", ".luarc.json", ".luacheckrc" }) do
      assert.is_string(helper.read_file(dir .. "/" .. f), f)
    end
    assert.matches('"workspace.library": %[".-/meta"%]', helper.read_file(dir .. "/.luarc.json"))
    -- the job settings are the project's own (below its first line)
    local luacheckrc = helper.read_file(dir .. "/.luacheckrc")
    assert.matches(luacheckrc:gsub("^[^\n]*\n", ""), helper.read_file(helper.source .. "/.luacheckrc"), 1, true)
    -- the skeleton compiles and runs (its requests answered by a stand-in)
    local job = helper.read_file(dir .. "/job.lua")
    local stub = "pyq.http.get = function() return { json = function() return { id = 1 } end } end\n"
    local run = helper.run{ script = stub .. job }
    assert.equal(0, run.code, run.err)
    local again = helper.run{ nofile = true, flags = { "init", dir } }
    assert.equal(1, again.code)
    assert.matches("already has job.lua, .luarc.json, .luacheckrc; nothing written", again.err, 1, true)
    assert.matches("init takes at most one directory",
                   helper.run{ nofile = true, flags = { "init", dir, "x" } }.err, 1, true)
  end)

  it("writes a .luacheckrc that passes the skeleton and pyq.log.level, and flags other pyq writes", function()
    if not helper.shell("command -v luacheck"):find("luacheck") then
      pending("luacheck is not installed (Debian lua-check)")
      return
    end
    local dir = helper.tempdir() .. "/job"
    assert.equal(0, helper.run{ nofile = true, flags = { "init", dir } }.code)
    local f = assert(io.open(dir .. "/more.lua", "w"))
    f:write('pyq.log.level = "DEBUG"\npyq.log.verbose = true\npyq.htpp = nil\nlocal unused = 1\n')
    f:close()
    local out = helper.shell("cd " .. helper.quote(dir) .. " && luacheck --no-cache --no-color --codes job.lua more.lua")
    assert.matches("job.lua%s+OK", out)
    assert.not_matches("more.lua:1:", out, 1, true)
    assert.matches("more.lua:2:%d+: %(W122%) setting read%-only field 'log.verbose' of global 'pyq'", out)
    assert.matches("more.lua:3:%d+: %(W122%) setting read%-only field 'htpp' of global 'pyq'", out)
    assert.matches("more.lua:4:%d+: %(W211%) unused variable 'unused'", out)
  end)
end)
