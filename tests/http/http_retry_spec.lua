-- pyq.http's retry loop (lualib/pyq/http.lua): Retry-After holds, logged
-- once and capped by max_retry_after; `timeout` covering the whole request
-- and `attempt_timeout` one try; max_body errors not retried; Retry-After
-- values parsed defensively; the response's metamethods refusing a wrong
-- self; and the module working after a script replaced the globals.
-- A Retry-After hold blocks its host for the rest of the process, so the
-- tests that set long ones get a server of their own.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http
local failure = helper.failure

local unique = 0
local function key() unique = unique + 1; return "r" .. unique end

-- The requests the fixture saw under a key (/flaky, /slow-first, ...).
local function seen(base, k)
  return http.get(base .. "/seen/" .. k):json().count
end

-- Calls f(...) in a task bounded by secs: a regression that sleeps out a
-- long hold fails the spec instead of stalling it for an hour.
local function within(secs, f, ...)
  return pyq.await(pyq.timeout(secs, pyq.async(f)(...)))
end

-- Runs f(api) with a fixture server of its own, stopped afterwards.
local function with_api(f)
  local api = helper.start_api()
  local ok, err = pcall(f, api)
  api.stop()
  if not ok then error(err, 0) end
end

-- Runs a script in a pyqhost of its own (arg[1] = base); the script lives
-- in a temporary directory removed afterwards.
local function run_script(text, base)
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir " .. helper.quote(dir))
  local path = dir .. "/job.lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local ok, res = pcall(helper.run, { file = path, args = { base }, timeout = 60 })
  os.execute("rm -rf " .. helper.quote(dir))
  assert(ok, res)
  return res
end

-- Seconds from now to a "YYYY-MM-DDTHH:MM:SSZ" time (both read as local
-- time by os.time, so the zone cancels out).
local function from_now(stamp)
  local y, mo, d, h, mi, s = stamp:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
  local t = os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
                     hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) }
  return os.difftime(t, os.time(os.date("!*t")))
end

