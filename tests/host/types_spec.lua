require "busted.runner"()
-- The editor definitions (meta/*.lua) must name exactly what the running
-- host has.  The spec reads the names meta/ declares (`---@class` and its
-- `---@field`s, `function pyq.x.y(`, `function Class:m(` with Class bound
-- by `local Class = {}` under its `---@class`), walks the real API (the
-- pyq table and its lazy submodules, a queue's, a response's, a jsonl
-- writer's and a database's methods and fields, pyq.Error's fields from
-- errors the host raises, the option tables) and fails naming every name
-- found on one side only.  Names starting with `_` are private.
--
-- Fields computed by a C `__index` cannot be enumerated at run time: those
-- come from the strcmp()s of that function's source (and every declared
-- field is also read from the object).  Options are probed: a declared
-- option given a wrong value must not be refused as unknown, and where the
-- unknown-option error lists the known ones, that list is compared too.
local helper = require "tests.helper"

local META = helper.source .. "/meta"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- ---- what meta/ declares ----------------------------------------------------

--- { classes = { [name] = set of member names }, aliases = { [name] = list
-- of string literals } } for the *.lua files of dir.
local function declared(dir)
  local classes, aliases = {}, {}
  local p = assert(io.popen("ls " .. helper.quote(dir) .. "/*.lua"))
  for path in p:lines() do
    local var = {}       -- local Queue = {} under ---@class pyq.Queue
    local class, alias   -- the annotation block being read
    for line in read(path):gmatch("[^\n]*") do
      local cname = line:match("^%-%-%-@class%s+([%w_%.]+)")
      local aname = line:match("^%-%-%-@alias%s+([%w_%.]+)")
      if cname then
        classes[cname] = classes[cname] or {}
        class, alias = cname, nil
      elseif aname then
        aliases[aname] = aliases[aname] or {}
        class, alias = nil, aname
      elseif line:match("^%-%-%-") then
        local field = line:match("^%-%-%-@field%s+([%w_]+)")
        if field and class then classes[class][field] = true end
        local literal = line:match('^%-%-%-|%s*"([^"]*)"')
        if literal and alias then table.insert(aliases[alias], literal) end
      else
        local v = line:match("^local%s+([%w_]+)%s*=") or line:match("^([%w_%.]+)%s*=")
        if v and class then var[v] = class end
        class, alias = nil, nil
        local prefix, name = line:match("^function%s+([%w_%.]-)[%.:]([%w_]+)%s*%(")
        if prefix then
          local owner = var[prefix] or prefix
          classes[owner] = classes[owner] or {}
          classes[owner][name] = true
        end
      end
    end
  end
  p:close()
  for _, names in pairs(classes) do
    for name in pairs(names) do
      if name:sub(1, 1) == "_" then names[name] = nil end
    end
  end
  return { classes = classes, aliases = aliases }
end

-- ---- what the host has ------------------------------------------------------

--- The fields a C __index function answers: the strings it strcmp()s the
-- key with, in `static int fn (lua_State *L) { ... }` of file.
local function c_fields(file, fn, names)
  local text = read(helper.source .. "/" .. file)
  local body = text:match("\nstatic int " .. fn .. " %(lua_State %*L%) {\n(.-)\n}\n")
  assert(body, ("types_spec: no function %s in %s (update the spec)"):format(fn, file))
  for call in body:gmatch("strcmp(%b())") do
    local name = call:match('"([%w_]+)"%)$')
    if name then names[name] = true end
  end
  return names
end

--- The keys a Lua __index function answers itself (`key == "headers"`).
local function lua_fields(file, header, names)
  local text = read(helper.source .. "/" .. file)
  local body = text:match("\n" .. header:gsub("%p", "%%%0") .. "(.-)\nend\n")
  assert(body, ("types_spec: no %s in %s (update the spec)"):format(header, file))
  for name in body:gmatch('key == "([%w_]+)"') do names[name] = true end
  return names
end

--- Keys of a table, or of the upvalues of a C __index closure (the methods
-- table every userdata here keeps there).
local function index_keys(index, names)
  if type(index) == "table" then
    for k in pairs(index) do names[k] = true end
  elseif type(index) == "function" then
    for i = 1, math.huge do
      local up, value = debug.getupvalue(index, i)
      if up == nil then break end
      if type(value) == "table" then
        for k, v in pairs(value) do
          if type(k) == "string" and type(v) == "function" then names[k] = true end
        end
      end
    end
  end
  return names
end

--- Adds the declared names that the object answers (for fields an __index
-- computes and the scan may miss).
local function probe(object)
  return function(names, declared_names)
    for name in pairs(declared_names or {}) do
      if object[name] ~= nil then names[name] = true end
    end
    return names
  end
end

-- The names of the options a call accepts: every declared one is given a
-- value no option takes (a coroutine) and must be refused for that value,
-- not as unknown; the unknown-option error's own list, when it has one,
-- is the runtime side.
local BAD = coroutine.create(print)
local function options(call)
  return function(names, declared_names)
    local ok, err = pcall(call, { __types_spec_bogus = true })
    assert(not ok, "an unknown option was accepted")
    local list = tostring(err):match("%(expected ([^)]*)%)") or tostring(err):match("%(known: ([^)]*)%)")
    for name in (list or ""):gmatch("[%w_]+") do
      if name ~= "or" then names[name] = true end
    end
    for name in pairs(declared_names or {}) do
      local _, e = pcall(call, { [name] = BAD })
      if not tostring(e):find("unknown option", 1, true) then names[name] = true end
    end
    return names
  end
end

local function keys(t, names)
  names = names or {}
  for k in pairs(t) do
    if type(k) == "string" then names[k] = true end
  end
  return names
end

local function outcome(fn, cancel)
  local q <close> = pyq.Queue{ workers = 1, exception_handler = function() end }
  q:put(pyq.async(fn)())
  if cancel then q:cancel() end
  return q:join{ all = true }[1]
end

--- { [class name] = function(names, declared names) -> names } for every
-- class with a runtime object; objects made here are closed by the caller.
local function runtime(api, dir, closers)
  local rt = {}
  local submodules
  local index = debug.getmetatable(pyq).__index
  for i = 1, math.huge do
    local up, value = debug.getupvalue(index, i)
    assert(up, "types_spec: pyq's __index has no `submodules` upvalue (update the spec)")
    if up == "submodules" then submodules = value break end
  end
  rt.pyq = function(names)
    return keys(submodules, keys(pyq, names))
  end
  for name in pairs(rt.pyq({})) do   -- the modules: pyq.log, pyq.http, ...
    local module = pyq[name]
    if type(module) == "table" then
      rt["pyq." .. name] = function(names, declared_names)
        return probe(module)(keys(module, names), declared_names)
      end
    end
  end
  local log = rt["pyq.log"]
  rt["pyq.log"] = function(names, d)
    return c_fields("host/lua/log.c", "log_index", log(names, d))
  end

  local queue = pyq.Queue{ workers = 1 }
  closers[#closers + 1] = queue
  rt["pyq.Queue"] = function(names, d)
    index_keys(debug.getmetatable(queue).__index, names)
    return probe(queue)(c_fields("host/queue/queue.c", "queue_index", names), d)
  end
  rt["pyq.QueueOptions"] = options(function(o)
    closers[#closers + 1] = pyq.Queue(o)
  end)
  rt["pyq.JoinOptions"] = options(function(o) return queue:join(o) end)
  rt["pyq.PutOptions"] = options(function(o)
    o.key = o.key or "k"   -- a key needs a store: the store queue below
    return closers.store_queue:put(pyq.async(function() end)(), o)
  end)
  closers.store_queue = pyq.Queue{ workers = 1, store = dir .. "/store.sqlite" }
  closers[#closers + 1] = closers.store_queue
  local store = pyq.store.open(dir .. "/store.sqlite")
  closers[#closers + 1] = store
  rt["pyq.store.Store"] = function(names, d)
    index_keys(debug.getmetatable(store).__index, names)
    return probe(store)(names, d)
  end

  local res = pyq.http.get(api.base .. "/status/200")
  local downloads = {   -- the fields of a download's response
    pyq.http.get(api.base .. "/status/200", { output = dir .. "/download" }),
    pyq.http.get(api.base .. "/bytes/100", { on_data = function() return false end }),
  }
  rt["pyq.http.Response"] = function(names, d)
    keys(res, names)
    for _, r in ipairs(downloads) do keys(r, names) end
    index_keys(debug.getmetatable(res), names)
    lua_fields("lualib/pyq/http.lua", "function Response.__index(res, key)", names)
    return probe(res)(names, d)
  end
  rt["pyq.http.Stats"] = function(names) return keys(pyq.http.stats(), names) end
  local session = pyq.http.session{}
  closers[#closers + 1] = session
  rt["pyq.http.Session"] = function(names, d)
    index_keys(debug.getmetatable(session).__index, names)
    return probe(session)(names, d)
  end
  local jar = pyq.http.session{ cookies = true }
  closers[#closers + 1] = jar
  jar:get(api.base .. "/headers")   -- sets the cookies a and b
  rt["pyq.http.Cookie"] = function(names) return keys(jar:cookies()[1], names) end
  rt["pyq.http.SessionOptions"] = options(function(o)
    closers[#closers + 1] = pyq.http.session(o)
  end)
  rt["pyq.http.Options"] = options(function(o)
    if o.url == nil then o.url = api.base .. "/status/200" end
    return pyq.http.request(o)
  end)
  rt["pyq.http.ConfigureOptions"] = options(pyq.http.configure)

  rt["pyq.json.EncodeOptions"] = options(function(o) return pyq.json.encode(1, o) end)

  local writer = pyq.jsonl.open(dir .. "/w.jsonl")
  closers[#closers + 1] = writer
  rt["pyq.jsonl.Writer"] = function(names, d)
    index_keys(debug.getmetatable(writer).__index, names)
    return probe(writer)(c_fields("host/json/jsonl.c", "writer_index", names), d)
  end
  rt["pyq.jsonl.OpenOptions"] = options(function(o) return pyq.jsonl.open(dir .. "/o.jsonl", o) end)

  local db = pyq.sqlite.open(":memory:")
  closers[#closers + 1] = db
  rt["pyq.sqlite.DB"] = function(names, d)
    index_keys(debug.getmetatable(db).__index, names)
    return probe(db)(c_fields("host/sqlite/sqlite.c", "db_index", names), d)
  end
  rt["pyq.sqlite.OpenOptions"] = options(function(o)
    closers[#closers + 1] = pyq.sqlite.open(":memory:", o)
  end)

  local doc = pyq.html.parse('<p id="x">hi <a href="/a">a</a></p>', "http://h/")
  closers[#closers + 1] = doc
  rt["pyq.html.Document"] = function(names, d)
    index_keys(debug.getmetatable(doc).__index, names)
    return probe(doc)(names, d)
  end
  local node = doc:css("p")[1]
  rt["pyq.html.Node"] = function(names, d)
    index_keys(debug.getmetatable(node).__index, names)
    return probe(node)(c_fields("host/html/html.c", "node_index", names), d)
  end
  rt["pyq.url.Parts"] = function(names)
    keys(pyq.url.parse("http://u:p@h:81/p?q#f"), names)
    keys(pyq.url.parse("imap://user;AUTH=PLAIN@h/"), names)
    return keys(pyq.url.parse("http://[fe80::1%25eth0]/"), names)
  end

  -- every field of the errors the host makes (a script's own fields aside)
  local errors = {
    pyq.Error("mine", "text"),
    select(2, pcall(pyq.sleep, -1)),
    select(2, pcall(pyq.await, pyq.timeout(0.001, pyq.async(function() pyq.sleep(1) end)()))),
    select(2, pcall(pyq.json.decode, "x")),
    select(2, pcall(pyq.json.encode, 0 / 0)),
    select(2, pcall(pyq.jsonl.read, dir .. "/missing.jsonl")),
    select(2, pcall(db.exec, db, "SELEC 1")),
    select(2, pcall(pyq.url.parse, "http://a/b c")),
    select(2, pcall(pyq.http.get, api.base .. "/reset")),   -- a transport error
    select(2, pcall(pyq.http.get, api.base .. "/big", { max_body = 10 })),
    select(2, pcall(pyq.http.get, api.base .. "/retry-after/types/100",
                    { retries = 1, max_retry_after = 1 })),
    select(2, pcall(pyq.http.get, "https://127.0.0.1:" .. api.tls.port .. "/redirect-to?url="
                    .. api.base .. "/echo", { verify = false })),   -- a refused downgrade
    select(2, pcall(pyq.http.get, api.base .. "/delay/2", { timeout = 0.05 })),
    outcome(function() error("boom") end),
    outcome(function() pyq.sleep(1) end, true),
  }
  rt["pyq.Error"] = function(names)
    for _, e in ipairs(errors) do
      if type(e) == "table" then keys(e, names) end
    end
    return names
  end
  return rt
end

-- ---- the comparison ---------------------------------------------------------

--- A sorted list of problems, each naming the class and the name.
local function drift(decl, rt)
  local problems = {}
  local function add(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  for class, names in pairs(decl.classes) do
    if rt[class] then
      local have = rt[class]({}, names)
      for name in pairs(have) do
        if name:sub(1, 1) ~= "_" and not names[name] then
          add("%s.%s: in the host, not in meta/", class, name)
        end
      end
      for name in pairs(names) do
        if not have[name] then add("%s.%s: in meta/, not in the host", class, name) end
      end
    elseif next(names) then
      add("%s: declared in meta/ with members, but types_spec has no runtime object for it", class)
    end
  end
  for class in pairs(rt) do
    if not decl.classes[class] then add("%s: in the host, no ---@class in meta/", class) end
  end
  table.sort(problems)
  return problems
end

--- The kinds in the README's Errors table.
local function readme_kinds()
  local text = read(helper.source .. "/README.md")
  local tbl = assert(text:match("\n| kind | raised by |\n(.-)\n\n"), "README: no Errors table")
  local kinds = {}
  for row in tbl:gmatch("[^\n]+") do
    local first = row:match("^|([^|]*)|")
    for kind in first:gmatch("`([%w_]+)`") do kinds[kind] = true end
  end
  return kinds
end

describe("the editor definitions (meta/)", function()
  local api, tls, dir, rt
  local closers = {}
  setup(function()
    api = helper.start_api()
    dir = helper.tempdir()
    assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "
      .. dir .. "/key.pem -out " .. dir .. "/cert.pem >/dev/null 2>&1"))
    tls = helper.start_api{ "--tls-cert", dir .. "/cert.pem", "--tls-key", dir .. "/key.pem" }
    api.tls = tls
    rt = runtime(api, dir, closers)
  end)
  teardown(function()
    for i = #closers, 1, -1 do closers[i]:close() end
    api.stop()
    tls.stop()
  end)

  it("declare every name of the pyq API, and none it lacks", function()
    assert.are.same({}, drift(declared(META), rt))
  end)

  it("name the error kinds of the README's Errors table (and failed)", function()
    local kinds = readme_kinds()
    assert.is_true(kinds.usage and kinds.sqlite)
    kinds.failed = true   -- a task outcome's kind, described under pyq.Queue
    local alias = set_of(declared(META).aliases["pyq.ErrorKind"] or {})
    assert.are.same(sorted(kinds), sorted(alias))
  end)

  it("are Lua files marked ---@meta, with a LuaLS addon config for Lua 5.4 and the pyq global", function()
    local config = pyq.json.decode(read(META .. "/config.json"))
    assert.are.equal("pyqhost", config.name)
    assert.are.same({ "pyq%.%w+" }, config.words)
    assert.are.equal("Lua 5.4", config.settings["Lua.runtime.version"])
    assert.are.same({ "pyq" }, config.settings["Lua.diagnostics.globals"])
    for file in io.popen("ls " .. helper.quote(META) .. "/*.lua"):lines() do
      assert.are.equal("---@meta _", read(file):match("^[^\n]*"), file)
      assert(loadfile(file))   -- valid Lua: LuaLS reads it as code too
    end
  end)

  describe("the check itself", function()
    -- a scratch copy of meta/ to break
    local function scratch(edit)
      local copy = helper.tempdir()
      assert(os.execute(("cp %s/*.lua %s/"):format(helper.quote(META), helper.quote(copy))))
      for file, fn in pairs(edit) do
        local path = copy .. "/" .. file
        local text = fn(read(path))
        local f = assert(io.open(path, "wb"))
        f:write(text)
        f:close()
      end
      return declared(copy)
    end

    it("names a function deleted from meta/", function()
      local decl = scratch{ ["http.lua"] = function(t)
        return (t:gsub("\nfunction pyq%.http%.patch%(url, opts%) end\n", "\n"))
      end }
      assert.are.same({ "pyq.http.patch: in the host, not in meta/" }, drift(decl, rt))
    end)

    it("names a field or method deleted from meta/", function()
      local decl = scratch{
        ["queue.lua"] = function(t) return (t:gsub("\n%-%-%-@field pending [^\n]*", "")) end,
        ["sqlite.lua"] = function(t) return (t:gsub("\nfunction DB:one%(sql, %.%.%.%) end", "")) end,
      }
      assert.are.same({ "pyq.Queue.pending: in the host, not in meta/",
                        "pyq.sqlite.DB.one: in the host, not in meta/" }, drift(decl, rt))
    end)

    it("names a definition the host does not have", function()
      local decl = scratch{ ["jsonl.lua"] = function(t)
        return t .. "\nfunction pyq.jsonl.append(path, value) end\n"
          .. "---@class pyq.Widget\n---@field size integer\n"
      end }
      assert.are.same({ "pyq.Widget: declared in meta/ with members, but types_spec has no runtime object for it",
                        "pyq.jsonl.append: in meta/, not in the host" }, drift(decl, rt))
    end)

    it("names a function added to pyq", function()
      rawset(pyq, "frobnicate", function() end)
      local ok, problems = pcall(drift, declared(META), rt)
      rawset(pyq, "frobnicate", nil)
      assert(ok, problems)
      assert.are.same({ "pyq.frobnicate: in the host, not in meta/" }, problems)
    end)
  end)
end)
