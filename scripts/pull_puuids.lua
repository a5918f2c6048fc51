-- pull_puuids.lua: the seed's two-phase example as a real job.
--   pyqhost scripts/pull_puuids.lua BASE_URL [queue]
-- Phase 1 queues the challenger and master league lookups and joins them;
-- phase 2 queues a summoner lookup per league entry and joins the puuids.
local base = arg[1] or error("usage: pyqhost scripts/pull_puuids.lua BASE_URL [queue]", 0)
local ranked = arg[2] or "RANKED_SOLO_5x5"
local http = pyq.http

local function get_json(url)
  local res = http.get(url, { retries = 3 })
  if not res.ok then error(("%s: HTTP %d"):format(url, res.status), 0) end
  return res:json()
end

local get_league = pyq.async(function(kind)
  return get_json(("%s/lol/league/v4/%s/by-queue/%s"):format(base, kind, ranked))
end)

local get_puuid = pyq.async(function(summoner_id)
  return get_json(("%s/lol/summoner/v4/summoners/%s"):format(base, summoner_id)).puuid
end)

local t0 = pyq.now()
local leagues, puuids
do
  local queue <close> = pyq.Queue{ workers = 25 }
  queue:put(get_league("challengerleagues"))
  queue:put(get_league("masterleagues"))
  leagues = queue:join("table")

  for _, league in ipairs(leagues) do
    for _, entry in ipairs(league.entries) do
      queue:put(get_puuid(entry.summonerId))
    end
  end
  puuids = queue:join("string")
end

print(("%d leagues, %d puuids in %.2fs"):format(#leagues, #puuids, pyq.now() - t0))
for i = 1, math.min(5, #puuids) do print("  " .. puuids[i]) end
if #puuids > 5 then print(("  ... and %d more"):format(#puuids - 5)) end