describe("pyq.http retries", function()
  local api, base

  setup(function()
    api = helper.start_api()
    base = api.base
  end)
  teardown(function() api.stop() end)

  describe("Retry-After holds", function()
    it("are logged once at WARNING with the host, the seconds and the time until when", function()
      local res = run_script([[
        local base = arg[1]
        local q <close> = pyq.Queue{ workers = 5 }
        local get = pyq.async(function()
          return pyq.http.get(base .. "/retry-after-value/burst?value=2&times=5",
                              { retries = 2, backoff = 0.01 }).status
        end)
        for _ = 1, 5 do q:put(get()) end
        print(table.concat(q:join(), ","))
      ]], base)
      assert.equal(0, res.code, res.err)
      assert.equal("200,200,200,200,200\n", res.out)
      local lines = {}
      for line in res.err:gmatch("[^\n]+") do
        if line:find("Retry-After", 1, true) then lines[#lines + 1] = line end
      end
      assert.equal(1, #lines, res.err)
      local line = lines[1]
      assert.matches(" WARNING ", line, 1, true)
      assert.matches("127.0.0.1:" .. api.port, line, 1, true)
      assert.matches("Retry-After: 2", line, 1, true)
      assert.matches("for 2 s", line, 1, true)
      local stamp = line:match("until (%d+%-%d+%-%d+T%d+:%d+:%d+Z)")
      assert.is_truthy(stamp, line)
      local ahead = from_now(stamp)
      assert.is_true(ahead >= -1 and ahead <= 3, "until is " .. ahead .. " s from now")
    end)

    it("over max_retry_after fail at once, naming the host, the value and the cap", function()
      with_api(function(own)
        local hostport = "127.0.0.1:" .. own.port
        local t0 = pyq.now()
        local err = failure(within, 5, http.get, own.base .. "/retry-after-value/" .. key() .. "?value=20",
                            { retries = 1, max_retry_after = 5 })
        assert.is_true(pyq.now() - t0 < 3, "took " .. pyq.now() - t0)
        assert.matches("^pyq%.http: GET http://127%.0%.0%.1:%d+/retry%-after%-value/", err)
        assert.matches(hostport .. " answered 429 with Retry-After: 20 (20 s), over max_retry_after (5 s)",
                       err, 1, true)

        -- the hold stays: later requests to the host fail at once too ...
        t0 = pyq.now()
        err = failure(within, 5, http.get, own.base .. "/bytes/1", { max_retry_after = 5 })
        assert.matches("requests to " .. hostport .. " are held for", err, 1, true)
        assert.matches("(Retry-After: 20), over max_retry_after (5 s)", err, 1, true)
        -- ... by http.configure's default ...
        http.configure{ max_retry_after = 2 }
        local ok, e = pcall(within, 5, http.get, own.base .. "/bytes/1")
        http.configure{ max_retry_after = 300 }
        assert.is_false(ok)
        assert.matches("over max_retry_after (2 s)", e, 1, true)
        -- ... or when the hold outlasts the whole request's timeout
        err = failure(within, 5, http.get, own.base .. "/bytes/1", { timeout = 1 })
        assert.matches("^pyq%.http: GET http://127%.0%.0%.1:%d+/bytes/1: timed out", err)
        assert.matches("Retry-After hold on " .. hostport, err, 1, true)
        assert.is_true(pyq.now() - t0 < 3, "took " .. pyq.now() - t0)
      end)
    end)

    it("are capped at 300 s by default", function()
      with_api(function(own)
        local t0 = pyq.now()
        local err = failure(within, 5, http.get, own.base .. "/retry-after-value/" .. key() .. "?value=3600",
                            { retries = 2 })
        assert.matches("Retry-After: 3600 (3600 s), over max_retry_after (300 s)", err, 1, true)
        assert.is_true(pyq.now() - t0 < 3, "took " .. pyq.now() - t0)
      end)
    end)

    it("are refused bad max_retry_after values", function()
      for _, v in ipairs({ -1, "5", 0 / 0 }) do
        assert.matches("pyq.http.get: max_retry_after must be a non-negative number",
                       failure(http.get, base .. "/bytes/1", { max_retry_after = v }), 1, true)
        assert.matches("pyq.http.configure: max_retry_after must be a non-negative number",
                       failure(http.configure, { max_retry_after = v }), 1, true)
      end
    end)
  end)

  describe("Retry-After values", function()
    local function get(value, opts)
      opts = opts or {}
      opts.query = { value = value }
      return http.get(base .. "/retry-after-value/" .. key(), opts)
    end

    it("with an out-of-range year are ignored, not an internal error", function()
      -- os.time takes the first (and the old code slept for 98,000 years);
      -- the second made it raise "field 'year' is out-of-bound"
      for _, bad in ipairs({ "Fri, 31 Dec 99999 23:59:59 GMT", "Fri, 31 Dec 9999999999 23:59:59 GMT" }) do
        assert.equal(429, within(5, get, bad).status)
        local t0 = pyq.now()
        local res = within(5, get, bad, { retries = 1, backoff = 0.01 })
        assert.same({ 200, 1 }, { res.status, res.retries })
        assert.is_true(pyq.now() - t0 < 1, "took " .. pyq.now() - t0)
      end
    end)

    it("that are negative or malformed are ignored", function()
      for _, v in ipairs({ "-5", "-0.5", "soon", "1e3", "Fri, 32 Dec 2026 23:59:59 GMT",
                           "Fri, 01 Foo 2026 23:59:59 GMT", "Fri, 01 Dec 2026 25:00:00 GMT", "" }) do
        local t0 = pyq.now()
        local res = within(5, get, v, { retries = 1, backoff = 0.01 })
        assert.same({ 200, 1 }, { res.status, res.retries }, v)
        assert.is_true(pyq.now() - t0 < 1, v .. " took " .. pyq.now() - t0)
      end
    end)

    it("that are fractional are waited out", function()
      local t0 = pyq.now()
      local res = within(5, get, " 0.5 ", { retries = 1, backoff = 0.01 })
      assert.same({ 200, 1 }, { res.status, res.retries })
      assert.is_true(pyq.now() - t0 >= 0.45, "took " .. pyq.now() - t0)
    end)

    it("in the RFC 850 and asctime date forms are waited out", function()
      for _, form in ipairs({ "!%A, %d-%b-%y %H:%M:%S GMT", "!%a %b %e %H:%M:%S %Y" }) do
        local value = os.date(form, os.time() + 2)
        local t0 = pyq.now()
        local res = within(5, get, value, { retries = 1, backoff = 0.01 })
        assert.same({ 200, 1 }, { res.status, res.retries }, value)
        assert.is_true(pyq.now() - t0 >= 0.9, value .. " took " .. pyq.now() - t0)
      end
    end)

    it("in the far future are capped by max_retry_after", function()
      with_api(function(own)
        local t0 = pyq.now()
        local err = failure(within, 5, http.get, own.base .. "/retry-after-value/" .. key(),
                            { query = { value = "Fri, 31 Dec 9999 23:59:59 GMT" }, retries = 1 })
        assert.matches("Retry-After: Fri, 31 Dec 9999 23:59:59 GMT", err, 1, true)
        assert.matches("over max_retry_after (300 s)", err, 1, true)
        assert.is_true(pyq.now() - t0 < 3, "took " .. pyq.now() - t0)
      end)
    end)
  end)

  describe("timeout", function()
    it("covers every attempt and backoff: a wait past it fails at once", function()
      local k = key()
      local t0 = pyq.now()
      local err = failure(http.get, base .. "/flaky/" .. k .. "/10",
                          { retries = 5, backoff = 0.3, timeout = 0.5 })
      local took = pyq.now() - t0
      assert.matches("^pyq%.http: GET http://127%.0%.0%.1:%d+/flaky/" .. k .. "/10: timed out", err)
      assert.matches("would run out during the backoff", err, 1, true)
      assert.matches("the last: status 503", err, 1, true)
      assert.is_true(took < 0.5 + 1.5, "took " .. took)
      local n = seen(base, k)
      assert.is_true(n >= 1 and n <= 3, n .. " attempts")
    end)

    it("cuts the attempt that runs into it", function()
      local t0 = pyq.now()
      local err = failure(http.get, base .. "/delay/3", { retries = 5, backoff = 0.01, timeout = 0.5 })
      local took = pyq.now() - t0
      assert.matches("^pyq%.http: GET http://127%.0%.0%.1:%d+/delay/3: .*timed out", err)
      assert.is_true(took > 0.5 * 0.9 and took < 0.5 + 1.5, "took " .. took)
    end)

    it("covers the rate-limit waits", function()
      local hostport = "127.0.0.1:" .. api.port
      http.limit(hostport, "1/10s")
      local ok, err = pcall(function()
        assert.equal(200, http.get(base .. "/bytes/1").status)
        local t0 = pyq.now()
        local e = failure(within, 5, http.get, base .. "/bytes/1", { timeout = 0.5 })
        assert.matches("timed out", e, 1, true)
        assert.matches("rate limit of " .. hostport, e, 1, true)
        assert.is_true(pyq.now() - t0 < 0.45, "took " .. pyq.now() - t0)
      end)
      http.limit(hostport, nil)
      assert(ok, err)
    end)

    it("of 0 has run out before anything is sent", function()
      local k = key()
      local err = failure(http.get, base .. "/flaky/" .. k .. "/0", { retries = 1, timeout = 0 })
      assert.matches("timed out", err, 1, true)
      assert.equal(0, seen(base, k))
    end)

    it("is refused when not a number of seconds", function()
      for _, v in ipairs({ -1, "1", 2e9 }) do
        assert.matches("pyq.http.get: timeout must be a number of seconds from 0 to 1e+09",
                       failure(http.get, base .. "/bytes/1", { timeout = v, retries = 1 }), 1, true)
      end
    end)
  end)

  describe("attempt_timeout", function()
    it("bounds one try, and the retry can succeed", function()
      local k = key()
      local t0 = pyq.now()
      local res = http.get(base .. "/slow-first/" .. k .. "/1/3",
                           { retries = 2, backoff = 0.01, attempt_timeout = 0.3 })
      assert.same({ 200, 1 }, { res.status, res.retries })
      assert.is_true(pyq.now() - t0 < 2, "took " .. pyq.now() - t0)
      assert.equal(2, seen(base, k))
    end)

    it("applies without retries, and never beyond timeout", function()
      local t0 = pyq.now()
      assert.matches("timed out", failure(http.get, base .. "/delay/3", { attempt_timeout = 0.2 }), 1, true)
      assert.matches("timed out", failure(http.get, base .. "/delay/3",
                                          { attempt_timeout = 10, timeout = 0.2 }), 1, true)
      assert.is_true(pyq.now() - t0 < 2.5, "took " .. pyq.now() - t0)
    end)

    it("is refused when not a number of seconds", function()
      for _, v in ipairs({ -1, "1", 2e9, true }) do
        assert.matches("pyq.http.get: attempt_timeout must be a number of seconds from 0 to 1e+09",
                       failure(http.get, base .. "/bytes/1", { attempt_timeout = v }), 1, true)
      end
    end)
  end)

  it("does not retry a body over max_body", function()
    local k = key()
    local err = failure(http.get, base .. "/counted-bytes/" .. k .. "/5000",
                        { max_body = 1000, retries = 3, backoff = 0.01 })
    assert.matches("over max_body", err, 1, true)
    assert.equal(1, seen(base, k))
  end)

  it("still retries other transport failures", function()
    local k = key()
    local res = http.get(base .. "/slow-first/" .. k .. "/2/3", { retries = 2, backoff = 0.01, timeout = 5,
                                                                   attempt_timeout = 0.2 })
    assert.same({ 200, 2 }, { res.status, res.retries })
  end)

  describe("the response's metamethods", function()
    it("refuse a self that is not a response", function()
      local res = http.get(base .. "/bytes/3")
      local mt = getmetatable(res)
      assert.matches("bad argument #1 to '__tostring' (pyq.http.response expected, got table)",
                     failure(mt.__tostring, {}), 1, true)
      assert.matches("bad argument #1 to '__index' (pyq.http.response expected, got FILE*)",
                     failure(mt.__index, io.stdout, "x"), 1, true)
      assert.matches("bad argument #1 to '__index' (pyq.http.response expected, got number)",
                     failure(mt.__index, 42, "headers"), 1, true)
      assert.matches("bad argument #1 to 'json' (pyq.http.response expected, got table)",
                     failure(mt.json, { body = "[]" }), 1, true)
      -- and still serve a real response
      assert.matches("-> 200 (3 bytes)", tostring(res), 1, true)
      assert.equal("3", res.headers["content-length"])
      assert.equal(0, res.retries)
    end)
  end)

  it("works after a script replaced the globals it used", function()
    local res = run_script([==[
      local base = arg[1]
      local print, pcall, next, concat, fmt, find = print, pcall, next, table.concat, string.format, string.find
      local far = base .. "/retry-after-value/g5?value=Fri,%2031%20Dec%2099999%2023:59:59%20GMT"
      pyq.now, pyq.sleep = nil, nil
      for _, name in ipairs({ "pairs", "ipairs", "next", "select", "type", "tonumber", "tostring",
                              "error", "pcall", "rawget", "rawequal", "getmetatable",
                              "setmetatable", "assert" }) do
        _G[name] = nil
      end
      for lib, names in next, {
        string = { "format", "lower", "upper", "match", "gsub", "find", "sub", "rep", "gmatch" },
        table = { "sort", "concat", "insert", "remove", "unpack" },
        math = { "random", "max", "min", "floor", "type", "tointeger", "huge" },
        os = { "time", "date", "difftime" },
        debug = { "getmetatable", "traceback" },
      } do
        for i = 1, #names do _G[lib][names[i]] = nil end
      end
      local http = pyq.http   -- loaded here, after all that
      http.limit("127.0.0.1", "50/1s", "500/1m")
      local out = {}
      local r = http.get(base .. "/flaky/g1/2", { retries = 3, backoff = 0.01 })
      out[#out + 1] = fmt("flaky %d %d", r.status, r.retries)
      r = http.get(base .. "/retry-after-value/g2?value=1", { retries = 1, backoff = 0.01 })
      out[#out + 1] = fmt("hold %d %d", r.status, r.retries)
      out[#out + 1] = fmt("far %d", http.get(far, { retries = 0 }).status)
      local ok, err = pcall(http.get, base .. "/flaky/g3/9", { retries = 5, backoff = 0.3, timeout = 0.2 })
      out[#out + 1] = fmt("deadline %s %s %s", ok, err.kind, find(fmt("%s", err), "timed out", 1, true) and "timed out" or fmt("%s", err))
      ok, err = pcall(http.get, base .. "/counted-bytes/g6/5000", { max_body = 10, retries = 2 })
      out[#out + 1] = fmt("max_body %s %s", err.kind, find(fmt("%s", err), "over max_body", 1, true) and "final" or fmt("%s", err))
      ok, err = pcall(http.get, base .. "/retry-after-value/g4?value=900", { retries = 1 })   -- last: holds
      out[#out + 1] = fmt("cap %s %s", ok, find(fmt("%s", err), "max_retry_after", 1, true) and "max_retry_after" or fmt("%s", err))
      http.limit("127.0.0.1", nil)
      print(concat(out, "\n"))
    ]==], base)
    assert.equal(0, res.code, res.err)
    assert.equal(table.concat({ "flaky 200 2", "hold 200 1", "far 429", "deadline false timeout timed out",
                                "max_body too_big final", "cap false max_retry_after" }, "\n") .. "\n", res.out)
  end)
end)
