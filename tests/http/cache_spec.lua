require "busted.runner"()
-- pyq.http's response cache (issue 11, part 2): hits and misses, TTL,
-- vary headers, bypass, statuses and methods not cached, no rate-limit
-- token on a hit, bad and corrupt files, two processes on one file, and a
-- re-run that replays from the cache with the server gone.
local helper = require "tests.helper"
local http = pyq.http

local caught = helper.error_of

describe("pyq.http's response cache", function()
  local api, dir, file
  setup(function() api = helper.start_api{} end)
  teardown(function() api.stop() end)
  before_each(function()
    dir = helper.tempdir()
    file = dir .. "/cache.sqlite"
  end)
  after_each(function()
    http.configure{ cache = false }
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  -- requests the API saw under key (sent with the cache bypassed)
  local function seen(key)
    return http.get(api.base .. "/seen/" .. key, { cache = false }):json().count
  end
  local function url(key, n) return ("%s/counted-bytes/%s/%d"):format(api.base, key, n or 100) end

  it("answers a repeated GET from the cache: nothing sent, res.cached, counted in stats", function()
    http.configure{ cache = file }
    local before = http.stats()
    local a = http.get(url("hit"))
    local b = http.get(url("hit"))
    assert.same({ false, true }, { a.cached, b.cached })
    assert.same({ a.status, a.body, a.url, a.raw_headers, a.http_version },
                { b.status, b.body, b.url, b.raw_headers, b.http_version })
    assert.equal("application/octet-stream", b.content_type)
    assert.equal(1, seen("hit"))
    local after = http.stats()
    assert.same({ 1, 1 }, { after.cache_hits - before.cache_hits, after.cache_misses - before.cache_misses })
    assert.equal(before.requests + 2, after.requests)   -- the miss and /seen, not the hit
  end)

  it("keys by method and normalized URL: host case and default port do not matter, the query does", function()
    http.configure{ cache = file }
    local port = api.port
    http.get(("http://127.0.0.1:%d/counted-bytes/norm/5?a=1"):format(port))
    assert.is_true(http.get(("HTTP://127.0.0.1:%d/counted-bytes/norm/5?a=1#frag"):format(port)).cached)
    assert.is_false(http.get(("http://127.0.0.1:%d/counted-bytes/norm/5?a=2"):format(port)).cached)
    assert.is_true(http.get(("http://127.0.0.1:%d/counted-bytes/norm/5"):format(port), { query = { a = 2 } }).cached)
    local head = http.head(url("norm-h", 7))
    assert.is_false(head.cached)
    assert.is_false(http.get(url("norm-h", 7)).cached)   -- GET is not HEAD
    assert.is_true(http.head(url("norm-h", 7)).cached)
  end)

  it("expires entries after cache_ttl; a request's cache_ttl overrides", function()
    http.configure{ cache = file, cache_ttl = 0.3 }
    http.get(url("ttl"))
    assert.is_true(http.get(url("ttl")).cached)
    assert.is_false(http.get(url("ttl"), { cache_ttl = 0 }).cached)
    pyq.sleep(0.4)
    assert.is_false(http.get(url("ttl")).cached)
    assert.is_true(http.get(url("ttl"), { cache_ttl = 60 }).cached)
    assert.equal(3, seen("ttl"))
  end)

  it("keeps apart requests that differ in a cache_vary header", function()
    http.configure{ cache = file, cache_vary = { "Accept-Language" } }
    local function get(lang) return http.get(url("vary"), { headers = { ["accept-language"] = lang } }).cached end
    assert.same({ false, true, false, true }, { get("en"), get("en"), get("fr"), get("fr") })
    assert.is_false(http.get(url("vary")).cached)   -- sent without it: another entry
    assert.is_true(http.get(url("vary"), { headers = { ["ACCEPT-LANGUAGE"] = "en" } }).cached)
  end)

  it("is bypassed by cache = false, and does not cache POST, other statuses, downloads", function()
    http.configure{ cache = file }
    http.get(url("bypass"))
    assert.is_false(http.get(url("bypass"), { cache = false }).cached)
    assert.equal(2, seen("bypass"))
    http.post(api.base .. "/echo", { body = "x" })
    assert.is_false(http.post(api.base .. "/echo", { body = "x" }).cached)
    http.get(api.base .. "/status/500")
    assert.is_false(http.get(api.base .. "/status/500").cached)
    http.get(api.base .. "/status/404")
    assert.is_true(http.get(api.base .. "/status/404").cached)   -- 404 is in the default list
    http.configure{ cache_statuses = { 200 } }
    http.get(api.base .. "/status/410")
    assert.is_false(http.get(api.base .. "/status/410").cached)
    local res = http.get(url("dl"), { output = dir .. "/dl.bin" })
    assert.same({ false, 100 }, { res.cached, res.size })
    assert.is_false(http.get(url("dl"), { output = dir .. "/dl2.bin" }).cached)
  end)

  it("keeps no answer to a request with credentials, nor one that sets a cookie", function()
    http.configure{ cache = file }
    local function twice(u, opts)
      http.get(u, opts)
      return http.get(u, opts).cached
    end
    assert.is_false(twice(url("cred-auth"), { auth = { "u", "p" } }))
    assert.is_false(twice(url("cred-bearer"), { bearer = "alice-secret" }))
    assert.is_false(twice(url("cred-header"), { headers = { ["X-Api-Key"] = "k" } }))
    assert.is_false(twice((url("cred-user"):gsub("^http://", "http://alice:pw@"))))
    local jar <close> = http.session{ cookies = true }
    jar:get(url("cred-jar"))
    assert.is_false(jar:get(url("cred-jar")).cached)
    assert.is_false(twice(api.base .. "/headers"))   -- answers with Set-Cookie
    assert.is_true(twice(url("cred-none")))
    local db <close> = pyq.sqlite.open(file)
    assert.is_nil(db:one("SELECT key FROM responses WHERE url LIKE '%alice%' OR key LIKE '%cred-auth%'"))
  end)

  it("keys how redirects are followed", function()
    http.configure{ cache = file }
    local u = api.base .. "/redirect-status/301?url=/counted-bytes/redir/9"   -- 301 is cached
    assert.equal(301, http.get(u, { follow_redirects = false }).status)
    local followed = http.get(u)
    assert.same({ 200, false }, { followed.status, followed.cached })
    assert.same({ 301, true }, { http.get(u, { follow_redirects = false }).status,
                                 http.get(u, { follow_redirects = false }).cached })
    assert.same({ 200, true }, { http.get(u).status, http.get(u).cached })
  end)

  it("treats a cache another process holds locked as a miss, not an error", function()
    http.configure{ cache = file }
    http.get(url("locked"))
    os.execute(("python3 -c 'import sqlite3, time; c = sqlite3.connect(%q, isolation_level=None); "
      .. "c.execute(\"BEGIN EXCLUSIVE\"); open(%q, \"w\").close(); time.sleep(3)' &"):format(file, dir .. "/held"))
    for _ = 1, 200 do
      if io.open(dir .. "/held") then break end
      pyq.sleep(0.02)
    end
    local t0 = pyq.now()
    local res = http.get(url("locked2"))
    assert.equal(200, res.status)
    assert.is_false(res.cached)
    assert.is_true(pyq.now() - t0 < 2)
    pyq.sleep(3.2)   -- the holder is gone: the cache works again
    http.get(url("locked3"))
    assert.is_true(http.get(url("locked3")).cached)
  end)

  it("takes no rate-limit slot on a hit", function()
    http.configure{ cache = file }
    http.get(url("limit"))
    http.limit("127.0.0.1:" .. api.port, "1/10s")
    local t0 = pyq.now()
    local ok, res = pcall(function()
      return { http.get(url("limit")).cached, http.get(url("limit")).cached }
    end)
    http.limit("127.0.0.1:" .. api.port, nil)
    assert(ok, res)
    assert.same({ true, true }, res)
    assert.is_true(pyq.now() - t0 < 1)
  end)

  it("is a session's own when the session names one", function()
    local s <close> = http.session{ cache = file, cache_ttl = 60 }
    s:get(url("session"))
    assert.is_true(s:get(url("session")).cached)
    assert.is_false(http.get(url("session")).cached)   -- plain requests have none
    http.configure{ cache = dir .. "/other.sqlite" }
    local t <close> = http.session{}
    t:get(url("session2"))
    assert.is_true(t:get(url("session2")).cached)     -- configure's, inherited
    assert.is_true(s:get(url("session")).cached)
  end)

  it("refuses bad options naming the function and option", function()
    local cases = {
      { http.configure, { cache = 5 }, "pyq.http.configure: cache must be the path of a SQLite file or false" },
      { http.configure, { cache = "" }, "cache must be the path" },
      { http.configure, { cache_ttl = 5 }, "need cache = \"file.sqlite\"" },
      { http.configure, { cache = file, cache_ttl = -1 }, "cache_ttl must be a non-negative number" },
      { http.configure, { cache = file, cache_statuses = { 700 } }, "cache_statuses must be a list of HTTP statuses" },
      { http.configure, { cache = file, cache_statuses = { "200" } }, "cache_statuses must be a list of HTTP statuses" },
      { http.configure, { cache = file, cache_vary = { 1 } }, "cache_vary must be a list of non-empty strings" },
      { http.session, { cache = true }, "pyq.http.session: cache must be the path" },
      { http.get, api.base .. "/echo", "cache must be a boolean", { cache = "yes" } },
    }
    for _, c in ipairs(cases) do
      local e = c[4] and caught(c[1], c[2], c[4]) or caught(c[1], c[2])
      assert.is_true(pyq.is_error(e, "usage"), tostring(e))
      assert.matches(c[3], tostring(e), 1, true)
    end
  end)

  it("says clearly when the file cannot be a cache (a folder that does not exist, a file that is not SQLite)", function()
    local e = caught(http.configure, { cache = dir .. "/no/such/dir/c.sqlite" })
    assert.matches("pyq.http.configure: cache: cannot use '" .. dir .. "/no/such/dir/c.sqlite' as a response cache", tostring(e), 1, true)
    local f = assert(io.open(dir .. "/junk.sqlite", "wb"))
    f:write(string.rep("this is not a database\n", 500))
    f:close()
    e = caught(http.configure, { cache = dir .. "/junk.sqlite" })
    assert.matches("as a response cache", tostring(e), 1, true)
    assert.matches("not a database", tostring(e), 1, true)
  end)

  it("replays a finished job from the cache in a new run, without the server", function()
    local job = [[
      local base, cache, n = ...
      pyq.http.configure{ cache = cache }
      local get = pyq.async(function(i) return #pyq.http.get(base .. "/counted-bytes/replay" .. i .. "/64").body end)
      local q <close> = pyq.Queue{ workers = 8 }
      for i = 1, tonumber(n) do q:put(get(i)) end
      local sizes = q:join()
      local st = pyq.http.stats()
      print(#sizes, st.cache_hits, st.cache_misses)
    ]]
    local other = helper.start_api{}
    local r = helper.run{ script = job, args = { other.base, file, "50" } }
    assert.equal(0, r.code, r.err)
    assert.equal("50\t0\t50\n", r.out)
    other.stop()
    r = helper.run{ script = job, args = { other.base, file, "50" }, flags = { "--summary" } }
    assert.equal(0, r.code, r.err)
    assert.equal("50\t50\t0\n", r.out)
    assert.matches("http cache: 50 hits, 0 misses", r.err, 1, true)
  end)

  it("is shared by two processes writing the same file at once", function()
    local job = [[
      local base, cache, tag = ...
      pyq.http.configure{ cache = cache }
      local get = pyq.async(function(i) return pyq.http.get(base .. "/counted-bytes/" .. tag .. i .. "/32").status end)
      local q <close> = pyq.Queue{ workers = 8 }
      for i = 1, 300 do q:put(get(i)) end
      print(#q:join())
    ]]
    local a = helper.spawn("", job, table.concat({ api.base, file, "pa" }, " "))
    local b = helper.spawn("", job, table.concat({ api.base, file, "pb" }, " "))
    local ca, oa, ea = helper.wait_exit(a)
    local cb, ob, eb = helper.wait_exit(b)
    assert.same({ 0, "300\n", 0, "300\n" }, { ca, oa, cb, ob }, ea .. eb)
    local db <close> = pyq.sqlite.open(file)
    assert.equal(600, db:one("SELECT count(*) AS n FROM responses").n)
    assert.equal("ok", db:one("PRAGMA integrity_check").integrity_check)
  end)
end)
