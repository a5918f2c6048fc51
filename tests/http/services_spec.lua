require "busted.runner"()
-- The HTTP test services of issue 10 (tests/helper.lua: start_httpbin,
-- start_proxy, start_bytes), each shown working through pyq.http as it is
-- today, so the session, auth, body, download and proxy work can rely on
-- them.  Auth, cookies and the proxy option are pyq.http's own now
-- (tests/http/requests_spec.lua and http_session_spec.lua test them in
-- depth); the environment's proxy variables go to a child pyqhost.
local helper = require "tests.helper"
local http = pyq.http
local json = require "pyq.json"

local function failure(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- Runs a Python snippet; returns its stdout.
local function python(code, ...)
  local file = helper.tempfile(code, ".py")
  local args = {}
  for i, a in ipairs { ... } do args[i] = helper.quote(a) end
  local out = helper.shell("python3 " .. helper.quote(file) .. " " .. table.concat(args, " "))
  os.remove(file)
  return out
end

describe("httpbin (python3-httpbin under gunicorn)", function()
  local hb

  setup(function() hb = helper.start_httpbin() end)
  teardown(function() hb.stop() end)

  it("answers /get, echoing what pyq.http sent", function()
    local res = http.get(hb.base .. "/get", { query = { a = "1" }, headers = { ["X-Test"] = "yes" },
                                             timeout = 20 })
    assert.equal(200, res.status)
    local doc = res:json()
    assert.equal("1", doc.args.a)
    assert.equal("yes", doc.headers["X-Test"])
  end)

  it("sets a cookie on a redirect (/cookies/set) and echoes the Cookie header", function()
    local res = http.get(hb.base .. "/cookies/set?session=abc", { follow_redirects = false })
    assert.equal(302, res.status)
    assert.matches("session=abc", res.headers["set-cookie"], 1, true)
    assert.equal("/cookies", res.headers["location"])
    -- the plain functions keep no cookies: following the redirect loses it
    assert.same({}, http.get(hb.base .. "/cookies/set?session=abc"):json().cookies)
    -- a session with cookies = true keeps it
    local s <close> = http.session{ cookies = true }
    assert.equal("abc", s:get(hb.base .. "/cookies/set?session=abc"):json().cookies.session)
    local doc = http.get(hb.base .. "/cookies", { headers = { Cookie = "session=abc" } }):json()
    assert.equal("abc", doc.cookies.session)
  end)

  it("checks basic auth (auth = { user, password }, or the header written by hand)", function()
    assert.equal(401, http.get(hb.base .. "/basic-auth/user/passwd").status)
    local res = http.get(hb.base .. "/basic-auth/user/passwd",
                         { headers = { Authorization = "Basic dXNlcjpwYXNzd2Q=" } })   -- user:passwd
    assert.equal(200, res.status)
    assert.same({ authenticated = true, user = "user" }, res:json())
    res = http.get(hb.base .. "/basic-auth/user/passwd", { auth = { "user", "passwd" } })
    assert.same({ authenticated = true, user = "user" }, res:json())
  end)

  it("checks digest auth (auth = { ..., type = \"digest\" }; an answer computed in Python)", function()
    local url = hb.base .. "/digest-auth/auth/user/passwd"
    local res = http.get(url)
    assert.equal(401, res.status)
    local challenge = res.headers["www-authenticate"]
    assert.matches('^Digest .*qop="auth"', challenge)
    res = http.get(url, { auth = { "user", "passwd", type = "digest" } })
    assert.same({ authenticated = true, user = "user" }, res:json())
    assert.equal(401, http.get(url, { auth = { "user", "wrong", type = "digest" } }).status)
    -- the service checks a response computed independently of libcurl too
    local header = python([[
import hashlib, re, sys
challenge, path, user, pw = sys.argv[1:5]
ch = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
ha1, ha2, nc, cnonce = md5(f"{user}:{ch['realm']}:{pw}"), md5(f"GET:{path}"), "00000001", "0a4f113b"
resp = md5(f"{ha1}:{ch['nonce']}:{nc}:{cnonce}:auth:{ha2}")
print(f'Digest username="{user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", uri="{path}", '
      f'qop=auth, nc={nc}, cnonce="{cnonce}", response="{resp}", opaque="{ch["opaque"]}", algorithm=MD5', end="")
]], challenge, "/digest-auth/auth/user/passwd", "user", "passwd")
    res = http.get(url, { headers = { Authorization = header } })
    assert.equal(200, res.status)
    assert.same({ authenticated = true, user = "user" }, res:json())
    header = header:gsub('response="%x+"', 'response="' .. ("0"):rep(32) .. '"')
    assert.equal(401, http.get(url, { headers = { Authorization = header } }).status)
  end)

  it("echoes a URL-encoded form (form = {...}, or the body written by hand)", function()
    local doc = http.post(hb.base .. "/post", { form = { name = "a b&c", k = { "1", "2" } } }):json()
    assert.equal("a b&c", doc.form.name)
    assert.same({ "1", "2" }, doc.form.k)
    local res = http.post(hb.base .. "/post", {
      body = "name=" .. pyq.url.encode("a b&c") .. "&k=1&k=2",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    doc = res:json()
    assert.equal("a b&c", doc.form.name)
    assert.same({ "1", "2" }, doc.form.k)
  end)

  it("echoes multipart fields and files (multipart = {...}, or the body written by hand)", function()
    local path = helper.tempfile("file body", ".txt")
    local sent = http.post(hb.base .. "/post", { multipart = {
      field = "value", file = { path = path, filename = "x.txt", type = "text/plain" } } }):json()
    os.remove(path)
    assert.equal("value", sent.form.field)
    assert.equal("file body", sent.files.file)
    local b = "----pyq-boundary"
    local body = table.concat({
      "--" .. b, 'Content-Disposition: form-data; name="field"', "", "value",
      "--" .. b, 'Content-Disposition: form-data; name="file"; filename="x.txt"',
      "Content-Type: text/plain", "", "file body",
      "--" .. b .. "--", "" }, "\r\n")
    local doc = http.post(hb.base .. "/post", {
      body = body, headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. b } }):json()
    assert.equal("value", doc.form.field)
    assert.equal("file body", doc.files.file)
  end)

  it("serves byte ranges (/range/N with a Range header)", function()
    local res = http.get(hb.base .. "/range/1024", { headers = { Range = "bytes=10-19" } })
    assert.equal(206, res.status)
    assert.equal("bytes 10-19/1024", res.headers["content-range"])
    assert.equal("klmnopqrst", res.body)
  end)

  it("streams JSON lines (/stream/N) and drips bytes over time (/drip)", function()
    local res = http.get(hb.base .. "/stream/3")
    local n = 0
    for line in res.body:gmatch("[^\n]+") do
      n = n + 1
      assert.equal(n - 1, json.decode(line).id)
    end
    assert.equal(3, n)
    res = http.get(hb.base .. "/drip?numbytes=4&duration=0.6&delay=0")
    assert.equal("****", res.body)
    assert.is_true(res.elapsed >= 0.4, "a drip of 0.6 s took " .. res.elapsed)
  end)

  it("compresses with gzip, deflate and brotli, which pyq.http decodes", function()
    for _, enc in ipairs { "gzip", "deflate", "brotli" } do
      local doc = http.get(hb.base .. "/" .. enc):json()
      assert.is_true(doc.gzipped or doc.deflated or doc.brotli, enc)
    end
  end)
end)

describe("the forward proxy", function()
  local px, api, tls, dir

  setup(function()
    px = helper.start_proxy()
    api = helper.start_api()
    dir = helper.tempdir()
    assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "
      .. dir .. "/key.pem -out " .. dir .. "/cert.pem >/dev/null 2>&1"))
    tls = helper.start_api { "--tls-cert", dir .. "/cert.pem", "--tls-key", dir .. "/key.pem" }
  end)

  teardown(function()
    px.stop()
    api.stop()
    tls.stop()
  end)

  -- curl's variables reach a child pyqhost only
  local function via_env(env, url)
    local script = helper.tempfile(([[
local res = pyq.http.get(%q, { verify = false })
io.write(res.status, " ", res.body)
]]):format(url))
    local out = helper.shell(("env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY "
      .. "-u all_proxy %s %s %s 2>&1"):format(env, helper.quote(helper.pyqhost), helper.quote(script)))
    os.remove(script)
    return out
  end

  it("forwards absolute-form requests (http_proxy) and records them", function()
    local before = #px.requests()
    local out = via_env("http_proxy=" .. px.url .. " no_proxy=", api.base .. "/status/200")
    assert.matches("^200 ", out)
    local seen = px.requests()
    assert.equal(before + 1, #seen)
    assert.same({ method = "GET", target = api.base .. "/status/200" }, seen[#seen])   -- proxy_auth nil
  end)

  it("is used by the proxy option, and not without it", function()
    local before = #px.requests()
    assert.equal(200, http.get(api.base .. "/status/200", { proxy = px.url }).status)
    assert.equal(200, http.get(api.base .. "/status/200").status)
    local seen = px.requests()
    assert.equal(before + 1, #seen)
    assert.same({ method = "GET", target = api.base .. "/status/200" }, seen[#seen])
  end)

  it("tunnels HTTPS with CONNECT (https_proxy, or the proxy option)", function()
    local before = #px.requests()
    local res = http.get("https://127.0.0.1:" .. tls.port .. "/status/200", { proxy = px.url, verify = false })
    assert.equal(200, res.status)
    assert.same({ method = "CONNECT", target = "127.0.0.1:" .. tls.port }, px.requests()[before + 1])
  end)

  it("tunnels HTTPS with CONNECT from https_proxy", function()
    local before = #px.requests()
    local out = via_env("https_proxy=" .. px.url .. " no_proxy=", "https://127.0.0.1:" .. tls.port .. "/status/200")
    assert.matches("^200 ", out)
    local seen = px.requests()
    assert.equal(before + 1, #seen)
    assert.same({ method = "CONNECT", target = "127.0.0.1:" .. tls.port }, seen[#seen])
  end)

  it("is bypassed for no_proxy hosts, and not used without the variables", function()
    local before = #px.requests()
    assert.matches("^200 ", via_env("http_proxy=" .. px.url .. " no_proxy=127.0.0.1", api.base .. "/status/200"))
    assert.matches("^200 ", http.get(api.base .. "/status/200").status .. " ")
    assert.equal(before, #px.requests())
  end)

  it("asks for credentials when started with auth, and records what it got", function()
    local locked = helper.start_proxy { auth = "pu:ppw" }
    local ok, err = pcall(function()
      local with = locked.url:gsub("^http://", "http://pu:ppw@")
      assert.equal(200, http.get(api.base .. "/status/200", { proxy = with }).status)
      assert.equal("Basic cHU6cHB3", locked.requests()[1].proxy_auth)
      assert.matches("^407 ", via_env("http_proxy=" .. locked.url .. " no_proxy=", api.base .. "/status/200"))
      assert.matches("^200 ", via_env("http_proxy=" .. with .. " no_proxy=", api.base .. "/status/200"))
      local seen = locked.requests()
      assert.equal(3, #seen)
      assert.is_nil(seen[2].proxy_auth)
      assert.equal("Basic cHU6cHB3", seen[3].proxy_auth)   -- pu:ppw
    end)
    locked.stop()
    assert(ok, err)
  end)
end)

describe("the byte generator", function()
  local bytes
  local GiB = 1024 * 1024 * 1024

  setup(function() bytes = helper.start_bytes() end)
  teardown(function() bytes.stop() end)

  it("sends N bytes of the pattern, with a length, an ETag and Accept-Ranges", function()
    local res = http.get(bytes.url(100000))
    assert.equal(200, res.status)
    assert.equal(helper.byte_pattern(0, 100000), res.body)
    assert.equal("100000", res.headers["content-length"])
    assert.equal("bytes", res.headers["accept-ranges"])
    assert.is_string(res.headers["etag"])
  end)

  it("announces 1 GiB, and serves any range of it", function()
    -- max_body: pyq.http checks a HEAD's Content-Length against it too
    local res = http.head(bytes.url(GiB), { max_body = 2 * GiB })
    assert.equal(tostring(GiB), res.headers["content-length"])
    res = http.get(bytes.url(GiB), { headers = { Range = ("bytes=%d-"):format(GiB - 10) } })
    assert.equal(206, res.status)
    assert.equal(("bytes %d-%d/%d"):format(GiB - 10, GiB - 1, GiB), res.headers["content-range"])
    assert.equal(helper.byte_pattern(GiB - 10, GiB), res.body)
    res = http.get(bytes.url(1000), { headers = { Range = "bytes=-5" } })
    assert.equal(helper.byte_pattern(995, 1000), res.body)
    assert.equal(416, http.get(bytes.url(1000), { headers = { Range = "bytes=1000-" } }).status)
  end)

  it("streams 1 GiB whole (read by Python: pyq.http keeps bodies in memory)", function()
    local out = python([[
import sys, urllib.request
n = 0
with urllib.request.urlopen(sys.argv[1]) as r:
    while True:
        b = r.read(1 << 20)
        if not b: break
        if n == 0: first = b[:3]
        n, last = n + len(b), b[-1:]
print(n, list(first), list(last))
]], bytes.url(GiB))
    assert.equal(("%d [0, 1, 2] [%d]\n"):format(GiB, (GiB - 1) % 251), out)
  end)

  it("cuts the connection after `cut` bytes: an interrupted download", function()
    local err = failure(http.get, bytes.url(100000, "cut=5000"))
    assert.matches("transfer closed with 95000 bytes remaining", tostring(err), 1, true)
  end)

  it("honours If-Range and no_ranges, sends chunked, and records each request", function()
    local res = http.get(bytes.url(100, "etag=v2"), { headers = { Range = "bytes=50-", ["If-Range"] = '"v1"' } })
    assert.equal(200, res.status)   -- changed since: the whole body
    assert.equal(100, #res.body)
    res = http.get(bytes.url(100, "no_ranges=1"), { headers = { Range = "bytes=50-" } })
    assert.equal(200, res.status)
    assert.equal("none", res.headers["accept-ranges"])
    res = http.get(bytes.url(70000, "chunked=1"))
    assert.is_nil(res.headers["content-length"])
    assert.equal(helper.byte_pattern(0, 70000), res.body)
    local seen = http.get(bytes.base .. "/requests"):json()
    local last = seen[#seen - 2]   -- before the chunked GET and /requests itself
    assert.equal("/bytes/100?no_ranges=1", last.path)
    assert.equal("bytes=50-", last.range)
    assert.equal("/requests", seen[#seen].path)
  end)

  it("sends at most `rate` bytes a second", function()
    local res = http.get(bytes.url(20000, "rate=50000"))
    assert.equal(20000, #res.body)
    assert.is_true(res.elapsed >= 0.3, "20000 bytes at 50000/s took " .. res.elapsed)
  end)
end)
