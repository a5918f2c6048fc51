-- cluster_matches.lua: one job on several processes or machines through
-- Redis Streams (pyq.Queue{ cluster = ... }).  The same file runs everywhere:
--   pyqhost scripts/cluster_matches.lua redis://127.0.0.1:6379/0 BASE_URL [count]
--   pyqhost --worker redis://127.0.0.1:6379/0 scripts/cluster_matches.lua redis://127.0.0.1:6379/0 BASE_URL
-- (a worker: the same command with --worker URL in front; it reads only
-- BASE_URL of its arguments, the rest is the main process's)
-- The first is the main process: it puts one task per match id and joins
-- the results in put order (its own workers run tasks too).  Each --worker
-- process runs the script with pyq.worker = true, which stops it after the
-- named task is defined, then serves the job until the main process ends it.
local redis, base = arg[1], arg[2]
local count = math.tointeger(tonumber(arg[3] or "1000")) or 1000
if not (redis and base) then
  error("usage: pyqhost [--worker URL] scripts/cluster_matches.lua REDIS_URL BASE_URL [count]", 0)
end

-- A named task: its name, arguments and result travel through Redis as
-- JSON, so another process can run it.  Keep results small.
local fetch_match = pyq.async("fetch_match", function(id)
  local res = pyq.http.get(("%s/lol/match/v5/matches/%s"):format(base, id), { retries = 3 })
  if not res.ok then error(("%s: HTTP %d"):format(id, res.status), 0) end
  local doc = res:json()
  return { id = id, players = #(doc.metadata and doc.metadata.participants or {}) }
end)

if pyq.worker then return end   -- like Python's `if __name__ == "__main__"`

local t0 = pyq.now()
local matches
do
  local queue <close> = pyq.Queue{
    workers = 25, cluster = redis, name = "matches", visibility = 30,
    exception_handler = function(err) pyq.log.warning("%s", tostring(err)) end,
  }
  for i = 1, count do queue:put(fetch_match("NA1_" .. i)) end
  matches = queue:join()
end
print(("%d matches in %.2f s; first %s, last %s"):format(#matches, pyq.now() - t0,
  matches[1] and matches[1].id, matches[#matches] and matches[#matches].id))
