-- consume_matches.lua: the seed's memory advice, in production shape.
--   pyqhost scripts/consume_matches.lua BASE_URL [count] [out.jsonl]
-- 30,000 match documents (~20 KB each) are fetched by tasks that consume
-- them and return nothing; the match list is iterated with frozen_generator,
-- so tasks fill copies while the list stays small.  pyq.http.limit's
-- "auto" keeps to the limits the API's headers state, retries absorb the
-- odd 429 or 5xx, progress is shown, and one JSON line per match goes to
-- out.jsonl.
local base = arg[1] or error("usage: pyqhost scripts/consume_matches.lua BASE_URL [count] [out.jsonl]", 0)
local count = tonumber(arg[2]) or 30000
local out_path = arg[3] or "matches.jsonl"
local http = pyq.http
local frozen_generator = pyq.itertools.frozen_generator

http.configure{ retries = 5, backoff = 0.2 }
-- Respect the API: its X-App-Rate-Limit and X-Method-Rate-Limit headers
-- become windows (padded for the network, seeded with what -Count says
-- is spent), the first request going alone until they are known.
http.limit(base:match("^%a+://([^/]+)"), "auto")

local function peak_rss_mib()
  local f = assert(io.open("/proc/self/status"))
  local kib = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return tonumber(kib) / 1024
end

local seen_429 = 0
local function get_json(url, opts)
  local res = http.get(url, opts)
  if res.status == 429 then seen_429 = seen_429 + 1 end
  if not res.ok then error(("%s: HTTP %d after %d retries"):format(url, res.status, res.retries), 0) end
  return res:json(), res
end

-- 1. The match ids, 100 per page, as small objects the tasks will fill.
local ids_url = base .. "/lol/match/v5/matches/by-puuid/puuid-demo/ids"
local first, res = get_json(ids_url, { query = { start = 0, count = math.min(100, count) } })
local limits = res.headers["x-app-rate-limit"] or "none"   -- for the report

local list_ids = pyq.async(function(start)
  return get_json(ids_url, { query = { start = start, count = math.min(100, count - start) } })
end)

local matches = {}
for _, id in ipairs(first) do matches[#matches + 1] = { id = id } end
do
  local queue <close> = pyq.Queue{ workers = 10 }
  for start = 100, count - 1, 100 do queue:put(list_ids(start)) end
  for _, page in ipairs(queue:join("table")) do
    for _, id in ipairs(page) do matches[#matches + 1] = { id = id } end
  end
end

-- 2. Consume every match: a few totals in memory, one line per match on disk.
local totals = { matches = 0, kills = 0, deaths = 0, blue_wins = 0 }
local t0 = pyq.now()
local written
do
  local out <close> = pyq.jsonl.open(out_path)

  local consume_match = pyq.async(function(match)
    match.doc = get_json(base .. "/lol/match/v5/matches/" .. match.id)  -- fills the copy
    local info, kills = match.doc.info, 0
    for _, p in ipairs(info.participants) do
      kills = kills + p.kills
      totals.deaths = totals.deaths + p.deaths
    end
    local blue_win = info.participants[1].win
    totals.kills = totals.kills + kills
    totals.blue_wins = totals.blue_wins + (blue_win and 1 or 0)
    totals.matches = totals.matches + 1
    out:write{ id = match.id, duration = info.gameDuration, kills = kills, blue_win = blue_win }
    -- nothing returned: the queue keeps nothing
  end)

  local queue <close> = pyq.Queue{ workers = 50, progress = true, total = #matches }
  for _, match in frozen_generator(matches) do
    queue:put(consume_match(match))
  end
  queue:join()
  written = out.lines
  print(("queue: put %d = done %d + failed %d + cancelled %d"):format(
    queue.puts, queue.done, queue.failed, queue.cancelled))
end
local dt = pyq.now() - t0

local stats = http.stats()
print(("consumed %d matches in %.1fs (%.0f/s) under limits %s"):format(
  totals.matches, dt, totals.matches / dt, limits))
print(("%d kills, %d deaths, blue side won %d"):format(totals.kills, totals.deaths, totals.blue_wins))
print(("%d lines in %s; %d requests, %d retries, 429s reaching the script: %d"):format(
  written, out_path, stats.requests, stats.retries, seen_429))
print(("peak RSS %.1f MiB; the match list still holds no documents: %s"):format(
  peak_rss_mib(), tostring(matches[1].doc == nil)))
