-- http.limit(host, rates..., { shared = }) (issue 12, "Shared limits"):
-- pyqhost processes against the fixture API's /count routes (arrival
-- times as the server saw them) and a redis-server the spec starts
-- (tests/helper.lua start_redis); Retry-After from one process holding
-- the others; Redis stopped; the options' errors.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http

-- Requests /count/NAME from `tasks` tasks for `secs` seconds through a
-- shared limit; prints how many answers came.
local HAMMER = [[
local url, base, name, rate, secs, tasks, query = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]),
  tonumber(arg[6]), arg[7] or ""
pyq.http.limit("127.0.0.1", rate, { shared = url })
local t0, n = pyq.now(), 0
local q <close> = pyq.Queue{ workers = tasks }
for _ = 1, tasks do
  q:put(pyq.async(function()
    while pyq.now() - t0 < secs do
      pyq.http.get(base .. "/count/" .. name .. query, { retries = 0 })
      n = n + 1
    end
  end)())
end
q:join()
print(n)
]]

local function arrivals(api, name)
  return http.get(api.base .. "/count-log/" .. name):raise_for_status():json()
end

-- The most arrivals in any window [t, t + secs) at the server.
local function busiest(log, secs)
  local most, j = 0, 1
  for i = 1, #log do
    while log[i][1] - log[j][1] >= secs do j = j + 1 end
    most = math.max(most, i - j + 1)
  end
  return most
end

local function hammer(redis, api, name, rate, secs, tasks, query)
  return helper.spawn("", HAMMER, table.concat({ helper.quote(redis.url), api.base, name, rate, secs, tasks,
    query and helper.quote(query) or "" }, " "))
end

