-- pyq.http: HTTP requests from tasks.  The verbs are C's (host/http/http.c:
-- checked once against the option table, sent on libcurl's multi handle on
-- the host's loop); this file adds the response methods, retries,
-- Retry-After holds, per-host rate limits (given, or learned from the
-- server's rate-limit headers: "auto") and the whole-request timeout.
-- C sends a request with no retries, no limits and no hold in force
-- itself; any other comes to retry() below as a checked request that each
-- attempt sends again (C.attempt), with C's timeout cut to what is left of
-- one deadline.  Errors are pyq.Error objects (kind "transport", "timeout",
-- "too_big", "status", "decode", "usage") with the method and the masked
-- URL as fields.  Everything here comes from pyq.std and pyq.core,
-- captured at load time: this module is loaded on first use, after a
-- script may have replaced any global.
local std = require "pyq.std"
local core = require "pyq.core"
local json = require "pyq.json"

local type, next, select = std.type, std.next, std.select
local tostring, tonumber, error, pcall = std.tostring, std.tonumber, std.error, std.pcall
local rawget, rawset, rawequal, setmetatable = std.rawget, std.rawset, std.rawequal, std.setmetatable
local getmetatable, getinfo = std.debug.getmetatable, std.debug.getinfo
local format, lower, match, gsub, find, sub, gmatch = std.string.format, std.string.lower,
  std.string.match, std.string.gsub, std.string.find, std.string.sub, std.string.gmatch
local concat = std.table.concat
local max, min, floor, random, tointeger, huge =
  std.math.max, std.math.min, std.math.floor, std.math.random, std.math.tointeger, std.math.huge
local os_time, os_date = std.os.time, std.os.date
local now, sleep = core.now, core.sleep
local warning, info = core.log.warning, core.log.info
local Error, is_error = core.Error, core.is_error

local C = core._http
local M = {}
local function require_cache() return std.require("pyq.cache") end
local function require_shared() return std.require("pyq.shared_limit") end

-- A "usage" error at the caller `level` frames up, positioned as error()
-- would position a string.
local function usage(level, msg)
  local frame = getinfo(level + 1, "Sl")
  local where = frame and frame.currentline > 0 and format("%s:%d: ", frame.short_src, frame.currentline) or ""
  error(Error("usage", where .. msg), 0)
end

local Response = { __name = "pyq.http.response" }

-- The response is a plain table: a metamethod reached through the debug
-- library with something else refuses it, as luaL_checkudata would.
local function check_response(res, fname)
  if not rawequal(getmetatable(res), Response) then
    local mt = getmetatable(res)
    local name = type(mt) == "table" and rawget(mt, "__name")
    usage(3, format("bad argument #1 to '%s' (pyq.http.response expected, got %s)",
      fname, type(name) == "string" and name or type(res)))
  end
end

-- The body, for the methods that read it; a download's went elsewhere.
local function body_of(res, fname)
  local body = rawget(res, "body")
  if body == nil then
    usage(3, format("res:%s: the body is not in memory (it went to %s)", fname,
      rawget(res, "path") and "the file " .. rawget(res, "path") or "output or on_data"))
  end
  return body
end

-- res.headers is parsed from res.raw_headers on first use.
function Response.__index(res, key)
  check_response(res, "__index")
  if key == "headers" then
    local headers = C.parse_headers(rawget(res, "raw_headers"))
    rawset(res, "headers", headers)
    return headers
  elseif key == "retries" then
    return 0
  elseif key == "cached" then
    return false
  elseif key == "size" then   -- set by C for a download (output, on_data)
    local body = rawget(res, "body")
    return body and #body
  elseif key == "content_type" then   -- the media type, lower case, no parameters
    local value = rawget(res.headers, "content-type")
    return value and lower((match(value, "^%s*([^;%s]+)"))) or nil
  end
  return Response[key]
end

--- Decodes the body as JSON; an invalid body raises a "decode" error
-- naming the URL.
function Response:json()
  check_response(self, "json")
  local ok, value = pcall(json.decode, body_of(self, "json"))
  if not ok then
    local url = C.mask_url(self.url)
    local frame = getinfo(2, "Sl")
    local where = frame and frame.currentline > 0 and format("%s:%d: ", frame.short_src, frame.currentline) or ""
    error(Error("decode", format("%spyq.http: %s %s: the response is not valid JSON (%s)",
      where, self.method, url, tostring(value)), { method = self.method, url = url }), 0)
  end
  return value
end

--- Raises a "status" error (method, masked url, status) unless the
-- status is 2xx; returns the response, so `http.get(u):raise_for_status()`
-- chains.
function Response:raise_for_status()
  check_response(self, "raise_for_status")
  local status = self.status
  if status >= 200 and status < 300 then return self end
  local url = C.mask_url(self.url)
  local frame = getinfo(2, "Sl")
  local where = frame and frame.currentline > 0 and format("%s:%d: ", frame.short_src, frame.currentline) or ""
  error(Error("status", format("%spyq.http: %s %s -> %d", where, self.method, url, status),
    { method = self.method, url = url, status = status }), 0)
end

--- for line in res:lines() do ... end: the body's lines, without their
-- end of line ("\n" or "\r\n"); a last line without one comes too.
function Response:lines()
  check_response(self, "lines")
  local body, pos = body_of(self, "lines"), 1
  return function()
    if pos > #body then return nil end
    local nl = find(body, "\n", pos, true)
    local line = sub(body, pos, (nl or #body + 1) - 1)
    pos = nl and nl + 1 or #body + 1
    return (gsub(line, "\r$", ""))
  end
end

--- The body parsed as HTML (pyq.html), links resolving against res.url.
function Response:html()
  check_response(self, "html")
  return std.require("pyq.html").parse(body_of(self, "html"), self.url)
end

function Response:__tostring()
  check_response(self, "__tostring")
  return format("pyq.http.response: %s %s -> %d (%d bytes)",
    self.method, C.mask_url(self.url), self.status, self.size)
end

C.set_response_mt(Response)

-- ---- Retry-After -------------------------------------------------------

local limits = {}    -- "host" or "host:port" -> its windows (parse_rate's)
local blocked = {}   -- "host:port" -> { at = core.now() until which it holds, value = Retry-After }
local RETRY_STATUS = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }
local SAFE = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
-- A parsed Retry-After is capped here (some 30,000 years) so that it is
-- never inf; max_retry_after and the deadline (at most 1e9 s) stop any
-- request from sleeping that long.
local MAX_HOLD = 1e12

-- "host:port" (lower case) of an http(s) URL, and the bare host name.
local function host_key(url)
  local authority = type(url) == "string" and match(url, "^%a[%w+.-]*://([^/?#]*)")
  if not authority then return nil end
  authority = lower((gsub(authority, "^.*@", "")))
  return authority, match(authority, "^(.*):%d+$") or authority
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7,
                 Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Seconds since the epoch of a UTC date, by arithmetic (days from the
-- civil calendar, Howard Hinnant's algorithm): no os.time, so no range
-- error and no local time zone.
local function epoch(y, m, d, hh, mm, ss)
  y = m <= 2 and y - 1 or y
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return ((era * 146097 + doe - 719468) * 24 + hh) * 60 * 60 + mm * 60 + ss
end

-- An HTTP date in any of RFC 9110's three forms -> seconds since the
-- epoch, or nil when malformed (a year must have four digits).
local function http_date(value)
  local d, mon, y, hh, mm, ss =   -- IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    match(value, "^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then                   -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    d, mon, y, hh, mm, ss = match(value, "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then
      y = tonumber(y)
      y = y + (y < 70 and 2000 or 1900)
    end
  end
  if not d then                   -- asctime: Sun Nov  6 08:49:37 1994
    mon, d, hh, mm, ss, y = match(value, "^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  if not d or not MONTHS[mon] then return nil end
  d, y, hh, mm, ss = tonumber(d), tonumber(y), tonumber(hh), tonumber(mm), tonumber(ss)
  if d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return epoch(y, MONTHS[mon], d, hh, mm, ss)
end

-- Retry-After (seconds, possibly fractional, or an HTTP date) -> seconds
-- from now, at most MAX_HOLD; nil when absent, negative or malformed.
local function retry_after(value)
  if type(value) ~= "string" then return nil end
  value = match(value, "^%s*(.-)%s*$")
  local secs = match(value, "^%d+%.?%d*$") and tonumber(value)
  if not secs then
    local t = http_date(value)
    if not t then return nil end
    secs = max(0, t - os_time())
  end
  return min(secs, MAX_HOLD)
end

local function seconds(x)   -- for messages: 20, 0.25, 19.812
  return format("%.10g", floor(x * 1000 + 0.5) / 1000)
end

local function shown_value(value)   -- a header value, as a message shows it
  return #value > 64 and sub(value, 1, 61) .. "..." or value
end

-- The wall-clock (UTC) time `secs` from now, for the log line.
local function utc_after(secs)
  local ok, s = pcall(os_date, "!%Y-%m-%dT%H:%M:%SZ", os_time() + floor(secs + 0.5))
  return ok and s or "more than a lifetime away"
end

-- Records the hold a 429 or 503 asks for and returns its seconds and the
-- header's text.  A hold is logged once: when none is in force, or when it
-- moves the end of the current one by a second or more (a burst of 429s
-- at the same moment is one line).  With `m` (a learned method's state, for
-- a 429 of X-Rate-Limit-Type: method) only that method path is held.
local function obey_retry_after(key, res, m)
  local value = res.headers["retry-after"]
  local secs = retry_after(value)
  if secs and secs > 0 and key then
    local t = now()
    local hold = m and m.hold or not m and blocked[key]
    if not hold or hold.at < t + secs then
      if not hold or hold.at <= t or t + secs - hold.at >= 1 then
        warning(format("pyq.http: %s answered %d with Retry-After: %s: holding every request "
          .. "to %s for %s s, until %s", key, res.status, shown_value(value),
          m and "its method " .. m.path or "it", seconds(secs), utc_after(secs)))
      end
      if m then
        m.hold = { at = t + secs, value = value }
      else
        blocked[key] = { at = t + secs, value = value }
        C.gate(next(limits) ~= nil, t + secs)   -- C's fast path waits it out here
      end
    end
    -- a shared limit's host is held in every process (Redis keeps the longer hold)
    local limit = not m and (limits[key] or limits[match(key, "^(.*):%d+$") or key])
    local S = limit and limit.shared
    if S and S.state then require_shared().hold(S.state, secs) end
  end
  return secs, value
end

-- ---- the retry loop ------------------------------------------------------

-- A request's errors name its method and (masked) URL like C's do.
local function fail(r, kind, fields, fmt, ...)
  fields = fields or {}
  fields.method, fields.url = r.verb, r.shown
  error(Error(kind, format("pyq.http: %s %s: " .. fmt, r.verb, r.shown, ...), fields), 0)
end

local function timed_out(r, during)
  fail(r, "timeout", nil, "timed out: timeout (%s s) covers the whole request and %s "
    .. "(%d attempt%s made%s)", seconds(r.timeout), during, r.attempts,
    r.attempts == 1 and "" or "s", r.last and ", the last: " .. r.last or "")
end

-- The earliest time from t at which every window of a limit has room, and
-- the taking of that slot.  Split so that a request that would have to
-- wait past its deadline fails without using up a slot.
local function slot(limit, t)
  for i = 1, #limit do
    local w = limit[i]
    if w.count == w.n and w.times[w.next] + w.d > t then t = w.times[w.next] + w.d end
  end
  return t
end

local function take(limit, t)
  for i = 1, #limit do
    local w = limit[i]
    w.times[w.next] = t
    w.next = w.next % w.n + 1
    if w.count < w.n then w.count = w.count + 1 end
  end
end

-- ---- limits learned from the server: http.limit(host, "auto") ------------
--
-- limits[host].auto is the host's learner.  It turns the rate-limit headers
-- of the host's answers into windows like parse_rate's, and into a quota:
--   X-App-Rate-Limit: 20:1,100:120 (+ -Count)   windows for the host
--   X-Method-Rate-Limit (+ -Count)               windows per method path
--   RateLimit-Policy: 10;w=1 or "p";q=10;w=1     windows for the host
--   RateLimit: limit=10, remaining=3, reset=1, or "p";r=3;t=1, or
--   RateLimit-Limit/-Remaining/-Reset, or X-RateLimit-Limit/-Remaining/
--   -Reset (a Reset over 1e9 is an epoch time)   the quota: what is left
--                                                 until the reset
-- A request takes a slot in every window that applies to it.  Until the
-- host's first answer one request (the ping) goes alone; once the host has
-- sent method limits, the first request of each new method path goes alone
-- too.  The server counts arrivals, not our send times, so learned
-- lengths of time are padded; -Count seeds a window with what is already
-- spent in it (by an earlier run, say).  A header whose value changes
-- rebuilds its windows.

local POLL_MIN, POLL_MAX = 0.005, 0.1   -- re-checks while a ping is out, doubling

-- A learned length of time, padded for the network's jitter: 5% + 50 ms.
local function pad(d) return d * 1.05 + 0.05 end

-- The method path the server keys method limits by: the URL's path with
-- every segment that looks like an id as "{}".  A segment is kept when it
-- is a version ("v5") or lower-case letters, "-" and "_" of at most 32
-- characters (the game API's route words: "matches", "by-puuid", "ids");
-- anything with a digit, a capital or another character is an id.
local function method_path(url)
  local path = match(url, "^%a[%w+.-]*://[^/?#]*([^?#]*)") or ""
  return (gsub(path, "[^/]+", function(seg)
    if #seg <= 32 and (match(seg, "^[%l_-]+$") or match(seg, "^v%d+$")) then return nil end
    return "{}"
  end))
end

-- "20:1,100:120" (with its counts "3:1,40:120", matched by seconds) ->
-- padded windows seeded at t with the counts; the slots `old` windows had
-- reserved after t stay reserved.  nil when the value holds no "N:S".
-- A learned window holds one slot per request it allows, filled from the
-- server's -Count at once: a window wider than this is no limit a job can
-- meet, and a header claiming one must not make the process build it.
local MAX_LEARNED = 100000

local function learned_windows(spec, counts, t, old)
  local spent = {}
  for c, d in gmatch(counts or "", "(%d+):(%d+%.?%d*)") do spent[d] = tonumber(c) end
  local windows = {}
  for n, d in gmatch(spec, "(%d+):(%d+%.?%d*)") do
    local secs = tonumber(d)
    n = tointeger(tonumber(n))
    if n and n >= 1 and n <= MAX_LEARNED and secs > 0 then
      local w = { n = n, d = pad(secs), times = {}, next = 1, count = 0 }
      windows[#windows + 1] = w
      local one = { w }
      for _ = 1, min(spent[d] or 0, n) do take(one, t) end
    end
  end
  if #windows == 0 then return nil end
  local w1 = old and old[1]
  if w1 then
    for i = 0, w1.count - 1 do   -- from the oldest slot on
      local at = w1.times[(w1.next - w1.count + i - 1) % w1.n + 1]
      if at > t then take(windows, at) end
    end
  end
  return windows
end

-- RateLimit-Policy (or a draft's RateLimit-Limit) -> "q:w,..." for
-- learned_windows: each member's quota (q=, or the bare integer of the
-- older drafts) and window (w=); nil when none has both.
local function policy_spec(value)
  if not value then return nil end
  local parts = {}
  for item in gmatch(value, "[^,]+") do
    local q = match(item, ";%s*q%s*=%s*(%d+)") or match(item, "^%s*(%d+)%s*;")
    local w = match(item, ";%s*w%s*=%s*(%d+%.?%d*)")
    if q and w then parts[#parts + 1] = q .. ":" .. w end
  end
  return #parts > 0 and concat(parts, ",") or nil
end

local function number_in(value)
  return value and tonumber(match(value, "^%s*(%d+%.?%d*)"))
end

-- The quota an answer states: limit (or nil), remaining and seconds to
-- the reset, or nothing.  RateLimit's dictionary (limit=, remaining=,
-- reset=) or its items ("p";r=;t=, the one with the least left), else the
-- RateLimit-* triple, else X-RateLimit-*.
local function read_quota(h)
  local limit, remaining, reset
  local rl = h["ratelimit"]
  if rl then
    limit, remaining, reset = match(rl, "limit%s*=%s*(%d+)"), match(rl, "remaining%s*=%s*(%d+)"),
      match(rl, "reset%s*=%s*(%d+%.?%d*)")
    remaining = tonumber(remaining)
    if not remaining then
      for item in gmatch(rl, "[^,]+") do
        local left = tonumber(match(item, ";%s*r%s*=%s*(%d+)"))
        if left and (not remaining or left < remaining) then
          remaining, reset = left, match(item, ";%s*t%s*=%s*(%d+%.?%d*)")
        end
      end
    end
    limit, reset = tonumber(limit), tonumber(reset)
  else
    local p = h["ratelimit-remaining"] and "ratelimit-" or "x-ratelimit-"
    limit, remaining, reset = number_in(h[p .. "limit"]), number_in(h[p .. "remaining"]), number_in(h[p .. "reset"])
  end
  if not (remaining and reset) then return nil end
  if reset > 1e12 then reset = reset / 1000 - os_time()   -- epoch milliseconds
  elseif reset > 1e9 then reset = reset - os_time() end    -- epoch seconds
  return limit, remaining, max(0, reset)
end

local function learner()
  return { known = false, ping = nil, methods = {}, sent = 0, per_method = false }
end

local function method_of(A, path)
  local m = A.methods[path]
  if not m then
    m = { path = path, known = false }
    A.methods[path] = m
  end
  return m
end

-- The ping's end, however its request ends (also as r's __close).
local function release(r)
  local A = r.auto
  if A then
    if A.ping == r then A.ping = nil end
    local m = A.methods[r.mpath]
    if m and m.ping == r then m.ping = nil end
  end
end
local Request = { __close = release }

-- nil when r may take its slots now; else the seconds to wait first and,
-- for a method's Retry-After hold, the method.
local function auto_wait(r, A, t)
  local m = A.methods[r.mpath]
  if m and m.hold then
    if m.hold.at > t then return m.hold.at - t, m end
    m.hold = nil
  end
  if not A.known then
    m = A
  elseif A.per_method then
    m = m or method_of(A, r.mpath)
    if m.known then m = nil end
  else
    m = nil
  end
  if m and m.ping ~= r then   -- the host or the method is not known yet
    if m.ping then
      r.poll = min(POLL_MAX, r.poll and r.poll * 2 or POLL_MIN)
      return r.poll
    end
    m.ping = r
  end
  r.poll = nil
  return nil
end

-- The earliest time from `at` the learned windows and the quota allow.
local function auto_slot(r, A, at)
  if A.app then at = slot(A.app, at) end
  if A.policy then at = slot(A.policy, at) end
  local m = A.methods[r.mpath]
  if m and m.windows then at = slot(m.windows, at) end
  local q = A.quota
  if q then
    if q.left <= 0 then at = max(at, q.reset_at) else at = max(at, q.start) end
  end
  return at
end

local function auto_take(r, A, at)
  if A.app then take(A.app, at) end
  if A.policy then take(A.policy, at) end
  local m = A.methods[r.mpath]
  if m and m.windows then take(m.windows, at) end
  local q = A.quota
  if q then
    if at >= q.reset_at then   -- by our reckoning a new quota window began
      q.start, q.reset_at, q.left = at, at + pad(q.window), q.limit
    end
    q.left = q.left - 1
  end
  A.sent = A.sent + 1
  r.seq, r.sent_at = A.sent, at
end

-- What an answer to r says about the host's limits.
local function learn(A, r, res)
  local h, t = res.headers, now()
  A.known = true
  local app = h["x-app-rate-limit"]
  if app and app ~= A.app_spec then
    A.app, A.app_spec = learned_windows(app, h["x-app-rate-limit-count"], t, A.app), app
    info(format("pyq.http: %s: X-App-Rate-Limit: %s", r.key, shown_value(app)))
  end
  local spec = h["x-method-rate-limit"]
  local m = (spec or A.per_method) and method_of(A, r.mpath)
  if spec then
    A.per_method = true
    if spec ~= m.spec then
      m.windows, m.spec = learned_windows(spec, h["x-method-rate-limit-count"], t, m.windows), spec
      info(format("pyq.http: %s: X-Method-Rate-Limit: %s for %s", r.key, shown_value(spec), m.path))
    end
  end
  if m then m.known = true end
  local policy = policy_spec(h["ratelimit-policy"] or h["ratelimit-limit"])
  if policy and policy ~= A.policy_spec then
    A.policy, A.policy_spec = learned_windows(policy, nil, t, A.policy), policy
    info(format("pyq.http: %s: RateLimit-Policy: %s", r.key, policy))
  end
  local limit, remaining, reset = read_quota(h)
  local q = A.quota
  -- the newest answer sent in the current quota window says what is left:
  -- its count less what was sent after it
  if remaining and (not q or r.seq > q.seq and r.sent_at >= q.start) then
    A.reset_max = max(A.reset_max or 0, reset)
    local window
    for n, w in gmatch(policy or A.policy_spec or "", "(%d+):([%d.]+)") do
      if not window or tonumber(n) == limit then window = tonumber(w) end
    end
    A.quota = { limit = limit or huge, left = remaining - (A.sent - r.seq), start = r.sent_at,
                reset_at = t + pad(reset), window = window or A.reset_max, seq = r.seq }
  end
end

-- Waits out a Retry-After hold on `where` (a host, or a host's method
-- path), or raises at once if it would outlast max_retry_after or the
-- deadline.
local function held(r, where, hold, t)
  if hold.at - t > r.max_retry_after then
    fail(r, "status", nil, "requests to %s are held for %s s more (Retry-After: %s), over max_retry_after (%s s)",
      where, seconds(hold.at - t), shown_value(hold.value), seconds(r.max_retry_after))
  end
  if hold.at > r.deadline then
    timed_out(r, "would run out during the Retry-After hold on " .. where)
  end
  sleep(hold.at - t)
end

-- Suspends the task until the host's limits and any Retry-After allow a
-- request, or raises at once if that would run past the request's
-- deadline or hold it longer than its max_retry_after.  Slots are taken on
-- arrival, so waiting requests go in order; a Retry-After that comes while
-- a slot is awaited makes the request wait it out and take a new slot, so
-- the windows count real send times.  With a learner, a request waits for
-- a ping's answer (re-checking, as there is no event to wait on) and for
-- its method's hold too.  A shared limit asks Redis instead of counting
-- here (shared_turn).
local shared_turn
local function wait_turn(r, key, name)
  while true do
    local t = now()
    local hold = blocked[key]
    if hold and hold.at > t then
      held(r, key, hold, t)
    else
      blocked[key] = nil
      local limit = limits[key] or limits[name]
      local A = limit and limit.auto
      r.auto = A
      if not limit then return end
      local wait, m
      if A then
        r.mpath = r.mpath or method_path(r.url)
        wait, m = auto_wait(r, A, t)
      end
      if m then
        held(r, key .. m.path, m.hold, t)
      elseif wait then
        if t >= r.deadline then timed_out(r, "ran out waiting for the first answer from " .. key) end
        sleep(min(wait, r.deadline - t))
      elseif limit.shared then
        if shared_turn(r, key, limit, A, t) then return end
      else
        local at = slot(limit, t)
        if A then at = auto_slot(r, A, at) end
        if at > r.deadline then timed_out(r, "would run out waiting for the rate limit of " .. key) end
        take(limit, at)
        if A then auto_take(r, A, at) end
        if at > t then sleep(at - t) end
        t = now()
        hold = blocked[key]
        m = A and A.methods[r.mpath]
        if (not hold or hold.at <= t) and not (m and m.hold and m.hold.at > t) then return end
      end
    end
  end
end

-- The shared limit's State: its URL (shared = true: the job's Redis,
-- known once a cluster queue opened or in a --worker process) and keys.
local function shared_state(S)
  local url = S.url
  if url == true then
    url = core._cluster_url()
    if not url then
      error(Error("usage", format("pyq.http.limit: %s: shared = true needs the job's Redis, and none "
        .. "is known yet (open the cluster queue first, run with --worker, or give shared = "
        .. "\"redis://host:port/db\")", S.host)), 0)
    end
  end
  S.state = require_shared().new(url, S.host, S.windows)
  return S.state
end

-- One try at a shared limit's slot, with a learner's windows (kept in
-- this process) first: true when the request may go; else it has waited
-- what Redis said and wait_turn asks again.
function shared_turn(r, key, limit, A, t)
  if A then
    local at = auto_slot(r, A, t)
    if at > t then
      if at > r.deadline then timed_out(r, "would run out waiting for the rate limit of " .. key) end
      sleep(at - t)
      return false
    end
  end
  local S = limit.shared
  local what, secs = require_shared().turn(S.state or shared_state(S), r.deadline)
  if not what then
    if A then auto_take(r, A, now()) end
    return true
  elseif what == "held" then   -- another process's Retry-After: held here too
    local hold = { at = t + secs, value = "in another process" }
    if not blocked[key] or blocked[key].at < hold.at then blocked[key] = hold end
    held(r, key, hold, t)
  elseif what == "wait" then
    if now() + secs > r.deadline then
      timed_out(r, "would run out waiting for the shared rate limit of " .. key)
    end
    sleep(secs)
  else
    timed_out(r, format("ran out waiting for the shared rate limit of %s: Redis at %s did not "
      .. "answer (%s)", key, S.state.url, secs))
  end
  return false
end

-- What another attempt may cure: a transport failure or a timeout of
-- pyq.http's own (they carry a url; a pyq.timeout scope's do not), but not
-- a body over max_body (it would be over it again) or a refused https ->
-- http redirect (refused again).
local function retryable(err)
  local kind = is_error(err) and err.kind
  return (kind == "transport" or kind == "timeout") and err.url ~= nil and err.refused == nil
end

local function backoff_delay(base, attempt)
  return base * 2 ^ (attempt - 1) * (0.75 + 0.5 * random())
end

local SENT = "pyq%.http: %S+ %S+: (.*)$"

local send   -- below: the attempts of a request that the cache did not answer

-- A response from the cache: as it was stored, with cached = true.
local function from_cache(row)
  local status = row.status
  return setmetatable({
    status = status, ok = status >= 200 and status < 300, body = row.body,
    raw_headers = row.raw_headers, url = row.url, method = row.method,
    http_version = row.http_version, elapsed = 0, retries = 0, cached = true,
  }, Response)
end

-- The loop C hands a request to when it has retries, an attempt_timeout,
-- or limits or a hold in force: req is the checked request, sent again by
-- C.attempt(req, timeout) with no checks; shown its masked URL.
local function retry(req, verb, url, shown, timeout, retries, backoff, retry_unsafe,
                     attempt_timeout, max_retry_after, cache, cache_ttl)
  local key
  -- a request with credentials has no key: its answer is its sender's
  key = cache and C.cache_key(req, cache.vary)
  if key then   -- a hit is answered here: nothing sent, no rate-limit slot taken
    local hit = cache.store:get(key, cache_ttl or cache.ttl)
    C.count_cache(hit ~= nil)
    if hit then return from_cache(hit) end
  end
  local res = send(req, verb, url, shown, timeout, retries, backoff, retry_unsafe,
                   attempt_timeout, max_retry_after)
  -- an answer that sets a cookie is for its session, not for replay
  if key and cache.statuses[res.status] and not res.headers["set-cookie"] then
    cache.store:put(key, res)
  end
  return res
end

-- The request's attempts: limits, holds, retries with backoff, one deadline.
function send(req, verb, url, shown, timeout, retries, backoff, retry_unsafe,
              attempt_timeout, max_retry_after)
  local key, name = host_key(url)
  local r <close> = setmetatable({   -- what the errors name, and how far the request has got
    verb = verb, shown = shown, timeout = timeout, deadline = now() + timeout,
    max_retry_after = max_retry_after, attempts = 0, last = nil, url = url, key = key,
  }, Request)
  if not (SAFE[verb] or retry_unsafe) then retries = 0 end
  while true do
    if key then wait_turn(r, key, name) end
    local left = r.deadline - now()
    if left <= 0 then timed_out(r, "ran out before the request was sent") end
    -- at least 1 ms: libcurl reads a timeout that rounds to 0 ms as none
    local ok, res = pcall(C.attempt, req, max(0.001, attempt_timeout and min(attempt_timeout, left) or left))
    local attempt = r.attempts
    r.attempts = attempt + 1
    local A = r.auto
    if A then
      if ok then learn(A, r, res) end
      release(r)
    end
    local delay
    if ok then
      local wait, value
      if res.status == 429 or res.status == 503 then
        -- X-Rate-Limit-Type: method holds that method path only; the
        -- others (application, service) or none, the host
        local scope = A and res.status == 429 and lower(res.headers["x-rate-limit-type"] or "") == "method"
        wait, value = obey_retry_after(key, res, scope and method_of(A, r.mpath) or nil)
      end
      if not RETRY_STATUS[res.status] or attempt >= retries then
        res.retries = attempt
        return res
      end
      if wait and wait > r.max_retry_after then
        fail(r, "status", { status = res.status },
          "%s answered %d with Retry-After: %s (%s s), over max_retry_after (%s s)",
          key, res.status, shown_value(value), seconds(wait), seconds(r.max_retry_after))
      end
      r.last = format("status %d", res.status)
      delay = max(wait or 0, backoff_delay(backoff, attempt + 1))
    elseif retryable(res) and attempt < retries then
      local msg = res.message
      r.last = match(msg, SENT) or msg
      delay = backoff_delay(backoff, attempt + 1)
    else
      error(res, 0)
    end
    if now() + delay > r.deadline then timed_out(r, "would run out during the backoff") end
    C.count_retry()
    sleep(delay)
  end
end

-- A 429 or 503 that C sent itself still sets the hold for later requests.
local function obey(url, res)
  obey_retry_after(host_key(url), res)
end

-- ---- the response cache ------------------------------------------------

local CACHE_STATUSES = { 200, 203, 300, 301, 404, 410 }

-- C calls this when configure or session options name the cache: the
-- settings `old` (or nil) changed by opts, checked first; nil when cache
-- = false.  Settings are never changed in place: a session made earlier
-- keeps its own.
local function cache_config(old, opts, fname)
  local path = opts.cache
  if path == false then return nil end
  if path ~= nil and (type(path) ~= "string" or path == "" or find(path, "\0", 1, true)) then
    usage(3, format("%s: cache must be the path of a SQLite file or false, or a redis://host:port/db URL, "
      .. "got %s", fname, type(path) == "string" and format("%q", path) or tostring(path)))
  end
  if path == nil and not old then
    usage(3, format("%s: cache_ttl, cache_statuses and cache_vary need cache = \"file.sqlite\"", fname))
  end
  local statuses, vary = old and old.statuses, old and old.vary
  if opts.cache_statuses ~= nil then
    statuses = {}
    local list = opts.cache_statuses
    if type(list) ~= "table" then
      usage(3, format("%s: cache_statuses must be a list of HTTP statuses (100-599), got %s", fname, type(list)))
    end
    for i = 1, #list do
      local st = list[i]
      if type(st) ~= "number" or tointeger(st) == nil or st < 100 or st > 599 then
        usage(3, format("%s: cache_statuses must be a list of HTTP statuses (100-599), got %s at %d",
          fname, type(st) == "string" and format("%q", st) or tostring(st), i))
      end
      statuses[tointeger(st)] = true
    end
    for k in next, list do
      if type(k) ~= "number" or tointeger(k) == nil or k < 1 or k > #list then
        usage(3, format("%s: cache_statuses must be a list, got the key %s", fname, tostring(k)))
      end
    end
  elseif not statuses then
    statuses = {}
    for i = 1, #CACHE_STATUSES do statuses[CACHE_STATUSES[i]] = true end
  end
  if opts.cache_vary ~= nil then
    local list = opts.cache_vary
    if type(list) ~= "table" then
      usage(3, format("%s: cache_vary must be a list of non-empty strings, got %s", fname, type(list)))
    end
    vary = {}
    for i = 1, #list do
      local name = list[i]
      if type(name) ~= "string" or not match(name, "^[%w!#$%%&'*+.^_`|~-]+$") then
        usage(3, format("%s: cache_vary must be a list of non-empty strings (header names), got %s at %d",
          fname, type(name) == "string" and format("%q", name) or type(name), i))
      end
      vary[i] = lower(name)
    end
  end
  local store, ttl = path and require_cache().open(path, fname) or old.store,
    opts.cache_ttl or (old and old.ttl) or 86400
  store:keep(ttl)   -- Redis: entries live as long as the longest ttl that may read them
  return { store = store, ttl = ttl, statuses = statuses, vary = vary or {} }
end

C.set_hooks(retry, obey, cache_config)

--- http.request{ url =, method =, headers =, body =, json =, query =,
-- timeout =, attempt_timeout =, connect_timeout =, follow_redirects =,
-- max_redirects =, max_body =, verify =, allow_downgrade =,
-- sensitive_headers =, sensitive_query =, retries =, backoff =,
-- retry_unsafe =, max_retry_after = } -> response; http.get(url [, opts])
-- and the other verbs: C's, checked against one option table.
for _, name in next, { "request", "get", "head", "delete", "post", "put", "patch", "options" } do
  M[name] = C[name]
end

--- http.session{ user_agent =, http2 =, sensitive_headers =,
-- sensitive_query =, retries =, backoff =, max_retry_after = } -> a
-- session with the verbs as methods (s:get(url [, opts]), s:request(opts),
-- ...) and close(); it starts from http.configure's settings.
M.session = C.session

--- http.configure{ user_agent =, max_connections =, max_per_host =,
-- http2 =, sensitive_headers =, sensitive_query =, retries =, backoff =,
-- max_retry_after = }: the default session's settings.
M.configure = C.configure

local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600 }
local MAX_SHARED = 16   -- a command's words: core._redis takes 64

local function parse_rate(rate)
  local n, d, unit
  if type(rate) == "string" then
    n, d, unit = match(rate, "^%s*(%d+)%s*/%s*(%d*%.?%d*)%s*(%a+)%s*$")
  end
  n, d = tonumber(n), (d == "" and 1 or tonumber(d))
  if not n or n < 1 or not d or d <= 0 or not UNITS[unit] then
    usage(3, format("pyq.http.limit: bad rate %s (expected \"auto\" or \"N/D\" such as \"20/1s\", "
      .. "\"100/2m\" or \"5/500ms\")", type(rate) == "string" and format("%q", rate) or tostring(rate)))
  end
  return { n = tointeger(n), d = d * UNITS[unit], times = {}, next = 1, count = 0 }
end

-- The options table that may end http.limit's arguments: { shared = }
-- -> true, a URL or nil.
local function limit_options(opts)
  for k in next, opts do
    if k ~= "shared" then
      usage(3, format("pyq.http.limit: unknown option %s (expected shared)", tostring(k)))
    end
  end
  local shared = opts.shared
  if shared == nil or shared == false then return nil end
  if shared ~= true and not require_shared().valid(shared) then
    usage(3, format("pyq.http.limit: shared must be true (the job's Redis) or a URL "
      .. "\"redis://host:port/db\", got %s", type(shared) == "string" and format("%q", shared) or tostring(shared)))
  end
  if shared ~= true then   -- connects now: a bad port or db is named here
    local ok, err = pcall(require_shared().connect, shared)
    if not ok then
      usage(3, format("pyq.http.limit: shared %q %s", shared,
        (gsub(tostring(is_error(err) and err.message or err), "^.-core%._redis: url ", ""))))
    end
  end
  return shared
end

--- http.limit(host, rate, ... [, { shared = }]): requests to host ("name"
-- or "name:port") wait until every rate window ("N/D", D like 500ms, 1s,
-- 2m, 1h) allows them; "auto" among the rates adds the limits the host's
-- answers state (kept when http.limit names "auto" again); http.limit(host,
-- nil) removes the limits.  shared = a redis:// URL or true (the job's
-- Redis) counts the given rates in Redis for every process of the job;
-- "auto" stays this process's.
function M.limit(host, ...)
  if type(host) ~= "string" or host == "" or find(host, "[/%s]") then
    usage(2, "pyq.http.limit: host must be \"name\" or \"name:port\", got " .. tostring(host))
  end
  host = lower(host)
  local n = select("#", ...)
  if n == 0 or (n == 1 and (...) == nil) then
    limits[host] = nil
    C.gate(next(limits) ~= nil)
    return
  end
  local windows, auto, shared = {}, nil, nil
  if n >= 2 and type((select(n, ...))) == "table" then   -- alone, a table is a bad rate
    shared = limit_options((select(n, ...)))
    n = n - 1
  end
  for i = 1, n do
    local rate = (select(i, ...))
    if rate == "auto" then
      if auto then usage(2, "pyq.http.limit: \"auto\" given twice") end
      auto = limits[host] and limits[host].auto or learner()
    else
      windows[#windows + 1] = parse_rate(rate)
    end
  end
  if shared and #windows == 0 then
    usage(2, "pyq.http.limit: shared needs a rate \"N/D\" (\"auto\" is learned by each process alone)")
  end
  if shared and #windows > MAX_SHARED then
    usage(2, format("pyq.http.limit: shared takes at most %d rates, got %d", MAX_SHARED, #windows))
  end
  windows.auto = auto
  windows.shared = shared and { url = shared, host = host, windows = windows } or nil
  limits[host] = windows
  C.gate(true)
end

M.stats = C.stats

return M
