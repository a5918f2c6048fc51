-- pyq.http.session: a session owns the defaults of its requests (user
-- agent, HTTP version, names to mask, the retry plan), checked against
-- its option table; the plain pyq.http functions are the default session.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http

local caught = helper.error_of   -- the error value f(...) raises

describe("pyq.http.session", function()
  local api, base
  setup(function() api = helper.start_api{} base = api.base end)
  teardown(function() api.stop() end)
  -- an echo that answers after 0.3 s (a redirect that waits first)
  local slow
  before_each(function() slow = { query = { delay = 0.3, url = base .. "/echo" } } end)

  it("sends its own user agent; the plain functions keep theirs", function()
    local s <close> = http.session{ user_agent = "session-a/1" }
    local t <close> = http.session{ user_agent = "session-b/1" }
    assert.equal("session-a/1", s:get(base .. "/echo"):json().headers["user-agent"])
    assert.equal("session-b/1", t:request{ url = base .. "/echo" }:json().headers["user-agent"])
    assert.matches("^pyqhost/", http.get(base .. "/echo"):json().headers["user-agent"])
    assert.equal("session-a/1", s:post(base .. "/echo", { json = { a = 1 } }):json().headers["user-agent"])
  end)

  it("starts from http.configure's settings and keeps its own after", function()
    http.configure{ user_agent = "configured/1" }
    local s <close> = http.session{}
    http.configure{ user_agent = "configured/2" }
    local ua = s:get(base .. "/echo"):json().headers["user-agent"]
    local plain = http.get(base .. "/echo"):json().headers["user-agent"]
    http.configure{ user_agent = "pyqhost-test" }
    assert.equal("configured/1", ua)
    assert.equal("configured/2", plain)
  end)

  it("has its own retry plan", function()
    local s <close> = http.session{ retries = 2, backoff = 0.01 }
    local res = s:get(base .. "/flaky/session-plan/1")
    assert.same({ 200, 1 }, { res.status, res.retries })
    assert.equal(503, http.get(base .. "/flaky/session-plain/1").status)
  end)

  it("masks its sensitive names in errors", function()
    local s <close> = http.session{ sensitive_query = { "who" } }
    local port = helper.closed_port()
    local e = caught(s.get, s, "http://127.0.0.1:" .. port .. "/x?who=SECRET")
    assert.is_true(pyq.is_error(e, "transport"))
    assert.not_matches("SECRET", tostring(e), 1, true)
    e = caught(http.get, "http://127.0.0.1:" .. port .. "/x?who=VISIBLE")
    assert.matches("VISIBLE", tostring(e), 1, true)
  end)

  it("refuses requests once closed, and lets those in flight finish", function()
    local s = http.session{ user_agent = "closing/1" }
    local get = pyq.async(function() return s:get(base .. "/redirect-status/302", slow):json().headers["user-agent"] end)
    local q <close> = pyq.Queue{ workers = 2 }
    q:put(get())
    pyq.sleep(0.1)
    s:close()
    s:close()
    assert.same({ "closing/1" }, q:join())
    local e = caught(s.get, s, base .. "/echo")
    assert.is_true(pyq.is_error(e, "usage"))
    assert.matches("pyq.http.session:get: the session is closed", tostring(e), 1, true)
    assert.equal("pyq.http.session (closed)", tostring(s))
  end)

  it("survives the collector while its request is in flight", function()
    local get = pyq.async(function()
      return http.session{ user_agent = "collected/1" }:get(base .. "/redirect-status/302", slow):json().headers["user-agent"]
    end)
    local q <close> = pyq.Queue{ workers = 1 }
    q:put(get())
    pyq.sleep(0.05)
    collectgarbage()
    collectgarbage()
    assert.same({ "collected/1" }, q:join())
  end)

  it("refuses bad options by name, and methods called without ':'", function()
    local cases = {
      { { max_connections = 5 }, "pyq.http.session: unknown option 'max_connections'" },
      { { user_agent = "a\r\nb" }, "pyq.http.session: user_agent must be a string without CR or LF" },
      { { retries = -1 }, "pyq.http.session: retries must be a non-negative integer, got -1" },
      { { sensitive_query = { "" } }, "pyq.http.session: sensitive_query must be a list of non-empty strings" },
      { 5, "pyq.http.session: expected a table of options, got number" },
    }
    for _, c in ipairs(cases) do
      local e = caught(http.session, c[1])
      assert.is_true(pyq.is_error(e, "usage"))
      assert.matches(c[2], tostring(e), 1, true)
    end
    local s <close> = http.session()
    local e = caught(s.get, base .. "/echo")
    assert.matches("pyq.http.session:get: expected a pyq.http.session as self", tostring(e), 1, true)
    e = caught(s.get, s, base .. "/echo", { tiemout = 1 })
    assert.matches("pyq.http.session:get: unknown option 'tiemout'", tostring(e), 1, true)
  end)
end)

