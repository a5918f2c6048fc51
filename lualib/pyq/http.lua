-- pyq.http: HTTP requests from tasks.  The transfers are C's (host/http.c,
-- libcurl's multi interface on the host's loop); this file adds the verbs,
-- JSON bodies, the response methods, retries, Retry-After holds, per-host
-- rate limits and the whole-request timeout.  A request with no retries,
-- no limits and no hold goes straight to C; any other runs the retry loop
-- against one deadline, each attempt sent with C's timeout cut to what is
-- left of it.  Everything here comes from pyq.std and pyq.core, captured
-- at load time: this module is loaded on first use, after a script may
-- have replaced any global.
local std = require "pyq.std"
local core = require "pyq.core"
local json = require "pyq.json"

local type, pairs, ipairs, next, select = std.type, std.pairs, std.ipairs, std.next, std.select
local tostring, tonumber, error, pcall = std.tostring, std.tonumber, std.error, std.pcall
local rawget, rawset, rawequal = std.rawget, std.rawset, std.rawequal
local getmetatable = std.debug.getmetatable
local format, lower, upper, match, gsub, find, sub = std.string.format, std.string.lower,
  std.string.upper, std.string.match, std.string.gsub, std.string.find, std.string.sub
local mtype, max, min, floor, random, tointeger, huge =
  std.math.type, std.math.max, std.math.min, std.math.floor, std.math.random, std.math.tointeger, std.math.huge
local os_time, os_date = std.os.time, std.os.date
local now, sleep = core.now, core.sleep
local warning = core.log.warning

local C = core._http
local M = {}

local Response = { __name = "pyq.http.response" }

-- The response is a plain table: a metamethod reached through the debug
-- library with something else refuses it, as luaL_checkudata would.
local function check_response(res, fname)
  if not rawequal(getmetatable(res), Response) then
    local mt = getmetatable(res)
    local name = type(mt) == "table" and rawget(mt, "__name")
    error(format("bad argument #1 to '%s' (pyq.http.response expected, got %s)",
      fname, type(name) == "string" and name or type(res)), 3)
  end
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
  end
  return Response[key]
end

--- Decodes the body as JSON; an invalid body raises an error naming the URL.
function Response:json()
  check_response(self, "json")
  local ok, value = pcall(json.decode, self.body)
  if not ok then
    error(format("pyq.http: %s %s: the response is not valid JSON (%s)",
      self.method, C.mask_url(self.url), value), 2)
  end
  return value
end

