-- Helpers for specs that drive a real pyqhost process.
local M = {}

M.pyqhost = os.getenv("PYQHOST") or "build/pyqhost"
M.source = os.getenv("PYQ_SOURCE") or "."

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.tempfile(text, suffix)
  local path = os.tmpname() .. (suffix or ".lua")
  local f = assert(io.open(path, "w"))
  f:write(text or "")
  f:close()
  return path
end

local function slurp(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

--- Runs pyqhost; opts: script (text) or file, flags, args, stdin, timeout.
-- Returns { code = exit code, out = stdout, err = stderr, script = path }.
function M.run(opts)
  local file = opts.file or M.tempfile(opts.script)
  local errfile = os.tmpname()
  local parts = { "timeout", "-s", "KILL", tostring(opts.timeout or 60), M.quote(M.pyqhost) }
  for _, f in ipairs(opts.flags or {}) do parts[#parts + 1] = M.quote(f) end
  if not opts.nofile then parts[#parts + 1] = M.quote(file) end
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = M.quote(a) end
  local cmd = table.concat(parts, " ") .. " 2>" .. M.quote(errfile)
  if opts.stdin then cmd = cmd .. " <" .. M.quote(M.tempfile(opts.stdin, ".txt")) end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  if not opts.file then os.remove(file) end
  return { code = code, out = out, err = slurp(errfile), script = file }
end

return M
