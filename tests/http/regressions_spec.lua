require "busted.runner"()
-- Defects a review of the sessions, downloads and cache work found, each
-- pinned: a multipart table changed while its request waits, a download
-- through an https proxy's CONNECT tunnel.
local helper = require "tests.helper"
local http = pyq.http

describe("pyq.http regressions", function()
  it("sends the multipart parts that were checked, whatever the table becomes while the request waits", function()
    local api = helper.start_api{}
    local host = "127.0.0.1:" .. api.port
    local mp = { a = "original", n = 1 }
    local ok, err = pcall(function()
      http.limit(host, "1/1s")
      http.get(api.base .. "/echo")   -- takes the slot: the next request waits about 1 s
      local q <close> = pyq.Queue{ workers = 2 }
      q:put(pyq.async(function() return http.post(api.base .. "/echo", { multipart = mp }):json().body end)())
      q:put(pyq.async(function()
        pyq.sleep(0.2)
        mp.a = { path = "/etc/passwd", type = "text/plain\r\nX-Injected: yes" }
        mp[1] = "x"
      end)())
      local body = q:join()[1]
      assert.matches('name="a"\r\n\r\noriginal\r\n', body, 1, true)
      assert.not_matches("root:", body, 1, true)
      assert.not_matches("X-Injected", body, 1, true)
    end)
    http.limit(host, nil)
    api.stop()
    assert(ok, err)
  end)

  it("refuses what it used to drop or ignore, naming the function and option", function()
    local api = helper.start_api{}
    local dir = helper.tempdir()
    local ok, err = pcall(function()
      local function message(f, ...)
        local e = helper.error_of(f, ...)
        return tostring(e), e
      end
      local u = api.base .. "/echo"
      local cases = {
        { http.get, u, { auth = { "u", "p" }, headers = { Authorization = "Basic eA==" } },
          "pyq.http.get: give auth or an Authorization header, not both" },
        { http.get, u, { method = "POST" }, "pyq.http.get: method is the function's (GET)" },
        { http.get, u, { auth = { "u", "p", tpye = "digest" } }, "pyq.http.get: auth: unknown key \"tpye\"" },
        { http.post, u, { form = { q = true, t = { a = 1 } } },
          "pyq.http.post: form value for 't' must be a string, number, boolean or a list of them" },
        { http.get, u, { query = { t = { 1, x = 2 } } }, "query value for 't' must be" },
      }
      for _, c in ipairs(cases) do
        local text, e = message(c[1], c[2], c[3])
        assert.is_true(pyq.is_error(e, "usage"), text)
        assert.matches(c[4], text, 1, true)
      end
      local text = message(http.configure, { cache = dir .. "/c.sqlite", cache_statuses = 200 })
      assert.matches("pyq.http.configure: cache_statuses must be a list of HTTP statuses", text, 1, true)
      os.execute("mkdir " .. helper.quote(dir .. "/sub"))
      local e
      text, e = message(http.get, api.base .. "/bytes/10", { output = dir .. "/sub" })
      assert.is_true(pyq.is_error(e, "io"), text)
      assert.matches("cannot rename", text, 1, true)
      assert.is_nil(io.open(dir .. "/sub.part"))
      assert.equal("PUT", http.request{ url = u, method = "PUT" }:json().method)
    end)
    api.stop()
    os.execute("rm -rf " .. helper.quote(dir))
    assert(ok, err)
  end)

  it("downloads through an https proxy's CONNECT tunnel: resume appends, an error page makes no file", function()
    local nginx = helper.start_nginx_h2()
    if not nginx then return pending("nginx is not installed") end
    local proxy = helper.start_proxy()
    local dir = helper.tempdir()
    local ok, err = pcall(function()
      local whole = helper.byte_pattern(0, 200000)
      local f = assert(io.open(nginx.www .. "/big.bin", "wb"))
      f:write(whole)
      f:close()
      f = assert(io.open(dir .. "/big.bin.part", "wb"))
      f:write(whole:sub(1, 100000))
      f:close()
      local opts = { proxy = proxy.url, verify = false, http_version = "1.1" }
      opts.output, opts.resume = dir .. "/big.bin", true
      local res = http.get(nginx.base .. "/big.bin", opts)
      assert.same({ 206, 200000 }, { res.status, res.size })
      assert.equal(whole, helper.read_file(dir .. "/big.bin"))
      assert.not_matches("Connection established", res.raw_headers, 1, true)
      local missing = http.get(nginx.base .. "/nope.bin", { proxy = proxy.url, verify = false,
                                                              output = dir .. "/nope.bin" })
      assert.equal(404, missing.status)
      assert.is_nil(io.open(dir .. "/nope.bin"))
      assert.is_nil(io.open(dir .. "/nope.bin.part"))
    end)
    proxy.stop()
    nginx.stop()
    os.execute("rm -rf " .. helper.quote(dir))
    assert(ok, err)
  end)
end)
