---@meta _
-- pyq.store: the job store of pyq.Queue{ store = path }, opened for
-- inspection and reset.

---A store's file, opened: keys recorded per queue name.
---@class pyq.store.Store
local Store = {}

---The keys recorded under name ("default"), sorted.
---@param name? string
---@return string[]
function Store:keys(name) end

---How many keys are recorded under name ("default").
---@param name? string
---@return integer
function Store:count(name) end

---Drops every key recorded under name ("default"); returns how many.
---@param name? string
---@return integer
function Store:clear(name) end

---Closes the file; also at the end of a `<close>` scope and at `__gc`;
---twice is fine.
function Store:close() end

pyq.store = {}

---Opens the store at path (created when missing) to inspect or reset it.
---@param path string
---@return pyq.store.Store
function pyq.store.open(path) end
