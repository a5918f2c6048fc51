-- pyq.itertools: helpers for feeding queues without keeping data alive.
-- Loaded on first use, after a script may have replaced any global: what
-- it calls comes from pyq.std.
local std = require "pyq.std"

local M = {}

local type, next, error = std.type, std.next, std.error
local getmetatable, setmetatable = std.debug.getmetatable, std.debug.setmetatable

local function deepcopy(value, seen)
  if type(value) ~= "table" then return value end
  local copy = seen[value]
  if copy then return copy end
  copy = {}
  seen[value] = copy
  for k, v in next, value do
    copy[deepcopy(k, seen)] = deepcopy(v, seen)
  end
  return setmetatable(copy, getmetatable(value))
end

--- Iterates `list` as `for i, item in frozen_generator(list)`, giving a deep
-- copy of each item (cycles and metatables kept), so tasks can fill the
-- copies while the list itself stays small (the seed's FrozenGenerator).
function M.frozen_generator(list)
  if type(list) ~= "table" then
    error("pyq.itertools.frozen_generator: list must be a table, got " .. type(list), 2)
  end
  local i = 0
  return function()
    i = i + 1
    local item = list[i]
    if item == nil then return nil end
    return i, deepcopy(item, {})
  end
end

M.deepcopy = function(value) return deepcopy(value, {}) end

return M
