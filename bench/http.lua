-- pyqhost's side of bench/http.sh: Queue{workers=W}, each task one GET
-- whose body it reads.   pyqhost bench/http.lua URL N WORKERS
local url, n, workers = arg[1], tonumber(arg[2]), tonumber(arg[3])
local get = pyq.async(function()
  local res = pyq.http.get(url)
  if res.status ~= 200 then error("HTTP " .. res.status) end
  return #res.body == 0 and 0 or nil
end)
local t0 = pyq.now()
local queue <close> = pyq.Queue{ workers = workers }
for _ = 1, n do queue:put(get()) end
queue:join()
local dt = pyq.now() - t0
assert(queue.failed == 0, queue.failed .. " requests failed")
print(("requests_per_s %.0f"):format(n / dt))
print(("seconds %.3f"):format(dt))
