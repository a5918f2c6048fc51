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
