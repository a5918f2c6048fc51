-- pyq.http's C side under hostile or careless input: credentials on
-- redirects, masking, defaults, messages, tiny timeouts, query encoding,
-- odd response headers and metamethods called with a wrong self.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http
local failure = helper.failure

local SECRETS = { ["X-Riot-Token"] = "RIOT-SECRET", ["X-Api-Key"] = "APIKEY-SECRET",
                  ["Authorization"] = "Bearer AUTH-SECRET", ["Cookie"] = "c=COOKIE-SECRET",
                  ["X-Pwd"] = "PWD-SECRET", ["X-Plain"] = "plain" }

local function enc(s)
  return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end))
end

describe("redirects", function()
  local a, b, tls, dir

  setup(function()
    a = helper.start_api()
    b = helper.start_api()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "
      .. dir .. "/key.pem -out " .. dir .. "/cert.pem >/dev/null 2>&1"))
    tls = helper.start_api{ "--tls-cert", dir .. "/cert.pem", "--tls-key", dir .. "/key.pem" }
  end)

  teardown(function()
    a.stop()
    b.stop()
    tls.stop()
    os.execute("rm -rf " .. dir)
  end)

  -- a's redirect (status code) to target, with the credential headers
  local function via(code, target, opts)
    opts = opts or {}
    opts.headers = opts.headers or SECRETS
    return http.get(a.base .. "/redirect-status/" .. code .. "?url=" .. enc(target), opts)
  end

  local function assert_dropped(echo)
    for _, name in ipairs({ "x-riot-token", "x-api-key", "authorization", "cookie", "x-pwd" }) do
      assert.is_nil(echo.headers[name], name .. " reached the other origin")
    end
    assert.equal("plain", echo.headers["x-plain"])
  end

  it("drops credential headers when the port changes", function()
    local res = via(302, b.base .. "/echo")
    assert.equal(200, res.status)
    assert.equal(b.base .. "/echo", res.url)
    assert_dropped(res:json())
  end)

  it("drops credential headers when the host changes (localhost is another host)", function()
    local res = via(301, "http://localhost:" .. a.port .. "/echo")
    assert.equal("http://localhost:" .. a.port .. "/echo", res.url)
    assert_dropped(res:json())
  end)

  it("keeps every header on the same origin", function()
    for _, target in ipairs({ "/echo", a.base .. "/echo" }) do
      local echo = via(307, target):json()
      assert.equal("RIOT-SECRET", echo.headers["x-riot-token"])
      assert.equal("APIKEY-SECRET", echo.headers["x-api-key"])
      assert.equal("Bearer AUTH-SECRET", echo.headers["authorization"])
      assert.equal("PWD-SECRET", echo.headers["x-pwd"])
    end
  end)

  it("drops the headers named by sensitive_headers, per request and by configure", function()
    local echo = via(302, b.base .. "/echo", { headers = { ["X-Plain"] = "p", ["X-Custom"] = "c", ["X-Conf"] = "f" },
                                                sensitive_headers = { "x-plain" } }):json()
    assert.is_nil(echo.headers["x-plain"])
    assert.equal("c", echo.headers["x-custom"])
    http.configure{ sensitive_headers = { "X-Conf" } }
    echo = via(302, b.base .. "/echo", { headers = { ["X-Plain"] = "p", ["X-Conf"] = "f" } }):json()
    http.configure{ sensitive_headers = {} }
    assert.is_nil(echo.headers["x-conf"])
    assert.equal("p", echo.headers["x-plain"])
    assert.matches("sensitive_headers must be a list", failure(http.get, a.base, { sensitive_headers = "x" }), 1, true)
    assert.matches("sensitive_query must be a list of non-empty strings",
      failure(http.get, a.base, { sensitive_query = { 1 } }), 1, true)
  end)

  it("refuses https -> http unless allow_downgrade, naming both URLs masked", function()
    local from = "https://127.0.0.1:" .. tls.port .. "/redirect-to?url=" .. enc(b.base .. "/echo?token=TOK-SECRET")
    local err = failure(http.get, from .. "&api_key=KEY-SECRET", { verify = false, headers = SECRETS })
    assert.matches("refused the redirect from https://127.0.0.1:" .. tls.port .. "/redirect-to?url=", err, 1, true)
    assert.matches("&api_key=*** to " .. b.base .. "/echo?token=***: it leaves https", err, 1, true)
    assert.matches("allow_downgrade", err, 1, true)
    assert.not_matches("KEY-SECRET", err, 1, true)
    local _, e = pcall(http.get, from, { verify = false })
    assert.is_true(pyq.is_error(e, "transport"))
    assert.equal("redirect", e.refused)
    local before = http.stats().requests
    failure(http.get, from, { verify = false, retries = 3, backoff = 0.01 })
    assert.equal(1, http.stats().requests - before, "a refused downgrade is final: not retried")
    local res = http.get(from, { verify = false, headers = SECRETS, allow_downgrade = true })
    assert.equal(200, res.status)
    assert.equal(b.base .. "/echo?token=TOK-SECRET", res.url)
    assert_dropped(res:json())
    assert.matches("allow_downgrade must be a boolean", failure(http.get, from, { allow_downgrade = 1 }), 1, true)
  end)

  it("keeps libcurl's method rules", function()
    local function hop(code, method, body)
      local res = http.request{ url = a.base .. "/redirect-status/" .. code .. "?url=%2Fecho",
                                method = method, body = body }
      return res:json(), res
    end
    for _, code in ipairs({ 301, 302 }) do
      local echo, res = hop(code, "POST", "data")
      assert.equal("GET", echo.method)
      assert.equal("", echo.body)
      assert.equal("GET", res.method)
      assert.equal("PUT", hop(code, "PUT", "data").method)
    end
    assert.equal("GET", hop(303, "PUT", "data").method)
    assert.equal("GET", hop(303, "POST", "data").method)
    for _, code in ipairs({ 307, 308 }) do
      for _, method in ipairs({ "POST", "PUT", "PATCH" }) do
        local echo = hop(code, method, "body-" .. code)
        assert.equal(method, echo.method)
        assert.equal("body-" .. code, echo.body)
      end
    end
    local res = http.head(a.base .. "/redirect-status/303?url=%2Fbytes%2F7")
    assert.equal("HEAD", res.method)
    assert.equal("7", res.headers["content-length"])
  end)

  it("discards intermediate bodies, and elapsed and timeout cover every hop", function()
    local target = enc(b.base .. "/bytes/10")
    local res = http.get(a.base .. "/redirect-status/302?pad=50&delay=0.3&url=" .. target, { max_body = 100 })
    assert.equal(("x"):rep(10), res.body)
    assert.is_true(res.elapsed >= 0.3, "elapsed " .. res.elapsed)
    assert.equal(b.base .. "/bytes/10", res.url)
    local t0 = pyq.now()
    local err = failure(http.get, a.base .. "/redirect-status/302?delay=0.3&url=" .. enc(b.base .. "/delay/1"),
                        { timeout = 0.6 })
    assert.matches("timed out", err, 1, true)
    assert.is_true(pyq.now() - t0 < 0.9, "took " .. (pyq.now() - t0))
  end)

  it("counts max_redirects across origins and refuses other schemes", function()
    local chain = a.base .. "/redirect-status/302?url=" .. enc(b.base .. "/redirect/2")
    assert.equal(200, http.get(chain).status)
    assert.matches("Maximum (2) redirects followed", failure(http.get, chain, { max_redirects = 2 }), 1, true)
    local res = http.get(chain, { follow_redirects = false })
    assert.equal(302, res.status)
    assert.equal("", res.body)
    assert.matches('Protocol "ftp" not supported',
      failure(http.get, a.base .. "/redirect-to?url=ftp%3A%2F%2F127.0.0.1%2Fx"), 1, true)
  end)

  it("cancels a transfer in the middle of its redirects", function()
    local target = a.base .. "/redirect-status/302?url=" .. enc(b.base .. "/delay/5")
    local t0 = pyq.now()
    local err = failure(pyq.await, pyq.timeout(0.3, pyq.async(function() return http.get(target) end)()))
    assert.matches("timed out", err, 1, true)
    assert.is_true(pyq.now() - t0 < 1)
    assert.equal(200, http.get(a.base .. "/status/200").status)
  end)
