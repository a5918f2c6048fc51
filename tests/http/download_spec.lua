-- pyq.http's download sinks: output = path (the body into path..".part",
-- renamed when whole, removed on failure unless keep_partial, resume with
-- a Range) and on_data = fn (the body in chunks to a callback that cannot
-- wait), against tests/fixtures/bytes_server.py.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function size_of(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("pyq.http downloads", function()
  local bytes, dir
  setup(function() bytes = helper.start_bytes() end)
  teardown(function() bytes.stop() end)
  before_each(function() dir = helper.tempdir() end)

  -- The ranges the byte server saw for paths containing `mark`.
  local function ranges(mark)
    local seen = {}
    for _, r in ipairs(http.get(bytes.base .. "/requests"):json()) do
      if r.path:find(mark, 1, true) then
        seen[#seen + 1] = r.range ~= pyq.json.null and r.range or "none"
      end
    end
    return seen
  end

  describe("output", function()
    it("writes the whole body to path and says where and how much", function()
      local path = dir .. "/a.bin"
      local res = http.get(bytes.url(300000), { output = path })
      assert.are.equal(200, res.status)
      assert.is_true(res.ok)
      assert.is_nil(res.body)
      assert.are.equal(300000, res.size)
      assert.are.equal(path, res.path)
      assert.are.equal('"b300000"', res.headers.etag)
      assert.are.equal(helper.byte_pattern(0, 300000), helper.read_file(path))
      assert.is_false(exists(path .. ".part"))
      assert.matches("-> 200 %(300000 bytes%)", tostring(res))
      assert.are.equal("usage", helper.error_of(res.json, res).kind)
      assert.matches("not in memory", tostring(helper.error_of(res.lines, res)))
    end)

    it("replaces an existing file only when the new one is whole", function()
      local path = dir .. "/b.bin"
      write(path, "old")
      assert.are.equal("transport", helper.error_of(http.get, bytes.url(100000, "cut=1000"),
        { output = path }).kind)
      assert.are.equal("old", helper.read_file(path))
      http.get(bytes.url(5000), { output = path })
      assert.are.equal(helper.byte_pattern(0, 5000), helper.read_file(path))
    end)

    it("keeps a non-2xx answer's body in memory and creates no file", function()
      local path = dir .. "/c.bin"
      local res = http.get(bytes.base .. "/nothing", { output = path })
      assert.are.equal(404, res.status)
      assert.are.equal("not found\n", res.body)
      assert.is_nil(res.path)
      assert.is_false(exists(path))
      assert.is_false(exists(path .. ".part"))
    end)

    it("writes a chunked body and an empty one", function()
      local path = dir .. "/d.bin"
      local res = http.get(bytes.url(70000, "chunked=1"), { output = path })
      assert.are.equal(70000, res.size)
      assert.are.equal(helper.byte_pattern(0, 70000), helper.read_file(path))
      res = http.get(bytes.url(0), { output = dir .. "/empty.bin" })
      assert.are.equal(0, res.size)
      assert.are.equal("", helper.read_file(dir .. "/empty.bin"))
    end)

    it("removes the .part of an interrupted download, or keeps it with keep_partial", function()
      local path = dir .. "/e.bin"
      local err = helper.error_of(http.get, bytes.url(1000000, "cut=20000"), { output = path })
      assert.are.equal("transport", err.kind)
      assert.is_false(exists(path))
      assert.is_false(exists(path .. ".part"))
      err = helper.error_of(http.get, bytes.url(1000000, "cut=20000"), { output = path, keep_partial = true })
      assert.are.equal("transport", err.kind)
      assert.is_false(exists(path))
      assert.are.equal(20000, size_of(path .. ".part"))
    end)

    it("resumes a .part with a Range and appends the 206", function()
      local path = dir .. "/f.bin"
      helper.error_of(http.get, bytes.url(400000, "cut=123457&k=f"), { output = path, resume = true })
      assert.are.equal(123457, size_of(path .. ".part"))   -- resume keeps it
      local res = http.get(bytes.url(400000, "k=f"), { output = path, resume = true })
      assert.are.equal(206, res.status)
      assert.are.equal(400000, res.size)
      assert.are.equal(helper.byte_pattern(0, 400000), helper.read_file(path))
      assert.are.same({ "none", "bytes=123457-" }, ranges("k=f"))
    end)

    it("starts over when the server ignores the Range (200)", function()
      local path = dir .. "/g.bin"
      write(path .. ".part", ("x"):rep(5000))
      local res = http.get(bytes.url(30000, "no_ranges=1&k=g"), { output = path, resume = true })
      assert.are.equal(200, res.status)
      assert.are.equal(30000, res.size)
      assert.are.equal(helper.byte_pattern(0, 30000), helper.read_file(path))
      assert.are.same({ "bytes=5000-" }, ranges("k=g"))
    end)

    it("takes a .part the server says is whole (416) as the file", function()
      local path = dir .. "/h.bin"
      write(path .. ".part", helper.byte_pattern(0, 9000))
      local res = http.get(bytes.url(9000, "k=h"), { output = path, resume = true })
      assert.are.equal(416, res.status)
      assert.are.equal(path, res.path)
      assert.are.equal(9000, res.size)
      assert.are.equal(helper.byte_pattern(0, 9000), helper.read_file(path))
      -- a .part longer than the resource is not its: removed, no file
      write(path .. ".part", ("y"):rep(9500))
      os.remove(path)
      res = http.get(bytes.url(9000, "k=h2"), { output = path, resume = true })
      assert.are.equal(416, res.status)
      assert.is_nil(res.path)
      assert.is_false(exists(path))
      assert.is_false(exists(path .. ".part"))
    end)

    it("continues its .part across retries", function()
      local path = dir .. "/i.bin"
      -- every answer is cut 100000 bytes in: three tries of a 250000-byte body
      local res = http.get(bytes.url(250000, "cut=100000&k=i"),
        { output = path, resume = true, retries = 3, backoff = 0.01 })
      assert.are.equal(206, res.status)
      assert.are.equal(2, res.retries)
      assert.are.equal(helper.byte_pattern(0, 250000), helper.read_file(path))
      assert.are.same({ "none", "bytes=100000-", "bytes=200000-" }, ranges("k=i"))
    end)

    it("applies max_body (too_big, nothing left behind)", function()
      local path = dir .. "/j.bin"
      for _, query in ipairs({ "k=j", "chunked=1" }) do
        local err = helper.error_of(http.get, bytes.url(100000, query), { output = path, max_body = 1000 })
        assert.are.equal("too_big", err.kind)
        assert.matches("max_body %(1000 bytes%)", tostring(err))
        assert.is_false(exists(path))
        assert.is_false(exists(path .. ".part"))
      end
      -- with output and no max_body, the 64 MiB memory default does not apply
      assert.are.equal(70 * 1048576, http.get(bytes.url(70 * 1048576), { output = path }).size)
    end)

    it("leaves no file when a pyq.timeout cancels the download", function()
      local path = dir .. "/k.bin"
      local ok, err = pcall(pyq.await, pyq.timeout(0.3, pyq.async(function()
        return http.get(bytes.url(10000000, "rate=1000000"), { output = path })
      end)()))
      assert.is_false(ok)
      assert.are.equal("timeout", err.kind)
      assert.is_false(exists(path))
      assert.is_false(exists(path .. ".part"))
    end)

    it("raises an io error naming the option and the path", function()
      local err = helper.error_of(http.get, bytes.url(10), { output = dir .. "/no/such/dir/x.bin" })
      assert.are.equal("io", err.kind)
      assert.are.equal("GET", err.method)
      assert.matches("output: cannot open '.*/no/such/dir/x%.bin%.part': No such file or directory", tostring(err))
    end)

    it("refuses bad combinations before sending", function()
      local function usage(fn, ...)
        local err = helper.error_of(fn, ...)
        assert.are.equal("usage", err.kind)
        return tostring(err)
      end
      assert.matches("give output or on_data, not both",
        usage(http.get, bytes.url(1), { output = dir .. "/x", on_data = print }))
      assert.matches("output needs a body: a HEAD request has none",
        usage(http.head, bytes.url(1), { output = dir .. "/x" }))
      assert.matches("on_data needs a body", usage(http.request,
        { url = bytes.url(1), method = "head", on_data = print }))
      assert.matches("resume needs output", usage(http.get, bytes.url(1), { resume = true }))
      assert.matches("keep_partial needs output", usage(http.get, bytes.url(1), { keep_partial = false }))
      assert.matches("output must be the path of a file", usage(http.get, bytes.url(1), { output = "" }))
      assert.matches("output must be the path of a file", usage(http.get, bytes.url(1), { output = "a\0b" }))
      assert.matches("output must be the path of a file", usage(http.get, bytes.url(1), { output = dir .. "/" }))
      assert.matches("output must be a string", usage(http.get, bytes.url(1), { output = 1 }))
      assert.matches("resume must be a boolean", usage(http.get, bytes.url(1), { output = "x", resume = 1 }))
      assert.matches("on_data must be a function", usage(http.get, bytes.url(1), { on_data = true }))
    end)

    it("leaves no file at path when SIGINT ends the job", function()
      local path = dir .. "/sig.bin"
      local job = helper.spawn("", ([[
        io.stdout:setvbuf("no")
        print("started")
        pyq.http.get(%q, { output = %q })
      ]]):format(bytes.url(50000000, "rate=2000000"), path))
      for _ = 1, 100 do
        if exists(path .. ".part") then break end
        pyq.sleep(0.05)
      end
      assert.is_true(exists(path .. ".part"))
      os.execute("kill -INT " .. job.pid)
      local code = helper.wait_exit(job)
      assert.are.equal(130, code)
      assert.is_false(exists(path))
      assert.is_false(exists(path .. ".part"))
    end)

    it("downloads 1 GiB in flat memory", function()
      local n = helper.sanitized and 64 * 1048576 or 1024 * 1048576
      local path = dir .. "/big.bin"
      local r = helper.run{ script = ([[
        local function kib(name)
          local f = io.open("/proc/self/status")
          local v = tonumber(f:read("a"):match(name .. ":%%s*(%%d+)"))
          f:close()
          return v
        end
        local before = kib("VmRSS")
        local res = pyq.http.get(%q, { output = %q, timeout = 300 })
        print(res.size, before, kib("VmHWM"))
      ]]):format(bytes.url(n), path), timeout = 300 }
      assert.are.equal(0, r.code, r.err)
      local size, before, peak = r.out:match("^(%d+)\t(%d+)\t(%d+)")
      assert.are.equal(n, tonumber(size))
      assert.are.equal(n, size_of(path))
      os.remove(path)
      local grew = (tonumber(peak) - tonumber(before)) / 1024
      print(("\n  %d MiB through output: peak RSS %.1f MiB above the baseline"):format(n // 1048576, grew))
      if not helper.sanitized then assert.is_true(grew < 50, grew .. " MiB") end
    end)
  end)

  describe("on_data", function()
    it("hands the body over in chunks, in order, and keeps none of it", function()
      local parts = {}
      local res = http.get(bytes.url(200000), { on_data = function(chunk) parts[#parts + 1] = chunk end })
      assert.are.equal(200, res.status)
      assert.is_nil(res.body)
      assert.are.equal(200000, res.size)
      assert.is_nil(res.aborted)
      assert.is_true(#parts > 1)
      assert.are.equal(helper.byte_pattern(0, 200000), table.concat(parts))
    end)

    it("streams a chunked body as it arrives", function()
      local t0, times, got = pyq.now(), {}, 0
      local res = http.get(bytes.url(40000, "chunked=1&rate=80000"), { on_data = function(chunk)
        got = got + #chunk
        times[#times + 1] = pyq.now() - t0
      end })
      assert.are.equal(40000, res.size)
      assert.are.equal(40000, got)
      -- the first chunk came long before the last (the body takes ~0.5 s)
      assert.is_true(times[#times] - times[1] > 0.2, times[#times] - times[1])
    end)

    it("stops the transfer when the callback returns false", function()
      local got = 0
      local res = http.get(bytes.url(50000000), { on_data = function(chunk)
        got = got + #chunk
        if got >= 100000 then return false end
      end })
      assert.are.equal(200, res.status)
      assert.is_true(res.aborted)
      assert.are.equal(got, res.size)
      assert.is_true(got < 1000000)
    end)

    it("keeps a non-2xx body in memory instead", function()
      local called = false
      local res = http.get(bytes.base .. "/nothing", { on_data = function() called = true end })
      assert.are.equal(404, res.status)
      assert.are.equal("not found\n", res.body)
      assert.is_false(called)
    end)

    it("refuses a wait in the callback, naming it", function()
      local err = helper.error_of(http.get, bytes.url(100000), { on_data = function() pyq.sleep(0.01) end })
      assert.are.equal("usage", err.kind)
      assert.matches("pyq.sleep: cannot wait in pyq.http's on_data", tostring(err))
    end)

    it("fails the request with the callback's error, kind kept", function()
      local err = helper.error_of(http.get, bytes.url(100000), { on_data = function()
        error(pyq.Error("quota", "enough"))
      end })
      assert.are.equal("quota", err.kind)
      assert.are.equal("enough", tostring(err))
      local msg = helper.failure(http.get, bytes.url(100000), { on_data = function() error("plain") end })
      assert.matches("plain$", msg)
    end)

    it("applies max_body to the bytes handed over", function()
      local err = helper.error_of(http.get, bytes.url(100000), { on_data = function() end, max_body = 5000 })
      assert.are.equal("too_big", err.kind)
    end)

    it("runs many streams at once from a queue", function()
      local q <close> = pyq.Queue{ workers = 8 }
      local sums = {}
      for i = 1, 16 do
        q:put(pyq.async(function()
          local n = 0
          http.get(bytes.url(100000 + i), { on_data = function(c) n = n + #c end })
          sums[i] = n
        end)())
      end
      q:join()
      for i = 1, 16 do assert.are.equal(100000 + i, sums[i]) end
    end)

    it("stops when a pyq.timeout cancels the task", function()
      local got = 0
      local ok, err = pcall(pyq.await, pyq.timeout(0.3, pyq.async(function()
        return http.get(bytes.url(10000000, "rate=1000000"), { on_data = function(c) got = got + #c end })
      end)()))
      assert.is_false(ok)
      assert.are.equal("timeout", err.kind)
      assert.is_true(got > 0 and got < 10000000)
    end)
  end)
end)