describe("pyq.http.session defaults", function()
  local api, other
  setup(function() api, other = helper.start_api{}, helper.start_api{} end)
  teardown(function() api.stop() other.stop() end)

  it("resolves relative URLs against base_url (RFC 3986), a '/' added to its path", function()
    local cases = {
      { "/v1", "users", "/v1/users" },
      { "/v1/", "users?x=1", "/v1/users" },
      { "/v1", "/echo", "/echo" },             -- from the host's root
      { "/a/b", "../c", "/a/c" },
      { "/v1?k=1", "u", "/v1/u" },             -- base_url's query is not kept
      { "", "echo", "/echo" },
    }
    for _, c in ipairs(cases) do
      local s <close> = http.session{ base_url = api.base .. c[1] }
      assert.equal(c[3], s:get(c[2]):json().path, c[1] .. " + " .. c[2])
    end
    local s <close> = http.session{ base_url = api.base .. "/v1" }
    assert.equal("/v1/x", s:request{ url = "x" }:json().path)
    assert.equal(api.base .. "/v1/x", s:request{ url = "x" }.url)
    -- an absolute URL ignores base_url
    assert.equal(other.base .. "/echo", s:get(other.base .. "/echo").url)
    -- no base_url: a relative URL is refused as before
    local plain <close> = http.session{}
    local e = caught(plain.get, plain, "echo")
    assert.matches("pyq.http.session:get: url 'echo' has no scheme", tostring(e), 1, true)
  end)

  it("merges headers by name case-insensitively and the query by name, the call's winning", function()
    local s <close> = http.session{ base_url = api.base, headers = { ["X-A"] = "a", ["x-b"] = "b" },
                                    query = { q = 1, keep = "k" }, timeout = 5 }
    local echo = s:get("echo", { headers = { ["X-B"] = "B", ["X-C"] = "c" }, query = { q = 2, r = 3 } }):json()
    assert.equal("a", echo.headers["x-a"])
    assert.equal("B", echo.headers["x-b"])
    assert.equal("c", echo.headers["x-c"])
    assert.same({ q = "2", r = "3", keep = "k" }, echo.args)
    echo = s:get("echo"):json()   -- the defaults alone, unchanged by the call before
    assert.equal("b", echo.headers["x-b"])
    assert.same({ q = "1", keep = "k" }, echo.args)
    -- a timeout default applies, and a call's overrides it
    local e = caught(s.get, s, "delay/2", { timeout = 0.2 })
    assert.is_true(pyq.is_error(e, "timeout"))
    local short <close> = http.session{ base_url = api.base, timeout = 0.2 }
    assert.is_true(pyq.is_error(caught(short.get, short, "delay/2"), "timeout"))
    assert.equal(200, short:get("delay/0.3", { timeout = 5 }).status)
  end)

  it("sends its auth or bearer; a call's auth, bearer or Authorization header replaces it", function()
    local function authz(s, opts) return s:get(api.base .. "/echo", opts):json().headers.authorization end
    local b <close> = http.session{ bearer = "S" }
    assert.equal("Bearer S", authz(b))
    assert.equal("Basic dTpw", authz(b, { auth = { "u", "p" } }))
    assert.equal("Bearer C", authz(b, { bearer = "C" }))
    assert.equal("Token C", authz(b, { headers = { authorization = "Token C" } }))
    local a <close> = http.session{ auth = { "u", "p" } }
    assert.equal("Basic dTpw", authz(a))
    assert.equal("Bearer C", authz(a, { bearer = "C" }))
    assert.equal("Token C", authz(a, { headers = { Authorization = "Token C" } }))
    local h <close> = http.session{ headers = { Authorization = "Token S" } }
    assert.equal("Token S", authz(h))
    assert.equal("Bearer C", authz(h, { bearer = "C" }))
    assert.equal("Basic dTpw", authz(h, { auth = { "u", "p" } }))
    -- and the call's own conflicts are still refused
    local e = caught(b.get, b, api.base .. "/echo", { bearer = "C", headers = { authorization = "x" } })
    assert.matches("give bearer or an Authorization header, not both", tostring(e), 1, true)
  end)

  it("refuses bad defaults when it is made, naming pyq.http.session and the option", function()
    local cases = {
      { { base_url = "ftp://h/" }, "pyq.http.session: base_url 'ftp://h/' is not http or https" },
      { { base_url = "nope" }, "pyq.http.session: bad base_url 'nope'" },
      { { base_url = 5 }, "pyq.http.session: base_url must be a string without CR or LF" },
      { { cookies = 5 }, "pyq.http.session: cookies must be true (a jar in memory) or the path of a cookie file, got 5" },
      { { cookies = "" }, "pyq.http.session: cookies must be true" },
      { { headers = { ["a b"] = "x" } }, "pyq.http.session: header 'a b' has a bad name" },
      { { headers = "x" }, "pyq.http.session: headers must be a table, got string" },
      { { query = { "x" } }, "pyq.http.session: query names must be strings, got number" },
      { { auth = "u:p" }, "pyq.http.session: auth must be a table { user, password" },
      { { auth = { "u:x", "p" } }, "pyq.http.session: auth: a basic auth user cannot contain ':'" },
      { { auth = { "u", "p" }, bearer = "t" }, "pyq.http.session: give auth or bearer, not both" },
      { { bearer = "t", headers = { Authorization = "x" } },
        "pyq.http.session: give bearer or an Authorization header, not both" },
      { { bearer = "a\nb" }, "pyq.http.session: bearer must be a string without CR or LF" },
      { { timeout = -1 }, "pyq.http.session: timeout must be a number of seconds from 0 to 1e+09, got -1" },
      { { attempt_timeout = 0 }, "pyq.http.session: attempt_timeout must be greater than 0" },
      { { max_body = 1.5 }, "pyq.http.session: max_body must be a non-negative integer, got 1.5" },
      { { follow_redirects = "yes" }, "pyq.http.session: follow_redirects must be a boolean, got string" },
      { { form = { a = 1 } }, "pyq.http.session: unknown option 'form'" },
      { { json = {} }, "pyq.http.session: unknown option 'json'" },
      { { url = "http://h/" }, "pyq.http.session: unknown option 'url'" },
    }
    for _, c in ipairs(cases) do
      local e = caught(http.session, c[1])
      assert.is_true(pyq.is_error(e, "usage"), tostring(e))
      assert.matches(c[2], tostring(e), 1, true)
    end
  end)
end)

