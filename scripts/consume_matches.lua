-- consume_matches.lua: the seed's memory advice as a real job.
--   pyqhost scripts/consume_matches.lua BASE_URL [count]
-- 30,000 match documents (~20 KB each) are fetched by tasks that consume
-- them (a few counters) and return nothing; the match list is iterated
-- with frozen_generator, so the tasks fill copies and the list stays small.
local base = arg[1] or error("usage: pyqhost scripts/consume_matches.lua BASE_URL [count]", 0)
local count = tonumber(arg[2]) or 30000
local http = pyq.http
local frozen_generator = pyq.itertools.frozen_generator

local function peak_rss_mib()
  local f = assert(io.open("/proc/self/status"))
  local kib = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return tonumber(kib) / 1024
end

-- The match ids, 100 per page, as small objects the tasks will fill.
local list_ids = pyq.async(function(start)
  local res = http.get(base .. "/lol/match/v5/matches/by-puuid/puuid-demo/ids",
                       { query = { start = start, count = math.min(100, count - start) }, retries = 3 })
  if not res.ok then error("match ids: HTTP " .. res.status, 0) end
  return res:json()
end)

local matches = {}
do
  local queue <close> = pyq.Queue{ workers = 10 }
  for start = 0, count - 1, 100 do queue:put(list_ids(start)) end
  for _, page in ipairs(queue:join("table")) do
    for _, id in ipairs(page) do matches[#matches + 1] = { id = id } end
  end
end

local totals = { matches = 0, kills = 0, deaths = 0, blue_wins = 0 }

local consume_match = pyq.async(function(match)
  local res = http.get(base .. "/lol/match/v5/matches/" .. match.id, { retries = 3 })
  if not res.ok then error(match.id .. ": HTTP " .. res.status, 0) end
  match.doc = res:json()            -- filled on the copy, not on `matches`
  local info = match.doc.info
  for _, p in ipairs(info.participants) do
    totals.kills = totals.kills + p.kills
    totals.deaths = totals.deaths + p.deaths
  end
  if info.participants[1].win then totals.blue_wins = totals.blue_wins + 1 end
  totals.matches = totals.matches + 1
  -- nothing returned: the queue keeps nothing
end)

local t0 = pyq.now()
do
  local queue <close> = pyq.Queue{ workers = 50 }
  for _, match in frozen_generator(matches) do
    queue:put(consume_match(match))
  end
end
local dt = pyq.now() - t0

print(("consumed %d matches in %.1fs (%.0f/s): %d kills, %d deaths, blue side won %d"):format(
  totals.matches, dt, totals.matches / dt, totals.kills, totals.deaths, totals.blue_wins))
print(("peak RSS %.1f MiB; the match list still holds no documents: %s"):format(
  peak_rss_mib(), tostring(matches[1].doc == nil)))
