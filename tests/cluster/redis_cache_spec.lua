require "busted.runner"()
-- pyq.http's response cache on Redis (issue 12, "Shared limits and cache"):
-- `cache = "redis://..."` shared by processes, binary bodies, ttl and the
-- keys' expiry, what is never stored, a paused or stopped Redis costing a
-- request at most the lookup deadline (one WARNING), bad URLs.  Each test
-- that stops Redis starts its own (tests/helper.lua start_redis).
local helper = require "tests.helper"
local http = pyq.http

-- The job both processes run: N distinct URLs through a queue.
local JOB = [[
local base, cache, n = ...
pyq.http.configure{ cache = cache }
local get = pyq.async(function(i) return #pyq.http.get(base .. "/counted-bytes/shared/" .. i).body end)
local q <close> = pyq.Queue{ workers = 8 }
for i = 1, tonumber(n) do q:put(get(i)) end
local sizes, total = q:join(), 0
for _, s in ipairs(sizes) do total = total + s end
local st = pyq.http.stats()
print(#sizes, total, st.cache_hits, st.cache_misses)
]]

describe("pyq.http's response cache on Redis", function()
  local redis, api, url
  setup(function()
    redis = helper.start_redis()
    api = helper.start_api()
    url = redis.url:gsub("/0$", "/1")
  end)
  teardown(function()
    http.configure{ cache = false }
    redis.stop()
    api.stop()
  end)
  after_each(function() http.configure{ cache = false } end)

  local function seen(key)
    return http.get(api.base .. "/seen/" .. key, { cache = false }):json().count
  end
  local function counted(key, n) return ("%s/counted-bytes/%s/%d"):format(api.base, key, n or 100) end
  -- the cache's keys in database 1 whose name contains s
  local function keys(s)
    local out = redis.cli("-n 1 --scan --pattern " .. helper.quote("pyq:cache:*" .. s .. "*"))
    return select(2, out:gsub("\n", ""))
  end

  it("answers a second process from what the first stored: nothing sent, counted in its stats", function()
    local first = helper.run{ script = JOB, args = { api.base, url, "200" } }
    assert.equal(0, first.code, first.err)
    local total = 200 * 201 / 2
    assert.equal(("200\t%d\t0\t200\n"):format(total), first.out)
    assert.equal(200, seen("shared"))
    local second = helper.run{ script = JOB, args = { api.base, url, "200" }, flags = { "--summary" } }
    assert.equal(0, second.code, second.err)
    assert.equal(("200\t%d\t200\t0\n"):format(total), second.out)
    assert.matches("http cache: 200 hits, 0 misses", second.err, 1, true)
    assert.equal(200, seen("shared"))   -- the second sent none
    assert.equal(200, keys("/counted-bytes/shared/"))
  end)

  it("is shared by the processes of a cluster job: a second run finds what the main and the worker stored", function()
    local job = [[
local url, base, n = ...
pyq.http.configure{ cache = url:gsub("/0$", "/1") }
local fetch = pyq.async("fetch_doc", function(i)
  pyq.sleep(0.03)   -- long enough for the worker, polling every 0.2 s, to take a share
  local res = pyq.http.get(base .. "/counted-bytes/cluster/" .. i)
  return { size = #res.body, cached = res.cached, worker = pyq.worker or false }
end)
if pyq.worker then return end
local q <close> = pyq.Queue{ workers = 4, cluster = url, name = "cached" }
for i = 1, tonumber(n) do q:put(fetch(i)) end
local by, hits, size = {}, 0, 0
for _, r in ipairs(q:join()) do
  by[r.worker] = (by[r.worker] or 0) + 1
  hits, size = hits + (r.cached and 1 or 0), size + r.size
end
print(by[true] or 0, by[false] or 0, hits, size)
]]
    local w = helper.spawn("--worker " .. redis.url, job, redis.url .. " " .. api.base .. " 0")
    local first = helper.run{ script = job, args = { redis.url, api.base, "100" } }
    assert.equal(0, first.code, first.err)
    assert.equal(0, (helper.wait_exit(w)))
    local by_worker, by_main, hits, size = first.out:match("^(%d+)\t(%d+)\t(%d+)\t(%d+)\n$")
    assert.is_true(tonumber(by_worker) > 0 and tonumber(by_main) > 0, first.out)
    assert.same({ "0", tostring(100 * 101 // 2) }, { hits, size })
    local second = helper.run{ script = job, args = { redis.url, api.base, "100" } }
    assert.equal(0, second.code, second.err)
    assert.equal(("0\t100\t100\t%d\n"):format(100 * 101 // 2), second.out)
    assert.equal(100, seen("cluster"))
  end)

  it("gives back a binary body byte for byte, with the status, headers, URL and HTTP version", function()
    local bytes = helper.start_bytes()
    http.configure{ cache = url }
    for _, n in ipairs({ 0, 251, 300000 }) do
      local a = http.get(bytes.url(n))
      local b = http.get(bytes.url(n))
      assert.same({ false, true }, { a.cached, b.cached })
      assert.equal(helper.byte_pattern(0, n), b.body)
      assert.same({ a.status, a.body, a.url, a.raw_headers, a.http_version, a.content_type },
                  { b.status, b.body, b.url, b.raw_headers, b.http_version, b.content_type })
    end
    local head = http.head(bytes.url(7))
    assert.same({ false, true, "" }, { head.cached, http.head(bytes.url(7)).cached, http.head(bytes.url(7)).body })
    bytes.stop()
  end)

  it("expires entries after cache_ttl, in Redis too; a request's longer cache_ttl keeps its entries that long", function()
    -- database 2: a store of its own, so no longer ttl configured before counts
    http.configure{ cache = redis.url:gsub("/0$", "/2"), cache_ttl = 0.3 }
    local function pttl_of(u)
      return tonumber(redis.cli("-n 2 pttl " .. helper.quote("pyq:cache:GET " .. u)))
    end
    -- (a hit means the store went through: the same connection, in order)
    http.get(counted("ttl"))
    assert.is_true(http.get(counted("ttl")).cached)
    local pttl = pttl_of(counted("ttl"))
    assert.is_true(pttl > 0 and pttl <= 300, tostring(pttl))
    assert.is_false(http.get(counted("ttl"), { cache_ttl = 0 }).cached)
    pyq.sleep(0.4)
    assert.is_false(http.get(counted("ttl")).cached)
    assert.equal(3, seen("ttl"))
    http.get(counted("long"), { cache_ttl = 60 })
    assert.is_true(http.get(counted("long"), { cache_ttl = 60 }).cached)
    pttl = pttl_of(counted("long"))
    assert.is_true(pttl > 55000 and pttl <= 60000, tostring(pttl))
    pyq.sleep(0.4)
    assert.is_false(http.get(counted("long")).cached)                      -- too old for 0.3 s
    assert.is_true(http.get(counted("long"), { cache_ttl = 60 }).cached)   -- young enough for 60 s
    assert.equal(2, seen("long"))
  end)

  it("keeps no answer to a request with credentials, nor one that sets a cookie, nor other statuses", function()
    http.configure{ cache = url }
    local function twice(u, opts)
      http.get(u, opts)
      return http.get(u, opts).cached
    end
    assert.is_false(twice(counted("cred-bearer"), { bearer = "alice-secret" }))
    assert.is_false(twice(counted("cred-auth"), { auth = { "u", "p" } }))
    assert.is_false(twice((counted("cred-user"):gsub("^http://", "http://alice:pw@"))))
    assert.is_false(twice(api.base .. "/headers"))   -- answers with Set-Cookie
    assert.is_false(twice(api.base .. "/status/500"))
    assert.is_true(twice(counted("cred-none")))
    assert.same({ 0, 0, 0, 0, 0, 1 }, { keys("cred-bearer"), keys("cred-auth"), keys("alice"), keys("/headers"),
                                        keys("/status/500"), keys("cred-none") })
    assert.equal(4, seen("cred-bearer") + seen("cred-auth"))
  end)

  -- Stores in flight when Redis stops answering: each fails at its
  -- deadline, and the redis layer says so once, not once per store.
  local INFLIGHT = [[
local base, cache, pid = ...
pyq.http.configure{ cache = cache }
local q <close> = pyq.Queue{ workers = 25 }
for i = 1, 25 do
  q:put(pyq.async(function() return pyq.http.get(base .. "/delay/0.5?inflight=" .. i).cached end)())
end
pyq.sleep(0.2)   -- the lookups (misses) are answered; the answers are not in yet
os.execute(("kill -STOP %s"):format(pid))
q:join()
pyq.sleep(1.5)   -- the stores' deadline
]]

  it("logs the stores lost with a Redis that stops answering once, not once per store", function()
    local r = helper.start_redis()
    local res = helper.run{ script = INFLIGHT, args = { api.base, r.url, tostring(r.pid) }, timeout = 30 }
    r.stop()
    assert.equal(0, res.code, res.err)
    local _, lines = res.err:gsub("WARNING redis: [^\n]*no reply within", "")
    assert.is_true(lines >= 1 and lines <= 2, res.err)
  end)

  -- A job that stores one answer, then makes Redis fail (how: "pause" or
  -- "stop") and sends 40 requests through a queue and 3 one after another.
  local DOWN = [[
local base, cache, how, pid = ...
pyq.http.configure{ cache = cache }
local function get(i) return pyq.http.get(base .. "/counted-bytes/down" .. how .. "/" .. i) end
assert(not get(1).cached)
assert(get(1).cached)
-- and waits until it is stopped or gone
os.execute(how == "pause" and ("kill -STOP %s; until ps -o state= -p %s | grep -q T; do sleep 0.01; done"):format(pid, pid)
  or ("kill %s; while kill -0 %s 2>/dev/null; do sleep 0.01; done"):format(pid, pid))
local t0 = pyq.now()
local q <close> = pyq.Queue{ workers = 8 }
for i = 1, 40 do q:put(pyq.async(function() return get(i).cached end)()) end
local cached = q:join()
for i = 1, 3 do cached[#cached + 1] = get(i).cached end
local n = 0
for _, c in ipairs(cached) do if c then n = n + 1 end end
print(#cached, n, pyq.now() - t0)
]]

  for _, how in ipairs({ "pause", "stop" }) do
    it("lets requests go on uncached within the lookup deadline when Redis is " .. how .. "ped (one WARNING)", function()
      local r = helper.start_redis()
      local res = helper.run{ script = DOWN, args = { api.base, r.url, how, tostring(r.pid) }, timeout = 30 }
      if how == "pause" then r.stop() end
      assert.equal(0, res.code, res.err)
      local n, hits, secs = res.out:match("^(%d+)\t(%d+)\t(%S+)\n$")
      assert.same({ "43", "0" }, { n, hits }, res.out)
      assert.is_true(tonumber(secs) < 1.8, secs)   -- the 1 s deadline (a 0.1 s tick) once, not per request
      local _, warnings = res.err:gsub("WARNING [^\n]*the response cache redis://[^\n]* could not be read "
        .. "%(the request goes on without it%)", "")
      assert.equal(1, warnings, res.err)
    end)
  end

  it("refuses a bad Redis URL naming the function and the option", function()
    local cases = {
      { http.configure, { cache = "redis://:6379/1" }, "pyq.http.configure: cache: bad Redis URL 'redis://:6379/1': it needs a host" },
      { http.session, { cache = "redis://127.0.0.1:99999/1" }, "pyq.http.session: cache: bad Redis URL 'redis://127.0.0.1:99999/1': it has a bad port" },
      { http.configure, { cache = "redis://127.0.0.1:6379/x" }, "cache: bad Redis URL 'redis://127.0.0.1:6379/x': it has a bad database number" },
      -- a value starting with redis: is a URL, never taken as a file's path
      { http.configure, { cache = "redis:/127.0.0.1/1" }, "cache: bad Redis URL 'redis:/127.0.0.1/1': it must start with redis://" },
      { http.configure, { cache = "redis://u@127.0.0.1/1" }, "cache: bad Redis URL 'redis://u@127.0.0.1/1': it has a user or password: Redis AUTH is not supported" },
      { http.configure, { cache = "redis://u:p@127.0.0.1:6379/1" }, "cache: bad Redis URL 'redis://u:p@127.0.0.1:6379/1': it has a user or password" },
      { http.configure, { cache = 5 }, "pyq.http.configure: cache must be the path of a SQLite file or false, or a redis://host:port/db URL, got 5" },
    }
    for _, c in ipairs(cases) do
      local e = helper.error_of(c[1], c[2])
      assert.is_true(pyq.is_error(e, "usage"), tostring(e))
      assert.matches(c[3], tostring(e), 1, true)
    end
  end)
end)
