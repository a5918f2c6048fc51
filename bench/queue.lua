-- The queue benchmarks, as `name value` lines (bench/run.sh compares them
-- with bench/queue_asyncio.py).  pyqhost bench/queue.lua [scale]
local scale = tonumber(arg[1]) or 1

local function rss_kib()
  local f = io.open("/proc/self/status")
  local kib = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kib)
end

-- 1. no-op tasks through Queue{workers=25}
do
  local n = math.floor(1000000 * scale)
  local noop = pyq.async(function() end)
  local t0 = pyq.now()
  do
    local queue <close> = pyq.Queue{ workers = 25 }
    for _ = 1, n do queue:put(noop()) end
  end
  print(("noop_tasks_per_s %.0f"):format(n / (pyq.now() - t0)))
end

-- 1b. tasks that take an argument and return a value: join collects them
do
  local n = math.floor(1000000 * scale)
  local square = pyq.async(function(i) return i * i end)
  local t0 = pyq.now()
  local results
  do
    local queue <close> = pyq.Queue{ workers = 25 }
    for i = 1, n do queue:put(square(i)) end
    results = queue:join()
  end
  assert(#results == n)
  print(("result_tasks_per_s %.0f"):format(n / (pyq.now() - t0)))
end

-- 2. memory per pending task, all put before any runs
do
  local n = math.floor(1000000 * scale)
  local job = pyq.async(function(i) end)
  collectgarbage(); collectgarbage()
  local heap0, rss0 = collectgarbage("count"), rss_kib()
  local queue <close> = pyq.Queue{ workers = 25, maxsize = 0 }
  for i = 1, n do queue:put(job(i)) end
  collectgarbage()
  print(("pending_heap_bytes %.1f"):format((collectgarbage("count") - heap0) * 1024 / n))
  print(("pending_rss_bytes %.1f"):format((rss_kib() - rss0) * 1024 / n))
end

-- 3. tasks sleeping 10 ms over 1,000 workers (ideal: n / 1000 * 10 ms)
do
  local n = math.floor(100000 * scale)
  local nap = pyq.async(function() pyq.sleep(0.01) end)
  local t0 = pyq.now()
  do
    local queue <close> = pyq.Queue{ workers = 1000 }
    for _ = 1, n do queue:put(nap()) end
  end
  print(("sleep_seconds %.3f"):format(pyq.now() - t0))
  print(("sleep_ideal %.3f"):format(n / 1000 * 0.01))
end
