-- The interactive prompt (host/repl.c runs M.main as the main task).
--
-- Each line runs in the main task, so waits work at the prompt: `res =
-- pyq.http.get(url)`, `q:put(task)`, `q:join()`.  As in `lua` 5.4, an
-- expression (or `=expr`) prints its values and a statement runs; input
-- that is not complete yet asks for more with ">> ".  Values print
-- readably: strings quoted, tables as their first entries to depth 2, and
-- anything with a __tostring (a response: its status line) as that.
local std = require "pyq.std"
local core = require "pyq.core"

local M = {}

local MAX_ITEMS, MAX_DEPTH, MAX_STRING = 12, 3, 120

local function quote(s)
  if #s > MAX_STRING then
    return std.string.format("%q", s:sub(1, MAX_STRING)):gsub("\\\n", "\\n") .. "..."
  end
  return (std.string.format("%q", s):gsub("\\\n", "\\n"))
end

local function key_text(k)
  if std.type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  if std.type(k) == "string" then return "[" .. quote(k) .. "]" end
  return "[" .. std.tostring(k) .. "]"
end

local show

local function show_table(t, depth, seen)
  if seen[t] then return "{...cycle}" end
  if depth > MAX_DEPTH then return "{...}" end
  seen[t] = true
  local parts, n, total = {}, 0, 0
  local len = #t
  for i = 1, len do
    total = total + 1
    if n < MAX_ITEMS then
      n = n + 1
      parts[n] = show(std.rawget(t, i), depth + 1, seen)
    end
  end
  local keys = {}
  for k in std.pairs(t) do
    if not (std.math.type(k) == "integer" and k >= 1 and k <= len) then
      keys[#keys + 1] = k
    end
  end
  std.table.sort(keys, function(a, b)
    local ta, tb = std.type(a), std.type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return std.tostring(a) < std.tostring(b)
  end)
  for _, k in std.ipairs(keys) do
    total = total + 1
    if n < MAX_ITEMS then
      n = n + 1
      parts[n] = key_text(k) .. " = " .. show(std.rawget(t, k), depth + 1, seen)
    end
  end
  seen[t] = nil
  if total > n then parts[n + 1] = ("... (%d more)"):format(total - n) end
  if #parts == 0 then return "{}" end
  return "{ " .. std.table.concat(parts, ", ") .. " }"
end

function show(v, depth, seen)
  local t = std.type(v)
  if t == "string" then return quote(v) end
  if t ~= "table" then return std.tostring(v) end
  local mt = std.getmetatable(v)
  if std.type(mt) == "table" and std.rawget(mt, "__tostring") or std.type(mt) == "string" then
    local ok, s = std.pcall(std.tostring, v)
    if ok then return s end
  end
  return show_table(v, depth or 1, seen or {})
end

M.show = show

local function incomplete(err)
  return std.type(err) == "string" and err:sub(-5) == "<eof>"
end

-- Compiles the text as `return <text>` first (an expression prints), then
-- as a statement.  Returns the function, or nil and the error, or nil and
-- "more" when the input is not complete.
local function compile(text)
  local src = text:gsub("^%s*=", "return ", 1)
  local f = std.load("return " .. src, "=stdin", "t")
  if f then return f end
  local err
  f, err = std.load(src, "=stdin", "t")
  if f then return f end
  if incomplete(err) then return nil, "more" end
  return nil, err
end

local function report(err)
  local text = std.tostring(err)
  if std.type(err) == "table" and std.rawget(err, "message") then
    text = std.tostring(err)
  end
  std.io.stderr:write(text, "\n")
end

local function run_line(readline, call)
  local text = readline("> ")
  if text == nil then return false end
  if text == false then return true end   -- Ctrl-C: a fresh prompt
  local f, err = compile(text)
  while not f and err == "more" do
    local more = readline(">> ")
    if more == nil then return false end
    if more == false then return true end   -- Ctrl-C drops the statement
    text = text .. "\n" .. more
    f, err = compile(text)
  end
  if not f then
    report(err)
    return true
  end
  local results = std.table.pack(call(function(e)
    if std.type(e) ~= "string" then return e end
    -- the line's own frames only: the prompt's are of no use to the user
    local tb = std.debug.traceback(e, 2)
    local cut = tb:find("\n\t[^\n]*pyq/repl%.lua")
    if cut then
      tb = tb:sub(1, cut - 1):gsub("\n\t%[C%]: in [^\n]*$", "")
    end
    return tb
  end, f))
  if not results[1] then
    report(results[2])
  elseif results.n > 1 then
    local parts = {}
    for i = 2, results.n do parts[#parts + 1] = show(results[i]) end
    std.print(std.table.concat(parts, "\t"))
  end
  return true
end

--- readline(prompt) -> line or nil; call(handler, fn) -> ok, ... (a
--- protected call a Ctrl-C ends in, unlike pcall, which raises it again)
function M.main(readline, call)
  std.io.stdout:write(("pyqhost %s REPL: waits work at the prompt; Ctrl-C "
    .. "stops the line, Ctrl-D exits.\n"):format(core.version))
  while true do
    -- a Ctrl-C that lands outside the line's own code is caught here too
    local ok, more = call(function(e) return e end, function()
      return run_line(readline, call)
    end)
    if not ok then report(more) elseif more == false then break end
  end
  std.io.stdout:write("\n")
  -- Ctrl-D: queues made at the prompt finish their tasks first (Ctrl-C
  -- while they do cancels them)
  for _, q in std.ipairs(core._open_queues()) do
    local ok, err = call(function(e) return e end, function() q:close() end)
    if not ok then report(err) end
  end
end

return M
