-- pyq.cache: pyq.http's response cache, on pyq.sqlite.  One table per
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
local std = require "pyq.std"
local core = require "pyq.core"

local type, format, pcall, error = std.type, std.string.format, std.pcall, std.error
local tostring = std.tostring
local C = core._http
local Error = core.Error
local warning = core.log.warning

-- Another process holding the file is waited for this long (the wait
-- blocks the loop); past it a lookup is a miss and a store is dropped.
local BUSY_TIMEOUT = 0.25

local M = {}
local opened = {}   -- path -> cache

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
  local sqlite = std.require("pyq.sqlite")
  local ok, db = pcall(sqlite.open, path, { busy_timeout = BUSY_TIMEOUT })
  if ok then ok, db = pcall(function() db:exec(SCHEMA) db:commit() return db end) end
  if not ok then
    error(Error("usage", format("%s: cache: cannot use '%s' as a response cache: %s",
      fname, path, type(db) == "table" and db.message or std.tostring(db))), 0)
  end
  c = std.setmetatable({ db = db, path = path, blob = sqlite.blob }, Cache)
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

return M
