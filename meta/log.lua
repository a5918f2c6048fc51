---@meta _
-- pyq.log: log lines on stderr, Python's levels.

---A level: a number (10 DEBUG ... 50 CRITICAL) or its name.
---@alias pyq.log.Level integer|"DEBUG"|"INFO"|"WARNING"|"ERROR"|"CRITICAL"|"debug"|"info"|"warning"|"error"|"critical"

---Formats with string.format only when the level passes the threshold; a
---message that cannot be formatted is logged as an ERROR, never raised.
---@class pyq.log
---@field level pyq.log.Level the threshold (default WARNING); reads as a number
pyq.log = {}

---@param fmt any
---@param ... any string.format's arguments
function pyq.log.debug(fmt, ...) end

---@param fmt any
---@param ... any
function pyq.log.info(fmt, ...) end

---@param fmt any
---@param ... any
function pyq.log.warning(fmt, ...) end

---@param fmt any
---@param ... any
function pyq.log.error(fmt, ...) end

---@param fmt any
---@param ... any
function pyq.log.critical(fmt, ...) end

---Logs at `level`.
---@param level pyq.log.Level
---@param fmt any
---@param ... any
function pyq.log.log(level, fmt, ...) end
