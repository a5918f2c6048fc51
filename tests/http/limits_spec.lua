require 'busted.runner'()
-- http.limit(host, "auto"): limits learned from the server's headers, against
-- tests/fixtures/api.py's /limits/ routes, which count requests in fixed
-- windows as the real services do and answer 429 when one is over.  Every
-- burst here sends with retries = 0, so a 429 the server sends reaches the
-- script; durations are read on the server's clock (first to last arrival).
local helper = require 'tests.helper'
local http = pyq.http

-- One fixture API for the file: each test uses keys of its own on it (the
-- server counts per key) and starts with no learning (http.limit(host, nil)
-- forgets it).  A host's Retry-After hold outlives that: the test that
-- makes one comes last.
local api
local function forget()
  http.limit(api.host, nil)
  return api
end

-- f(i) for i = 1..n on a queue of `workers`; the statuses it returned,
-- counted: { [200] = 38, [429] = 2 }.
local function burst(n, workers, f)
  local counts = {}
  local queue <close> = pyq.Queue{ workers = workers }
  for i = 1, n do
    queue:put(pyq.async(function()
      local status = f(i)
      counts[status] = (counts[status] or 0) + 1
    end)())
  end
  queue:join()
  return counts
end

local function stats(server, key)
  http.limit(server.host, nil)   -- the stats request waits for no window
  return http.get(server.base .. "/limits/stats/" .. key):json()
end

