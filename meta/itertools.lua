---@meta _
-- pyq.itertools: feeding queues without keeping data alive.

---@class pyq.itertools
pyq.itertools = {}

---Iterates `list` as `for i, item in frozen_generator(list)`, giving a deep
---copy of each item, so tasks can fill the copies while the list stays small.
---@generic T
---@param list T[]
---@return fun(): integer?, T
function pyq.itertools.frozen_generator(list) end

---A deep copy (cycles and metatables kept).
---@generic T
---@param value T
---@return T
function pyq.itertools.deepcopy(value) end