end)

describe("masking", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("hides a password with unencoded / # ? @ in the default handler's WARNING", function()
    local port = helper.closed_port()
    local r = helper.run{ script = ([[
      local q <close> = pyq.Queue{ workers = 2 }
      q:put(pyq.async(function() pyq.http.get("http://u:pa/ss#wo?rd@127.0.0.1:%d/") end)())
      q:put(pyq.async(function() pyq.http.get("http://u:p@ss/w#x@127.0.0.1:%d/?e=a@b") end)())
    ]]):format(port, port) }
    assert.matches("WARNING", r.err, 1, true)
    assert.matches("http://u:***@127.0.0.1:" .. port, r.err, 1, true)
    for _, leak in ipairs({ "pa/ss", "ss#wo", "rd@", "p@ss", "w#x" }) do
      assert.not_matches(leak, r.err, 1, true)
    end
  end)

  it("hides secret query names, ;-pairs, fragments and secret headers at -vv", function()
    local r = helper.run{ flags = { "-vv" }, script = ([[
      local http = pyq.http
      http.configure{ sensitive_query = { "conf_q" } }
      http.get("%s/echo?sig=S1-SECRET;pwd=S2-SECRET&signature=S3-SECRET&page=2#access_token=S4-SECRET", {
        headers = { ["X-Pwd"] = "H1-SECRET", ["X-Bearer"] = "H2-SECRET", ["X-Sig"] = "H3-SECRET",
                    ["X-Mine"] = "H4-SECRET", ["X-Shown"] = "visible" },
        query = { otp = "Q1-SECRET", mine = "Q2-SECRET", conf_q = "Q3-SECRET", jwt = "Q4-SECRET" },
        sensitive_headers = { "X-Mine" }, sensitive_query = { "mine" } })
    ]]):format(api.base) }
    assert.equal(0, r.code, r.err)
    assert.matches("page=2", r.err, 1, true)
    assert.matches("X-Shown: visible", r.err, 1, true)
    assert.matches("sig=***;pwd=***&signature=***", r.err, 1, true)
    assert.not_matches("SECRET", r.err, 1, true)
  end)

  it("hides the user's sensitive_query in transport errors", function()
    local port = helper.closed_port()
    local err = failure(http.get, "http://127.0.0.1:" .. port .. "/x?q=Q-SECRET&page=1", { sensitive_query = { "Q" } })
    assert.matches("/x?q=***&page=1", err, 1, true)
    err = failure(http.get, "127.0.0.1:" .. port .. "/x?q=Q-SECRET", { sensitive_query = { "q" } })
    assert.not_matches("Q-SECRET", err, 1, true)
  end)
end)