function Response:__tostring()
  check_response(self, "__tostring")
  return format("pyq.http.response: %s %s -> %d (%d bytes)",
    self.method, C.mask_url(self.url), self.status, #self.body)
end

C.set_response_mt(Response)

local function has_header(headers, name)
  name = lower(name)
  for k in pairs(headers) do
    if type(k) == "string" and lower(k) == name then return true end
  end
  return false
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- `json = value` becomes the body and a Content-Type header, in o (a copy
-- of the caller's options).  Called by prepare: level 4 is the user.
local function with_json(o, fname)
  local value = o.json
  o.json = nil
  if o.body ~= nil then error(fname .. ": give body or json, not both", 4) end
  local ok, body = pcall(json.encode, value)
  if not ok then error(fname .. ": json: " .. tostring(body), 4) end
  o.body = body
  o.headers = copy(o.headers or {})
  if not has_header(o.headers, "content-type") then
    o.headers["Content-Type"] = "application/json"
  end
  return o
end

-- ---- options -----------------------------------------------------------

local send = C.send
local TIMEOUT = 30   -- C's default for `timeout` (host/http_input.c)
-- Process-wide defaults (http.configure); also the plan of a request that
-- sets none of the options this file consumes.
local defaults = { retries = 0, backoff = 0.5, retry_unsafe = false, max_retry_after = 300 }

-- How a bad value shows in a message: a string quoted, so "1" is not 1.
local function got(v)
  return type(v) == "string" and format("%q", v) or tostring(v)
end

local function check_count(fname, key, v, level)
  if mtype(v) ~= "integer" or v < 0 then
    error(format("%s: %s must be a non-negative integer, got %s", fname, key, got(v)), level)
  end
  return v
end

-- limit: the largest value allowed (C refuses timeouts over 1e9 s).
local function check_seconds(fname, key, v, level, limit)
  if type(v) ~= "number" or not (v >= 0) or v > (limit or huge) then
    error(limit and format("%s: %s must be a number of seconds from 0 to %g, got %s", fname, key, limit, got(v))
          or format("%s: %s must be a non-negative number of seconds, got %s", fname, key, got(v)), level)
  end
  return v
end

-- One try needs some time: 0 would be a request that can never succeed.
local function check_attempt(fname, v)
  check_seconds(fname, "attempt_timeout", v, 5, 1e9)
  if v == 0 then
    error(format("%s: attempt_timeout must be greater than 0 (timeout = 0 is the request that is already out of time)", fname), 5)
  end
  return v
end

-- Splits pyq.http's own options (json, retries, backoff, retry_unsafe,
-- attempt_timeout, max_retry_after) off the table that C validates.
-- Returns the options for C and the plan: the defaults, or a table with
-- the request's values.  Level 3 is the caller of the verb (perform is
-- tail-called).
local function prepare(opts, fname)
  if opts == nil then return nil, defaults end
  if type(opts) ~= "table" then
    error(format("%s: expected a table of options, got %s", fname, type(opts)), 3)
  end
  if opts.json == nil and opts.retries == nil and opts.backoff == nil and opts.retry_unsafe == nil
     and opts.attempt_timeout == nil and opts.max_retry_after == nil then
    return opts, defaults
  end
  local o = copy(opts)
  local plan = {
    retries = o.retries == nil and defaults.retries or check_count(fname, "retries", o.retries, 4),
    backoff = o.backoff == nil and defaults.backoff or check_seconds(fname, "backoff", o.backoff, 4),
    retry_unsafe = o.retry_unsafe,
    max_retry_after = o.max_retry_after == nil and defaults.max_retry_after
                      or check_seconds(fname, "max_retry_after", o.max_retry_after, 4),
    attempt_timeout = o.attempt_timeout ~= nil
                      and check_attempt(fname, o.attempt_timeout) or nil,
  }
  if plan.retry_unsafe == nil then
    plan.retry_unsafe = false
  elseif type(plan.retry_unsafe) ~= "boolean" then
    error(fname .. ": retry_unsafe must be a boolean, got " .. type(plan.retry_unsafe), 3)
  end
  o.retries, o.backoff, o.retry_unsafe, o.attempt_timeout, o.max_retry_after = nil, nil, nil, nil, nil
  if o.json ~= nil then with_json(o, fname) end
  return o, plan
end

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
-- at the same moment is one line).
local function obey_retry_after(key, res)
  local value = res.headers["retry-after"]
  local secs = retry_after(value)
  if secs and secs > 0 and key then
    local t = now()
    local hold = blocked[key]
    if not hold or hold.at < t + secs then
      if not hold or hold.at <= t or t + secs - hold.at >= 1 then
        warning(format("pyq.http: %s answered %d with Retry-After: %s: holding every request "
          .. "to it for %s s, until %s", key, res.status, shown_value(value), seconds(secs),
          utc_after(secs)))
      end
      blocked[key] = { at = t + secs, value = value }
    end
  end
  return secs, value
end

-- ---- the retry loop ------------------------------------------------------

-- A request's errors name its method and (masked) URL like C's do.
local function fail(r, fmt, ...)
  local url = type(r.target) == "string" and C.mask_url(r.target) or tostring(r.target)
  error(format("pyq.http: %s %s: " .. fmt, r.verb, url, ...), 0)
end

local function timed_out(r, during)
  fail(r, "timed out: timeout (%s s) covers the whole request and %s "
    .. "(%d attempt%s made%s)", seconds(r.timeout), during, r.attempts,
    r.attempts == 1 and "" or "s", r.last and ", the last: " .. r.last or "")
end

-- The earliest time from t at which every window of a limit has room, and
-- the taking of that slot.  Split so that a request that would have to
-- wait past its deadline fails without using up a slot.
local function slot(limit, t)
  for _, w in ipairs(limit) do
    if w.count == w.n and w.times[w.next] + w.d > t then t = w.times[w.next] + w.d end
  end
  return t
