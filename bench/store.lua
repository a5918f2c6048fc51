-- The job store benchmark, as `name value` lines (bench/run.sh compares them
-- with bench/store_py.py): n keyed tasks returning a small table through
-- Queue{ workers = 25, store = ... }, first run (each result JSON-encoded
-- and recorded) and re-run (each key a primary-key read, its result
-- decoded and given back: skipped).  pyqhost bench/store.lua dir [n]
local dir, n = arg[1], math.floor(tonumber(arg[2]) or 100000)
local path = dir .. "/store.sqlite"
for _, p in ipairs({ path, path .. "-wal", path .. "-shm" }) do os.remove(p) end
local task = pyq.async(function(i) return { id = i, name = "player" .. i } end)

local function run()
  local t0 = pyq.now()
  local q <close> = pyq.Queue{ workers = 25, store = path, name = "bench" }
  for i = 1, n do q:put(task(i), { key = "match:" .. i }) end
  local results = q:join()
  assert(#results == n and results[n].id == n)
  return n / (pyq.now() - t0), q
end

local first, q1 = run()
assert(q1.done == n)
print(("store_first_per_s %.0f"):format(first))
local again, q2 = run()
assert(q2.skipped == n)
print(("store_rerun_per_s %.0f"):format(again))
