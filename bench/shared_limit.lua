-- pyqhost's side of bench/shared_limit.sh: N GETs from a Queue of W
-- workers with no limit, a local one, or a shared one (Redis), each set
-- far above what is reached, so what is measured is the cost of asking.
--   pyqhost bench/shared_limit.lua URL N WORKERS none|local|shared [REDIS_URL]
local url, n, workers, mode, redis = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5]
local host = url:match("^%a+://([^/]+)")
if mode == "local" then
  pyq.http.limit(host, "10000000/1s")
elseif mode == "shared" then
  pyq.http.limit(host, "10000000/1s", { shared = redis })
end
local get = pyq.async(function()
  local res = pyq.http.get(url)
  if res.status ~= 200 then error("HTTP " .. res.status) end
end)
local t0 = pyq.now()
local queue <close> = pyq.Queue{ workers = workers }
for _ = 1, n do queue:put(get()) end
queue:join()
local dt = pyq.now() - t0
assert(queue.failed == 0, queue.failed .. " requests failed")
print(("requests_per_s %.0f"):format(n / dt))
