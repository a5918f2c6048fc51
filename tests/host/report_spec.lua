require 'busted.runner'()
local helper = require 'tests.helper'

-- A terminal as xterm behaves, fed the bytes a program wrote to it: printable
-- characters, \r, \n, ESC[nA (up), ESC[2K / ESC[K (erase line), ESC[J (erase
-- below), and pty_run.py's resize marker.  A line that reaches the last
-- column and goes on wraps onto the next row: `wraps` counts those.  Returns
-- { lines = what the screen and its scrollback show, drawn = every row as it
-- was when the cursor left it, each with the width then, wraps, unknown =
-- escape sequences it does not know }.
local function render(raw, cols, rows)
  local lines, top, row, col, wrapnext = { {} }, 1, 1, 0, false
  local drawn, wraps, unknown = {}, 0, {}
  local function text(r)
    local t, n = {}, 0
    for c = 1, #(lines[r] or {}) do t[c] = lines[r][c] or " "; n = c end
    return (table.concat(t, "", 1, n):gsub("%s+$", ""))
  end
  local function linefeed()
    drawn[#drawn + 1] = { text = text(row), cols = cols }
    row = row + 1
    if row > top + rows - 1 then top = top + 1 end
    lines[row] = lines[row] or {}
  end
  local i = 1
  while i <= #raw do
    local c = raw:sub(i, i)
    if c == "\27" then
      local n, final, stop = raw:match("^%[(%d*)([%a])()", i + 1)
      local resized, after = raw:match("^%]resize;(%d+)\7()", i + 1)
      if final == "A" then
        row, wrapnext = math.max(top, row - (tonumber(n) or 1)), false
      elseif final == "K" and n == "2" then
        lines[row] = {}
      elseif final == "K" and (n == "" or n == "0") then
        for k = col + 1, #lines[row] do lines[row][k] = nil end
      elseif final == "J" and (n == "" or n == "0") then
        for k = col + 1, #lines[row] do lines[row][k] = nil end
        for r = row + 1, #lines do lines[r] = {} end
      elseif resized then
        cols, stop = tonumber(resized), after
        col = math.min(col, cols - 1)
      else
        unknown[#unknown + 1] = raw:sub(i, i + 5)
        stop = i + 1
      end
      i = stop
    else
      if c == "\r" then
        col, wrapnext = 0, false
      elseif c == "\n" then
        linefeed()
      elseif c:byte() >= 0x80 and c:byte() < 0xC0 then -- a UTF-8 continuation
        local cell = math.max(col, 1)
        lines[row][cell] = (lines[row][cell] or "") .. c
      else
        if wrapnext then
          wraps, col, wrapnext = wraps + 1, 0, false
          linefeed()
        end
        lines[row][col + 1] = c
        if col == cols - 1 then wrapnext = true else col = col + 1 end
      end
      i = i + 1
    end
  end
  local shown = {}
  for r = 1, #lines do shown[r] = text(r) end
  while #shown > 0 and shown[#shown] == "" do shown[#shown] = nil end
  return { lines = shown, drawn = drawn, wraps = wraps, unknown = unknown }
end

local readall = helper.read_file

local function writefile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Runs `script` (a file in `dir`) on a pseudo-terminal of `cols` columns.
-- opts: rows, args (a list), flags (a list), resize ("AT:COLS"), signal
-- ("AT:INT"), stdout (a file for the job's stdout).  Returns the raw bytes
-- and the exit code.
local function on_pty(dir, script, cols, opts)
  opts = opts or {}
  local parts = { "python3", helper.quote(helper.source .. "/tests/fixtures/pty_run.py"),
                  "--cols", tostring(cols), "--rows", tostring(opts.rows or 24),
                  "--out", helper.quote(dir .. "/screen.raw") }
  if opts.resize then parts[#parts + 1] = "--resize " .. opts.resize end
  if opts.signal then parts[#parts + 1] = "--signal " .. opts.signal end
  if opts.stdout then parts[#parts + 1] = "--stdout " .. helper.quote(opts.stdout) end
  parts[#parts + 1] = "-- " .. helper.quote(helper.pyqhost)
  for _, f in ipairs(opts.flags or {}) do parts[#parts + 1] = helper.quote(f) end
  parts[#parts + 1] = helper.quote(script)
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = helper.quote(a) end
  local _, _, code = os.execute(table.concat(parts, " ") .. " </dev/null")
  return readall(dir .. "/screen.raw"), code
end

local function progress_lines(lines)
  local found = {}
  for _, l in ipairs(lines) do
    if l:match("done %d+/%d+") then found[#found + 1] = l end
  end
  return found
end

describe("progress on a terminal", function()
  local dir
  before_each(function() dir = helper.tempdir() end)
  after_each(function() os.execute("rm -rf " .. helper.quote(dir)) end)

  -- Three queues of different speeds, totals 101, 102 and 103 to tell them
  -- apart, in a script whose path is long.
  local three_queues = [[
    local qs = {}
    for n = 1, 3 do qs[n] = pyq.Queue{ workers = 4, progress = true, total = 100 + n } end
    for i = 1, 103 do
      for n = 1, 3 do
        if i <= 100 + n then qs[n]:put(pyq.async(function() pyq.sleep(0.015 * n) end)()) end
      end
    end
    for n = 1, 3 do qs[n]:close() end
  ]]

  local function long_path()
    local deep = dir .. "/a-rather-long-directory-name/for-the-job"
    assert(os.execute("mkdir -p " .. helper.quote(deep)))
    writefile(deep .. "/job.lua", three_queues)
    return deep .. "/job.lua"
  end

  for _, cols in ipairs{ 50, 80, 150 } do
    it(("fits every line into %d columns: nothing wraps, nothing stale"):format(cols), function()
      local raw, code = on_pty(dir, long_path(), cols)
      assert.equal(0, code, raw)
      local s = render(raw, cols, 24)
      assert.same({}, s.unknown)
      assert.equal(0, s.wraps)
      local shown = progress_lines(s.lines)
      assert.equal(3, #shown, table.concat(s.lines, "\n"))
      for n = 1, 3 do   -- the final lines, in creation order
        local total = 100 + n
        assert.matches(("done %d/%d"):format(total, total), shown[n], 1, true)
      end
      local live = 0
      for _, d in ipairs(s.drawn) do
        assert.is_true(#d.text < cols, d.text)
        if d.text:match("done %d+/10%d") then live = live + 1 end
      end
      assert.is_true(live > 6, "only " .. live .. " progress lines drawn")
      local all = {}
      for _, d in ipairs(s.drawn) do all[#all + 1] = d.text end
      all = table.concat(all, "\n")
      if cols == 150 then   -- room for everything, the whole path too
        assert.matches("a-rather-long-directory-name/for-the-job/job.lua:2 [", all, 1, true)
        assert.matches("  pending %d+  [%d.]+/s  ETA %d+:%d%d", all)
      elseif cols == 80 then   -- the file name, and the rarest fields go
        assert.matches("\njob.lua:2 %[ *[%d.]+%%%] done %d+/10%d  failed 0", all)
        assert.not_matches("a-rather-long", all, 1, true)
      else
        assert.matches("\njob.lua:2 done %d+/10%d  failed 0", all)
        assert.not_matches("pending", all, 1, true)
      end
    end)
  end

  it("redraws at the new width on SIGWINCH", function()
    local raw, code = on_pty(dir, long_path(), 150, { resize = "0.7:50" })
    assert.equal(0, code, raw)
    local s = render(raw, 150, 24)
    assert.equal(0, s.wraps)
    local wide, narrow = 0, 0
    for _, d in ipairs(s.drawn) do
      assert.is_true(#d.text < d.cols, d.text)
      if d.text:match("done %d+/") then
        if d.cols == 150 then wide = wide + 1 else narrow = narrow + 1 end
      end
    end
    assert.is_true(wide > 3 and narrow > 3, ("%d wide, %d narrow"):format(wide, narrow))
    assert.equal(3, #progress_lines(s.lines), table.concat(s.lines, "\n"))
  end)

  it("keeps the block within the terminal's height", function()
    local script = dir .. "/many.lua"
    writefile(script, [[
      local qs = {}
      for n = 1, 12 do qs[n] = pyq.Queue{ workers = 2, progress = true, total = 10 } end
      for n = 1, 12 do
        for _ = 1, 10 do qs[n]:put(pyq.async(function() pyq.sleep(0.05) end)()) end
      end
      for n = 1, 12 do qs[n]:close() end
    ]])
    local raw, code = on_pty(dir, script, 80, { rows = 8 })
    assert.equal(0, code, raw)
    local s = render(raw, 80, 8)
    assert.equal(0, s.wraps)
    local more = 0
    for _, d in ipairs(s.drawn) do
      if d.text:match("^%.%.%. %d+ more queues$") then more = more + 1 end
    end
    assert.is_true(more > 3, "the block does not say it has more")
    local shown = progress_lines(s.lines)
    assert.equal(12, #shown, table.concat(s.lines, "\n"))
    for _, l in ipairs(shown) do assert.matches("done 10/10", l, 1, true) end
  end)

  it("after Ctrl-C, leaves the final counts, in creation order", function()
    local script = dir .. "/cancel.lua"
    writefile(script, [[
      local a <close> = pyq.Queue{ workers = 5, progress = true, total = 1000 }
      local b <close> = pyq.Queue{ workers = 5, progress = true, total = 1001 }
      for i = 1, 1001 do
        if i <= 1000 then a:put(pyq.async(function() pyq.sleep(0.05) end)()) end
        b:put(pyq.async(function() pyq.sleep(0.05) end)())
      end
    ]])
    local raw, code = on_pty(dir, script, 150, { signal = "0.8:INT", flags = { "--summary" } })
    assert.equal(130, code, raw)
    local s = render(raw, 150, 24)
    local shown = progress_lines(s.lines)
    assert.equal(2, #shown, table.concat(s.lines, "\n"))
    assert.matches("/1000 ", shown[1], 1, true)
    assert.matches("/1001 ", shown[2], 1, true)
    local text = table.concat(s.lines, "\n")
    local n = 0
    for put, done, failed, cancelled in text:gmatch("put (%d+) = done (%d+) %+ failed (%d+) %+ cancelled (%d+)") do
      n = n + 1
      assert.matches(("done %s/"):format(done), shown[n], 1, true)
      assert.matches(("failed %s  running 0  pending 0"):format(failed), shown[n], 1, true)
      assert.not_matches("ETA", shown[n], 1, true)
      local pct = 100 * (done + failed + cancelled) / (999 + n)
      assert.matches(("[%5.1f%%]"):format(pct), shown[n], 1, true)
      assert.equal(tonumber(put), done + failed + cancelled)
    end
    assert.equal(2, n, text)
  end)

  -- A job that draws progress, writes, then has a child process print MARK
  -- straight to the terminal (no tick can run in between).  True when
  -- `shown` (MARK, or the text written to the terminal) comes right after
  -- an erase rather than after the block's line.
  local function erased_before(write, shown, opts)
    local script = dir .. "/write.lua"
    writefile(script, ([[
      local q <close> = pyq.Queue{ workers = 1, progress = true, total = 2 }
      q:put(pyq.async(function() pyq.sleep(0.5) end)())
      pyq.sleep(0.35)
      %s
      os.execute("printf MARK >&2")
      q:put(pyq.async(function() end)())
    ]]):format(write))
    local raw, code = on_pty(dir, script, 80, opts)
    assert.equal(0, code, raw)
    local before = raw:match("(....)" .. shown)
    assert.is_truthy(before, raw)
    assert.matches("done 0/2", raw, 1, true)
    return before == "\27[2K", (raw:gsub("\27", "ESC"))
  end

  it("is not erased by writes to data files", function()
    assert.is_false(erased_before(([[
      local f <close> = assert(io.open(%q, "w"))
      f:write("data\n")
      f:flush()
      local out <close> = pyq.jsonl.open(%q)
      out:write({ 1 })
      out:flush()
    ]]):format(dir .. "/data.txt", dir .. "/data.jsonl"), "MARK"))
  end)

  it("is erased by writes to the terminal, and by print and io.write", function()
    assert.is_true(erased_before([[io.stderr:write("to stderr\n")]], "to stderr"))
    assert.is_true(erased_before([[io.stdout:write("to stdout\n") io.stdout:flush()]], "to stdout"))
    assert.is_true(erased_before([[print("printed")]], "printed"))
    assert.is_true(erased_before([[io.write("written\n") io.flush()]], "written"))
  end)

  it("is not erased by io.stdout:write when stdout is not the terminal", function()
    assert.is_false(erased_before([[io.stdout:write("to a file\n")]], "MARK",
                                  { stdout = dir .. "/stdout.txt" }))
    assert.equal("to a file\n", readall(dir .. "/stdout.txt"))
  end)
end)

describe("progress off a terminal", function()
  local job = [[
    local q <close> = pyq.Queue{ workers = 10, progress = true, total = 50 }
    for _ = 1, 50 do q:put(pyq.async(function() pyq.sleep(0.005) end)()) end
  ]]

  it("is INFO: hidden at the default level WARNING", function()
    local r = helper.run{ script = job }
    assert.equal(0, r.code)
    assert.equal("", r.err)
  end)

  it("shows with -v or pyq.log.level, no escapes, the final counts", function()
    local r = helper.run{ flags = { "-v" }, script = job }
    assert.equal(0, r.code)
    assert.not_matches("\27[", r.err, 1, true)
    assert.matches("INFO progress: [^\n]*%[100.0%%%] done 50/50  failed 0  running 0  pending 0", r.err)
    r = helper.run{ script = "pyq.log.level = 'INFO'\n" .. job }
    assert.matches("INFO progress: [^\n]*done 50/50", r.err)
  end)

  it("logs final lines in creation order, also when interrupted", function()
    local spawned = helper.spawn("-v", [[
      local a <close> = pyq.Queue{ workers = 5, progress = true, total = 1000 }
      local b <close> = pyq.Queue{ workers = 5, progress = true, total = 1001 }
      for i = 1, 1001 do
        if i <= 1000 then a:put(pyq.async(function() pyq.sleep(0.05) end)()) end
        b:put(pyq.async(function() pyq.sleep(0.05) end)())
      end
    ]])
    pyq.sleep(0.6)
    os.execute("kill -INT " .. spawned.pid)
    local code, _, err = helper.wait_exit(spawned)
    os.remove(spawned.script)
    assert.equal(130, code)
    local finals = {}
    for line in err:gmatch("INFO progress: ([^\n]*)") do finals[#finals + 1] = line end
    assert.equal(2, #finals, err)
    assert.matches("/1000 ", finals[1], 1, true)
    assert.matches("/1001 ", finals[2], 1, true)
    for _, l in ipairs(finals) do
      assert.matches("running 0  pending 0", l, 1, true)
      assert.not_matches("ETA", l, 1, true)
    end
  end)
end)

describe("a closed stdout (SIGPIPE)", function()
  local dir
  before_each(function() dir = helper.tempdir() end)
  after_each(function() os.execute("rm -rf " .. helper.quote(dir)) end)

  -- `pyqhost job | head -1`: returns pyqhost's exit status, its stderr and
  -- the JSONL file's lines.
  local function piped(script)
    writefile(dir .. "/job.lua", script)
    local cmd = ("timeout -s KILL 60 %s %s %s 2>%s | head -1 >/dev/null; echo ${PIPESTATUS[0]} >%s"):format(
      helper.quote(helper.pyqhost), helper.quote(dir .. "/job.lua"), helper.quote(dir .. "/out.jsonl"),
      helper.quote(dir .. "/err"), helper.quote(dir .. "/code"))
    assert(os.execute("bash -c " .. helper.quote(cmd)))
    return tonumber(readall(dir .. "/code")), readall(dir .. "/err"), pyq.jsonl.read(dir .. "/out.jsonl")
  end

  it("ends a job whose tasks print like SIGTERM: files whole, exit 141", function()
    local code, err, lines = piped([[
      local out <close> = pyq.jsonl.open(arg[1])
      local q <close> = pyq.Queue{ workers = 10 }
      for i = 1, 200000 do
        q:put(pyq.async(function()
          out:write({ i = i, pad = string.rep("x", 200) })
          print(i)
          pyq.sleep(0)
        end)())
      end
    ]])
    assert.equal(141, code, err)
    assert.matches("stdout was closed", err, 1, true)
    assert.is_true(#lines >= 1 and #lines < 200000, #lines .. " lines")
    for _, v in ipairs(lines) do assert.equal(200, #v.pad) end
  end)

  it("stops code that never waits, writing with io.write", function()
    local code, err, lines = piped([[
      local out <close> = pyq.jsonl.open(arg[1])
      for i = 1, 1e8 do
        out:write({ i = i })
        io.write(i, "\n")
      end
    ]])
    assert.equal(141, code, err)
    assert.matches("stdout was closed", err, 1, true)
    assert.is_true(#lines >= 1 and #lines < 1e8)
    for n, v in ipairs(lines) do assert.equal(n, v.i) end
  end)

  it("stops io.stdout:write too", function()
    local code, err = piped([[
      local out <close> = pyq.jsonl.open(arg[1])
      for i = 1, 1e8 do io.stdout:write(i, "\n") end
    ]])
    assert.equal(141, code, err)
    assert.matches("pyq: interrupted (stdout was closed)", err, 1, true)
  end)
end)

describe("the summary", function()
  it("says what happened when there were no queues", function()
    local spawned = helper.spawn("", "pyq.sleep(10)")
    pyq.sleep(0.4)
    os.execute("kill -INT " .. spawned.pid)
    local code, _, err = helper.wait_exit(spawned)
    os.remove(spawned.script)
    assert.equal(130, code)
    assert.matches("\npyqhost summary: [%d.]+ s, interrupted by SIGINT; no queues, no HTTP requests\n$", err)
  end)

  it("lists the ten largest queues in creation order and sums the rest", function()
    local r = helper.run{ flags = { "--summary" }, script = [[
      for n = 1, 15 do
        local q <close> = pyq.Queue{}
        for _ = 1, n do q:put(pyq.async(function() end)()) end
      end
    ]] }
    assert.equal(0, r.code, r.err)
    local puts = {}
    for put in r.err:gmatch("\n  queue [^\n]*: put (%d+) =") do puts[#puts + 1] = tonumber(put) end
    assert.same({ 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 }, puts)
    assert.matches("\n  5 more queues: put 15 = done 15 + failed 0 + cancelled 0\n", r.err, 1, true)
    assert.not_matches("no queues", r.err, 1, true)
  end)

  it("keeps memory flat and ten queue lines for a million short-lived queues", function()
    local n = helper.sanitized and 100000 or 1000000
    local r = helper.run{ flags = { "--summary" }, timeout = 300, script = ([[
      local function rss()
        local f = assert(io.open("/proc/self/status"))
        local kib = f:read("a"):match("VmRSS:%%s*(%%d+)")
        f:close()
        return tonumber(kib) / 1024
      end
      local function make(count)
        for i = 1, count do
          local q <close> = pyq.Queue{ workers = 1 }
          q:put(pyq.async(function() end)())
          if i %% 1000 == 0 then collectgarbage() end
        end
        collectgarbage()
        collectgarbage()
      end
      make(%d)
      local before = rss()
      make(%d)
      print(("grew %%.1f MiB"):format(rss() - before))
    ]]):format(n // 10, n) }
    assert.equal(0, r.code, r.err)
    local grew = tonumber(r.out:match("grew ([%-%d.]+) MiB"))
    -- AddressSanitizer keeps freed memory in quarantine: RSS says nothing there
    if not helper.sanitized then assert.is_true(grew < 8, r.out) end
    local _, lines = r.err:gsub("\n  queue ", "")
    assert.equal(10, lines)
    local more = n + n // 10 - 10
    assert.matches(("\n  %d more queues: put %d = done %d + failed 0 + cancelled 0\n"):format(more, more, more),
                   r.err, 1, true)
  end)

  it("says how many tasks failed into the default handler, and the exit code", function()
    local r = helper.run{ flags = { "--summary" }, script = [[
      local q <close> = pyq.Queue{}
      for i = 1, 3 do q:put(pyq.async(function() if i > 1 then error("no " .. i) end end)()) end
    ]] }
    assert.matches("\n  2 tasks failed (exit code 3): their errors reached the default exception handler\n",
                   r.err, 1, true)
    assert.equal(3, r.code)
  end)
end)

describe("--summary-json", function()
  it("writes the summary's figures as JSON, with the final exit code", function()
    local path = helper.fresh(".json")
    local r = helper.run{ flags = { "--summary-json", path }, script = [[
      local q <close> = pyq.Queue{ workers = 2 }
      for i = 1, 5 do
        q:put(pyq.async(function() if i == 3 then error("no") end return i end)())
      end
    ]] }
    assert.equal(3, r.code)
    local doc = require("cjson").decode(helper.read_file(path))
    assert.equal(3, doc.exit_code)
    assert.equal(1, doc.unhandled)
    assert.equal(0, doc.signal)
    assert.equal(1, #doc.queues)
    local q = doc.queues[1]
    assert.same({ 5, 4, 1, 0 }, { q.put, q.done, q.failed, q.cancelled })
    assert.matches("^.+:1$", q.where)
    assert.is_number(doc.seconds)
    assert.equal(require("cjson").null, doc.http)
  end)

  it("says so and exits 1 when the file cannot be written, leaving nothing half-written", function()
    local path = helper.tmpdir .. "/no/such/dir/s.json"
    local r = helper.run{ flags = { "--summary-json", path }, script = "x = 1" }
    assert.equal(1, r.code)
    assert.matches("--summary-json: cannot write '" .. path .. "'", r.err, 1, true)
    local missing = helper.run{ nofile = true, flags = { "--summary-json" } }
    assert.equal(2, missing.code)
    assert.matches("needs a file name", missing.err, 1, true)
  end)
end)
