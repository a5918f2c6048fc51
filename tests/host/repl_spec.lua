require "busted.runner"()
-- The interactive prompt, end to end through a pseudo-terminal: typing as
-- a person does and reading what the terminal shows.
local helper = require "tests.helper"
local json = require "cjson"

local talk = helper.source .. "/tests/fixtures/pty_talk.py"

-- Runs pyqhost with args on a pty through the steps; returns the
-- transcript and whether every step passed.
local function session(args, steps, home)
  local stepsfile = helper.tempfile(json.encode(steps), ".json")
  local cmd = ("HOME=%s python3 %s --timeout 15 %s -- %s %s 2>&1"):format(
    helper.quote(home or helper.tempdir()), helper.quote(talk), helper.quote(stepsfile),
    helper.quote(helper.pyqhost), args or "")
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  os.remove(stepsfile)
  return out, ok
end

local PROMPT = "> $"   -- the output so far ends with a fresh prompt

describe("the REPL", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("runs a request typed at the prompt and prints the result", function()
    local out, ok = session("", {
      { "expect", "REPL.*> $" },
      { "send", ("res = pyq.http.get(%q)\n"):format(api.base .. "/echo?x=1") },
      { "expect", PROMPT },
      { "send", "res.status, res:json().args.x\n" },
      { "expect", "200\t\"1\"" },
      { "send", "res\n" },
      { "expect", "200" },
      { "send", "{ 1, 2, name = 'x', deep = { a = { b = { c = 1 } } } }\n" },
      { "expect", [[\{ 1, 2, deep = \{ a = \{ b = \{\.\.\.\} \} \}, name = "x" \}]] },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    assert.matches("EXIT 0", out, 1, true)
    assert.not_matches("\"body\"", out:match("> res\r?\n(.-)\n") or "", 1, true)
  end)

  it("keeps tasks running while the prompt waits, and joins queues at the prompt", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "q = pyq.Queue{ workers = 4 }\n" },
      { "expect", PROMPT },
      { "send", "for i = 1, 8 do q:put(pyq.async(function() pyq.sleep(0.2) return i * i end)()) end\n" },
      { "expect", PROMPT },
      { "sleep", "1.0" },   -- nothing typed: the loop runs the tasks meanwhile
      { "send", "q.done, q.pending\n" },
      { "expect", "8\t0" },
      { "send", "q:join()\n" },
      { "expect", "\\{ 1, 4, 9, 16, 25, 36, 49, 64 \\}" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    assert.matches("EXIT 0", out, 1, true)
  end)

  it("stops the running line on Ctrl-C and keeps the session", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "print('go') pyq.sleep(30)\n" },
      { "expect", "[^(]go\r?\n" },
      { "sleep", "0.2" },
      { "ctrl", "c" },
      { "expect", "interrupted \\(SIGINT\\)" },
      { "expect", PROMPT },
      { "send", "print('go') while true do end\n" },
      { "expect", "[^(]go\r?\n" },
      { "sleep", "0.2" },
      { "ctrl", "c" },
      { "expect", "interrupted \\(SIGINT\\)" },
      { "expect", PROMPT },
      { "send", "6 * 7\n" },
      { "expect", "42" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    assert.matches("EXIT 0", out, 1, true)
  end)

  it("lets the tasks of queues made at the prompt finish on Ctrl-D", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "q = pyq.Queue{ workers = 3 }\n" },
      { "expect", PROMPT },
      { "send", "for i = 1, 3 do q:put(pyq.async(function() pyq.sleep(0.3) print('task done', i) end)()) end\n" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    for i = 1, 3 do assert.matches("task done\t" .. i, out, 1, true) end
    assert.not_matches("never closed", out, 1, true)
    assert.matches("EXIT 0", out, 1, true)
  end)

  it("drops a statement begun on earlier lines on Ctrl-C at the >> prompt", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "x = \n" },
      { "expect", ">> $" },
      { "ctrl", "c" },
      { "expect", "\\^C\r?\n.*> $" },
      { "send", "7\n" },
      { "expect", "7\r?\n.*> $" },
      { "send", "x == nil\n" },
      { "expect", "true" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
  end)

  it("clears a half-typed line on Ctrl-C at the prompt", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "half typed" },
      { "expect", "half typed$" },   -- readline has it
      { "ctrl", "c" },
      { "expect", "\\^C\r?\n.*> $" },   -- a fresh prompt, the half line gone
      { "send", "6 * 7\n" },
      { "expect", "42" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    assert.matches("EXIT 0", out, 1, true)
  end)

  it("lets no pcall in the line swallow Ctrl-C", function()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "n = 0; print('go'); for i = 1, 50 do if pcall(pyq.sleep, 0.1) then n = n + 1 end end; print('ran on', n)\n" },
      { "expect", "[^(]go\r?\n" },   -- the line runs
      { "sleep", "0.3" },
      { "ctrl", "c" },
      { "expect", "interrupted \\(SIGINT\\)" },
      { "expect", PROMPT },
      { "send", "n < 10\n" },
      { "expect", "true" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
    assert.not_matches("ran on\t", out, 1, true)
  end)

  it("continues incomplete input, reports errors and keeps history", function()
    local home = helper.tempdir()
    local out, ok = session("", {
      { "expect", "> $" },
      { "send", "function sq(x)\n" },
      { "expect", ">> $" },
      { "send", "return x * x end\n" },
      { "expect", PROMPT },
      { "send", "=sq(12)\n" },
      { "expect", "144" },
      { "send", "error('boom')\n" },
      { "expect", "stdin:1: boom" },
      { "send", "pyq.sleep(-1)\n" },
      { "expect", "pyq.sleep: seconds must be" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    }, home)
    assert.is_true(ok, out)
    local history = helper.read_file(home .. "/.pyqhost_history")
    assert.matches("=sq(12)", history, 1, true)
  end)

  it("runs a script first with -i, its globals at the prompt", function()
    local script = helper.tempfile("answer = 41 + 1")
    local out, ok = session("-i " .. helper.quote(script), {
      { "expect", "> $" },
      { "send", "answer\n" },
      { "expect", "42" },
      { "expect", PROMPT },
      { "ctrl", "d" },
    })
    assert.is_true(ok, out)
  end)

  it("reads lines from a pipe with -i", function()
    local r = helper.run{ nofile = true, flags = { "-i" }, stdin = "x = 2\nx * 21\n" }
    assert.equal(0, r.code, r.err)
    assert.matches("42", r.out, 1, true)
  end)
end)
