-- pyq.http's request options of issue 10: auth (basic, digest), bearer,
-- form, multipart, proxy (option, session, configure, the environment's),
-- http_version; against httpbin, the forward proxy and the fixture API the
-- spec starts.  Proxy variables go to a child pyqhost only: this process's
-- environment is never changed.
require "busted.runner"()
local helper = require "tests.helper"
local http = pyq.http

local caught = helper.error_of   -- the error value f(...) raises

local function enc(s) return pyq.url.encode(s) end

-- Every call refuses its input as a "usage" error whose text holds want.
local function refused(want, f, ...)
  local e = caught(f, ...)
  assert.is_true(pyq.is_error(e, "usage"), tostring(e))
  assert.matches(want, tostring(e), 1, true)
end

describe("auth and bearer", function()
  local hb, a, b
  setup(function()
    hb = helper.start_httpbin()
    a, b = helper.start_api(), helper.start_api()
    http.get(hb.base .. "/get", { timeout = 20 })   -- the worker has booted
  end)
  teardown(function() hb.stop() a.stop() b.stop() end)

  it("answers basic auth with auth = { user, password }", function()
    local url = hb.base .. "/basic-auth/user/passwd"
    assert.equal(401, http.get(url).status)
    local res = http.get(url, { auth = { "user", "passwd" } })
    assert.equal(200, res.status)
    assert.same({ authenticated = true, user = "user" }, res:json())
    assert.equal(401, http.get(url, { auth = { "user", "wrong" } }).status)
    -- the header libcurl wrote: base64 of user:password
    local echo = http.get(a.base .. "/echo", { auth = { "u", "p:w" } }):json()
    assert.equal("Basic dTpwOnc=", echo.headers.authorization)
  end)

  it("answers a digest challenge with type = \"digest\"", function()
    local url = hb.base .. "/digest-auth/auth/user/passwd"
    local res = http.get(url, { auth = { "user", "passwd", type = "digest" } })
    assert.equal(200, res.status)
    assert.same({ authenticated = true, user = "user" }, res:json())
    assert.equal(401, http.get(url, { auth = { "user", "nope", type = "digest" } }).status)
    -- basic answers to a digest challenge do not pass
    assert.equal(401, http.get(url, { auth = { "user", "passwd" } }).status)
  end)

  it("sends Authorization: Bearer for bearer", function()
    local res = http.get(hb.base .. "/bearer", { bearer = "tok-123" })
    assert.same({ authenticated = true, token = "tok-123" }, res:json())
    assert.equal(401, http.get(hb.base .. "/bearer").status)
  end)

  it("keeps credentials on the same origin and drops them on another", function()
    local function via(target, opts)
      return http.get(a.base .. "/redirect-status/302?url=" .. enc(target), opts):json()
    end
    assert.equal("Basic dTpw", via("/echo", { auth = { "u", "p" } }).headers.authorization)
    assert.equal("Bearer B", via(a.base .. "/echo", { bearer = "B" }).headers.authorization)
    for _, opts in ipairs { { auth = { "u", "p" } }, { bearer = "B" },
                            { auth = { "u", "p", type = "digest" } } } do
      local echo = via(b.base .. "/echo", opts)
      assert.equal("/echo", echo.path)
      assert.is_nil(echo.headers.authorization)
    end
    -- and on a redirect back to the first origin they stay dropped
    local back = b.base .. "/redirect-status/302?url=" .. enc(a.base .. "/echo")
    assert.is_nil(via(back, { auth = { "u", "p" } }).headers.authorization)
  end)

  it("hides auth and bearer from DEBUG logs", function()
    local r = helper.run{ flags = { "-vv" }, script = ([[
      pyq.http.get(%q, { bearer = "BEARER-SECRET" })
      pyq.http.get(%q, { auth = { "user", "PASS-SECRET" } })
    ]]):format(a.base .. "/echo", a.base .. "/echo") }
    assert.equal(0, r.code, r.err)
    assert.matches("Authorization: ***", r.err, 1, true)
    assert.not_matches("SECRET", r.err, 1, true)
  end)

  it("refuses bad auth and bearer by name", function()
    local u = a.base .. "/echo"
    refused("pyq.http.get: auth must be a table { user, password", http.get, u, { auth = "u:p" })
    refused("pyq.http.get: auth must be { user, password } (two strings without NUL), got string and nil",
            http.get, u, { auth = { "u" } })
    refused("pyq.http.get: auth must be { user, password }", http.get, u, { auth = { "u", "p\0" } })
    refused('pyq.http.post: auth.type must be "basic" or "digest", got ntlm',
            http.post, u, { auth = { "u", "p", type = "ntlm" } })
    refused("pyq.http.get: auth: a basic auth user cannot contain ':'", http.get, u, { auth = { "u:x", "p" } })
    refused("pyq.http.get: bearer must be a string without CR or LF", http.get, u, { bearer = "a\r\nX-Evil: 1" })
    refused("pyq.http.get: bearer must be a string without CR or LF", http.get, u, { bearer = 5 })
    refused("pyq.http.get: give auth or bearer, not both", http.get, u, { auth = { "u", "p" }, bearer = "t" })
    refused("pyq.http.get: give bearer or an Authorization header, not both", http.get, u,
            { bearer = "t", headers = { authorization = "x" } })
    -- a user with ':' is fine for digest, which sends it quoted
    assert.equal(200, http.get(u, { auth = { "u:x", "p", type = "digest" } }).status)
  end)
end)

describe("request bodies", function()
  local hb, api
  setup(function()
    hb = helper.start_httpbin()
    api = helper.start_api()
    http.get(hb.base .. "/get", { timeout = 20 })
  end)
  teardown(function() hb.stop() api.stop() end)

  it("URL-encodes form, names sorted, lists repeated, as a POST", function()
    local res = http.request{ url = api.base .. "/echo", form = { z = "a b&c=d", k = { "1", 2, true }, e = "é" } }
    local echo = res:json()
    assert.equal("POST", echo.method)
    assert.equal("application/x-www-form-urlencoded", echo.headers["content-type"])
    assert.equal("e=%C3%A9&k=1&k=2&k=true&z=a+b%26c%3Dd", echo.body)
    local doc = http.post(hb.base .. "/post", { form = { name = "a b&c", k = { "1", "2" } } }):json()
    assert.equal("a b&c", doc.form.name)
    assert.same({ "1", "2" }, doc.form.k)
    -- a Content-Type of the caller's stays; PUT keeps its method
    echo = http.put(api.base .. "/echo", { form = { a = 1 },
                                           headers = { ["content-type"] = "text/x-mine" } }):json()
    assert.equal("PUT", echo.method)
    assert.equal("text/x-mine", echo.headers["content-type"])
    assert.equal("a=1", echo.body)
  end)

  it("sends multipart fields, a file from disk and binary data", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local binary = table.concat(bytes):rep(40)   -- 10 KiB, every byte value
    local path = helper.tempfile(binary, ".bin")
    local doc = http.post(hb.base .. "/post", { multipart = {
      field = "value", n = 42,
      file = { path = path, filename = "x.bin", type = "application/octet-stream" },
      blob = { data = "\0\1\2\255", filename = "b.bin" },
    } }):json()
    assert.same({ field = "value", n = "42" }, doc.form)
    assert.equal(1, doc.headers["Content-Type"]:find("multipart/form-data; boundary=", 1, true))
    -- httpbin shows binary file parts as data: URLs, text ones as text
    local function decoded(s)
      local b64 = s:match("^data:application/octet%-stream;base64,(.*)$")
      assert.is_string(b64, s:sub(1, 60))
      return (helper.shell("printf %s " .. helper.quote(b64) .. " | base64 -d"))
    end
    assert.equal(binary, decoded(doc.files.file))
    assert.equal("\0\1\2\255", decoded(doc.files.blob))
    os.remove(path)
  end)

  it("sends a file part's filename and type as given", function()
    local path = helper.tempfile("a,b\n1,2\n", ".csv")
    local r = http.post(api.base .. "/echo", { multipart = {
      f = { path = path, filename = "rows.csv", type = "text/csv" },
      g = { data = "inline" },
    } }):json()
    assert.matches('name="f"; filename="rows.csv"\r\nContent-Type: text/csv\r\n\r\na,b\n1,2\n', r.body, 1, true)
    assert.matches('name="g"\r\n\r\ninline\r\n', r.body, 1, true)
    os.remove(path)
  end)

  it("refuses more than one body, and bad form and multipart input, before sending", function()
    local u = api.base .. "/echo"
    local before = http.stats().requests
    refused("pyq.http.post: give one of body, json, form or multipart, not both json and form",
            http.post, u, { json = {}, form = { a = 1 } })
    refused("pyq.http.post: give one of body, json, form or multipart, not both body and multipart",
            http.post, u, { body = "", multipart = {} })
    refused("pyq.http.post: give one of body, json, form or multipart, not both body and form",
            http.post, u, { body = "x", form = {} })
    refused("pyq.http.post: form must be a table, got string", http.post, u, { form = "a=1" })
    refused("pyq.http.post: form names must be strings, got number", http.post, u, { form = { "a" } })
    refused("pyq.http.post: form value for 'a' must be a string, number or boolean, got function",
            http.post, u, { form = { a = print } })
    refused("pyq.http.post: form value for 'a' contains a NUL byte", http.post, u, { form = { a = "x\0" } })
    refused("pyq.http.post: multipart must be a table, got string", http.post, u, { multipart = "x" })
    refused("pyq.http.post: multipart field 'f': cannot read '/nonexistent/x': No such file or directory",
            http.post, u, { multipart = { f = { path = "/nonexistent/x" } } })
    refused("pyq.http.post: multipart field 'f': '" .. helper.tmpdir .. "' is not a regular file",
            http.post, u, { multipart = { f = { path = helper.tmpdir } } })
    refused("pyq.http.post: multipart field 'f' needs one of path (a file to send) or data (a string)",
            http.post, u, { multipart = { f = { filename = "x" } } })
    refused("pyq.http.post: multipart field 'f' needs one of path",
            http.post, u, { multipart = { f = { path = "/etc/hostname", data = "x" } } })
    refused("pyq.http.post: multipart field 'f': unknown key 'name' (path, data, filename, type)",
            http.post, u, { multipart = { f = { data = "x", name = "y" } } })
    refused("pyq.http.post: multipart field 'f': filename must be a string without CR, LF or NUL",
            http.post, u, { multipart = { f = { data = "x", filename = "a\r\nb" } } })
    refused("pyq.http.post: multipart field 'f': type must be a string without CR, LF or NUL",
            http.post, u, { multipart = { f = { data = "x", type = 5 } } })
    refused("pyq.http.post: multipart field 'f' must be a string, a number or a table", http.post, u,
            { multipart = { f = true } })
    refused("pyq.http.post: multipart field names must be non-empty strings without quotes, CR, LF or NUL, got number",
            http.post, u, { multipart = { "x" } })
    refused("pyq.http.post: multipart field names must be non-empty strings without quotes",
            http.post, u, { multipart = { ['a"b'] = "x" } })
    assert.equal(before, http.stats().requests)
  end)
end)

describe("proxies", function()
  local px, api, locked
  setup(function()
    px, api = helper.start_proxy(), helper.start_api()
    locked = helper.start_proxy{ auth = "pu:ppw" }
  end)
  teardown(function() px.stop() api.stop() locked.stop() end)
  after_each(function() http.configure{ proxy = false } end)

  local function through(p) return #p.requests() end

  -- A child pyqhost with `env` (shell words) before it; the script prints
  -- the status.  Curl's upper-case names are unset so only ours count.
  local function child(env, script)
    local file = helper.tempfile(script)
    local out = helper.shell(("env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY -u all_proxy "
      .. "-u http_proxy -u https_proxy -u no_proxy %s %s %s 2>&1"):format(env, helper.quote(helper.pyqhost),
      helper.quote(file)))
    os.remove(file)
    return out
  end

  it("goes through proxy = URL per request, per session and by configure", function()
    local n = through(px)
    assert.equal(200, http.get(api.base .. "/status/200", { proxy = px.url }).status)
    assert.equal(n + 1, through(px))
    assert.same({ method = "GET", target = api.base .. "/status/200" }, px.requests()[n + 1])
    local s <close> = http.session{ proxy = px.url }
    assert.equal(201, s:get(api.base .. "/status/201").status)
    assert.equal(202, s:get(api.base .. "/status/202", { proxy = false }).status)
    assert.equal(n + 2, through(px))
    http.configure{ proxy = px.url }
    assert.equal(203, http.get(api.base .. "/status/203").status)
    local later <close> = http.session{}   -- starts from configure's proxy
    assert.equal(211, later:get(api.base .. "/status/211").status)   -- not 204: no body
    assert.equal(n + 4, through(px))
    http.configure{ proxy = false }
    assert.equal(212, http.get(api.base .. "/status/212").status)
    assert.equal(213, s:get(api.base .. "/status/213").status)   -- the session keeps its own
    assert.equal(n + 5, through(px))
  end)

  it("sends proxy credentials from the proxy URL", function()
    assert.equal(407, http.get(api.base .. "/status/200", { proxy = locked.url }).status)
    local with = locked.url:gsub("^http://", "http://pu:ppw@")
    assert.equal(200, http.get(api.base .. "/status/200", { proxy = with }).status)
    local seen = locked.requests()
    assert.is_nil(seen[#seen - 1].proxy_auth)
    assert.equal("Basic cHU6cHB3", seen[#seen].proxy_auth)
  end)

  it("hides proxy credentials in errors and DEBUG logs", function()
    local dead = "http://pu:PROXY-SECRET@127.0.0.1:" .. helper.closed_port()
    local e = caught(http.get, api.base .. "/status/200", { proxy = dead })
    assert.is_true(pyq.is_error(e, "transport"))
    assert.not_matches("PROXY-SECRET", tostring(e), 1, true)
    e = caught(http.get, api.base .. "/status/200", { proxy = "http://pu:PROXY-SECRET@a b" })
    assert.is_true(pyq.is_error(e, "usage"))
    assert.not_matches("PROXY-SECRET", tostring(e), 1, true)
    local with = locked.url:gsub("^http://", "http://pu:PROXY-SECRET@")
    local r = helper.run{ flags = { "-vv" }, script = ([[
      local s = pyq.http.session{ proxy = %q }
      print(s:get(%q).status)
      print(pcall(pyq.http.get, %q, { proxy = %q }))
    ]]):format(with, api.base .. "/echo", api.base .. "/echo", dead) }
    assert.equal(0, r.code, r.err)
    assert.matches("^407\nfalse", r.out)
    assert.matches("DEBUG", r.err, 1, true)
    assert.not_matches("PROXY-SECRET", r.err .. r.out, 1, true)
  end)

  it("honours http_proxy and no_proxy from the environment, and false ignores them", function()
    local script = ([[
      print(pyq.http.get(%q).status)
      print(pyq.http.get(%q, { proxy = false }).status)
    ]]):format(api.base .. "/status/200", api.base .. "/status/201")
    local n = through(px)
    assert.equal("200\n201\n", child("http_proxy=" .. px.url, script))
    assert.equal(n + 1, through(px))
    assert.equal(api.base .. "/status/200", px.requests()[n + 1].target)
    assert.equal("200\n201\n", child("http_proxy=" .. px.url .. " no_proxy=127.0.0.1", script))
    assert.equal("200\n201\n", child("all_proxy=" .. px.url .. " no_proxy=*", script))
    assert.equal(n + 1, through(px))
    assert.equal("200\n201\n", child("all_proxy=" .. px.url, script))
    assert.equal(n + 2, through(px))
    -- https_proxy is for https URLs only
    assert.equal("200\n201\n", child("https_proxy=" .. px.url, script))
    assert.equal(n + 2, through(px))
  end)

  it("refuses a bad proxy by name", function()
    local u = api.base .. "/echo"
    local want = 'proxy must be a proxy URL such as "http://host:3128" or "socks5h://host:1080", or false'
    refused("pyq.http.get: " .. want, http.get, u, { proxy = true })
    refused("pyq.http.get: " .. want, http.get, u, { proxy = "" })
    refused("pyq.http.get: " .. want, http.get, u, { proxy = "http://h:1\r\n" })
    refused("pyq.http.session: " .. want, http.session, { proxy = 3128 })
    refused("pyq.http.configure: " .. want, http.configure, { proxy = {} })
  end)
end)

describe("http_version and connection limits", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("asks for the HTTP version given, per request and session", function()
    local nginx = helper.start_nginx_h2()
    if not nginx then
      pending("nginx is not installed")
      return
    end
    local ok, err = pcall(function()
      local u = nginx.base .. "/doc.json"
      assert.equal("2", http.get(u, { verify = false }).http_version)
      assert.equal("1.1", http.get(u, { verify = false, http_version = "1.1" }).http_version)
      local s <close> = http.session{ http_version = "1.1", verify = false }
      assert.equal("1.1", s:get(u).http_version)
      assert.equal("2", s:get(u, { http_version = "2" }).http_version)
      http.configure{ http_version = "1.1" }
      local v = http.get(u, { verify = false }).http_version
      http.configure{ http2 = true }   -- the default again ("2" would add h2c upgrades)
      assert.equal("1.1", v)
      assert.equal("2", http.get(u, { verify = false }).http_version)
    end)
    nginx.stop()
    assert(ok, err)
  end)

  it("speaks HTTP/2 without TLS only when asked to (2-prior-knowledge)", function()
    -- the fixture API speaks HTTP/1.1 only: "2" asks it to upgrade (as
    -- curl --http2 does), the default does not; prior knowledge fails
    local res = http.get(api.base .. "/echo", { http_version = "2" })
    assert.equal("1.1", res.http_version)
    assert.equal("h2c", res:json().headers.upgrade)
    assert.is_nil(http.get(api.base .. "/echo"):json().headers.upgrade)
    local e = caught(http.get, api.base .. "/echo", { http_version = "2-prior-knowledge" })
    assert.is_true(pyq.is_error(e, "transport"))
  end)

  it("refuses a bad http_version and connection limit by name", function()
    local want = 'http_version must be "1.0", "1.1", "2" or "2-prior-knowledge", got '
    refused("pyq.http.get: " .. want .. "number", http.get, api.base, { http_version = 2 })
    refused("pyq.http.session: " .. want, http.session, { http_version = "3" })
    refused("pyq.http.configure: " .. want, http.configure, { http_version = "h2" })
    refused("pyq.http.configure: max_total must be a non-negative integer, got -1", http.configure, { max_total = -1 })
    refused("pyq.http.configure: max_per_host must be a non-negative integer, got 1.5", http.configure,
            { max_per_host = 1.5 })
  end)

  it("holds requests to max_per_host connections, and max_total", function()
    -- the delay server answers after 0.3 s: with one connection, 3 requests
    -- take three times as long as with three
    local slow = helper.start_delay_server(0.3, 3)
    local function batch()
      local q <close> = pyq.Queue{ workers = 3 }
      local get = pyq.async(function() return http.get(slow.base .. "/").status end)
      local t0 = pyq.now()
      for _ = 1, 3 do q:put(get()) end
      q:join()
      return pyq.now() - t0
    end
    local ok, err = pcall(function()
      http.configure{ max_per_host = 1 }
      local one = batch()
      http.configure{ max_per_host = 0, max_total = 1 }
      local total = batch()
      http.configure{ max_total = 0 }
      local many = batch()
      assert.is_true(one > 2 * many, ("max_per_host = 1: %.2f s, no limit: %.2f s"):format(one, many))
      assert.is_true(total > 2 * many, ("max_total = 1: %.2f s, no limit: %.2f s"):format(total, many))
    end)
    http.configure{ max_per_host = 0, max_total = 0 }
    slow.stop()
    assert(ok, err)
  end)
end)