describe("http.limit(host, \"auto\")", function()
  setup(function()
    api = helper.start_api{}
    api.host = api.base:match("^http://(.*)$")
  end)
  teardown(function()
    http.limit(api.host, nil)
  end)

  it("keeps 25 workers within app and method limits, as fast as they allow", function()
    forget()
    http.limit(api.host, "auto")
    -- app 12/1 s; method a 5/1 s, method b 20/1 s: 15 a's need 3 windows
    -- (2 s at least), 30 requests 3 app windows; the first answer takes
    -- 0.3 s, and nothing else may arrive while it is out (the ping)
    local counts = burst(30, 25, function(i)
      local m = i % 2 == 0 and "a" or "b"
      return http.get(("%s/limits/game/k1/%s/ID%d"):format(api.base, m, i), { retries = 0, query = {
        app = "12:1", method = m == "a" and "5:1" or "20:1", first_delay = "0.3" } }).status
    end)
    local s = stats(api, "k1")
    assert.same({ [200] = 30 }, counts)
    assert.same({ 30, 0, 0 }, { s.arrivals, s.sent429, s.during_first })
    assert.is_true(s.seconds >= 1.9, "faster than the limits allow: " .. s.seconds)
    -- the windows are padded by 5% + 50 ms: 2.3 s plus the ping, and slack
    assert.is_true(s.seconds < 2.6 + 1.5, "much slower than the limits require: " .. s.seconds)
  end)

  it("seeds its windows with -Count, what an earlier run spent", function()
    forget()
    local url = api.base .. "/limits/game/k2/a/x"
    local query = { app = "10:1" }
    for _ = 1, 8 do assert.equal(200, http.get(url, { query = query }).status) end   -- no limit yet
    http.limit(api.host, "auto")
    local counts = burst(10, 10, function() return http.get(url, { retries = 0, query = query }).status end)
    local s = stats(api, "k2")
    assert.same({ [200] = 10 }, counts)
    assert.equal(0, s.sent429)
    assert.is_true(s.seconds >= 0.95, "sent into a spent window: " .. s.seconds)
  end)

  it("reads the IETF RateLimit fields and X-RateLimit-*, Reset as seconds or as a time", function()
    -- 5 requests, 3 a second: 2 windows, at least 1 s
    for _, form in ipairs({ "dict", "sf", "triple", "x", "xepoch" }) do
      forget()
      http.limit(api.host, "auto")
      local counts = burst(5, 5, function()
        return http.get(api.base .. "/limits/std/" .. form, { retries = 0,
          query = { limit = 3, window = 1, form = form } }).status
      end)
      local s = stats(api, form)
      assert.same({ [200] = 5 }, counts, form)
      assert.equal(0, s.sent429, form)
      assert.is_true(s.seconds >= 0.95, form .. " faster than the limit allows: " .. s.seconds)
      -- a Reset as an epoch time counts in whole seconds: up to 2 s more
      local most = form == "xepoch" and 3.2 + 1.5 or 1.2 + 1.5
      assert.is_true(s.seconds < most, form .. " much slower than the limit requires: " .. s.seconds)
    end
  end)

  it("picks up limits that change, stricter or looser", function()
    forget()
    http.limit(api.host, "auto")
    local function get(app) return http.get(api.base .. "/limits/game/k4/a/x", { retries = 0, query = { app = app } }).status end
    for _ = 1, 3 do assert.equal(200, get("20:1")) end
    -- now 3 a second: one answer tells, then 5 more need 2 windows
    assert.equal(200, get("3:1"))
    local t0 = pyq.now()
    assert.same({ [200] = 5 }, burst(5, 5, function() return get("3:1") end))
    local stricter = pyq.now() - t0
    assert.is_true(stricter >= 0.95, "the stricter limit was not applied: " .. stricter)
    -- now 50 a second: 20 need no wait (under 3 a second, 7 windows)
    assert.equal(200, get("50:1"))
    t0 = pyq.now()
    assert.same({ [200] = 20 }, burst(20, 20, function() return get("50:1") end))
    local looser = pyq.now() - t0
    assert.is_true(looser < 3, "the looser limit was not applied: " .. looser)
    assert.equal(0, stats(api, "k4").sent429)
  end)

  it("applies given rates too, the stricter winning, and keeps its learning when named again", function()
    forget()
    http.limit(api.host, "auto", "2/1s")
    local counts = burst(3, 3, function()
      return http.get(api.base .. "/limits/game/k5/a/x", { retries = 0, query = { app = "20:1" } }).status
    end)
    assert.same({ [200] = 3 }, counts)
    -- named again: no new ping, so the others arrive while the first is out
    http.limit(api.host, "auto")
    counts = burst(6, 6, function()
      return http.get(api.base .. "/limits/game/k5b/a/x", { retries = 0,
        query = { app = "20:1", first_delay = "0.3" } }).status
    end)
    local s, s2 = stats(api, "k5"), stats(api, "k5b")
    assert.same({ [200] = 6 }, counts)
    assert.same({ 0, 0 }, { s.sent429, s2.sent429 })
    assert.is_true(s.seconds >= 0.95, "2/1s was not applied: " .. s.seconds)
    assert.is_true(s2.during_first > 0, "a second ping")
  end)

  it("keeps a request's timeout while it waits for the first answer", function()
    forget()
    http.limit(api.host, "auto")
    local url = api.base .. "/limits/game/k6/a/x"
    local e
    local counts = burst(2, 2, function(i)
      if i == 1 then return http.get(url, { query = { first_delay = "0.6" } }).status end
      pyq.sleep(0.05)
      e = helper.error_of(http.get, url, { timeout = 0.2 })
      return 0
    end)
    assert.same({ [200] = 1, [0] = 1 }, counts)
    assert.equal("timeout", e.kind)
    assert.matches("waiting for the first answer from " .. api.host, e.message, 1, true)
  end)

  it("holds only the method a 429 of X-Rate-Limit-Type: method names, the host for service", function()
    forget()
    http.limit(api.host, "auto")
    local function get(m, opts, query)
      opts.query = query or {}
      return http.get(("%s/limits/game/k3/%s/ID1"):format(api.base, m), opts)
    end
    assert.equal(200, get("b", {}).status)   -- the first answer
    local t = {}
    burst(2, 2, function(i)
      if i == 1 then   -- a 429 for method a, Retry-After: 1, then a 200
        local res = get("a", { retries = 2, backoff = 0.01 }, { type = "method", retry_after = 1 })
        t.a, t.a_retries = pyq.now(), res.retries
        return res.status
      end
      pyq.sleep(0.2)   -- while a is held, b goes at once
      local t0 = pyq.now()
      local status = get("b", {}).status
      t.b = pyq.now() - t0
      return status
    end)
    assert.equal(1, t.a_retries)
    assert.is_true(t.b < 0.5, "b waited " .. t.b)
    -- a hold of the method is a hold of its path only
    assert.equal(429, get("c", { retries = 0 }, { type = "method", retry_after = 5 }).status)
    local e = helper.error_of(get, "c", { max_retry_after = 1 })
    assert.equal("status", e.kind)
    assert.matches(api.host .. "/limits/game/{}/c/{} are held for", e.message, 1, true)
    assert.equal(200, get("b", { max_retry_after = 1 }).status)
    -- service (as application): the whole host
    assert.equal(429, get("b", { retries = 0 }, { type = "service", retry_after = 5 }).status)
    e = helper.error_of(get, "d", { max_retry_after = 1 })
    assert.equal("status", e.kind)
    assert.matches("requests to " .. api.host .. " are held for", e.message, 1, true)
  end)

  it("refuses bad input as usage errors naming pyq.http.limit", function()
    local cases = {
      { { "h", "auto", "auto" }, 'pyq.http.limit: "auto" given twice' },
      { { "h", "Auto" }, 'pyq.http.limit: bad rate "Auto" (expected "auto" or "N/D"' },
      { { "h", "auto", 5 }, "pyq.http.limit: bad rate 5" },
      { { "h", "auto", nil }, "pyq.http.limit: bad rate nil" },
      { { 5, "auto" }, 'pyq.http.limit: host must be "name" or "name:port", got 5' },
    }
    for i, c in ipairs(cases) do
      local line = debug.getinfo(1, "l").currentline + 1
      local e = helper.error_of(function() http.limit(table.unpack(c[1], 1, 3)) end)
      assert.equal("usage", e.kind, "case " .. i)
      assert.matches("limits_spec.lua:" .. line .. ": " .. c[2], tostring(e), 1, true)
    end
  end)
end)
