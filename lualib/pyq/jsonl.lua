-- pyq.jsonl: JSON Lines output that stays whole.
--
-- Lines are buffered and written in whole-line chunks to an unbuffered
-- file, so however the job ends, the file never holds half a line; closing
-- the writer (a <close> variable, or out:close()) writes the rest.
local json = require "pyq.json"

local M = {}
local Writer = { __name = "pyq.jsonl.writer" }
Writer.__index = Writer

local FLUSH_BYTES = 64 * 1024

local function write_chunk(self)
  if self.n == 0 then return end
  local chunk = table.concat(self.buf, "", 1, self.n)
  local ok, err = self.file:write(chunk)
  if not ok then error(("pyq.jsonl: cannot write '%s': %s"):format(self.path, err), 3) end
  for i = 1, self.n do self.buf[i] = nil end
  self.n, self.bytes = 0, 0
end

--- Writes one value as one JSON line.
function Writer:write(value)
  if self.closed then error(("pyq.jsonl: '%s' is closed"):format(self.path), 2) end
  local ok, line = pcall(json.encode, value)
  if not ok then error(("pyq.jsonl: cannot encode a line for '%s': %s"):format(self.path, line), 2) end
  self.n = self.n + 1
  self.buf[self.n] = line .. "\n"
  self.bytes = self.bytes + #line + 1
  self.lines = self.lines + 1
  if self.bytes >= FLUSH_BYTES then write_chunk(self) end
end

--- Writes what is buffered.
function Writer:flush()
  write_chunk(self)
end

function Writer:close()
  if self.closed then return end
  write_chunk(self)
  self.closed = true
  self.file:close()
end

Writer.__close = Writer.close
Writer.__gc = Writer.close

function Writer:__tostring()
  return ("pyq.jsonl.writer: %s (%d lines%s)"):format(self.path, self.lines, self.closed and ", closed" or "")
end

--- pyq.jsonl.open(path [, { append = true }]) -> writer
function M.open(path, opts)
  if type(path) ~= "string" then
    error("pyq.jsonl.open: path must be a string, got " .. type(path), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("pyq.jsonl.open: options must be a table, got " .. type(opts), 2)
  end
  for k in pairs(opts or {}) do
    if k ~= "append" then error(("pyq.jsonl.open: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local file, err = io.open(path, (opts and opts.append) and "a" or "w")
  if not file then error(("pyq.jsonl.open: cannot open '%s': %s"):format(path, err), 2) end
  file:setvbuf("no")
  return setmetatable({ path = path, file = file, buf = {}, n = 0, bytes = 0, lines = 0 }, Writer)
end

--- Reads a JSONL file back (for checks and small jobs): a list of values.
function M.read(path)
  local file, err = io.open(path, "r")
  if not file then error(("pyq.jsonl.read: cannot open '%s': %s"):format(path, err), 2) end
  local out = {}
  for line in file:lines() do
    if line ~= "" then out[#out + 1] = json.decode(line) end
  end
  file:close()
  return out
end

return M
