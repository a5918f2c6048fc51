-- `pyqhost init [dir]`: a job skeleton for a new project -- job.lua, a
-- .luarc.json that points the Lua language server at pyq's definitions,
-- and a .luacheckrc that knows the `pyq` global.  Existing files are never
-- overwritten: the command refuses before writing anything.
local std = require "pyq.std"

local M = {}

local JOB = [[
-- job.lua: a collection job for pyqhost.  Run it with `pyqhost job.lua`
-- (add -v for a summary at the end, --progress for live progress).
local http = pyq.http

local BASE = "https://api.example.org"
-- http.limit("api.example.org", "20/1s", "100/120s")   -- the API's rate limits

-- One task per item: fetch it, return what to keep.
local fetch = pyq.async(function(id)
  local res = http.get(BASE .. "/items/" .. id, { retries = 3 })
  return res:json()
end)

local out <close> = pyq.jsonl.open("items.jsonl")   -- one JSON document a line
-- local db <close> = pyq.sqlite.open("items.sqlite")  -- or rows in SQLite:
-- db:exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, doc TEXT)")

local queue <close> = pyq.Queue{ workers = 25, progress = true }

for id = 1, 100 do
  queue:put(fetch(id))
end
for _, item in ipairs(queue:join()) do
  out:write(item)
  -- db:upsert("items", { id = item.id, doc = pyq.json.encode(item) }, "id")
end
]]

-- The settings below the first line are those of pyqhost's own .luacheckrc
-- for its scripts (tests/host/docs_spec.lua compares them).
local LUACHECKRC = [[
-- luacheck settings for a pyqhost job (Debian: apt install lua-check)
std = "lua54"
-- pyqhost defines `pyq`; of its fields a job assigns only pyq.log.level
read_globals = {
  pyq = { other_fields = true, fields = {
    log = { other_fields = true, fields = { level = { read_only = false } } },
  } },
}
max_line_length = 120
]]

local function luarc(meta)
  return ([[
{
  "$schema": "https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json",
  "runtime.version": "Lua 5.4",
  "workspace.library": [%s],
  "diagnostics.globals": ["pyq"]
}
]]):format(std.string.format("%q", meta))
end

local function exists(path)
  local f = std.io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

--- dir: where to write; meta: the directory of pyq's definitions.
function M.main(dir, meta)
  dir = dir or "."
  if dir ~= "." and not exists(dir) then
    local ok = std.os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
    if not ok then
      std.io.stderr:write("pyqhost init: cannot create the directory ", dir, "\n")
      return 2
    end
  end
  local files = {
    { "job.lua", JOB },
    { ".luarc.json", luarc(meta) },
    { ".luacheckrc", LUACHECKRC },
  }
  local taken = {}
  for _, f in std.ipairs(files) do
    if exists(dir .. "/" .. f[1]) then taken[#taken + 1] = f[1] end
  end
  if #taken > 0 then
    std.io.stderr:write("pyqhost init: ", dir, " already has ",
                        std.table.concat(taken, ", "), "; nothing written\n")
    return 1
  end
  for _, f in std.ipairs(files) do
    local path = dir .. "/" .. f[1]
    local out, err = std.io.open(path, "w")
    if not out then
      std.io.stderr:write("pyqhost init: cannot write ", path, ": ", err, "\n")
      return 1
    end
    out:write(f[2])
    out:close()
    std.io.stdout:write("wrote ", path, "\n")
  end
  std.io.stdout:write("next: ", dir == "." and "" or "cd " .. dir .. " && ",
                      "pyqhost job.lua\n")
  return 0
end

return M
