-- pyq.cache: pyq.http's response cache, on pyq.sqlite or Redis.  One table per
-- file, responses(key PRIMARY KEY, ...) with rowids (a WITHOUT ROWID table
-- gives each row of 1 KiB or more a page of its own: 4.6 KiB an entry
-- instead of 1.5 in bench/http.sh): a lookup is a primary-key read on
-- a statement prepared once; a store is an upsert that pyq.sqlite groups
-- with the others of the loop turn into one transaction (WAL mode), so
-- storing costs no fsync per response and an interrupted job keeps every
-- response it had stored but the last group's.  One database per file per
-- process: every session and task naming the same file shares it.
--
-- The key is built by C (host/http/http.c): the method, the normalized
-- URL and the values of the request headers named in cache_vary.  Bodies
-- are stored as they came (not compressed: see the README's Measured
-- section for why).  Times are wall-clock seconds (C.time), so a cache
-- file's ages mean the same across runs.
--
-- A redis://host:port/db URL instead of a file puts the entries in Redis,
-- shared by every process of a job and across runs: one value per entry,
-- pyq:cache:<key> -> the stored fields packed with string.pack, so a
-- lookup is one GET and a store one SET (pipelined, not waited), written
-- whole or not at all.  Each entry expires after the longest ttl this
-- process has been configured with or asked for (a request's cache_ttl
-- longer than the configured one still finds what it stored), so the
-- store does not grow forever.  Redis down or slow costs a request at most
-- LOOKUP_TIMEOUT: the lookup is a miss, and for PAUSE seconds the cache is
-- left alone, then one lookup at a time tries it again.
local std = require "pyq.std"
local core = require "pyq.core"

local type, format, pcall, error = std.type, std.string.format, std.pcall, std.error
local tostring, match, setmetatable = std.tostring, std.string.match, std.setmetatable
local pack, unpack, ceil = std.string.pack, std.string.unpack, std.math.ceil
local C = core._http
local Error, is_error, now = core.Error, core.is_error, core.now
local warning = core.log.warning

-- Another process holding the file is waited for this long (the wait
-- blocks the loop); past it a lookup is a miss and a store is dropped.
local BUSY_TIMEOUT = 0.25

local M = {}
local opened = {}   -- path or URL -> cache
local open_redis    -- below

local SCHEMA = [[CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY, status INTEGER NOT NULL, url TEXT NOT NULL,
  method TEXT NOT NULL, raw_headers TEXT NOT NULL, body BLOB NOT NULL,
  http_version TEXT NOT NULL, stored REAL NOT NULL)]]
local GET = "SELECT status, url, method, raw_headers, body, http_version, stored FROM responses WHERE key = ?"
local PUT = "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

local Cache = {}
Cache.__index = Cache

--- The cache of the file at path, opened on first use.  fname names the
-- option in errors ("pyq.http.configure: cache: ...").
function M.open(path, fname)
  local c = opened[path]
  if c then return c end
  if match(path, "^[Rr][Ee][Dd][Ii][Ss]:") then return open_redis(path, fname) end
  local sqlite = std.require("pyq.sqlite")
  local ok, db = pcall(sqlite.open, path, { busy_timeout = BUSY_TIMEOUT })
  if ok then ok, db = pcall(function() db:exec(SCHEMA) db:commit() return db end) end
  if not ok then
    error(Error("usage", format("%s: cache: cannot use '%s' as a response cache: %s",
      fname, path, type(db) == "table" and db.message or std.tostring(db))), 0)
  end
  c = setmetatable({ db = db, path = path, blob = sqlite.blob }, Cache)
  opened[path] = c
  return c
end

-- A cache that fails (locked by another process past BUSY_TIMEOUT, a full
-- disk) must not fail the request it was only to speed up: the failure is
-- logged once a minute at WARNING and the request goes on without it.
local function trouble(self, what, err)
  local t = C.time()
  if not self.warned or t - self.warned >= 60 then
    self.warned = t
    warning(format("pyq.http: the response cache %s could not %s (the request goes on without it): %s",
      self.path, what, type(err) == "table" and tostring(err.message) or tostring(err)))
  end
end

--- The stored response under key if younger than ttl seconds: its fields
-- as a table, or nil.
function Cache:get(key, ttl)
  local ok, row = pcall(self.db.one, self.db, GET, key)
  if not ok then
    trouble(self, "be read", row)
    return nil
  end
  if row and C.time() - row.stored < ttl then return row end
  return nil
end

--- Stores res under key (grouped: committed with the loop turn's writes).
function Cache:put(key, res)
  local ok, err = pcall(self.db.exec, self.db, PUT, key, res.status, res.url, res.method,
    res.raw_headers, self.blob(res.body), res.http_version, C.time())
  if not ok then trouble(self, "store an answer", err) end
end

-- A file's entries are kept until replaced: a ttl changes nothing.
function Cache.keep() end

-- ---- on Redis ------------------------------------------------------------

local LOOKUP_TIMEOUT = 1   -- seconds a lookup (and a store) may take
local PAUSE = 5            -- after a failure, seconds without the cache
local PREFIX = "pyq:cache:"
-- version 1, stored, status, url, method, raw_headers, body, http_version
local FORMAT = "<B d I2 s4 s4 s4 s4 s4"
-- a ttl this long (over 300 years) keeps entries until they are deleted
local FOREVER = 1e10

local RCache = {}
RCache.__index = RCache

function open_redis(url, fname)
  local ok, conn = pcall(core._redis, url, LOOKUP_TIMEOUT)
  if not ok then
    local why = is_error(conn) and match(tostring(conn.message), "url (.*)$") or tostring(conn)
    error(Error("usage", format("%s: cache: bad Redis URL '%s': it %s", fname, url, why)), 0)
  end
  local c = setmetatable({ conn = conn, path = url, longest = 0 }, RCache)
  opened[url] = c
  return c
end

--- Entries stored from now on live at least ttl seconds.
function RCache:keep(ttl)
  if ttl > self.longest then self.longest = ttl end
end

-- Whether the cache is left alone now: for PAUSE seconds after a failure,
-- then while the one lookup that tries it again is out.
local function resting(self)
  local down = self.down
  return down and (now() - down < PAUSE or self.probing)
end

function RCache:get(key, ttl)
  self:keep(ttl)
  if resting(self) then return nil end
  self.probing = self.down ~= nil
  local ok, value = pcall(self.conn.call, self.conn, "GET", PREFIX .. key)
  self.probing = false
  if not ok then
    if not is_error(value, "redis") then error(value, 0) end   -- cancelled, interrupted
    self.down = now()
    trouble(self, "be read", value)
    return nil
  end
  self.down = nil
  if type(value) ~= "string" then return nil end
  local fine, version, stored, status, url, method, raw_headers, body, http_version, after =
    pcall(unpack, FORMAT, value)
  if not fine or version ~= 1 or after ~= #value + 1 or C.time() - stored >= ttl then return nil end
  return { status = status, url = url, method = method, raw_headers = raw_headers, body = body,
           http_version = http_version, stored = stored }
end

function RCache:put(key, res)
  if self.down then return end
  local value = pack(FORMAT, 1, C.time(), res.status, res.url, res.method, res.raw_headers,
    res.body or "", res.http_version)
  local longest = self.longest
  if longest >= FOREVER then
    self.conn:send("SET", PREFIX .. key, value)
  elseif longest * 1000 >= 1 then   -- PX takes whole milliseconds, at least 1
    self.conn:send("SET", PREFIX .. key, value, "PX", ceil(longest * 1000))
  end
end

return M
