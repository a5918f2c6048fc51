-- cluster.lua: no-op tasks through a cluster queue (bench/cluster.sh).
--   pyqhost bench/cluster.lua REDIS_URL N       the main process
--   pyqhost --worker REDIS_URL bench/cluster.lua  a worker process
local noop = pyq.async("noop", function(i) return i end)
if pyq.worker then return end
local n = math.tointeger(tonumber(arg[2])) or 100000
local t0 = pyq.now()
local q <close> = pyq.Queue{ workers = 50, cluster = arg[1], name = "bench", maxsize = 0 }
for i = 1, n do q:put(noop(i)) end
local r = q:join()
assert(#r == n and r[n] == n)
print(("tasks_per_s %.0f"):format(n / (pyq.now() - t0)))