describe("defaults, messages and limits", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("sends a User-Agent naming pyqhost and libcurl unless one is set", function()
    local ua = http.get(api.base .. "/echo"):json().headers["user-agent"]
    assert.matches("^pyqhost/%d+%.%d+%.%d+ libcurl/%d+%.%d+", ua)
    assert.equal("mine/1", http.get(api.base .. "/echo", { headers = { ["user-agent"] = "mine/1" } })
      :json().headers["user-agent"])
  end)

  it("sends a raw body as application/octet-stream unless a Content-Type is given", function()
    local echo = http.post(api.base .. "/echo", { body = "a=1" }):json()
    assert.equal("application/octet-stream", echo.headers["content-type"])
    assert.equal("a=1", echo.body)
    echo = http.post(api.base .. "/echo", { body = "x", headers = { ["Content-Type"] = "text/plain" } }):json()
    assert.equal("text/plain", echo.headers["content-type"])
    assert.equal("application/json", http.post(api.base .. "/echo", { json = { 1 } }):json().headers["content-type"])
  end)

  it("says the scheme is missing", function()
    assert.matches("pyq.http.get: url '127.0.0.1:8080/x' has no scheme: write http:// or https://",
      failure(http.get, "127.0.0.1:8080/x"), 1, true)
    assert.matches("url 'localhost:8080/x' has no scheme", failure(http.get, "localhost:8080/x"), 1, true)
    assert.matches("is not http or https", failure(http.get, "mailto:someone"), 1, true)
  end)

  it("reports a reset connection as libcurl reads it", function()
    assert.matches("GET " .. api.base .. "/reset: Recv failure: Connection reset by peer",
      failure(http.get, api.base .. "/reset"), 1, true)
  end)

  it("says a response header is too large", function()
    local err = failure(http.get, api.base .. "/big-header?n=1000000")
    assert.matches("header is too large", err, 1, true)
    assert.not_matches("Out of memory", err, 1, true)
  end)

  it("prints max_body above 2 GiB exactly", function()
    local err = failure(http.get, api.base .. "/huge-length", { max_body = 3000000000 })
    assert.matches("over max_body (3000000000 bytes)", err, 1, true)
  end)

  it("says 1 request, not 1 requests, in the summary", function()
    local r = helper.run{ flags = { "--summary" }, script = ("pyq.http.get(%q)"):format(api.base .. "/echo") }
    assert.equal(0, r.code, r.err)
    assert.matches("http: 1 request, 0 retries, 0 failed", r.err, 1, true)
  end)

  it("rounds timeouts under 1 ms up, and fails a timeout of 0 without sending", function()
    local t0 = pyq.now()
    -- the kind, not the text: under load libcurl's resolver thread may be
    -- the one that runs out ("Failed to resolve host ... with timeout")
    local _, e = pcall(http.get, api.base .. "/delay/1", { timeout = 0.0004 })
    assert.is_true(pyq.is_error(e, "timeout"), tostring(e))
    assert.is_true(pyq.now() - t0 < 0.5, "took " .. (pyq.now() - t0))
    local before = http.get(api.base .. "/stats"):json().requests
    local err = failure(http.get, api.base .. "/echo?token=T-SECRET", { timeout = 0 })
    assert.matches("GET " .. api.base .. "/echo?token=***: Operation timed out", err, 1, true)
    assert.matches("timed out", failure(http.get, api.base .. "/echo", { connect_timeout = 0 }), 1, true)
    assert.equal(before + 1, http.get(api.base .. "/stats"):json().requests)   -- only this one
  end)
end)

