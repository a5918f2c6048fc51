-- pyqhost's side of bench/http.sh's cache figure: N GETs of distinct URLs
-- (url?i=1..N) through Queue{workers=W}, with the response cache in FILE
-- (a SQLite file, or a redis://host:port/db URL).
--   pyqhost bench/cache.lua URL N WORKERS FILE live|replay
-- live: no cache (every request sent); replay: every answer from FILE
-- (filled first, untimed, if it does not hold them yet).
local url, n, workers, file, mode = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5]
local http = pyq.http
local get = pyq.async(function(i)
  local res = http.get(url .. "?i=" .. i)
  if res.status ~= 200 then error("HTTP " .. res.status) end
  return res.cached
end)
local function run()
  local t0 = pyq.now()
  local queue <close> = pyq.Queue{ workers = workers }
  for i = 1, n do queue:put(get(i)) end
  local cached = queue:join()
  assert(queue.failed == 0, queue.failed .. " requests failed")
  return pyq.now() - t0, cached
end
if mode == "replay" then
  http.configure{ cache = file, cache_ttl = 1e9 }
  run()   -- fills the cache (a second run of the bench finds it full)
end
local dt, cached = run()
if mode == "replay" then
  for i = 1, n do assert(cached[i] == true, "request " .. i .. " was not answered from the cache") end
end
print(("requests_per_s %.0f"):format(n / dt))
