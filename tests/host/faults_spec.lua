-- Faults: servers that die, stall, fail or throttle.  Every job must account
-- for every task (done, failed or cancelled) and end as documented.
require 'busted.runner'()
local helper = require 'tests.helper'
local http = pyq.http

-- Runs n GETs over `workers` workers; `during` runs while they are in
-- flight.  Returns the closed queue, its results and the errors handled.
local function run_job(n, workers, url_of, opts, during)
  local errors = {}
  local q = pyq.Queue{ workers = workers, maxsize = 0,
                       exception_handler = function(e) errors[#errors + 1] = tostring(e) end }
  local fetch = pyq.async(function(i) return http.get(url_of(i), opts).status end)
  for i = 1, n do q:put(fetch(i)) end
  if during then during(q) end
  local results = q:join()
  q:close()
  assert.equal(n, q.puts)
  assert.equal(q.puts, q.done + q.failed + q.cancelled)
  return q, results, errors
end

local function all_match(list, pattern)
  for _, s in ipairs(list) do
    if not s:find(pattern) then return false, s end
  end
  return true
end

describe("faults", function()
  it("accounts for every task when connections are refused mid-job", function()
    local port = helper.closed_port()
    local api = helper.start_api{ "--port", tostring(port) }
    local q, results, errors = run_job(200, 10, function() return api.base .. "/delay/0.02" end, nil,
      function() pyq.sleep(0.15); api.stop() end)
    assert.is_true(#results > 0 and q.failed > 0, ("done %d failed %d"):format(q.done, q.failed))
    assert.equal(200, q.done + q.failed)
    local ok, odd = all_match(errors, "^pyq%.http: GET http://127%.0%.0%.1:" .. port)
    assert.is_true(ok, odd)
  end)

  it("recovers with retries when the server is killed and restarted", function()
    local port = helper.closed_port()
    local api = helper.start_api{ "--port", tostring(port) }
    local q, results = run_job(200, 10, function() return api.base .. "/delay/0.02" end,
      { retries = 10, backoff = 0.05 },
      function()
        pyq.sleep(0.15)
        api.stop()
        pyq.sleep(0.3)
        api = helper.start_api{ "--port", tostring(port) }
      end)
    api.stop()
    assert.equal(0, q.failed)
    assert.equal(200, #results)
    assert.is_true(http.stats().retries > 0)
  end)

  it("times out on a server that stalls after the headers", function()
    local api = helper.start_api()
    local t0 = pyq.now()
    local q, _, errors = run_job(20, 20, function() return api.base .. "/stall" end, { timeout = 0.3 })
    api.stop()
    assert.equal(20, q.failed)
    assert.is_true(pyq.now() - t0 < 2)
    local ok, odd = all_match(errors, "timed out")
    assert.is_true(ok, odd)
  end)

  it("rides out a 5xx storm with retries, and returns the last 5xx when they run out", function()
    local api = helper.start_api()
    local q, results = run_job(100, 20, function(i) return api.base .. "/flaky/storm" .. i .. "/2" end,
      { retries = 3, backoff = 0.01 })
    assert.same({ 100, 0 }, { q.done, q.failed })
    for _, status in ipairs(results) do assert.equal(200, status) end
    q, results = run_job(50, 20, function(i) return api.base .. "/flaky/hard" .. i .. "/9?status=502" end,
      { retries = 2, backoff = 0.01 })
    api.stop()
    assert.same({ 50, 0 }, { q.done, q.failed })
    for _, status in ipairs(results) do assert.equal(502, status) end
  end)

  it("waits out a 429 storm with Retry-After", function()
    local api = helper.start_api()
    local t0 = pyq.now()
    local q, results = run_job(100, 50, function(i) return api.base .. "/retry-after/s" .. i .. "/1" end,
      { retries = 2, backoff = 0.01 })
    api.stop()
    assert.same({ 100, 0 }, { q.done, q.failed })
    for _, status in ipairs(results) do assert.equal(200, status) end
    assert.is_true(pyq.now() - t0 >= 0.99)
  end)

  it("fails every task on names that do not resolve", function()
    local q, _, errors = run_job(10, 5, function(i) return "http://nosuch" .. i .. ".invalid/" end,
      { connect_timeout = 5 })
    assert.equal(10, q.failed)
    local ok, odd = all_match(errors, "Could not resolve host")
    assert.is_true(ok, odd)
  end)

  it("fails every task whose body is over max_body, keeping nothing of it", function()
    local api = helper.start_api()
    local q, _, errors = run_job(10, 5, function() return api.base .. "/big" end, { max_body = 100000 })
    local chunked = run_job(10, 5, function() return api.base .. "/chunked?n=100" end, { max_body = 50 })
    api.stop()
    assert.equal(10, q.failed)
    assert.equal(10, chunked.failed)
    local ok, odd = all_match(errors, "over max_body")
    assert.is_true(ok, odd)
  end)

  it("exits as documented, with the bookkeeping in the summary, when the server dies", function()
    local api = helper.start_api()
    local job = helper.spawn("--summary", [[
      local q <close> = pyq.Queue{ workers = 10, exception_handler = function() end }
      for i = 1, 300 do
        q:put(pyq.async(function() return pyq.http.get(arg[1] .. "/delay/0.02").status end)())
      end
    ]], helper.quote(api.base))
    pyq.sleep(0.3)
    api.stop()
    local code, _, err = helper.wait_exit(job)
    assert.equal(0, code, err)
    local put, done, failed, cancelled = err:match("put (%d+) = done (%d+) %+ failed (%d+) %+ cancelled (%d+)")
    assert.equal("300", put)
    assert.equal(300, tonumber(done) + tonumber(failed) + tonumber(cancelled))
    assert.is_true(tonumber(failed) > 0)
  end)
end)
