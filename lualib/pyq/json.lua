-- pyq.json: lua-cjson with the host's conventions.
local cjson = require "cjson"

local M = {
  null = cjson.null,
}

local codec = cjson.new()
codec.encode_sparse_array(true)
codec.decode_invalid_numbers(false)

--- Encodes a Lua value as JSON; errors say what could not be encoded.
function M.encode(value)
  local ok, s = pcall(codec.encode, value)
  if not ok then error("pyq.json.encode: " .. s, 2) end
  return s
end

--- Decodes a JSON text; errors give the position of the problem.
function M.decode(text)
  if type(text) ~= "string" then
    error("pyq.json.decode: expected a string, got " .. type(text), 2)
  end
  local ok, v = pcall(codec.decode, text)
  if not ok then error("pyq.json.decode: " .. v, 2) end
  return v
end

return M
