require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http
local failure = helper.failure

describe("pyq.http", function()
  local api, base

  setup(function()
    api = helper.start_api{ "--rate-limit", "20:1,100:120", "--entries", "30" }
    base = api.base
  end)

  teardown(function() api.stop() end)

  describe("requests", function()
    it("is the same module as require 'pyq.http'", function()
      assert.equal(http, require "pyq.http")
    end)

    it("GETs with headers and an encoded query, and describes the response", function()
      local res = http.get(base .. "/echo", { headers = { ["X-Token"] = "abc" },
                                              query = { q = "a b&c", n = 5, tag = { "x", "y" } } })
      assert.equal(200, res.status)
      assert.is_true(res.ok)
      assert.equal("1.1", res.http_version)
      assert.is_true(res.elapsed > 0 and res.elapsed < 5)
      assert.equal(base .. "/echo?n=5&q=a+b%26c&tag=x&tag=y", res.url)
      local echo = res:json()
      assert.equal("GET", echo.method)
      assert.equal("abc", echo.headers["x-token"])
      assert.same({ q = "a b&c", n = "5", tag = "y" }, echo.args)
      assert.equal("application/json", res.headers["content-type"])
    end)

    it("takes the method from opts, or POST when a body is given", function()
      assert.equal("POST", http.request{ url = base .. "/echo", body = "x" }:json().method)
      assert.equal("GET", http.request{ url = base .. "/echo" }:json().method)
      assert.equal("PURGE", http.request{ url = base .. "/echo", method = "purge" }:json().method)
    end)

    it("has a function per verb, with bodies through body or json", function()
      assert.equal("DELETE", http.delete(base .. "/echo"):json().method)
      assert.equal("OPTIONS", http.options(base .. "/echo"):json().method)
      local head = http.head(base .. "/bytes/100")
      assert.equal("", head.body)
      assert.equal("100", head.headers["content-length"])
      for _, verb in ipairs({ "post", "put", "patch" }) do
        local echo = http[verb](base .. "/echo", { body = "raw " .. verb }):json()
        assert.equal(verb:upper(), echo.method)
        assert.equal("raw " .. verb, echo.body)
        echo = http[verb](base .. "/echo", { json = { n = 1, list = { 1, 2 } } }):json()
        assert.same({ n = 1, list = { 1, 2 } }, pyq.json.decode(echo.body))
        assert.equal("application/json", echo.headers["content-type"])
      end
      local echo = http.post(base .. "/echo", { json = {}, headers = { ["content-type"] = "text/x-json" } }):json()
      assert.equal("text/x-json", echo.headers["content-type"])
    end)

    it("lower-cases header names and joins repeated headers", function()
      local res = http.get(base .. "/headers")
      assert.equal("a=1, b=2", res.headers["set-cookie"])
      assert.equal("yes", res.headers["x-custom"])
      assert.is_nil(res.headers["X-Custom"])
    end)

    it("decodes compressed bodies and reads chunked ones", function()
      local res = http.get(base .. "/gzip")
      assert.equal("gzip", res.headers["content-encoding"])
      assert.is_true(res:json().gzipped)
      assert.equal("chunk 0\nchunk 1\nchunk 2\n", http.get(base .. "/chunked", { query = { n = 3 } }).body)
      assert.equal(5 * 1024 * 1024, #http.get(base .. "/big").body)
    end)

    it("follows redirects up to max_redirects, or not at all", function()
      local res = http.get(base .. "/redirect/3")
      assert.equal(200, res.status)
      assert.equal(base .. "/echo", res.url)
      res = http.get(base .. "/redirect/3", { follow_redirects = false })
      assert.equal(302, res.status)
      assert.equal("/redirect/2", res.headers["location"])
      assert.matches("Maximum %(2%) redirects", failure(http.get, base .. "/redirect/3", { max_redirects = 2 }))
    end)

    it("returns HTTP error statuses as responses", function()
      for _, code in ipairs({ 404, 500, 503 }) do
        local res = http.get(base .. "/status/" .. code)
        assert.equal(code, res.status)
        assert.is_false(res.ok)
      end
    end)

    it("names the URL when the body is not JSON", function()
      local res = http.get(base .. "/invalid-json")
      assert.matches("GET " .. base .. "/invalid-json: the response is not valid JSON", failure(res.json, res), 1, true)
    end)

    it("sets process-wide defaults with configure", function()
      http.configure{ user_agent = "pyq-test/1", max_connections = 100, max_per_host = 50, http2 = true }
      assert.equal("pyq-test/1", http.get(base .. "/echo"):json().headers["user-agent"])
      http.configure{ user_agent = "pyqhost", max_connections = 0, max_per_host = 0 }
      assert.matches("unknown option 'agent'", failure(http.configure, { agent = "x" }))
      assert.matches("user_agent", failure(http.configure, { user_agent = "a\r\nb: c" }))
      assert.matches("max_connections", failure(http.configure, { max_connections = -1 }))
    end)
  end)

  describe("transport failures", function()
    it("keep secrets out of their messages", function()
      local port = helper.closed_port()
      local err = failure(http.get, "http://u:hunter2@127.0.0.1:" .. port .. "/x?api_key=SECRET&page=2")
      assert.matches("http://u:***@127.0.0.1:" .. port .. "/x?api_key=***&page=2", err, 1, true)
      assert.not_matches("SECRET", err, 1, true)
      assert.not_matches("hunter2", err, 1, true)
      err = failure(http.get, "ftp://127.0.0.1/?token=SECRET")
      assert.not_matches("SECRET", err, 1, true)
    end)

    it("raise errors naming the method, URL and reason", function()
      local port = helper.closed_port()
      local err = failure(http.get, "http://127.0.0.1:" .. port .. "/x")
      assert.matches("GET http://127.0.0.1:" .. port .. "/x", err, 1, true)
      assert.matches("Connection refused", err, 1, true)
      err = failure(http.get, "http://nosuch.invalid/x", { connect_timeout = 5 })
      assert.matches("GET http://nosuch.invalid/x: Could not resolve host", err, 1, true)
      err = failure(http.get, base .. "/delay/3", { timeout = 0.2 })
      assert.matches("timed out", err, 1, true)
      err = failure(http.get, base .. "/drop")
      assert.matches("GET " .. base .. "/drop: transfer closed", err, 1, true)
      err = failure(http.get, base .. "/big", { max_body = 1000 })
      assert.matches("over max_body", err, 1, true)
      err = failure(http.get, base .. "/chunked", { max_body = 10 })
      assert.matches("over max_body", err, 1, true)
    end)

    it("does not hold a HEAD answer's Content-Length against max_body (it has no body)", function()
      local res = http.head(base .. "/huge-length", { max_body = 1000 })
      assert.same({ 200, "" }, { res.status, res.body })
      assert.equal("4000000000", res.headers["content-length"])
    end)
  end)

  describe("refused before anything is sent", function()
    local cases = {
      { { }, "url must be a string" },
      { { url = "example.com/x" }, "has no scheme: write http:// or https://" },
      { { url = "http://[::1/x", query = { a = 1 } }, "bad url" },
      { { url = "file:///etc/passwd" }, "not http or https" },
      { { url = "ftp://127.0.0.1/x" }, "not http or https" },
      { { url = "http://127.0.0.1/x", headers = { ["X-A"] = "1\r\nX-B: 2" } }, "CR, LF" },
      { { url = "http://127.0.0.1/x", headers = { ["X A"] = "1" } }, "bad name" },
      { { url = "http://127.0.0.1/x", timeout = -1 }, "timeout must be a number of seconds from 0 to 1e+09" },
      { { url = "http://127.0.0.1/x", timeout = "5" }, "timeout must be a number of seconds from 0 to 1e+09, got \"5\"" },
      { { url = "http://127.0.0.1/x", connect_timeout = 0 / 0 }, "connect_timeout" },
      { { url = "http://127.0.0.1/x", tiemout = 1 }, "unknown option 'tiemout'" },
      { { url = "http://127.0.0.1/x", method = "GE T" }, "bad method" },
      { { url = "http://127.0.0.1/x", body = {} }, "body must be a string" },
      { { url = "http://127.0.0.1/x", max_body = 1.5 }, "max_body" },
      { { url = "http://127.0.0.1/x", verify = "no" }, "verify must be a boolean" },
      { { url = "http://127.0.0.1/x", query = { a = { {} } } }, "query value" },
      { { url = "http://127.0.0.1/x", retries = -1 }, "retries" },
      { { url = "http://127.0.0.1/x", json = { 1 }, body = "x" }, "not both body and json" },
    }
    for i, case in ipairs(cases) do
      it("case " .. i .. ": " .. case[2], function()
        assert.matches(case[2], failure(http.request, case[1]), 1, true)
      end)
    end

    it("refuses a redirect to a file:// URL", function()
      local err = failure(http.get, base .. "/redirect-to", { query = { url = "file:///etc/passwd" } })
      assert.matches('Protocol "file" not supported', err, 1, true)
    end)

    it("refuses a non-table and the wrong argument types", function()
      assert.matches("expected a table of options", failure(http.request, "http://x/"))
      assert.matches("expected a table of options", failure(http.get, base, 5))
      assert.matches("url must be a string", failure(http.get, nil))
    end)
  end)

  describe("TLS", function()
    local tls, dir
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "
        .. dir .. "/key.pem -out " .. dir .. "/cert.pem >/dev/null 2>&1"))
      tls = helper.start_api{ "--tls-cert", dir .. "/cert.pem", "--tls-key", dir .. "/key.pem" }
    end)
    teardown(function()
      tls.stop()
      os.execute("rm -rf " .. dir)
    end)

    it("verifies the peer by default and can be told not to", function()
      local url = "https://127.0.0.1:" .. tls.port .. "/echo"
      assert.matches("certificate", failure(http.get, url))
      assert.equal(200, http.get(url, { verify = false }).status)
    end)
  end)

  describe("HTTP/2", function()
    it("multiplexes concurrent requests over one TLS connection where the server offers it", function()
      local nginx = helper.start_nginx_h2()
      if not nginx then
        pending("nginx is not installed (tools/deps.sh installs nginx-light)")
        return
      end
      local versions = {}
      local fetch = pyq.async(function()
        local res = http.get(nginx.base .. "/doc.json", { verify = false })
        versions[res.http_version] = (versions[res.http_version] or 0) + 1
        return res:json().served
      end)
      local q <close> = pyq.Queue{ workers = 20 }
      pyq.await(fetch())   -- the first request opens the connection
      for _ = 1, 40 do q:put(fetch()) end
      local served = q:join()
      local connections = nginx.connections()
      nginx.stop()
      assert.equal(40, #served)
      assert.same({ ["2"] = 41 }, versions)
      assert.equal(1, connections)
    end)
  end)

  describe("on the loop", function()
    it("suspends only the calling task", function()
      local t0 = pyq.now()
      local fetch = pyq.async(function(i) return http.get(base .. "/delay/0.3").status + i end)
      local q <close> = pyq.Queue{ workers = 40 }
      for i = 1, 40 do q:put(fetch(i)) end
      local ticks = 0
      q:put(pyq.async(function() for _ = 1, 10 do pyq.sleep(0.01); ticks = ticks + 1 end end)())
      local results = q:join()
      assert.equal(40, #results)
      assert.equal(10, ticks)
      assert.is_true(pyq.now() - t0 < 2, "took " .. (pyq.now() - t0))
    end)

    it("reuses connections across tasks", function()
      local before = http.get(base .. "/stats"):json().connections
      local q <close> = pyq.Queue{ workers = 4 }
      local fetch = pyq.async(function() return http.get(base .. "/bytes/10").status end)
      for _ = 1, 200 do q:put(fetch()) end
      assert.equal(200, #q:join())
      local after = http.get(base .. "/stats"):json().connections
      assert.is_true(after - before <= 5, ("opened %d connections"):format(after - before))
    end)

    it("removes a cancelled task's transfer at once", function()
      local q = pyq.Queue{ workers = 5 }
      local fetch = pyq.async(function() return http.get(base .. "/delay/5") end)
      for _ = 1, 5 do q:put(fetch()) end
      pyq.sleep(0.1)
      local t0 = pyq.now()
      assert.equal(5, q:cancel())
      q:close()
      assert.is_true(pyq.now() - t0 < 0.5)
      assert.equal(5, q.cancelled)
      assert.equal(200, http.get(base .. "/status/200").status)
    end)

    it("keeps 1,000 requests in flight at once", function()
      local t0 = pyq.now()
      local fetch = pyq.async(function() return http.get(base .. "/delay/0.5").status end)
      local q <close> = pyq.Queue{ workers = 1000 }
      for _ = 1, 1000 do q:put(fetch()) end
      local results = q:join()
      assert.equal(1000, #results)
      assert.is_true(pyq.now() - t0 < 5, "took " .. (pyq.now() - t0))
    end)
  end)

  describe("response helpers", function()
    it("raise_for_status passes a 2xx response through and raises a typed error otherwise", function()
      local res = http.get(base .. "/status/200")
      assert.equal(res, res:raise_for_status())
      local err = helper.error_of(function() http.get(base .. "/status/404?key=SECRET"):raise_for_status() end)
      assert.is_true(pyq.is_error(err, "status"), tostring(err))
      assert.equal(404, err.status)
      assert.equal("GET", err.method)
      assert.matches("http_spec.lua:%d+: pyq.http: GET .*/status/404%?key=%*%*%* %-> 404$", tostring(err))
      assert.not_matches("SECRET", tostring(err), 1, true)
    end)

    it("gives content_type as the media type and the body's lines", function()
      local res = http.get(base .. "/chunked?n=3")
      assert.equal("text/plain", res.content_type)
      local lines = {}
      for line in res:lines() do lines[#lines + 1] = line end
      assert.same({ "chunk 0", "chunk 1", "chunk 2" }, lines)
      assert.equal("application/json", http.get(base .. "/status/200").content_type)
    end)

    it("parses an HTML body with res:html(), links resolved against the response's URL", function()
      local res = http.get(base .. "/page")
      assert.equal("text/html", res.content_type)
      local doc <close> = res:html()
      assert.equal("T", doc:css("title")[1]:text())
      assert.same({ base .. "/next?p=2", base .. "/other.html" }, doc:links())
    end)
  end)
end)

describe("the seed's example jobs against the fixture API", function()
  local api
  setup(function() api = helper.start_api{ "--entries", "40", "--latency", "2" } end)
  teardown(function() api.stop() end)

  it("pull_puuids.lua collects a puuid per league entry", function()
    local r = helper.run{ file = helper.source .. "/scripts/pull_puuids.lua", args = { api.base } }
    assert.equal(0, r.code, r.err)
    assert.matches("^2 leagues, 80 puuids", r.out)
    assert.matches("puuid%-C0", r.out)
  end)

  it("consume_matches.lua consumes the matches and reports peak RSS", function()
    local r = helper.run{ file = helper.source .. "/scripts/consume_matches.lua",
                          args = { api.base, "3000", helper.fresh(".jsonl") } }
    assert.equal(0, r.code, r.err)
    assert.matches("consumed 3000 matches", r.out, 1, true)
    assert.matches("peak RSS %d+%.%d MiB", r.out)
    assert.matches("holds no documents: true", r.out, 1, true)
  end)
end)
