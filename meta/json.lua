---@meta _
-- pyq.json: the host's JSON codec (C).

---@class pyq.json.EncodeOptions
---@field invalid_utf8 "replace"|"error"? "replace" (U+FFFD) by default

---@class pyq.json
---@field null lightuserdata JSON null (a NULL lightuserdata, as lua-cjson's)
pyq.json = {}

---Decodes a JSON text; errors name the line, column and byte.  Integers
---that fit 64 bits come back as Lua integers.
---@param text string
---@return any
function pyq.json.decode(text) end

---Encodes a value; an unmarked empty table is `[]`.
---@param value any
---@param opts? pyq.json.EncodeOptions
---@return string
function pyq.json.encode(value, opts) end

---Marks `t` (or a new table) as a JSON array and returns it.
---@generic T: table
---@param t? T
---@return T
function pyq.json.array(t) end

---Marks `t` (or a new table) as a JSON object and returns it.
---@generic T: table
---@param t? T
---@return T
function pyq.json.object(t) end

---Whether `t` is marked as an array (decoded arrays are).
---@param t any
---@return boolean
function pyq.json.is_array(t) end

---Whether `t` is marked as an object (decoded objects are).
---@param t any
---@return boolean
function pyq.json.is_object(t) end