end

local function take(limit, t)
  for _, w in ipairs(limit) do
    w.times[w.next] = t
    w.next = w.next % w.n + 1
    if w.count < w.n then w.count = w.count + 1 end
  end
end

-- Suspends the task until the host's limits and any Retry-After allow a
-- request, or raises at once if that would run past the request's
-- deadline or hold it longer than its max_retry_after.  Slots are taken on
-- arrival, so waiting requests go in order; a Retry-After that comes while
-- a slot is awaited makes the request wait it out and take a new slot, so
-- the windows count real send times.
local function wait_turn(r, key, name)
  while true do
    local t = now()
    local hold = blocked[key]
    if hold and hold.at > t then
      if hold.at - t > r.max_retry_after then
        fail(r, "requests to %s are held for %s s more (Retry-After: %s), over max_retry_after (%s s)",
          key, seconds(hold.at - t), shown_value(hold.value), seconds(r.max_retry_after))
      end
      if hold.at > r.deadline then
        timed_out(r, "would run out during the Retry-After hold on " .. key)
      end
      sleep(hold.at - t)
    else
      blocked[key] = nil
      local limit = limits[key] or limits[name]
      if not limit then return end
      local at = slot(limit, t)
      if at > r.deadline then timed_out(r, "would run out waiting for the rate limit of " .. key) end
      take(limit, at)
      if at > t then sleep(at - t) end
      hold = blocked[key]
      if not hold or hold.at <= now() then return end
    end
  end
end

local function is_transport_error(err)
  return type(err) == "string" and find(err, "^pyq%.http: ") ~= nil
end

-- A body over max_body will be over it next time too, and a refused
-- https -> http redirect will be refused again.
local function is_final(err)
  return find(err, " over max_body", 1, true) ~= nil
      or find(err, ": refused the redirect from ", 1, true) ~= nil
end

local function backoff_delay(base, attempt)
  return base * 2 ^ (attempt - 1) * (0.75 + 0.5 * random())
end

-- Whether any Retry-After hold is in force; expired ones are dropped, so
-- one 429 from a host the job never calls again does not keep every
-- request off the fast path.
local function holding()
  local t
  for key, hold in next, blocked do
    t = t or now()
    if hold.at > t then return true end
    blocked[key] = nil
  end
  return false
end

local function perform(method, url, opts, fname)
  local o, plan = prepare(opts, fname)
  if plan.retries == 0 and plan.attempt_timeout == nil and next(limits) == nil and not holding() then
    local res = send(method, url, o, fname)
    if res.status == 429 or res.status == 503 then obey_retry_after(host_key(url or (o and o.url)), res) end
    return res
  end
  if o == nil then o = {} elseif o == opts then o = copy(o) end   -- o.timeout is set per attempt
  local target = url or o.url
  local timeout = o.timeout == nil and TIMEOUT or check_seconds(fname, "timeout", o.timeout, 3, 1e9)
  local m = method or o.method
  local r = {   -- what the errors name, and how far the request has got
    verb = type(m) == "string" and upper(m) or (o.body and "POST" or "GET"),
    target = target, timeout = timeout, deadline = now() + timeout,
    max_retry_after = plan.max_retry_after, attempts = 0, last = nil,
  }
  local retries = (SAFE[r.verb] or plan.retry_unsafe) and plan.retries or 0
  local key, name = host_key(target)
  while true do
    if key then wait_turn(r, key, name) end
    local left = r.deadline - now()
    if left <= 0 then timed_out(r, "ran out before the request was sent") end
    -- at least 1 ms: libcurl reads a timeout that rounds to 0 ms as none
    o.timeout = max(0.001, plan.attempt_timeout and min(plan.attempt_timeout, left) or left)
    local ok, res = pcall(send, method, url, o, fname)
    local attempt = r.attempts
    r.attempts = attempt + 1
    local delay
    if ok then
      local wait, value
      if res.status == 429 or res.status == 503 then wait, value = obey_retry_after(key, res) end
      if not RETRY_STATUS[res.status] or attempt >= retries then
        res.retries = attempt
        return res
      end
      if wait and wait > r.max_retry_after then
        fail(r, "%s answered %d with Retry-After: %s (%s s), over max_retry_after (%s s)",
          key, res.status, shown_value(value), seconds(wait), seconds(r.max_retry_after))
      end
      r.last = format("status %d", res.status)
      delay = max(wait or 0, backoff_delay(plan.backoff, attempt + 1))
    elseif is_transport_error(res) and attempt < retries and not is_final(res) then
      r.last = match(res, "^pyq%.http: %S+ %S+: (.*)$") or res
      delay = backoff_delay(plan.backoff, attempt + 1)
    else
      error(res, 0)
    end
    if now() + delay > r.deadline then timed_out(r, "would run out during the backoff") end
    C.count_retry()
    sleep(delay)
  end
