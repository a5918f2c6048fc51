require 'busted.runner'()
local helper = require 'tests.helper'
local run = helper.run

describe("pyqhost command line", function()
  it("sets arg like lua and passes the arguments as ...", function()
    local r = run{ script = "print(arg[0] ~= nil, arg[1], arg[2], select('#', ...), ...)", args = { "a", "b c" } }
    assert.equal(0, r.code)
    assert.equal("true\ta\tb c\t2\ta\tb c\n", r.out)
  end)

  it("runs -e chunks and -l modules first, in order", function()
    local r = run{ flags = { "-e", "x = 1", "-l", "cjson", "-e", "x = x + 1" },
                   script = "print(x, type(cjson.encode))" }
    assert.equal("2\tfunction\n", r.out)
    r = run{ flags = { "-e", "print('only e')" }, nofile = true }
    assert.equal(0, r.code)
    assert.equal("only e\n", r.out)
  end)

  it("reads the script from stdin with -", function()
    local r = run{ flags = { "-" }, nofile = true, args = { "x" }, stdin = "print('stdin', ...)" }
    assert.equal(0, r.code)
    assert.equal("stdin\tx\n", r.out)
  end)

  -- pyqhost on a pseudo-terminal (util-linux's script, always in Debian);
  -- returns what it wrote there and "exit N".
  local function on_tty(args)
    local cmd = helper.quote(helper.pyqhost) .. " " .. (args or "")
    return helper.shell("script -qec " .. helper.quote(cmd) .. " /dev/null </dev/null; echo \"exit $?\"")
  end

  it("reads the script from stdin when none is given and stdin is not a terminal", function()
    local r = run{ nofile = true, stdin = "print('piped', select('#', ...))" }
    assert.equal(0, r.code, r.err)
    assert.equal("piped\t0\n", r.out)
    r = run{ nofile = true, flags = { "-l", "cjson" }, stdin = "print(type(cjson))" }
    assert.equal("table\n", r.out)
    r = run{ nofile = true, stdin = "x = = 1" }
    assert.equal(1, r.code)
    assert.matches("^pyqhost: stdin:1: unexpected symbol", r.err)
    r = run{ nofile = true, flags = { "-e", "print('e')" }, stdin = "print('not read')" }
    assert.equal("e\n", r.out)   -- as lua: with -e and no script, stdin is left alone
  end)

  it("runs -e alone on a terminal without starting the prompt", function()
    -- with nothing to run, a terminal gets the prompt: tests/host/repl_spec.lua
    assert.equal("exit 0\n", on_tty("-e 'x = 1'"))
  end)

  it("stops reading options at --", function()
    local f = helper.tempfile("print(...)")
    local r = run{ flags = { "--", f, "-v" }, nofile = true }
    assert.equal("-v\n", r.out)
  end)

  it("sets the log threshold with -v, -vv, -q and --log-level", function()
    local cases = { [""] = 30, ["-v"] = 20, ["-vv"] = 10, ["-q"] = 40,
                    ["--log-level=critical"] = 50, ["--log-level=15"] = 15 }
    for flag, level in pairs(cases) do
      local r = run{ flags = flag ~= "" and { flag } or {}, script = "print(pyq.log.level)" }
      assert.equal(level .. "\n", r.out)
    end
    local r = run{ flags = { "--log-level", "info" }, script = "print(pyq.log.level)" }
    assert.equal("20\n", r.out)
    r = run{ flags = { "--log-level", "loud" }, script = "" }
    assert.equal(2, r.code)
    assert.matches("bad log level 'loud'", r.err, 1, true)
  end)

  it("prints help and version", function()
    local r = run{ flags = { "--help" }, nofile = true }
    assert.equal(0, r.code)
    assert.matches("usage: pyqhost", r.out, 1, true)
    assert.matches("3 a task failed and its error went to the default\nexception handler", r.out, 1, true)
    r = run{ flags = { "-V" }, nofile = true }
    assert.equal(0, r.code)
    assert.matches("^pyqhost %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, ", r.out)
    local uv = helper.shell("pkg-config --modversion libuv"):match("%S+")
    local curl = helper.shell("pkg-config --modversion libcurl"):match("%S+")
    assert.matches(", libuv " .. uv .. ", libcurl " .. curl .. " ", r.out, 1, true)
  end)

  it("reports a module -l cannot find as lua does", function()
    local r = run{ flags = { "-l", "nosuchmod" }, nofile = true }
    assert.equal(1, r.code)
    assert.matches("^pyqhost: module 'nosuchmod' not found:\n\tno field package%.preload%['nosuchmod'%]\n", r.err)
    assert.matches("stack traceback:\n\t[C]: in function 'require'\n", r.err, 1, true)
    assert.is_nil(r.err:find("[string", 1, true))
  end)

  it("exits 3 when a task's error went to the default exception handler", function()
    local fail = "pyq.async(function() error('task broke') end)()"
    local r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:put(pyq.async(function() end)())" }
    assert.equal(3, r.code)
    assert.matches("task broke", r.err, 1, true)
    -- a handler of the user's own means the failure was handled
    r = run{ script = "local q <close> = pyq.Queue{ exception_handler = function() end }; q:put(" .. fail .. ")" }
    assert.equal(0, r.code, r.err)
    -- errors, os.exit and signals take precedence
    r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:join(); error('main broke')" }
    assert.equal(1, r.code)
    r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:join(); os.exit(0)" }
    assert.equal(0, r.code)
    r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:join(); os.exit(5)" }
    assert.equal(5, r.code)
    r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:join()\n"
                   .. "io.popen('kill -INT ' .. io.open('/proc/self/stat'):read('n')); pyq.sleep(5)" }
    assert.equal(130, r.code)
    r = run{ script = "local q <close> = pyq.Queue{}; q:put(" .. fail .. "); q:join()", flags = { "-e", "x = 1" } }
    assert.equal(3, r.code)
  end)

  it("exits 2 on usage errors and unreadable scripts", function()
    local r = run{ flags = { "-x" }, nofile = true }
    assert.equal(2, r.code)
    assert.matches("unrecognized option '-x'", r.err, 1, true)
    r = run{ flags = { "-e" }, nofile = true }
    assert.equal(2, r.code)
    r = run{ file = "nosuch.lua" }
    assert.equal(2, r.code)
    assert.matches("^pyqhost: cannot open nosuch.lua", r.err)
    r = run{ file = "/tmp" }
    assert.equal(2, r.code)
  end)

  it("exits 1 with the message and a traceback on an uncaught error", function()
    local r = run{ script = "local function f() error('boom') end\nf()" }
    assert.equal(1, r.code)
    assert.matches("^pyqhost: [^\n]+:1: boom\nstack traceback:\n", r.err)
    assert.matches("in local 'f'", r.err, 1, true)
  end)

  it("exits 1 with file:line on a syntax error", function()
    local r = run{ script = "x = = 1" }
    assert.equal(1, r.code)
    assert.matches("pyqhost: [^\n]+:1: unexpected symbol", r.err)
  end)

  it("reports error objects that are tables", function()
    local r = run{ script = "error({})" }
    assert.equal(1, r.code)
    assert.matches("(error object is a table value)", r.err, 1, true)
    r = run{ script = "error(setmetatable({}, { __tostring = function() return 'custom' end }))" }
    assert.equal(1, r.code)
    assert.matches("pyqhost: custom", r.err, 1, true)
  end)

  it("waits for every task before exiting", function()
    local r = run{ script = [[
      local q = pyq.Queue{ workers = 1 }
      q:put(pyq.async(function() pyq.sleep(0.05); print("late") end)())
      print("main done")
    ]] }
    assert.equal(0, r.code)
    assert.equal("main done\nlate\n", r.out)
  end)

  it("ends a main task that can never be woken instead of hanging", function()
    local r = run{ script = [[
      local a, b = pyq.Queue{}, pyq.Queue{}
      a:put(pyq.async(function() b:join() end)())
      b:put(pyq.async(function() a:join() end)())
      a:join()
    ]], timeout = 20 }
    assert.equal(1, r.code)
    assert.matches("deadlock", r.err, 1, true)
  end)

  it("preloads pyq as require 'pyq' and finds system modules", function()
    local r = run{ script = [[
      print(pyq == require "pyq", require "cjson" ~= nil, require "busted.runner" ~= nil,
            pyq.itertools == require "pyq.itertools")
    ]] }
    assert.equal("true\ttrue\ttrue\ttrue\n", r.out)
  end)

  it("raises its open-files soft limit to the hard limit", function()
    local hard = helper.shell("ulimit -Hn"):match("%S+")
    local out = helper.shell(("ulimit -Sn 256; %s -e %s"):format(helper.quote(helper.pyqhost),
      helper.quote([[print(io.popen("ulimit -Sn"):read("l"))]])))
    assert.equal(hard .. "\n", out)
  end)

  it("exits with the code given to os.exit", function()
    local r = run{ script = "io.write('x'); os.exit(3)" }
    assert.equal(3, r.code)
    assert.equal("x", r.out)
  end)

  -- Runs a shell command with the variables that could find a pyq library
  -- unset; `cd` to dir first if given.
  local function bare(cmd, dir)
    return helper.shell((dir and "cd " .. helper.quote(dir) .. " && " or "")
      .. "env -u LUA_PATH -u LUA_PATH_5_4 -u PYQ_LUALIB " .. cmd .. " </dev/null 2>&1; echo $?")
  end

  it("is one file: a copied binary finds pyq in itself", function()
    local api = helper.start_api()
    local dir = helper.fresh()
    assert.is_true(os.execute("mkdir " .. dir))
    assert.is_true(os.execute(("cp %s %s/pyqhost"):format(helper.quote(helper.pyqhost), dir)))
    local script = helper.tempfile([[
      local doc = pyq.http.get(arg[1] .. "/status/200"):json()
      do
        local out <close> = pyq.jsonl.open(arg[2])
        out:write(doc)
      end
      print(pyq.json.encode(doc), io.open(arg[2]):read("a") == pyq.json.encode(doc) .. "\n")
      print(debug.getinfo(pyq.http.limit, "S").source, (package.searchpath("pyq", package.path)))
    ]])
    local out = bare(("./pyqhost %s %s %s/out.jsonl"):format(helper.quote(script), api.base, dir), dir)
    api.stop()
    assert.equal('{"status":200}\ttrue\n@pyq/http.lua\tnil\n0\n', out)
  end)

  it("loads pyq from PYQ_LUALIB instead when it is set", function()
    local lib = helper.fresh()
    assert.is_true(os.execute("mkdir -p " .. lib .. "/pyq"))
    local f = assert(io.open(lib .. "/pyq/init.lua", "w"))
    f:write("return { overridden = true }")
    f:close()
    local run_with = function(dir, code)
      return bare(("PYQ_LUALIB=%s %s -e %s"):format(helper.quote(dir), helper.quote(helper.pyqhost),
                                                    helper.quote(code)))
    end
    assert.equal("true\n0\n", run_with(lib, "print(pyq.overridden)"))
    assert.matches("module 'pyq.http' not found:\n\tno field package.preload['pyq.http']\n\tno file '"
                   .. lib .. "/pyq/http.lua' (PYQ_LUALIB)", run_with(lib, "require 'pyq.http'"), 1, true)
    assert.equal("@" .. helper.source .. "/lualib/pyq/http.lua\n0\n",
                 run_with(helper.source .. "/lualib", "print(debug.getinfo(pyq.http.limit, 'S').source)"))
  end)

  it("installs a binary that needs nothing else, with its man page and docs beside it", function()
    local prefix = helper.fresh()
    local build = helper.pyqhost:match("^(.*)/[^/]+$")
    assert.is_true(os.execute("cmake --install " .. helper.quote(build) ..
      " --prefix " .. helper.quote(prefix) .. " >/dev/null"))
    local files = helper.shell("cd " .. helper.quote(prefix) .. " && find . -type f | sort")
    for _, f in ipairs({ "./bin/pyqhost", "./share/man/man1/pyqhost.1",
                         "./share/pyqhost/lualib/pyq/init.lua", "./share/pyqhost/meta/pyq.lua",
                         "./share/pyqhost/meta/config.json",
                         "./share/doc/pyqhost/examples/quickstart.lua",
                         "./share/doc/pyqhost/README.md" }) do
      assert.matches("\n" .. f:gsub("%p", "%%%0") .. "\n", "\n" .. files, nil, false, f)
    end
    -- the binary carries its own library: moved away from the rest, it runs
    local lone = helper.fresh()
    os.execute("mkdir " .. helper.quote(lone) .. " && cp " .. helper.quote(prefix .. "/bin/pyqhost") ..
               " " .. helper.quote(lone))
    assert.equal('[1]\n0\n', bare(helper.quote(lone .. "/pyqhost") .. " -e 'print(pyq.json.encode{1})'"))
  end)
end)
