-- luacheck (Debian lua-check) settings for lualib/, scripts/ and tests/:
-- `luacheck lualib scripts tests` from the root, or `tools/luacheck.sh`
-- (the CTest test `luacheck`).  The first block is what a job may use;
-- `pyqhost init` writes the same block (lualib/pyq/skeleton.lua;
-- tests/host/docs_spec.lua compares them).
std = "lua54"
-- pyqhost defines `pyq`; of its fields a job assigns only pyq.log.level
read_globals = {
  pyq = { other_fields = true, fields = {
    log = { other_fields = true, fields = { level = { read_only = false } } },
  } },
}
max_line_length = 120

-- lualib/ reads no global at all: a script may have replaced any of them
-- before a module is loaded on first use, so modules take everything from
-- pyq.std, not even `pyq` (hence new_read_globals).  `require` fetches
-- pyq.std and pyq.core themselves.
files["lualib/"] = { std = "none", new_read_globals = { "require" } }
-- pyq.std copies the standard library at start-up, before any script.
files["lualib/pyq/std.lua"] = { read_globals = { "_G", "ipairs", "pairs", "setmetatable" } }

files["tests/"] = {
  std = "+busted",
  -- A spec keeps a whole error message or shell command on one line, so it
  -- reads as the output it matches.
  max_line_length = false,
  -- `local guard <close> = ...` is used by going out of scope; luacheck
  -- 1.1 does not know to-be-closed variables.
  ignore = { "211/guard" },
}
-- The helper sends os.tmpname into the spec's temporary directory.
files["tests/helper.lua"] = {
  globals = { os = { fields = { tmpname = { read_only = false } } } },
  -- wait_exit's local slurp repeats the file's own (the helper is append-only)
  ignore = { "431/slurp" },
}
-- Checks that pyq.http sorts query names with its own table.sort.
files["tests/http/http_security_spec.lua"] = {
  globals = { table = { fields = { sort = { read_only = false } } } },
}
