-- Writes the man page pyqhost(1) from docs/pyqhost.1.lua, in roff's man
-- macros: pyqhost tools/gen_man.lua docs/pyqhost.1.lua out.1 VERSION
local src, out, version = arg[1], arg[2], arg[3] or "?"
local doc = dofile(src)

local function esc(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  return (s:gsub("^%.", "\\&."):gsub("^'", "\\&'"))
end

local lines = {}
local function add(s) lines[#lines + 1] = s end

add(('.TH %s 1 "%s" "pyqhost %s" "User Commands"'):format(doc.name:upper(), os.date("!%Y-%m-%d"), version))
add(".SH NAME")
add(esc(doc.name) .. " \\- " .. esc(doc.summary))
add(".SH SYNOPSIS")
for _, s in ipairs(doc.synopsis) do
  add(".B " .. esc(s))
  add(".br")
end
add(".SH DESCRIPTION")
for i, p in ipairs(doc.description) do
  if i > 1 then add(".PP") end
  add(esc(p))
end
add(".SH OPTIONS")
for _, o in ipairs(doc.options) do
  add(".TP")
  add("\\fB" .. esc(o[1]) .. "\\fR" .. (o[2] and (" \\fI" .. esc(o[2]) .. "\\fR") or ""))
  add(esc(o[3]))
end
for _, section in ipairs({ { "EXIT STATUS", "exit_status" }, { "ENVIRONMENT", "environment" },
                           { "FILES", "files" } }) do
  add(".SH " .. section[1])
  for _, e in ipairs(doc[section[2]]) do
    add(".TP")
    add("\\fB" .. esc(e[1]) .. "\\fR")
    add(esc(e[2]))
  end
end
add(".SH SEE ALSO")
add("The README of the source tree or /usr/share/doc/pyqhost for the Lua API.")

local f = assert(io.open(out, "w"))
f:write(table.concat(lines, "\n"), "\n")
assert(f:close())
