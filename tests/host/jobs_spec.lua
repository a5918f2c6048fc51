require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http
local failure = helper.failure

describe("collection-job essentials", function()
  local api, base, hostport
  local unique = 0
  local function key() unique = unique + 1; return "k" .. unique end

  setup(function()
    api = helper.start_api()
    base = api.base
    hostport = "127.0.0.1:" .. api.port
  end)
  teardown(function() api.stop() end)

  describe("pyq.http.limit", function()
    after_each(function() http.limit(hostport, nil); http.limit("127.0.0.1", nil) end)

    it("holds requests until every window allows them, in arrival order", function()
      -- the server's clock says when each request arrived: client-side
      -- slowness (a cold start, the sanitizers) cannot blur the windows
      local q <close> = pyq.Queue{ workers = 20 }
      for _ = 1, 5 do q:put(pyq.async(function() http.get(base .. "/bytes/1") end)()) end
      q:join()   -- connections open before the clock starts
      http.limit(hostport, "5/200ms", "8/1s")
      local at = {}
      local fetch = pyq.async(function(i)
        at[i] = http.get(base .. "/now"):json().at
      end)
      for i = 1, 12 do q:put(fetch(i)) end
      q:join()
      local function since(i) return at[i] - at[1] end
      -- 5 at once, 3 more after 200 ms (8 in the first second), 4 after 1 s
      assert.is_true(since(5) < 0.18, "5th after " .. since(5))
      -- the lower bounds are the limiter's; the upper ones only say it does
      -- not hold requests longer than its windows, and a client slowed by
      -- the sanitizers may send a released request late
      local late = helper.sanitized and 2 or 1
      assert.is_true(since(6) >= 0.15, "6th after " .. since(6))
      assert.is_true(since(8) < 0.9 * late, "8th after " .. since(8))
      assert.is_true(since(9) >= 0.95, "9th after " .. since(9))
      assert.is_true(since(12) < 2 * late, "12th after " .. since(12))
      -- arrival order, window by window: requests a window releases
      -- together may reach the server in any order among themselves
      for i = 1, 11 do
        assert.is_true(at[i] <= at[i + 1] + 0.1, ("%d arrived %.3f s after %d"):format(i, at[i] - at[i + 1], i + 1))
      end
    end)

    it("applies a bare host name to every port, is replaced by a new call and removed by nil", function()
      http.limit("127.0.0.1", "2/300ms")
      local t0 = pyq.now()
      for _ = 1, 3 do http.get(base .. "/bytes/1") end
      assert.is_true(pyq.now() - t0 >= 0.29)
      http.limit("127.0.0.1", "100/1s")
      t0 = pyq.now()
      for _ = 1, 3 do http.get(base .. "/bytes/1") end
      assert.is_true(pyq.now() - t0 < 0.25)
      http.limit("127.0.0.1", "1/10s")
      http.limit("127.0.0.1", nil)
      t0 = pyq.now()
      for _ = 1, 3 do http.get(base .. "/bytes/1") end
      assert.is_true(pyq.now() - t0 < 0.25)
    end)

    it("refuses malformed rates and hosts, naming them", function()
      for _, rate in ipairs({ "5", "5/", "x/1s", "5/1x", "0/1s", "5/0s", 5, {} }) do
        local err = failure(http.limit, "api.example.com", rate)
        assert.matches("bad rate", err, 1, true)
        assert.matches(tostring(rate), err, 1, true)
      end
      assert.matches("host", failure(http.limit, 5, "1/1s"))
      assert.matches("host", failure(http.limit, "http://x/", "1/1s"))
    end)
  end)

  describe("retries", function()
    it("retries 5xx statuses and counts the retries", function()
      local res = http.get(base .. "/flaky/" .. key() .. "/2", { retries = 3, backoff = 0.01 })
      assert.equal(200, res.status)
      assert.equal(2, res.retries)
      assert.equal(3, res:json().attempt)
    end)

    it("returns the last response when every try fails", function()
      local res = http.get(base .. "/flaky/" .. key() .. "/10", { retries = 2, backoff = 0.01 })
      assert.equal(503, res.status)
      assert.equal(2, res.retries)
    end)

    it("does not retry by default, nor 404s, nor POST without retry_unsafe", function()
      assert.equal(503, http.get(base .. "/flaky/" .. key() .. "/1").status)
      local res = http.get(base .. "/flaky/" .. key() .. "/1?status=404", { retries = 3, backoff = 0.01 })
      assert.same({ 404, 0 }, { res.status, res.retries })
      res = http.post(base .. "/flaky/" .. key() .. "/1", { body = "x", retries = 3, backoff = 0.01 })
      assert.same({ 503, 0 }, { res.status, res.retries })
      res = http.post(base .. "/flaky/" .. key() .. "/1", { body = "x", retries = 3, backoff = 0.01, retry_unsafe = true })
      assert.same({ 200, 1 }, { res.status, res.retries })
      for _, verb in ipairs({ "put", "delete" }) do
        res = http[verb](base .. "/flaky/" .. key() .. "/1", { retries = 1, backoff = 0.01 })
        assert.same({ 200, 1 }, { res.status, res.retries })
      end
    end)

    it("retries transport failures with doubling backoff, then raises the last error", function()
      local url = "http://127.0.0.1:" .. helper.closed_port() .. "/x"
      local before = http.stats().retries
      local t0 = pyq.now()
      local err = failure(http.get, url, { retries = 3, backoff = 0.05 })
      local dt = pyq.now() - t0
      assert.matches("Connection refused", err, 1, true)
      assert.equal(3, http.stats().retries - before)
      -- 0.05 + 0.1 + 0.2 = 0.35 s, with jitter between 0.75x and 1.25x
      assert.is_true(dt >= 0.26 and dt < 1.5, "took " .. dt)
    end)

    it("takes its default from configure", function()
      http.configure{ retries = 2, backoff = 0.01 }
      local res = http.get(base .. "/flaky/" .. key() .. "/2")
      http.configure{ retries = 0, backoff = 0.5 }
      assert.same({ 200, 2 }, { res.status, res.retries })
      assert.matches("retries", failure(http.configure, { retries = -1 }))
    end)
  end)

  describe("Retry-After", function()
    it("makes the retry wait at least that long", function()
      local t0 = pyq.now()
      local res = http.get(base .. "/retry-after/" .. key() .. "/1", { retries = 1, backoff = 0.01 })
      assert.same({ 200, 1 }, { res.status, res.retries })
      assert.is_true(pyq.now() - t0 >= 0.99, "waited " .. (pyq.now() - t0))
    end)

    it("accepts an HTTP date", function()
      local t0 = pyq.now()
      local res = http.get(base .. "/retry-after/" .. key() .. "/2?date=1", { retries = 1, backoff = 0.01 })
      assert.same({ 200, 1 }, { res.status, res.retries })
      assert.is_true(pyq.now() - t0 >= 0.9, "waited " .. (pyq.now() - t0))
    end)

    it("holds every request to that host until then", function()
      local other = helper.start_api()
      assert.equal(429, http.get(base .. "/retry-after/" .. key() .. "/1").status)
      local t0 = pyq.now()
      local took = {}
      do
        local q <close> = pyq.Queue{ workers = 5 }
        q:put(pyq.async(function() http.get(base .. "/bytes/1"); took.same = pyq.now() - t0 end)())
        q:put(pyq.async(function() http.get(other.base .. "/bytes/1"); took.other = pyq.now() - t0 end)())
      end
      other.stop()
      assert.is_true(took.same >= 0.8, "same host after " .. took.same)
      assert.is_true(took.other < 0.5, "other host after " .. took.other)
    end)
  end)

  describe("pyq.timeout", function()
    it("raises 'timed out', cancels the wait and closes the task's variables", function()
      local closed = false
      local slow = pyq.async(function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        pyq.sleep(5)
      end)
      local t0 = pyq.now()
      local err = failure(pyq.await, pyq.timeout(0.1, slow()))
      assert.matches("timed out", err, 1, true)
      assert.is_true(closed)
      assert.is_true(pyq.now() - t0 < 0.5)
    end)

    it("cancels a transfer in flight", function()
      local t0 = pyq.now()
      local fetch = pyq.async(function() return http.get(base .. "/delay/5") end)
      assert.matches("timed out", failure(pyq.await, pyq.timeout(0.2, fetch())), 1, true)
      assert.is_true(pyq.now() - t0 < 1)
      assert.equal(200, http.get(base .. "/bytes/3").status)
    end)

    it("returns every value when in time, and nests", function()
      local quick = pyq.async(function(a, b) pyq.sleep(0.01); return a, b end)
      assert.same({ 1, 2 }, { pyq.await(pyq.timeout(1, quick(1, 2))) })
      local inner = pyq.async(function() return pyq.await(pyq.timeout(5, pyq.async(function() pyq.sleep(5) end)())) end)
      local t0 = pyq.now()
      assert.matches("timed out after 0.1", failure(pyq.await, pyq.timeout(0.1, inner())), 1, true)
      assert.is_true(pyq.now() - t0 < 1)
    end)

    it("keeps failing waits that catch the error until the scope ends", function()
      local caught = 0
      local stubborn = pyq.async(function()
        for _ = 1, 3 do if not pcall(pyq.sleep, 1) then caught = caught + 1 end end
      end)
      local t0 = pyq.now()
      failure(pyq.await, pyq.timeout(0.05, stubborn()))
      assert.equal(3, caught)
      assert.is_true(pyq.now() - t0 < 0.5)
      pyq.sleep(0.01)   -- the scope is over: waits work again
    end)

    it("fails a queue task with 'timed out'", function()
      local errors = {}
      local q <close> = pyq.Queue{ exception_handler = function(e) errors[#errors + 1] = e end }
      q:put(pyq.timeout(0.05, pyq.async(function() pyq.sleep(1) end)()))
      q:put(pyq.timeout(1, pyq.async(function() return "ok" end)()))
      assert.same({ "ok" }, q:join())
      assert.equal(1, q.failed)
      assert.matches("timed out", errors[1], 1, true)
    end)

    it("takes huge and zero deadlines", function()
      local quick = pyq.async(function() return "done" end)
      assert.equal("done", pyq.await(pyq.timeout(1e300, quick())))
      assert.equal("done", pyq.await(pyq.timeout(math.huge, quick())))
      local slow = pyq.async(function() pyq.sleep(1) end)
      assert.matches("timed out", failure(pyq.await, pyq.timeout(0, slow())), 1, true)
    end)

    it("refuses bad arguments", function()
      assert.matches("pyq.timeout: seconds", failure(pyq.timeout, -1, pyq.async(function() end)()))
      assert.matches("pyq.timeout: expected a task", failure(pyq.timeout, 1, 5))
    end)
  end)

  describe("queue:cancel()", function()
    it("drops pending tasks, cancels running ones and leaves the queue usable", function()
      local closed = 0
      local slow = pyq.async(function()
        local guard <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
        pyq.sleep(5)
      end)
      local q <close> = pyq.Queue{ workers = 2, maxsize = 0 }
      for _ = 1, 6 do q:put(slow()) end
      pyq.sleep(0.02)
      assert.equal(6, q:cancel())
      q:join()
      assert.equal(2, closed)
      assert.equal(6, q.cancelled)
      q:put(pyq.async(function() return "again" end)())
      assert.same({ "again" }, q:join())
      assert.equal(7, q.puts)
      assert.equal(q.puts, q.done + q.failed + q.cancelled)
    end)
  end)

  describe("JSON", function()
    it("encodes and decodes through pyq.json, with null", function()
      assert.equal('{"a":[1,2,null]}', pyq.json.encode({ a = { 1, 2, pyq.json.null } }))
      assert.same({ a = { 1, 2 } }, pyq.json.decode('{"a":[1,2]}'))
      assert.equal(pyq.json.null, pyq.json.decode('[null]')[1])
    end)

    it("names the position of errors", function()
      assert.matches("column 7", failure(pyq.json.decode, '{"a": x}'))
      assert.matches("pyq.json.encode", failure(pyq.json.encode, { f = print }))
      assert.matches("expected a string", failure(pyq.json.decode, 5))
    end)
  end)

  describe("pyq.jsonl", function()
    it("writes one JSON line per value and flushes on close", function()
      local path = os.tmpname()
      do
        local out <close> = pyq.jsonl.open(path)
        out:write({ id = 1 })
        out:write("two")
        out:write({ 3 })
      end
      assert.same({ { id = 1 }, "two", { 3 } }, pyq.jsonl.read(path))
      do
        local out <close> = pyq.jsonl.open(path, { append = true })
        out:write(4)
      end
      assert.same({ { id = 1 }, "two", { 3 }, 4 }, pyq.jsonl.read(path))
      os.remove(path)
    end)

    it("names the path in errors", function()
      assert.matches("cannot open '/nonexistent/dir/out.jsonl'", failure(pyq.jsonl.open, "/nonexistent/dir/out.jsonl"), 1, true)
      assert.matches("cannot open '/tmp'", failure(pyq.jsonl.open, "/tmp"), 1, true)
      -- no permission: a read-only folder, or for root a file sysfs refuses
      local denied = "/sys/kernel/notes"
      if os.getenv("USER") ~= "root" and os.execute("test $(id -u) != 0") then
        local dir = os.tmpname()
        os.remove(dir)
        os.execute("mkdir -m 500 " .. dir)
        denied = dir .. "/out.jsonl"
      end
      assert.matches("cannot open '" .. denied .. "'", failure(pyq.jsonl.open, denied), 1, true)
      assert.matches("unknown option", failure(pyq.jsonl.open, os.tmpname(), { appnd = true }))
      local path = os.tmpname()
      local out = pyq.jsonl.open(path)
      assert.matches("cannot encode", failure(out.write, out, { f = print }))
      out:close()
      assert.matches("closed", failure(out.write, out, 1))
      os.remove(path)
    end)
  end)
end)

describe("a real job: signals, progress and the summary", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  local spawn, wait_exit = helper.spawn, helper.wait_exit

  local writer_job = [[
    local path = arg[1]
    local out <close> = pyq.jsonl.open(path)
    local q <close> = pyq.Queue{ workers = 20 }
    local line = pyq.async(function(i)
      pyq.sleep(0.001 * (i % 7))
      out:write({ i = i, pad = string.rep("x", 500) })
      if i % 50 == 0 then out:flush() end
    end)
    for i = 1, 1000000 do q:put(line(i)) end
  ]]

  local function run_and_signal(sig)
    local path = os.tmpname()
    local job = spawn("--summary", writer_job, helper.quote(path))
    pyq.sleep(0.7)
    os.execute("kill -" .. sig .. " " .. job.pid)
    local code, _, err = wait_exit(job)
    return path, code, err
  end

  it("SIGINT cancels everything, closes files, prints the summary and exits 130", function()
    local path, code, err = run_and_signal("INT")
    assert.equal(130, code)
    assert.matches("interrupted (SIGINT)", err, 1, true)
    assert.matches("pyqhost summary", err, 1, true)
    local put, done, failed, cancelled = err:match("put (%d+) = done (%d+) %+ failed (%d+) %+ cancelled (%d+)")
    assert.is_truthy(put)
    assert.equal(tonumber(put), tonumber(done) + tonumber(failed) + tonumber(cancelled))
    assert.not_matches("unaccounted", err)
    -- every line whole: the file parses line by line
    local lines = pyq.jsonl.read(path)
    assert.is_true(#lines > 10)
    for _, v in ipairs(lines) do assert.equal(500, #v.pad) end
    os.remove(path)
  end)

  it("SIGTERM exits 143", function()
    local path, code, err = run_and_signal("TERM")
    assert.equal(143, code)
    assert.matches("interrupted (SIGTERM)", err, 1, true)
    for _, v in ipairs(pyq.jsonl.read(path)) do assert.equal(500, #v.pad) end
    os.remove(path)
  end)

  it("a second SIGINT exits at once", function()
    -- the first one cannot be swallowed, but a cleanup that never ends
    -- would still hold the job: the second one ends it
    local job = spawn("", [[
      local _ <close> = setmetatable({}, { __close = function() while true do end end })
      pyq.sleep(10)
    ]])
    pyq.sleep(0.5)
    os.execute("kill -INT " .. job.pid)
    pyq.sleep(0.2)
    os.execute("kill -INT " .. job.pid)
    local code, _, err = wait_exit(job)
    assert.equal(130, code)
    assert.matches("exiting at once", err, 1, true)
  end)

  local progress_job = [[
    local q <close> = pyq.Queue{ workers = 10, progress = true, total = 200 }
    for i = 1, 200 do q:put(pyq.async(function() pyq.sleep(0.005) end)()) end
    q:join()
    pyq.log.warning("a log line in between")
  ]]

  it("draws live progress lines on a terminal", function()
    local file = helper.tempfile(progress_job)
    local out = helper.shell("script -qec " .. helper.quote(helper.pyqhost .. " " .. file) .. " /dev/null")
    assert.matches("\27[2K", out, 1, true)
    assert.matches("[100.0%] done 200/200", out, 1, true)
    assert.matches("WARNING [^\n]*a log line in between", out)
  end)

  -- What a terminal shows after `raw`: \r, \n, cursor up, erase line.
  local function screen(raw)
    local lines, row = { "" }, 1
    local i = 1
    while i <= #raw do
      local up, clear = raw:find("^\27%[1A", i), raw:find("^\27%[2K", i)
      local c = raw:sub(i, i)
      if up then row, i = math.max(1, row - 1), i + 4
      elseif clear then lines[row], i = "", i + 4
      else
        if c == "\n" then
          row = row + 1
          lines[row] = lines[row] or ""
        elseif c ~= "\r" then
          lines[row] = lines[row] .. c
        end
        i = i + 1
      end
    end
    return lines
  end

  it("leaves each queue's final line once on the terminal, however many queues", function()
    local file = helper.tempfile([[
      local queues = {}
      for n = 1, 12 do queues[n] = pyq.Queue{ workers = 2, progress = true, total = 20 } end
      for n = 1, 12 do
        for i = 1, 20 do queues[n]:put(pyq.async(function() pyq.sleep(0.01 * n) end)()) end
      end
      pyq.sleep(0.35)
      pyq.log.warning("midway")
      for n = 1, 12 do queues[n]:close() end
    ]])
    local out = helper.shell("script -qec " .. helper.quote(helper.pyqhost .. " " .. file) .. " /dev/null")
    local shown = table.concat(screen(out), "\n")
    local _, finals = shown:gsub("%[100%.0%%%] done 20/20", "")
    local _, partial = shown:gsub("%[ *%d+%.%d%%%] done %d+/20", "")
    assert.equal(12, finals)
    assert.equal(12, partial)   -- nothing but the finished lines is left
    assert.matches("WARNING [^\n]*midway", shown)
  end)

  it("redraws the live lines at most ten times a second", function()
    local file = helper.tempfile([[
      local q <close> = pyq.Queue{ workers = 10, progress = true, total = 100 }
      for i = 1, 100 do q:put(pyq.async(function() pyq.sleep(0.1) end)()) end
    ]])
    local t0 = pyq.now()
    local out = helper.shell("script -qec " .. helper.quote(helper.pyqhost .. " " .. file) .. " /dev/null")
    local dt = pyq.now() - t0
    local _, draws = out:gsub("done %d+/100", "")
    assert.is_true(dt >= 0.9, "ran " .. dt)
    assert.is_true(draws >= 5 and draws <= dt * 10 + 2, ("%d draws in %.2f s"):format(draws, dt))
  end)

  it("prints INFO progress lines off a terminal", function()
    local r = helper.run{ flags = { "-v" }, script = progress_job }
    assert.equal(0, r.code)
    assert.not_matches("\27[", r.err, 1, true)
    assert.matches("INFO progress: [^\n]*%[100.0%%%] done 200/200  failed 0", r.err)
  end)

  it("--progress shows every queue", function()
    local r = helper.run{ flags = { "--progress", "-v" }, script = [[
      local q <close> = pyq.Queue{}
      q:put(pyq.async(function() end)())
    ]] }
    assert.matches("INFO progress: [^\n]*done 1 ", r.err)
  end)

  it("--summary reports queues and HTTP", function()
    local r = helper.run{ flags = { "--summary" }, args = { api.base }, script = [[
      local q <close> = pyq.Queue{ exception_handler = function() end }
      for i = 1, 10 do q:put(pyq.async(function() return pyq.http.get(arg[1] .. "/status/" .. (i <= 8 and 200 or 404)).status end)()) end
      q:put(pyq.async(function() error("x") end)())
    ]] }
    assert.equal(0, r.code)
    assert.matches("queue [^\n]*: put 11 = done 10 %+ failed 1 %+ cancelled 0 in", r.err)
    assert.matches("http: 10 requests, 0 retries, 0 failed, [%d.]+ MiB; 200 x8 404 x2; latency p50 [%d.]+ ms, p90 [%d.]+ ms, p99", r.err)
  end)

  it("consume_matches.lua --store: interrupted, then run again, fetches only what is missing", function()
    local limited = helper.start_api{ "--rate-limit", "150:1" }
    local dir = helper.tempdir()
    local script = helper.read_file(helper.source .. "/scripts/consume_matches.lua")
    local function served()
      return pyq.http.get(limited.base .. "/stats"):json().requests
    end
    local job = helper.spawn("", script, table.concat({ limited.base, "600", "--store", dir }, " "))
    pyq.sleep(2)
    os.execute("kill -INT " .. job.pid)
    local code, out, err = helper.wait_exit(job)
    assert.equal(130, code, out .. err)
    local first = served()
    local db = pyq.sqlite.open(dir .. "/matches.sqlite")
    local rows = db:one("SELECT count(*) AS n FROM matches").n
    assert.equal("ok", db:one("PRAGMA integrity_check").integrity_check)
    db:close()
    assert.is_true(rows > 0 and rows < 600, "rows after the interrupt: " .. rows)
    local r = helper.run{ file = helper.source .. "/scripts/consume_matches.lua",
                          args = { limited.base, "600", "--store", dir }, timeout = 120 }
    assert.equal(0, r.code, r.err)
    assert.matches("600 rows in", r.out, 1, true)
    local skipped = tonumber(r.out:match("skipped (%d+)"))
    assert.is_true(skipped >= rows, r.out)
    assert.matches(("consumed %d matches"):format(600 - skipped), r.out, 1, true)
    -- every match was fetched once over both runs, but for those in flight
    -- when the first was interrupted (at most its 50 workers); the id pages
    -- came from the cache
    local second = served() - first - 1   -- less the /stats call itself
    assert.is_true(first - 1 + second <= 6 + 600 + 50, ("served %d + %d"):format(first, second))
    assert.is_true(second <= 600 - rows + 50, ("second run: %d requests for %d missing"):format(second, 600 - rows))
    -- a third run fetches nothing
    r = helper.run{ file = helper.source .. "/scripts/consume_matches.lua",
                    args = { limited.base, "600", "--store", dir }, timeout = 60 }
    assert.equal(0, r.code, r.err)
    assert.matches("; 0 requests,", r.out, 1, true)
    assert.matches("skipped 600", r.out, 1, true)
    limited.stop()
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  it("consume_matches.lua completes 30,000 matches with no 429 reaching it", function()
    local limited = helper.start_api{ "--rate-limit", "3000:1,100000:120" }
    local out = helper.fresh(".jsonl")
    local r = helper.run{ file = helper.source .. "/scripts/consume_matches.lua", flags = { "-v" },
                          args = { limited.base, "30000", out }, timeout = 240 }
    limited.stop()
    assert.equal(0, r.code, r.err)
    assert.matches("consumed 30000 matches", r.out, 1, true)
    assert.matches("429s reaching the script: 0", r.out, 1, true)
    assert.matches("30000 lines in", r.out, 1, true)
    assert.matches("put 30000 = done 30000 + failed 0 + cancelled 0", r.out, 1, true)
    assert.matches("INFO progress: ", r.err, 1, true)
    local n = 0
    for _ in io.lines(out) do n = n + 1 end
    assert.equal(30000, n)
    os.remove(out)
  end)
end)
