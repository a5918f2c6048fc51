-- The public `pyq` module: the C core (tasks, queues, timers, logging) plus
-- the Lua submodules, loaded on first use (pyq.itertools, pyq.http, ...).
local std = require "pyq.std"   -- first: before any script can replace a global
local core = require "pyq.core"

local pyq = {}
for name, value in std.pairs(core) do
  if name:sub(1, 1) ~= "_" then pyq[name] = value end   -- _http: pyq.http's C half
end

pyq.worker = false   -- true in `pyqhost --worker URL job.lua` (pyq.cluster)

local submodules = { itertools = true, http = true, json = true, jsonl = true,
                     sqlite = true, url = true, html = true, store = true }

return std.setmetatable(pyq, {
  __index = function(t, name)
    if submodules[name] then
      local module = std.require("pyq." .. name)
      std.rawset(t, name, module)
      return module
    end
  end,
})
