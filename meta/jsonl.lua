---@meta _
-- pyq.jsonl: JSON Lines files, written whole lines at a time.

---@class pyq.jsonl.OpenOptions
---@field append boolean? add to the file (false)
---@field flush number|"line"? seconds a written line may wait in memory (1), or "line"
---@field invalid_utf8 "replace"|"error"? as pyq.json.encode

---A JSON Lines writer; close it (or let `<close>` do it) to write the rest.
---@class pyq.jsonl.Writer
---@field path string
---@field lines integer values written so far
---@field closed boolean
local Writer = {}

---Writes one JSON line (buffered).
---@param value any
function Writer:write(value) end

---Writes what is buffered now.
function Writer:flush() end

---Flushes and closes; twice is fine.
function Writer:close() end

---@class pyq.jsonl
pyq.jsonl = {}

---Opens `path` for writing JSON Lines.
---@param path string
---@param opts? pyq.jsonl.OpenOptions
---@return pyq.jsonl.Writer
function pyq.jsonl.open(path, opts) end

---`for i, value in pyq.jsonl.lines(path) do ... end`: i counts values, blank
---lines skipped.
---@param path string
---@return fun(): integer?, any
function pyq.jsonl.lines(path) end

---Every value of the file, as a list.
---@param path string
---@return any[]
function pyq.jsonl.read(path) end
