-- pyq.sqlite inserts, as `name value` lines (bench/run.sh compares them
-- with bench/sqlite_py.py): pyqhost bench/sqlite.lua dir [n]
local dir, n = arg[1], math.floor(tonumber(arg[2]) or 200000)

local function fresh(name)
  local path = dir .. "/" .. name
  os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  return path
end

-- 1. single-row inserts from tasks through Queue{workers=25}
do
  local db <close> = pyq.sqlite.open(fresh("tasks.sqlite"))
  db:exec("CREATE TABLE m (id INTEGER, name TEXT, score REAL)")
  local add = pyq.async(function(i) db:insert("m", { id = i, name = "player" .. i, score = i * 0.5 }) end)
  local t0 = pyq.now()
  do
    local q <close> = pyq.Queue{ workers = 25 }
    for i = 1, n do q:put(add(i)) end
  end
  db:close()
  print(("task_inserts_per_s %.0f"):format(n / (pyq.now() - t0)))
end

-- 2. the same rows from a plain loop with db:exec
do
  local db <close> = pyq.sqlite.open(fresh("loop.sqlite"))
  db:exec("CREATE TABLE m (id INTEGER, name TEXT, score REAL)")
  local t0 = pyq.now()
  for i = 1, n do db:exec("INSERT INTO m VALUES (?, ?, ?)", i, "player" .. i, i * 0.5) end
  db:close()
  print(("loop_inserts_per_s %.0f"):format(n / (pyq.now() - t0)))
end