describe("pyq.http.session cookies", function()
  local hb, api
  setup(function()
    hb, api = helper.start_httpbin(), helper.start_api{}
    http.get(hb.base .. "/get", { timeout = 20 })   -- the worker has booted
  end)
  teardown(function() hb.stop() api.stop() end)

  local function cookies_seen(get) return get("/cookies"):json().cookies end

  it("keeps the cookies a redirect sets, and sends them on", function()
    local s <close> = http.session{ cookies = true, base_url = hb.base }
    local res = s:get("/cookies/set?a=1&b=two")
    assert.equal(hb.base .. "/cookies", res.url)
    assert.same({ a = "1", b = "two" }, res:json().cookies)
    assert.same({ a = "1", b = "two" }, cookies_seen(function(p) return s:get(p) end))
    local list = s:cookies()
    table.sort(list, function(x, y) return x.name < y.name end)
    assert.same({
      { name = "a", value = "1", domain = "127.0.0.1", path = "/", secure = false, http_only = false, expires = 0 },
      { name = "b", value = "two", domain = "127.0.0.1", path = "/", secure = false, http_only = false, expires = 0 },
    }, list)
    s:get("/cookies/delete?a")
    assert.same({ b = "two" }, cookies_seen(function(p) return s:get(p) end))
    assert.equal(1, #s:cookies())
  end)

  it("never shares a cookie with another session or the plain functions", function()
    local a <close> = http.session{ cookies = true, base_url = hb.base }
    local b <close> = http.session{ cookies = true, base_url = hb.base }
    local none <close> = http.session{ base_url = hb.base }
    a:get("/cookies/set?who=a")
    b:get("/cookies/set?who=b")
    assert.same({ who = "a" }, cookies_seen(function(p) return a:get(p) end))
    assert.same({ who = "b" }, cookies_seen(function(p) return b:get(p) end))
    assert.same({}, cookies_seen(function(p) return none:get(p) end))
    assert.same({}, cookies_seen(function(p) return http.get(hb.base .. p) end))
    -- a cookie the plain functions were sent is not kept either
    assert.same({}, http.get(hb.base .. "/cookies/set?plain=1"):json().cookies)
    assert.same({ who = "a" }, cookies_seen(function(p) return a:get(p) end))
    -- many requests at once: each session's handles stay its own
    local q <close> = pyq.Queue{ workers = 6 }
    local get = pyq.async(function(s, want)
      assert.same({ who = want }, s:get("/cookies"):json().cookies)
    end)
    for _ = 1, 4 do
      q:put(get(a, "a"))
      q:put(get(b, "b"))
    end
    q:join()
  end)

  it("loads a cookie file when made and saves it when it ends", function()
    local file = helper.tempdir() .. "/jar.txt"
    do
      local s <close> = http.session{ cookies = file, base_url = hb.base }
      s:get("/cookies/set?k=v&k2=v2")
      assert.equal("", helper.read_file(file))   -- not before the end
    end
    local text = helper.read_file(file)
    assert.matches("# Netscape HTTP Cookie File", text, 1, true)
    assert.matches("\tk\tv\n", text, 1, true)
    local t <close> = http.session{ cookies = file, base_url = hb.base }
    assert.same({ k = "v", k2 = "v2" }, cookies_seen(function(p) return t:get(p) end))
    t:get("/cookies/delete?k")
    t:close()
    assert.not_matches("\tk\tv\n", helper.read_file(file), 1, true)
    assert.matches("\tk2\tv2\n", helper.read_file(file), 1, true)
    -- the collector saves too; a missing file is an empty jar
    local fresh = file .. ".new"
    local g = http.session{ cookies = fresh, base_url = hb.base }
    g:get("/cookies/set?gc=1")
    g = nil   -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.matches("\tgc\t1\n", helper.read_file(fresh), 1, true)
  end)

  it("saves the cookie file of a session still open when the job ends", function()
    local file = helper.tempdir() .. "/jar.txt"
    local r = helper.run{ script = ([[
      S = pyq.http.session{ cookies = %q, base_url = %q }
      S:get("/cookies/set?end=1")
    ]]):format(file, hb.base) }
    assert.equal(0, r.code, r.err)
    assert.matches("\tend\t1\n", helper.read_file(file), 1, true)
  end)

  it("refuses a cookie file it could not save, and cookies() without a jar", function()
    local e = caught(http.session, { cookies = "/nonexistent/dir/jar.txt" })
    assert.is_true(pyq.is_error(e, "usage"))
    assert.matches("pyq.http.session: cookies: cannot write '/nonexistent/dir/jar.txt'", tostring(e), 1, true)
    local s <close> = http.session{}
    e = caught(s.cookies, s)
    assert.matches("pyq.http.session:cookies: the session keeps no cookies", tostring(e), 1, true)
    local c = http.session{ cookies = true }
    c:close()
    e = caught(c.cookies, c)
    assert.matches("pyq.http.session:cookies: the session is closed", tostring(e), 1, true)
    e = caught(c.cookies, {})
    assert.matches("pyq.http.session:cookies: expected a pyq.http.session as self", tostring(e), 1, true)
  end)
end)
