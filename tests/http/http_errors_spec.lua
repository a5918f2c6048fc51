-- pyq.http's errors are pyq.Error objects: a kind to test instead of the
-- text, the method and the masked URL as fields, and the text scripts saw
-- before as their tostring.  Bad options are "usage" errors at the
-- caller's line, checked against one option table per API.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http

local caught = helper.error_of   -- the error value f(...) raises

describe("pyq.http errors", function()
  local api, base
  setup(function() api = helper.start_api{} base = api.base end)
  teardown(function() api.stop() end)

  it("of the transport are kind transport, with method and masked url", function()
    local port = helper.closed_port()
    local e = caught(http.post, "http://u:hunter2@127.0.0.1:" .. port .. "/x?token=SECRET", { body = "b" })
    assert.is_true(pyq.is_error(e, "transport"))
    assert.equal("POST", e.method)
    assert.equal("http://u:***@127.0.0.1:" .. port .. "/x?token=***", e.url)
    assert.matches("^pyq%.http: POST http://u:%*%*%*@127%.0%.0%.1:%d+/x%?token=%*%*%*: .*Connection refused",
                   tostring(e))
    assert.equal(tostring(e), e.message)
    e = caught(http.get, base .. "/drop")
    assert.is_true(pyq.is_error(e, "transport"))
    assert.matches("transfer closed", tostring(e), 1, true)
  end)

  it("of time are kind timeout, whether libcurl's, 0 or the retry loop's", function()
    local e = caught(http.get, base .. "/delay/3", { timeout = 0.2 })
    assert.is_true(pyq.is_error(e, "timeout"))
    assert.equal(base .. "/delay/3", e.url)
    e = caught(http.get, base .. "/delay/3", { timeout = 0 })
    assert.is_true(pyq.is_error(e, "timeout"))
    assert.matches("timed out after 0 milliseconds (timeout = 0)", tostring(e), 1, true)
    e = caught(http.get, base .. "/delay/3", { retries = 2, backoff = 0.01, timeout = 0.3 })
    assert.is_true(pyq.is_error(e, "timeout"))
    assert.equal("GET", e.method)
    assert.equal(base .. "/delay/3", e.url)
  end)

  it("of a body over max_body are kind too_big, and not retried", function()
    local before = http.stats().requests
    local e = caught(http.get, base .. "/big", { max_body = 1000, retries = 2, backoff = 0.01 })
    assert.is_true(pyq.is_error(e, "too_big"))
    assert.matches("over max_body (1000 bytes)", tostring(e), 1, true)
    assert.equal(1, http.stats().requests - before)
  end)

  it("of a Retry-After over max_retry_after are kind status, with the status", function()
    local own = helper.start_api{}   -- its hold would stop the others' requests
    local ok, e = pcall(http.get, own.base .. "/retry-after-value/errs?value=100", { retries = 1, max_retry_after = 1 })
    own.stop()
    assert.is_false(ok)
    assert.is_true(pyq.is_error(e, "status"))
    assert.equal(429, e.status)
    assert.matches("over max_retry_after (1 s)", tostring(e), 1, true)
  end)

  it("of res:json() are kind decode, at the caller's line", function()
    local res = http.get(base .. "/invalid-json")
    local e = caught(res.json, res)
    assert.is_true(pyq.is_error(e, "decode"))
    assert.equal(base .. "/invalid-json", e.url)
    assert.matches("the response is not valid JSON", tostring(e), 1, true)
  end)

  it("are not retried when a pyq.timeout scope runs out (its errors are not pyq.http's)", function()
    local get = pyq.async(function()
      return http.get(base .. "/slow-first/errs-scope/5/3", { retries = 5, backoff = 0.01 })
    end)
    local e = caught(pyq.await, pyq.timeout(0.3, get()))
    assert.matches("^pyq%.timeout: timed out", tostring(e))
    assert.is_false(pyq.is_error(e, "transport"))
    pyq.sleep(0.1)
    assert.equal(1, http.get(base .. "/seen/errs-scope"):json().count)
  end)

  it("from pyq.core's half, before pyq.http is loaded, are clear (no hook to call yet)", function()
    local r = helper.run{ script = [[
      local C = require("pyq.core")._http
      print(C.get(arg[1] .. "/status/429").status)
      local ok, e = pcall(C.get, arg[1] .. "/status/200", { retries = 1 })
      print(ok, pyq.is_error(e, "usage"), e)
    ]], args = { base } }
    assert.equal(0, r.code, r.err)
    assert.matches("^429\nfalse\ttrue\t.*pyq%.http%.get: the retry loop is in pyq%.http", r.out)
  end)

  describe("of bad options", function()
    it("are kind usage at the caller's line, naming the function and the option", function()
      local cases = {
        { http.get, base, { tiemout = 1 }, "pyq.http.get: unknown option 'tiemout'" },
        { http.get, base, { retries = -1 }, "pyq.http.get: retries must be a non-negative integer, got -1" },
        { http.post, base, { json = { 0 / 0 } }, "pyq.http.post: json: " },
        { http.request, { url = base, backoff = "1" }, nil, "pyq.http.request: backoff must be a non-negative number of seconds, got \"1\"" },
        { http.request, { url = base, [1] = true }, nil, "pyq.http.request: option names must be strings, got number" },
        { http.get, base, 5, "pyq.http.get: expected a table of options, got number" },
        { http.configure, { http2 = 1 }, nil, "pyq.http.configure: http2 must be a boolean, got number" },
        { http.configure, { retries = 1.5 }, nil, "pyq.http.configure: retries must be a non-negative integer, got 1.5" },
        { http.limit, "h", "x", "pyq.http.limit: bad rate \"x\"" },
      }
      for i, c in ipairs(cases) do
        local line = debug.getinfo(1, "l").currentline + 1
        local e = caught(function() local r = c[1](c[2], c[3]) return r end)
        assert.is_true(pyq.is_error(e, "usage"), "case " .. i)
        assert.matches("http_errors_spec.lua:" .. line .. ": " .. c[4], tostring(e), 1, true)
      end
    end)

    it("of configure are all checked before any is applied", function()
      local e = caught(http.configure, { user_agent = "half-applied/1", sensitive_headers = { 1 } })
      assert.is_true(pyq.is_error(e, "usage"))
      assert.not_equal("half-applied/1", http.get(base .. "/echo"):json().headers["user-agent"])
    end)

    it("of configure include the retry plan, which requests then use", function()
      http.configure{ retries = 2, backoff = 0.01 }
      local ok, res = pcall(http.get, base .. "/flaky/errs-plan/1")
      http.configure{ retries = 0, backoff = 0.5 }
      assert.is_true(ok, tostring(res))
      assert.same({ 200, 1 }, { res.status, res.retries })
    end)
  end)
end)
