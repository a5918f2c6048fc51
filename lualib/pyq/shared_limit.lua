-- pyq.shared_limit: http.limit(host, rates..., { shared = url }), one
-- limit for every process of a job, counted in Redis.
--
-- Each window of a limit is a sorted set pyq:limit:<host>:<n>/<d>us of
-- the times (Redis's clock, microseconds) of the requests it let go, kept
-- only as long as the window; pyq:limit:<host>:hold exists while a
-- Retry-After holds the host.  One script (SCRIPT LOAD once, EVALSHA; EVAL
-- again on NOSCRIPT) answers a request in one round trip: held (the hold's
-- time left), wait (until the oldest counted request leaves a full
-- window) or go (its time added to every window).  A log of send times
-- rather than GCRA: GCRA lets 2N - 1 through in some window of D, a log
-- never more than N.  Nothing is reserved ahead, so a hold stops every
-- process at once; a window is kept a little longer than given (5%, at
-- most 50 ms) because the server counts arrivals, and the time from
-- Redis to the server differs from one request to the next.  Redis down:
-- requests wait, asking again, until their own deadline.
local std = require "pyq.std"
local core = require "pyq.core"

local format, tointeger, floor, min = std.string.format, std.math.tointeger, std.math.floor, std.math.min
local pcall, tostring, find, unpack = std.pcall, std.tostring, std.string.find, std.table.unpack
local now, sleep, warning, is_error = core.now, core.sleep, core.log.warning, core.is_error

local M = {}

-- KEYS: the hold, then a window each; ARGV: this request's member, then
-- n and d (microseconds) of each window.  -> { 0, 0 } go, { 0, us } wait,
-- { 1, us } held.
local TAKE = [[
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local held = redis.call('PTTL', KEYS[1])
if held > 0 then return { 1, held * 1000 } end
local wait = 0
for i = 2, #KEYS do
  local n, d = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - d)
  if redis.call('ZCARD', KEYS[i]) >= n then
    local nth = redis.call('ZRANGE', KEYS[i], -n, -n, 'WITHSCORES')
    local w = tonumber(nth[2]) + d - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return { 0, math.ceil(wait) } end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i - 1]) / 1000) + 1)
end
return { 0, 0 }
]]

-- KEYS[1] the hold, ARGV[1] its milliseconds: set unless a longer one is.
local HOLD = [[
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
]]

local conns = {}   -- url -> { conn, sha }: one connection per process and Redis
local me, seq = nil, 0

local function process_id()
  local f = std.io.open("/proc/self/stat")
  local pid = f and f:read("n") or 0
  if f then f:close() end
  local hn = std.io.open("/proc/sys/kernel/hostname")
  local host = hn and hn:read("l") or "localhost"
  if hn then hn:close() end
  return format("%s:%d", host, pid)
end

local function connection(url)
  local c = conns[url]
  if not c then
    -- a command's deadline of 1 s: a request re-checks its own deadline
    -- at least that often while Redis does not answer
    c = { conn = core._redis(url, 1), sha = nil, logged = -1 }
    conns[url] = c
  end
  return c
end

--- Whether url looks like a redis:// URL (the redis layer checks the rest).
function M.valid(url)
  return std.type(url) == "string" and std.string.match(url, "^redis://[^/?#]+") ~= nil
end

--- M.connect(url): this process's connection to url, made now if it is
-- the first (a bad URL raises the redis layer's usage error).
function M.connect(url) connection(url) end

--- The state of a shared limit of `host` with `windows` (parse_rate's).
function M.new(url, host, windows)
  local keys, args = { "pyq:limit:" .. host .. ":hold" }, {}
  for i = 1, #windows do
    local w = windows[i]
    local d = w.d + min(0.05 * w.d, 0.05)   -- the margin for arrival times
    local us = tointeger(floor(d * 1e6 + 0.5))
    keys[#keys + 1] = format("pyq:limit:%s:%d/%dus", host, w.n, tointeger(floor(w.d * 1e6 + 0.5)))
    args[#args + 1] = tostring(w.n)
    args[#args + 1] = tostring(us)
  end
  -- TAKE's words after the script: the keys, the member (set per request), the windows
  local words = { #keys }
  for i = 1, #keys do words[#words + 1] = keys[i] end
  words[#words + 1] = ""
  local member = #words
  for i = 1, #args do words[#words + 1] = args[i] end
  return { url = url, host = host, hold_key = keys[1], words = words, member = member }
end

-- Runs TAKE once: EVALSHA, loading the script first, or EVAL on NOSCRIPT
-- (Redis restarted, or flushed its scripts).  The words are shared by
-- the limit's requests: the member is set just before each call formats
-- them, never across a wait.
local function take(c, s, member)
  local conn, words = c.conn, s.words
  if not c.sha then c.sha = conn:call("SCRIPT", "LOAD", TAKE) end
  words[s.member] = member
  local ok, res = pcall(conn.call, conn, "EVALSHA", c.sha, unpack(words))
  if not ok and is_error(res) and find(tostring(res.message), "NOSCRIPT", 1, true) then
    c.sha = nil
    words[s.member] = member
    return conn:call("EVAL", TAKE, unpack(words))
  end
  if not ok then std.error(res, 0) end
  return res
end

--- M.turn(s, deadline) -> nil (go: the slot is taken), or "wait" and the
-- seconds until a slot frees, or "held" and the seconds the hold has
-- left.  While Redis fails, asks again every 0.1 s until deadline, then
-- returns "down" and the last error.
function M.turn(s, deadline)
  local c = connection(s.url)
  if not me then me = process_id() end
  seq = seq + 1
  local member = format("%s:%d", me, seq)
  while true do
    local ok, res = pcall(take, c, s, member)
    if ok then
      local wait = res[2] / 1e6
      if res[1] == 1 then return "held", wait end
      if wait > 0 then return "wait", wait end
      return nil
    end
    local msg = tostring(is_error(res) and res.message or res)
    local t = now()
    if t - c.logged >= 5 then   -- the redis layer logs the connection's troubles too
      c.logged = t
      warning(format("pyq.http: the shared limit of %s at %s: %s; requests wait", s.host, s.url, msg))
    end
    if t + 0.1 >= deadline then return "down", msg end
    sleep(0.1)
  end
end

--- M.hold(s, secs): holds the host in every process for secs (a longer
-- hold already there stays).  Not waited for: a failure is logged.
function M.hold(s, secs)
  local ms = tointeger(floor(min(secs, 1e12) * 1000 + 0.5))
  if ms < 1 then return end
  connection(s.url).conn:send("EVAL", HOLD, 1, s.hold_key, ms)
end

return M
