-- Load tests (CTest label `load`): many requests in flight, millions of
-- tasks, a huge worker count.  Bounds are loosened under the sanitizers,
-- which slow the host down several times.
require 'busted.runner'()
local helper = require 'tests.helper'

local slow = helper.sanitized and 2 or 1

describe("under load", function()
  it("keeps 10,000 requests in flight against a server that waits 1 s, as fast as a C-only loop", function()
    -- Measured against bench/http_loop.c (libcurl multi + libuv, no Lua)
    -- on the same server in the same run: how long 10,000 connections take
    -- depends on the machine and the Python server (1.7 s once, over 5 s on
    -- a slower day), the ratio does not.  Sequential requests would take
    -- 10,000 s; a few hundred at once, tens of seconds.
    local server = helper.start_delay_server(1, 2)
    local loop = helper.pyqhost:gsub("pyqhost$", "http_loop")
    local c = tonumber(helper.shell(helper.quote(loop) .. " " .. server.base .. "/ 10000 10000"):match("seconds ([%d.]+)"))
    local t0 = pyq.now()
    local get = pyq.async(function()
      return pyq.http.get(server.base .. "/", { timeout = 60, connect_timeout = 50 }).status
    end)
    local results
    do
      local q <close> = pyq.Queue{ workers = 10000 }
      for _ = 1, 10000 do q:put(get()) end
      results = q:join()
      assert.equal(0, q.failed)
    end
    local dt = pyq.now() - t0
    server.stop()
    assert.equal(10000, #results)
    assert.is_number(c, "the C loop ran")
    -- the sanitizers make every request cost several times the CPU
    local ratio = helper.sanitized and 4 or 1.3
    assert.is_true(dt < c * ratio + 0.5, ("took %.2f s, the C loop %.2f s"):format(dt, c))
    print(("10,000 in flight: pyqhost %.2f s, C loop %.2f s"):format(dt, c))
  end)

  it("runs 5,000,000 no-op tasks with the heap and RSS flat after the first 500,000", function()
    local noop = pyq.async(function() end)
    local samples = {}
    local t0 = pyq.now()
    do
      local q <close> = pyq.Queue{ workers = 25 }
      for i = 1, 5000000 do
        q:put(noop())
        if i % 500000 == 0 then
          collectgarbage()
          samples[#samples + 1] = { heap = collectgarbage("count"), rss = helper.rss_mib() }
        end
      end
      q:join()
      assert.equal(5000000, q.done)
    end
    local base = samples[1]
    for i = 2, #samples do
      assert.is_true(samples[i].heap <= base.heap * 1.1,
        ("heap %.0f KiB at %d00k against %.0f KiB at 500k"):format(samples[i].heap, i * 5, base.heap))
      -- AddressSanitizer holds freed memory in quarantine: RSS says nothing there
      assert.is_true(helper.sanitized or samples[i].rss <= base.rss * 1.1,
        ("RSS %.1f MiB at %d00k against %.1f MiB at 500k"):format(samples[i].rss, i * 5, base.rss))
    end
    print(("\n5M no-op tasks in %.2f s; heap %.0f -> %.0f KiB, RSS %.1f -> %.1f MiB"):format(
      pyq.now() - t0, base.heap, samples[#samples].heap, base.rss, samples[#samples].rss))
  end)

  it("creates a queue of 100,000 workers that costs nothing until used", function()
    collectgarbage()
    local rss0 = helper.rss_mib()
    local nap = pyq.async(function() pyq.sleep(0.2) end)
    local q <close> = pyq.Queue{ workers = 100000, maxsize = 0 }
    for _ = 1, 10 do q:put(nap()) end
    q:join()
    assert.is_true(helper.rss_mib() - rss0 < 5, "idle queue grew RSS by " .. (helper.rss_mib() - rss0))
    local t0 = pyq.now()
    for _ = 1, 100000 do q:put(nap()) end
    q:join()
    local grown = helper.rss_mib() - rss0
    assert.is_true(pyq.now() - t0 < 3 * slow, "100,000 concurrent sleeps took " .. (pyq.now() - t0))
    assert.is_true(grown < 400 * slow, ("100,000 running tasks grew RSS by %.0f MiB"):format(grown))
    collectgarbage()
    assert.is_true(collectgarbage("count") < 32 * 1024, "idle workers were kept")
  end)
end)
