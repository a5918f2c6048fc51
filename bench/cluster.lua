-- cluster.lua: tasks through a cluster queue, for bench/cluster.sh.
--   pyqhost bench/cluster.lua noop URL N          N no-op tasks (the round trip)
--   pyqhost bench/cluster.lua cpu URL N ITERS     N tasks of ITERS loop turns each
--   pyqhost bench/cluster.lua cpu local N ITERS   the same on a local queue (no Redis)
--   pyqhost bench/cluster.lua calibrate MS        the ITERS of MS milliseconds here
--   pyqhost --worker URL bench/cluster.lua        a worker process
-- The main process prints "key value" lines: the rate, the wall and CPU
-- seconds, and (cpu) how many tasks a worker process ran rather than main.
local function work(iters)
  local x = 0
  for i = 1, iters do x = x + i % 7 end
  return x
end
local noop = pyq.async("noop", function(i) return i end)
-- { 1 if a worker process ran it, its start, its end } (pyq.now() is the
-- system's monotonic clock, the same in every process): main can tell how
-- the work was shared and where the time went
local spin = pyq.async("spin", function(iters)
  local t0 = pyq.now()
  work(iters)
  return { pyq.worker and 1 or 0, t0, pyq.now() }
end)
if pyq.worker then return end

local mode, url = arg[1], arg[2]
if mode == "calibrate" then
  local ms, iters = tonumber(arg[2]) or 2, 1000
  work(1e6)   -- warm up
  while true do
    local t0 = os.clock()
    work(iters)
    local dt = os.clock() - t0
    if dt > 0.2 then
      print(("iters %d"):format(math.floor(iters * ms / 1000 / dt)))
      return
    end
    iters = iters * 2
  end
end

local n = math.tointeger(tonumber(arg[3])) or 100000
local opts = { workers = 50, maxsize = 0 }
if url ~= "local" then opts.cluster, opts.name = url, "bench" end
local t0, c0 = pyq.now(), os.clock()
local q <close> = pyq.Queue(opts)
if mode == "noop" then
  for i = 1, n do q:put(noop(i)) end
  local r = q:join()
  assert(#r == n and r[n] == n)
else
  local iters = math.tointeger(tonumber(arg[4])) or 20000
  for _ = 1, n do q:put(spin(iters)) end
  local r = q:join()
  assert(#r == n)
  -- per process (1 main, 2 the worker processes): tasks, the seconds from
  -- t0 to its first task's start and to its last one's end, the seconds
  -- inside tasks (CPU plus what other processes took of it)
  local tasks, first, last, busy = { 0, 0 }, { 1 / 0, 1 / 0 }, { 0, 0 }, { 0, 0 }
  for i = 1, n do
    local p = r[i][1] + 1
    tasks[p] = tasks[p] + 1
    first[p] = math.min(first[p], r[i][2] - t0)
    last[p] = math.max(last[p], r[i][3] - t0)
    busy[p] = busy[p] + r[i][3] - r[i][2]
  end
  print(("elsewhere %d"):format(tasks[2]))
  for p, who in ipairs{ "main", "workers" } do
    if tasks[p] > 0 then
      print(("%s_first %.3f"):format(who, first[p]))
      print(("%s_last %.3f"):format(who, last[p]))
      print(("%s_busy %.3f"):format(who, busy[p]))
    end
  end
end
local dt = pyq.now() - t0
print(("tasks_per_s %.0f"):format(n / dt))
print(("seconds %.3f"):format(dt))
print(("cpu_s %.3f"):format(os.clock() - c0))
