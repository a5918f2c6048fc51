-- consume_matches.lua: the seed's memory advice, in production shape.
--   pyqhost scripts/consume_matches.lua BASE_URL [count] [out.jsonl]
-- 30,000 match documents (~20 KB each) are fetched by tasks that consume
-- them and return nothing; the match list is iterated with frozen_generator,
-- so tasks fill copies while the list stays small.  pyq.http.limit's
-- "auto" keeps to the limits the API's headers state, retries absorb the
-- odd 429 or 5xx, progress is shown, and one JSON line per match goes to
-- out.jsonl.
--
-- With --store DIR the job is durable: every match is a keyed task
-- recorded in DIR/job.sqlite when it finishes, every answer is kept in
-- DIR/cache.sqlite, and the rows go to DIR/matches.sqlite instead of
-- out.jsonl.  Interrupted (Ctrl-C, kill) and run again, it fetches only
-- what is missing; the totals come from the rows, whatever run wrote them.
local args, store = {}, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--store" then
      store = arg[i + 1] or error("--store needs a folder", 0)
      i = i + 2
    else
      args[#args + 1] = arg[i]
      i = i + 1
    end
  end
end
local base = args[1]
  or error("usage: pyqhost scripts/consume_matches.lua BASE_URL [count] [out.jsonl] [--store DIR]", 0)
local count = tonumber(args[2]) or 30000
local out_path = args[3] or "matches.jsonl"
local http = pyq.http
local frozen_generator = pyq.itertools.frozen_generator

http.configure{ retries = 5, backoff = 0.2 }
local db   -- with --store: the rows, opened before the job store, so that
           -- a loop turn's rows are committed before the keys of the tasks
           -- that wrote them (a kill -9 can lose a key, never a row it names)
if store then
  os.execute("mkdir -p '" .. store:gsub("'", "'\\''") .. "'")
  http.configure{ cache = store .. "/cache.sqlite", cache_ttl = 7 * 86400 }
  db = pyq.sqlite.open(store .. "/matches.sqlite")
  db:exec([[CREATE TABLE IF NOT EXISTS matches (id TEXT PRIMARY KEY, duration INTEGER,
            kills INTEGER, deaths INTEGER, blue_win INTEGER)]])
end
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

-- 2. Consume every match: a few totals in memory, one line per match on
-- disk (or one row, with --store).
local totals = { matches = 0, kills = 0, deaths = 0, blue_wins = 0 }
local t0 = pyq.now()
local written
do
  local out <close> = not store and pyq.jsonl.open(out_path) or nil

  local consume_match = pyq.async(function(match)
    match.doc = get_json(base .. "/lol/match/v5/matches/" .. match.id)  -- fills the copy
    local info, kills, deaths = match.doc.info, 0, 0
    for _, p in ipairs(info.participants) do
      kills = kills + p.kills
      deaths = deaths + p.deaths
    end
    local blue_win = info.participants[1].win
    totals.kills = totals.kills + kills
    totals.deaths = totals.deaths + deaths
    totals.blue_wins = totals.blue_wins + (blue_win and 1 or 0)
    totals.matches = totals.matches + 1
    if db then
      db:upsert("matches", { id = match.id, duration = info.gameDuration, kills = kills,
                             deaths = deaths, blue_win = blue_win }, "id")
    else
      out:write{ id = match.id, duration = info.gameDuration, kills = kills, blue_win = blue_win }
    end
    -- nothing returned: the queue keeps nothing
  end)

  local queue <close> = pyq.Queue{ workers = 50, progress = true, total = #matches,
                                   store = store and store .. "/job.sqlite", name = store and "matches" }
  for _, match in frozen_generator(matches) do
    queue:put(consume_match(match), store and { key = match.id } or nil)
  end
  queue:join()
  written = out and out.lines or db:one("SELECT count(*) AS n FROM matches").n
  print(("queue: put %d = done %d + failed %d + cancelled %d + skipped %d"):format(
    queue.puts, queue.done, queue.failed, queue.cancelled, queue.skipped))
end
local dt = pyq.now() - t0
local consumed = totals.matches   -- in this run
if db then   -- the totals of every run, from the rows
  local t = db:one("SELECT count(*) AS n, sum(kills) AS k, sum(deaths) AS d, sum(blue_win) AS b FROM matches")
  totals = { matches = t.n, kills = t.k or 0, deaths = t.d or 0, blue_wins = t.b or 0 }
end

local stats = http.stats()
print(("consumed %d matches in %.1fs (%.0f/s) under limits %s"):format(
  consumed, dt, consumed / dt, limits))
print(("%d kills, %d deaths, blue side won %d"):format(totals.kills, totals.deaths, totals.blue_wins))
print(("%d %s in %s; %d requests, %d retries, %d answered by the cache, 429s reaching the script: %d"):format(
  written, db and "rows" or "lines", db and store .. "/matches.sqlite" or out_path, stats.requests,
  stats.retries, stats.cache_hits, seen_429))
print(("peak RSS %.1f MiB; the match list still holds no documents: %s"):format(
  peak_rss_mib(), tostring(matches[1].doc == nil)))