describe("a shared rate limit", function()
  local redis, api
  setup(function()
    redis = helper.start_redis()
    api = helper.start_api()
  end)
  teardown(function()
    redis.stop()
    api.stop()
  end)

  it("holds three processes to 20/1s together, counted by the server over 10 s, and leaves no key", function()
    local jobs = {}
    for i = 1, 3 do jobs[i] = hammer(redis, api, "three", "20/1s", 10, 8) end
    local sent = 0
    for i = 1, 3 do
      local code, out, err = helper.wait_exit(jobs[i])
      assert.equal(0, code, err)
      sent = sent + tonumber(out)
      assert.is_true(tonumber(out) >= 30, "a process was starved: " .. out)
    end
    local log = arrivals(api, "three")
    assert.equal(sent, #log)
    assert.is_true(busiest(log, 1.0) <= 20, "over 20 in a second: " .. busiest(log, 1.0))
    assert.is_true(#log >= 180, "the limit was not used: " .. #log)
    pyq.sleep(1.2)   -- the windows' expiry: 1.05 s
    assert.equal("", redis.cli("--scan --pattern 'pyq:limit:*'"))
  end)

  it("without shared, lets three processes through three times over (what the spec above would catch)", function()
    local script = HAMMER:gsub('rate, { shared = url }', 'rate')
    local jobs = {}
    for i = 1, 3 do
      jobs[i] = helper.spawn("", script, table.concat({ redis.url, api.base, "apart", "20/1s", 2, 4 }, " "))
    end
    for i = 1, 3 do assert.equal(0, (helper.wait_exit(jobs[i]))) end
    assert.is_true(busiest(arrivals(api, "apart"), 1.0) > 40)
  end)

  it("holds every process for a Retry-After one of them got", function()
    local jobs = {}
    for i = 1, 3 do jobs[i] = hammer(redis, api, "hold", "1000/1s", 4, 3, "?at=60&retry_after=2") end
    for i = 1, 3 do
      local code, _, err = helper.wait_exit(jobs[i])
      assert.equal(0, code, err)
    end
    local log, at = arrivals(api, "hold"), nil
    for _, a in ipairs(log) do
      if a[2] == 429 then at = a[1] end
    end
    assert.is_truthy(at)
    local during, after = 0, 0
    for _, a in ipairs(log) do
      -- what was on its way when the 429 was answered may still arrive
      if a[1] > at + 0.25 and a[1] < at + 2 then during = during + 1 end
      if a[1] >= at + 2 then after = after + 1 end
    end
    assert.equal(0, during)
    assert.is_true(after > 0, "nothing was sent after the hold")
    -- each process had sent before the hold: the three were there
    assert.is_true(#log > 60)
  end)

  it("makes requests time out cleanly while Redis does not answer, and go again when it does", function()
    local base = api.base .. "/count/stopped"
    http.limit("127.0.0.1", "100/1s", { shared = redis.url })
    finally(function() redis.resume(); http.limit("127.0.0.1", nil) end)
    assert.equal(200, http.get(base).status)
    redis.pause()
    local t0 = pyq.now()
    local e = helper.error_of(http.get, base, { timeout = 1.5 })
    local took = pyq.now() - t0
    assert.is_true(pyq.is_error(e, "timeout"), tostring(e))
    assert.matches("shared rate limit of 127%.0%.0%.1:%d+: Redis at redis://127%.0%.0%.1:%d+/0 did not answer", tostring(e))
    assert.is_true(took >= 1.4 and took < 3, "took " .. took)
    redis.resume()
    assert.equal(200, http.get(base, { timeout = 10 }).status)
    assert.equal(2, #arrivals(api, "stopped"))
  end)

  it("waits, then times out, for a Redis that is not there", function()
    http.limit("127.0.0.1", "100/1s", { shared = "redis://127.0.0.1:" .. helper.closed_port() .. "/0" })
    finally(function() http.limit("127.0.0.1", nil) end)
    local e = helper.error_of(http.get, api.base .. "/count/absent", { timeout = 0.5 })
    assert.is_true(pyq.is_error(e, "timeout"), tostring(e))
    http.limit("127.0.0.1", nil)
    assert.equal(0, #arrivals(api, "absent"))
  end)

  it("loads its script again when Redis lost it (NOSCRIPT)", function()
    http.limit("127.0.0.1", "3/10s", { shared = redis.url })
    finally(function() http.limit("127.0.0.1", nil) end)
    local base = api.base .. "/count/noscript"
    http.get(base)
    assert.equal("OK", redis.cli("script flush"):match("%u+"))
    http.get(base)
    assert.equal("2", redis.cli("zcard pyq:limit:127.0.0.1:3/10000000us"):match("%d+"))
    assert.equal(200, http.get(base, { timeout = 0.5 }).status)   -- one slot left: it goes
    local e = helper.error_of(http.get, base, { timeout = 0.5 })  -- none: it would wait 10 s
    assert.matches("would run out waiting for the shared rate limit", tostring(e))
    redis.cli("del pyq:limit:127.0.0.1:3/10000000us")
  end)

  it("takes shared = true as the job's Redis: the cluster queue's, or --worker's", function()
    local job = [[
      pyq.http.limit("127.0.0.1", "5/1s", { shared = true })
      if pyq.worker then
        print("worker", pyq.http.get(arg[2] .. "/count/true").status)
        os.exit(0)
      end
      local ok, e = pcall(pyq.http.get, arg[2] .. "/count/true")
      print(pyq.is_error(e, "usage"), e)
      local q <close> = pyq.Queue{ cluster = arg[1], name = "sharedtrue" }
      print("main", pyq.http.get(arg[2] .. "/count/true").status)
    ]]
    local r = helper.run{ script = job, args = { redis.url, api.base } }
    assert.equal(0, r.code, r.err)
    assert.matches("^true\t[^\n]*pyq.http.limit: 127.0.0.1: shared = true needs the job's Redis", r.out)
    assert.matches("\nmain\t200\n", r.out)
    local w = helper.run{ script = job, flags = { "--worker", redis.url }, args = { "x", api.base } }
    assert.equal(0, w.code, w.err)
    assert.equal("worker\t200\n", w.out)
    assert.equal(2, #arrivals(api, "true"))
  end)

  it("names its bad options", function()
    local function err(...) return tostring(helper.error_of(http.limit, ...)) end
    assert.matches('pyq.http.limit: shared must be true %(the job\'s Redis%) or a URL "redis://host:port/db", got "http://x"',
      err("h", "5/1s", { shared = "http://x" }))
    assert.matches("shared must be true .*, got 5", err("h", "5/1s", { shared = 5 }))
    assert.matches("pyq.http.limit: unknown option shard", err("h", "5/1s", { shard = true }))
    assert.matches("pyq.http.limit: bad rate table", err("h", { shared = true }))   -- no rate before it
    assert.matches('shared needs a rate "N/D"', err("h", "auto", { shared = true }))
    local many = {}
    for i = 1, 17 do many[i] = i .. "/1s" end
    many[18] = { shared = true }
    assert.matches("shared takes at most 16 rates, got 17", err("h", table.unpack(many)))
    local e = helper.error_of(function() http.limit("h", "5/1s", { shared = 1 }) end)
    assert.matches("shared_limits_spec.lua:%d+: pyq.http.limit", tostring(e))
    assert.is_true(pyq.is_error(e, "usage"))
    assert.matches('pyq.http.limit: shared "redis://127.0.0.1:0" [^\n]*port', err("h", "5/1s", { shared = "redis://127.0.0.1:0" }))
  end)
end)
