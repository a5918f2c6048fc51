-- pyq.std: the standard library as it was when the host started, before any
-- script ran.  lualib's modules take what they call from here, so a script
-- that replaces a global (table.sort, string.format, pairs, ...) cannot
-- change how pyq itself behaves.  Loaded by pyq/init.lua at start-up.
-- The functions sit behind __index, so tracebacks keep calling them by
-- their global names (Lua names a function after the first loaded module
-- whose fields hold it).
local std = {}
for _, name in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs",
                        "pcall", "rawequal", "rawget", "rawlen", "rawset", "select",
                        "setmetatable", "tonumber", "tostring", "type", "xpcall", "require",
                        "load", "print" }) do
  std[name] = _G[name]
end
for _, lib in ipairs({ "coroutine", "debug", "io", "math", "os", "string", "table", "utf8" }) do
  local copy = {}
  for k, v in pairs(_G[lib]) do copy[k] = v end
  std[lib] = copy
end
return setmetatable({}, { __index = std, __newindex = function() std.error("pyq.std is read-only", 2) end })