describe("query building", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("encodes names and values separately", function()
    local res = http.get(api.base .. "/echo", { query = { ["a=b"] = "c&d", ["x#y"] = "1 2", z = true } })
    assert.same({ ["a=b"] = "c&d", ["x#y"] = "1 2", z = "true" }, res:json().args)
  end)

  it("refuses a NUL in a name or a value", function()
    assert.matches("pyq.http.get: query value for 'a' contains a NUL byte",
      failure(http.get, api.base, { query = { a = "x\0y" } }), 1, true)
    assert.matches("query name 'a' contains a NUL byte",
      failure(http.get, api.base, { query = { ["a\0b"] = "x" } }), 1, true)
    assert.matches("query value for 'l' contains a NUL byte",
      failure(http.get, api.base, { query = { l = { "ok", "x\0" } } }), 1, true)
  end)

  it("sorts the names itself, whatever the script did to table.sort", function()
    local sort = table.sort
    table.sort = function() error("replaced table.sort called") end
    local ok, res = pcall(http.get, api.base .. "/echo", { query = { b = 2, a = 1, c = { 3, 4 } } })
    table.sort = sort
    assert.is_true(ok, res)
    assert.equal(api.base .. "/echo?a=1&b=2&c=3&c=4", res.url)
  end)
end)

describe("response headers", function()
  local api
  setup(function() api = helper.start_api() end)
  teardown(function() api.stop() end)

  it("keeps names of 256 characters and more", function()
    local res = http.get(api.base .. "/long-name?n=300")
    assert.equal("long", res.headers["x-" .. ("n"):rep(298)])
  end)

  it("joins repeated headers in linear time", function()
    local parse = require("pyq.core")._http.parse_headers
    local function cost(n)
      local raw = "HTTP/1.1 200 OK\r\n" .. ("A: v\r\n"):rep(n) .. "\r\n"
      local t0 = os.clock()
      local h = parse(raw)
      local t = os.clock() - t0
      assert.equal(n * 3 - 2, #h.a)
      return t
    end
    cost(1000)
    local small, big = cost(20000), cost(80000)
    assert.is_true(big < small * 8 + 0.01, ("20k lines %.3f s, 80k lines %.3f s"):format(small, big))
    assert.equal(40000 * 3 - 2, #http.get(api.base .. "/many-headers?n=40000").headers.a)
  end)
end)

describe("metamethods", function()
  it("check self", function()
    local r = helper.run{ script = [[
      local _, state = debug.getupvalue(require("pyq.core")._http.get, 1)
      local mt = debug.getmetatable(state)
      print(pcall(mt.__gc, 42))
      print(pcall(mt.__gc, io.stdout))
    ]] }
    assert.equal(0, r.code, r.err)
    assert.matches("false\t.-pyq.http.state expected, got number", r.out)
    assert.matches("false\t.-pyq.http.state expected, got FILE", r.out)
  end)

  it("refuse requests once the state is closed", function()
    local r = helper.run{ script = [[
      local _, state = debug.getupvalue(require("pyq.core")._http.get, 1)
      debug.getmetatable(state).__gc(state)
      print(pcall(pyq.http.get, "http://127.0.0.1:1/"))
    ]] }
    assert.equal(0, r.code, r.err)
    assert.matches("pyq.http is closed", r.out, 1, true)
  end)
end)
