---@meta _
-- pyq.sqlite: SQLite databases on the host's loop, writes grouped into
-- transactions, values always bound to `?` parameters.

---@class pyq.sqlite.OpenOptions
---@field wal boolean? WAL mode with synchronous=NORMAL (true)
---@field batch integer? writes per transaction group (1000)
---@field busy_timeout number? seconds to wait for a database another process holds (5)

---A value bound as a BLOB rather than TEXT.
---@class pyq.sqlite.Blob: userdata

---A value a statement binds: nil, boolean (0/1), number, string or a blob.
---@alias pyq.sqlite.Value nil|boolean|number|string|pyq.sqlite.Blob

---A row: column name -> value.
---@alias pyq.sqlite.Row table<string, nil|integer|number|string>

---@class pyq.sqlite.DB
---@field path string the file ("" once closed)
---@field closed boolean
local DB = {}

---Runs SQL (text with several statements runs them all); returns the changes
---and the last insert rowid.  BEGIN and COMMIT are refused: use transaction.
---@param sql string
---@param ... pyq.sqlite.Value bound to its `?` parameters
---@return integer changes
---@return integer rowid
function DB:exec(sql, ...) end

---The first row, or nil.
---@param sql string
---@param ... pyq.sqlite.Value
---@return pyq.sqlite.Row?
function DB:one(sql, ...) end

---`for row in db:rows(sql, ...) do ... end`
---@param sql string
---@param ... pyq.sqlite.Value
---@return fun(): pyq.sqlite.Row?
function DB:rows(sql, ...) end

---Inserts a row (column name -> value), quoting the identifiers.
---@param table string
---@param row table<string, pyq.sqlite.Value>
---@return integer rowid
function DB:insert(table, row) end

---Inserts, or updates the row's other columns when a row with `key` exists.
---@param table string
---@param row table<string, pyq.sqlite.Value>
---@param key string|string[] the conflict column(s)
---@return integer rowid
function DB:upsert(table, row, key) end

---Runs `fn(...)` in a transaction: its writes all land or none do; it
---cannot wait.  Returns fn's results.
---@param fn fun(...: any): any
---@param ... any
---@return any ...
function DB:transaction(fn, ...) end

---Commits the open group of writes now.
function DB:commit() end

---Commits and closes; twice is fine.
function DB:close() end

---@class pyq.sqlite
---@field sqlite_version string SQLite's version
pyq.sqlite = {}

---Opens (or creates) a database.
---@param path string
---@param opts? pyq.sqlite.OpenOptions
---@return pyq.sqlite.DB
function pyq.sqlite.open(path, opts) end

---A value bound as a BLOB.
---@param s string
---@return pyq.sqlite.Blob
function pyq.sqlite.blob(s) end
