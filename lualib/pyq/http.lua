-- pyq.http: HTTP requests from tasks.  The transfers are C's (host/http.c,
-- libcurl's multi interface on the host's loop); this file adds the verbs,
-- JSON bodies, the response methods, retries, Retry-After and per-host rate
-- limits.
local core = require "pyq.core"
local json = require "pyq.json"

local C = core._http
local M = {}

local Response = { __name = "pyq.http.response" }

-- res.headers is parsed from res.raw_headers on first use.
function Response.__index(res, key)
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
  local ok, value = pcall(json.decode, self.body)
  if not ok then
    error(("pyq.http: %s %s: the response is not valid JSON (%s)"):format(
      self.method, C.mask_url(self.url), value), 2)
  end
  return value
end

function Response:__tostring()
  return ("pyq.http.response: %s %s -> %d (%d bytes)"):format(
    self.method, C.mask_url(self.url), self.status, #self.body)
end

C.set_response_mt(Response)

local function has_header(headers, name)
  name = name:lower()
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- `json = value` becomes the body and a Content-Type header, in o (a copy
-- of the caller's options).  Called by prepare: level 5 is the user.
local function with_json(o, fname)
  local value = o.json
  o.json = nil
  if o.body ~= nil then error(fname .. ": give body or json, not both", 5) end
  local ok, body = pcall(json.encode, value)
  if not ok then error(fname .. ": json: " .. body, 5) end
  o.body = body
  o.headers = copy(o.headers or {})
  if not has_header(o.headers, "content-type") then
    o.headers["Content-Type"] = "application/json"
  end
  return o
end

-- ---- retries, rate limits, Retry-After --------------------------------

local send = C.send
local defaults = { retries = 0, backoff = 0.5 }
local limits = {}    -- "host" or "host:port" -> { windows = { ... } }
local blocked = {}   -- "host:port" -> pyq.now() until which Retry-After holds
local RETRY_STATUS = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }
local SAFE = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

local function check_count(fname, key, v, level)
  if math.type(v) ~= "integer" or v < 0 then
    error(("%s: %s must be a non-negative integer, got %s"):format(fname, key, tostring(v)), level)
  end
  return v
end

local function check_seconds(fname, key, v, level)
  if type(v) ~= "number" or not (v >= 0) then
    error(("%s: %s must be a non-negative number of seconds, got %s"):format(fname, key, tostring(v)), level)
  end
  return v
end

-- Splits pyq.http's own options (json, retries, backoff, retry_unsafe) off
-- the table that C validates.  Level 4 is the caller of the verb.
local function prepare(opts, fname)
  if opts == nil then return nil, defaults.retries, defaults.backoff, false end
  if type(opts) ~= "table" then
    error(("%s: expected a table of options, got %s"):format(fname, type(opts)), 4)
  end
  if opts.json == nil and opts.retries == nil and opts.backoff == nil and opts.retry_unsafe == nil then
    return opts, defaults.retries, defaults.backoff, false
  end
  local o = copy(opts)
  local retries = o.retries == nil and defaults.retries or check_count(fname, "retries", o.retries, 4)
  local backoff = o.backoff == nil and defaults.backoff or check_seconds(fname, "backoff", o.backoff, 4)
  local unsafe = o.retry_unsafe
  if unsafe ~= nil and type(unsafe) ~= "boolean" then
    error(fname .. ": retry_unsafe must be a boolean, got " .. type(unsafe), 4)
  end
  o.retries, o.backoff, o.retry_unsafe = nil, nil, nil
  if o.json ~= nil then with_json(o, fname) end
  return o, retries, backoff, unsafe == true
end

-- "host:port" (lower case) of an http(s) URL, and the bare host name.
local function host_key(url)
  local authority = type(url) == "string" and url:match("^%a[%w+.-]*://([^/?#]*)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", ""):lower()
  return authority, authority:match("^(.*):%d+$") or authority
end

local function reserve(limit)
  local t = pyq.now()
  for _, w in ipairs(limit) do
    if w.count == w.n and w.times[w.next] + w.d > t then t = w.times[w.next] + w.d end
  end
  for _, w in ipairs(limit) do
    w.times[w.next] = t
    w.next = w.next % w.n + 1
    if w.count < w.n then w.count = w.count + 1 end
  end
  return t
end

-- Suspends the task until the host's limits and any Retry-After allow a
-- request.  Slots are reserved on arrival, so waiting requests go in order;
-- a Retry-After that comes while a slot is awaited makes the request wait
-- it out and take a new slot, so the windows count real send times.
local function wait_turn(key, name)
  while true do
    local now = pyq.now()
    local until_ = blocked[key]
    if until_ and until_ > now then
      pyq.sleep(until_ - now)
    else
      blocked[key] = nil
      local limit = limits[key] or limits[name]
      if not limit then return end
      local at = reserve(limit)
      if at > now then pyq.sleep(at - now) end
      if (blocked[key] or 0) <= pyq.now() then return end
    end
  end
end

-- Retry-After (seconds or an HTTP date) -> seconds from now, or nil.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7,
                 Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local function retry_after(value)
  if not value then return nil end
  local secs = tonumber(value:match("^%s*(%d+%.?%d*)%s*$"))
  if secs then return secs end
  local d, mon, y, hh, mm, ss = value:match("(%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
  if not d or not MONTHS[mon] then return nil end
  local t = os.time{ year = tonumber(y), month = MONTHS[mon], day = tonumber(d),
                     hour = tonumber(hh), min = tonumber(mm), sec = tonumber(ss), isdst = false }
  local now = os.time()
  local offset = now - os.time(os.date("!*t", now))   -- local time's UTC offset
  return math.max(0, t + offset - now)
end

local function obey_retry_after(key, res)
  local secs = retry_after(res.headers["retry-after"])
  if secs and key then
    local until_ = pyq.now() + secs
    if until_ > (blocked[key] or 0) then blocked[key] = until_ end
  end
  return secs
end

local function is_transport_error(err)
  return type(err) == "string" and err:find("^pyq%.http: ") ~= nil
end

local function backoff_delay(base, attempt)
  return base * 2 ^ (attempt - 1) * (0.75 + 0.5 * math.random())
end

local function perform(method, url, opts, fname)
  local o, retries, backoff, unsafe = prepare(opts, fname)
  local target = url or (o and o.url)
  if retries == 0 and next(limits) == nil and next(blocked) == nil then
    local res = send(method, url, o, fname)
    if res.status == 429 or res.status == 503 then obey_retry_after(host_key(target), res) end
    return res
  end
  local verb = (method or (o and o.method) or ((o and o.body) and "POST" or "GET")):upper()
  if not (SAFE[verb] or unsafe) then retries = 0 end
  local key, name = host_key(target)
  local attempt = 0
  while true do
    if key then wait_turn(key, name) end
    local ok, res = pcall(send, method, url, o, fname)
    if ok then
      local wait = (res.status == 429 or res.status == 503) and obey_retry_after(key, res)
      if not RETRY_STATUS[res.status] or attempt >= retries then
        res.retries = attempt
        return res
      end
      attempt = attempt + 1
      C.count_retry()
      pyq.sleep(math.max(wait or 0, backoff_delay(backoff, attempt)))
    elseif is_transport_error(res) and attempt < retries then
      attempt = attempt + 1
      C.count_retry()
      pyq.sleep(backoff_delay(backoff, attempt))
    else
      error(res, 0)
    end
  end
end

--- http.request{ url =, method =, headers =, body =, json =, query =,
-- timeout =, connect_timeout =, follow_redirects =, max_redirects =,
-- max_body =, verify =, retries =, backoff =, retry_unsafe = } -> response
function M.request(opts)
  if type(opts) ~= "table" then
    error("pyq.http.request: expected a table of options, got " .. type(opts), 2)
  end
  return perform(nil, nil, opts, "pyq.http.request")
end

local function verb(method)
  local fname = "pyq.http." .. method:lower()
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
-- http2 =, retries =, backoff = }: process-wide defaults.
function M.configure(opts)
  if type(opts) ~= "table" then
    error("pyq.http.configure: expected a table of options, got " .. type(opts), 2)
  end
  local o = copy(opts)
  if o.retries ~= nil then check_count("pyq.http.configure", "retries", o.retries, 3) end
  if o.backoff ~= nil then check_seconds("pyq.http.configure", "backoff", o.backoff, 3) end
  local retries, backoff = o.retries, o.backoff
  o.retries, o.backoff = nil, nil
  C.configure(o)
  defaults.retries = retries or defaults.retries
  defaults.backoff = backoff or defaults.backoff
end

local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600 }

local function parse_rate(rate)
  local n, d, unit
  if type(rate) == "string" then
    n, d, unit = rate:match("^%s*(%d+)%s*/%s*(%d*%.?%d*)%s*(%a+)%s*$")
  end
  n, d = tonumber(n), (d == "" and 1 or tonumber(d))
  if not n or n < 1 or not d or d <= 0 or not UNITS[unit] then
    error(("pyq.http.limit: bad rate %s (expected \"N/D\" such as \"20/1s\", "
      .. "\"100/2m\" or \"5/500ms\")"):format(type(rate) == "string" and ("%q"):format(rate) or tostring(rate)), 3)
  end
  return { n = math.tointeger(n), d = d * UNITS[unit], times = {}, next = 1, count = 0 }
end

--- http.limit(host, rate, ...): requests to host ("name" or "name:port")
-- wait until every rate window ("N/D", D like 500ms, 1s, 2m, 1h) allows
-- them; http.limit(host, nil) removes the limits.
function M.limit(host, ...)
  if type(host) ~= "string" or host == "" or host:find("[/%s]") then
    error("pyq.http.limit: host must be \"name\" or \"name:port\", got " .. tostring(host), 2)
  end
  host = host:lower()
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