end

--- http.request{ url =, method =, headers =, body =, json =, query =,
-- timeout =, attempt_timeout =, connect_timeout =, follow_redirects =,
-- max_redirects =, max_body =, verify =, retries =, backoff =,
-- retry_unsafe =, max_retry_after = } -> response
function M.request(opts)
  if type(opts) ~= "table" then
    error("pyq.http.request: expected a table of options, got " .. type(opts), 2)
  end
  return perform(nil, nil, opts, "pyq.http.request")
end

local function verb(method)
  local fname = "pyq.http." .. lower(method)
  return function(url, opts)
    return perform(method, url, opts, fname)
  end
end

M.get = verb("GET")
M.head = verb("HEAD")
M.delete = verb("DELETE")
M.post = verb("POST")
M.put = verb("PUT")
M.patch = verb("PATCH")
M.options = verb("OPTIONS")

--- http.configure{ user_agent =, max_connections =, max_per_host =,
-- http2 =, retries =, backoff =, max_retry_after = }: process-wide defaults.
function M.configure(opts)
  if type(opts) ~= "table" then
    error("pyq.http.configure: expected a table of options, got " .. type(opts), 2)
  end
  local fname = "pyq.http.configure"
  local o = copy(opts)
  if o.retries ~= nil then check_count(fname, "retries", o.retries, 3) end
  if o.backoff ~= nil then check_seconds(fname, "backoff", o.backoff, 3) end
  if o.max_retry_after ~= nil then check_seconds(fname, "max_retry_after", o.max_retry_after, 3) end
  local retries, backoff, max_retry_after = o.retries, o.backoff, o.max_retry_after
  o.retries, o.backoff, o.max_retry_after = nil, nil, nil
  C.configure(o)
  defaults.retries = retries or defaults.retries
  defaults.backoff = backoff or defaults.backoff
  defaults.max_retry_after = max_retry_after or defaults.max_retry_after
end

local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600 }

local function parse_rate(rate)
  local n, d, unit
  if type(rate) == "string" then
    n, d, unit = match(rate, "^%s*(%d+)%s*/%s*(%d*%.?%d*)%s*(%a+)%s*$")
  end
  n, d = tonumber(n), (d == "" and 1 or tonumber(d))
  if not n or n < 1 or not d or d <= 0 or not UNITS[unit] then
    error(format("pyq.http.limit: bad rate %s (expected \"N/D\" such as \"20/1s\", "
      .. "\"100/2m\" or \"5/500ms\")", type(rate) == "string" and format("%q", rate) or tostring(rate)), 3)
  end
  return { n = tointeger(n), d = d * UNITS[unit], times = {}, next = 1, count = 0 }
end

--- http.limit(host, rate, ...): requests to host ("name" or "name:port")
-- wait until every rate window ("N/D", D like 500ms, 1s, 2m, 1h) allows
-- them; http.limit(host, nil) removes the limits.
function M.limit(host, ...)
  if type(host) ~= "string" or host == "" or find(host, "[/%s]") then
    error("pyq.http.limit: host must be \"name\" or \"name:port\", got " .. tostring(host), 2)
  end
  host = lower(host)
  local n = select("#", ...)
  if n == 0 or (n == 1 and (...) == nil) then
    limits[host] = nil
    return
  end
  local windows = {}
  for i = 1, n do windows[i] = parse_rate((select(i, ...))) end
  limits[host] = windows
end

M.stats = C.stats

return M
