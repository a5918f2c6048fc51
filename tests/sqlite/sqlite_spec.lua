require "busted.runner"()
local helper = require "tests.helper"

local failure = helper.error_of

local function fresh_db(opts)
  local path = helper.fresh(".sqlite")
  return pyq.sqlite.open(path, opts), path
end

describe("pyq.sqlite", function()
  it("creates tables, inserts with bound parameters and reads rows back", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE m (id TEXT PRIMARY KEY, n INTEGER, x REAL, b BLOB, t TEXT)")
    local changes, rowid = db:exec("INSERT INTO m VALUES (?, ?, ?, ?, ?)",
                                   "a", 42, 1.5, pyq.sqlite.blob("\0\1\2"), nil)
    assert.equal(1, changes)
    assert.equal(1, rowid)
    local row = db:one("SELECT * FROM m WHERE id = ?", "a")
    assert.equal("a", row.id)
    assert.equal(42, row.n)
    assert.is_true(math.type(row.n) == "integer")
    assert.equal(1.5, row.x)
    assert.equal("\0\1\2", row.b)
    assert.is_nil(row.t)
    assert.is_nil(db:one("SELECT * FROM m WHERE id = ?", "zz"))
  end)

  it("keeps hostile strings as data: no SQL injection through values", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE t (s TEXT)")
    local evil = "x'); DROP TABLE t; --"
    db:insert("t", { s = evil })
    db:exec("INSERT INTO t VALUES (?)", "Robert\"; DELETE FROM t; \0 bytes")
    local got = {}
    for row in db:rows("SELECT s FROM t ORDER BY rowid") do got[#got + 1] = row.s end
    assert.same({ evil, "Robert\"; DELETE FROM t; \0 bytes" }, got)
  end)

  it("quotes identifiers in insert and upsert", function()
    local db <close> = fresh_db()
    db:exec('CREATE TABLE "we""ird" ("select" TEXT PRIMARY KEY, "a b" INTEGER)')
    db:insert('we"ird', { ["select"] = "k", ["a b"] = 1 })
    db:upsert('we"ird', { ["select"] = "k", ["a b"] = 2 }, "select")
    db:upsert('we"ird', { ["select"] = "j", ["a b"] = 3 }, { "select" })
    local rows = {}
    for r in db:rows('SELECT * FROM "we""ird" ORDER BY 1') do rows[#rows + 1] = r["a b"] end
    assert.same({ 3, 2 }, rows)
  end)

  it("round-trips integers at the edges, floats, booleans as 0/1 and UTF-8", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE v (k INTEGER PRIMARY KEY, v)")
    local values = { math.maxinteger, math.mininteger, 0.1, -0.0, 1e308, "héllo ✓", "" }
    for i, v in ipairs(values) do db:insert("v", { k = i, v = v }) end
    db:insert("v", { k = 100, v = true })
    for i, v in ipairs(values) do
      local got = db:one("SELECT v FROM v WHERE k = ?", i).v
      assert.equal(v, got)
      assert.equal(math.type(v), math.type(got))
    end
    assert.equal(1, db:one("SELECT v FROM v WHERE k = 100").v)
  end)

  it("runs a schema of several statements in one exec", function()
    local db <close> = fresh_db()
    db:exec([[
      CREATE TABLE a (x);
      CREATE TABLE b (y);
      INSERT INTO a VALUES (1);
    ]])
    assert.equal(1, db:one("SELECT count(*) AS n FROM a").n)
    assert.equal(0, db:one("SELECT count(*) AS n FROM b").n)
  end)

  it("groups writes and commits them at close: another connection sees every row", function()
    local db, path = fresh_db({ batch = 100000 })
    db:exec("CREATE TABLE t (i INTEGER)")
    for i = 1, 1000 do db:insert("t", { i = i }) end
    db:close()
    db:close()   -- twice is harmless
    local again <close> = pyq.sqlite.open(path)
    assert.equal(1000, again:one("SELECT count(*) AS n FROM t").n)
    assert.equal("ok", again:one("PRAGMA integrity_check").integrity_check)
  end)

  it("commits a group at the end of the loop turn, before the batch is full", function()
    local db, path = fresh_db({ batch = 100000 })
    db:exec("CREATE TABLE t (i INTEGER)")
    db:insert("t", { i = 1 })
    pyq.sleep(0.01)   -- the turn ends
    local other <close> = pyq.sqlite.open(path)
    assert.equal(1, other:one("SELECT count(*) AS n FROM t").n)
    db:close()
  end)

  it("makes db:transaction all or nothing", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE t (i INTEGER UNIQUE)")
    local a, b = db:transaction(function(x) db:insert("t", { i = x }); return "ok", x end, 1)
    assert.same({ "ok", 1 }, { a, b })
    local err = failure(db.transaction, db, function()
      db:insert("t", { i = 2 })
      db:insert("t", { i = 1 })   -- violates UNIQUE: the whole group goes
    end)
    assert.is_true(pyq.is_error(err, "sqlite"), tostring(err))
    assert.equal(1, db:one("SELECT count(*) AS n FROM t").n)
    err = failure(db.transaction, db, function() pyq.sleep(0) end)
    assert.matches("cannot wait here", tostring(err), 1, true)
  end)

  it("keeps every row of tasks that finished when SIGINT stops the job", function()
    local path = helper.fresh(".sqlite")
    local job = helper.spawn("", ([[
      local db <close> = pyq.sqlite.open(%q, { batch = 1000000 })
      db:exec("CREATE TABLE t (i INTEGER)")
      io.stdout:setvbuf("no")
      local q <close> = pyq.Queue{ workers = 10 }
      local put = pyq.async(function(i) db:insert("t", { i = i }); pyq.sleep(0.001) end)
      for i = 1, 1000000 do
        q:put(put(i))
        if i == 2000 then print("going") end
      end
    ]]):format(path))
    for _ = 1, 300 do
      local f = io.open(job.out)
      local s = f and f:read("a") or ""
      if f then f:close() end
      if s:find("going") then break end
      pyq.sleep(0.02)
    end
    os.execute("kill -INT " .. job.pid)
    local code = helper.wait_exit(job)
    assert.equal(130, code)
    local db <close> = pyq.sqlite.open(path)
    assert.equal("ok", db:one("PRAGMA integrity_check").integrity_check)
    local n = db:one("SELECT count(*) AS n, max(i) AS hi FROM t")
    assert.is_true(n.n >= 1000, "rows kept: " .. n.n)
    assert.equal(n.n, n.hi, "rows 1..n, no gaps")
  end)

  it("names the function, the SQL and SQLite's message in errors", function()
    local db <close> = fresh_db()
    local err = failure(db.exec, db, "SELEC nonsense")
    assert.is_true(pyq.is_error(err, "sqlite"))
    assert.matches('pyq.sqlite.exec: near "SELEC": syntax error (SQL: SELEC nonsense)', tostring(err), 1, true)
    assert.is_number(err.code)
    err = failure(db.exec, db, "SELECT ?", 1, 2)
    assert.is_true(pyq.is_error(err, "usage"))
    assert.matches("the SQL has 1 parameter, got 2 values", tostring(err), 1, true)
    assert.matches("parameter 1 is a table",
                   tostring(failure(db.exec, db, "SELECT ?", {})), 1, true)
    assert.matches("use db:transaction",
                   tostring(failure(db.exec, db, "  begin transaction")), 1, true)
    assert.matches("pyq.sqlite.open: unknown option \"walk\"",
                   tostring(failure(pyq.sqlite.open, helper.fresh(".db"), { walk = true })), 1, true)
    assert.matches("pyq.sqlite.open: batch must be an integer",
                   tostring(failure(pyq.sqlite.open, helper.fresh(".db"), { batch = 0 })), 1, true)
    assert.matches("pyq.sqlite.open: path must be a string, got no value",
                   tostring(failure(pyq.sqlite.open)), 1, true)
    err = failure(pyq.sqlite.open, helper.tmpdir .. "/no/such/dir/x.db")
    assert.is_true(pyq.is_error(err, "sqlite"), tostring(err))
    assert.matches("bad self", tostring(failure(db.exec, 42, "SELECT 1")), 1, true)
    assert.matches("the row has no value for the key column 'id'",
                   tostring(failure(db.upsert, db, "t", { x = 1 }, "id")), 1, true)
  end)

  it("refuses use after close with a clear error", function()
    local db = fresh_db()
    db:close()
    assert.is_true(db.closed)
    assert.matches("pyq.sqlite.exec: the database is closed",
                   tostring(failure(db.exec, db, "SELECT 1")), 1, true)
  end)

  it("lets a rows() loop and a statement of the same text run at once", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE t (i INTEGER)")
    for i = 1, 3 do db:insert("t", { i = i }) end
    local seen = 0
    for _ in db:rows("SELECT i FROM t") do
      seen = seen + 1
      assert.equal(3, db:one("SELECT count(*) AS n FROM t").n)
      for _ in db:rows("SELECT i FROM t") do end   -- the same text, nested
    end
    assert.equal(3, seen)
    for _ in db:rows("SELECT i FROM t") do break end   -- luacheck: ignore 512 (one row: reset by the closing value)
    assert.equal(1, db:one("SELECT i FROM t ORDER BY i").i)
  end)

  it("builds upserts of any size (long identifiers, many key columns)", function()
    local db <close> = fresh_db()
    local k = ("k"):rep(1500)
    db:exec(('CREATE TABLE t ("%s" TEXT PRIMARY KEY, v INTEGER)'):format(k))
    db:upsert("t", { [k] = "a", v = 1 }, k)
    db:upsert("t", { [k] = "a", v = 2 }, k)
    assert.equal(2, db:one("SELECT v FROM t").v)
    local cols, row, keys = {}, { v = 1 }, {}
    for i = 1, 40 do
      local c = ("c%02d_xxxxxx"):format(i)
      cols[#cols + 1] = '"' .. c .. '" INTEGER'
      row[c], keys[#keys + 1] = i, c
    end
    db:exec(("CREATE TABLE m (%s, v INTEGER, UNIQUE (%s))"):format(
      table.concat(cols, ", "), table.concat(keys, ", ")))
    db:upsert("m", row, keys)
    row.v = 7
    db:upsert("m", row, keys)
    assert.same({ n = 1, v = 7 }, db:one("SELECT count(*) AS n, max(v) AS v FROM m"))
  end)

  it("refuses transaction statements however they are written", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE t (i INTEGER)")
    for _, sql in ipairs({ "-- open one\nBEGIN", "/* x */ begin immediate", "SAVEPOINT a",
                           "SELECT 1; COMMIT", "end" }) do
      local err = failure(db.exec, db, sql)
      assert.is_true(pyq.is_error(err, "usage"), sql .. ": " .. tostring(err))
      assert.matches("use db:transaction", tostring(err), 1, true)
    end
    db:insert("t", { i = 1 })
    db:close()
  end)

  it("runs PRAGMA and VACUUM outside the write groups, so they take effect", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    db:exec("CREATE TABLE c (pid INTEGER REFERENCES p(id))")
    db:exec("PRAGMA foreign_keys = ON")
    assert.equal(1, db:one("PRAGMA foreign_keys").foreign_keys)
    local err = failure(db.insert, db, "c", { pid = 42 })
    assert.matches("FOREIGN KEY constraint failed", tostring(err), 1, true)
    db:insert("p", { id = 1 })
    db:exec("VACUUM")
    assert.equal(1, db:one("SELECT count(*) AS n FROM p").n)
  end)

  it("lets two handles on one file in one process write in turn", function()
    local path = helper.fresh(".sqlite")
    do local db <close> = pyq.sqlite.open(path); db:exec("CREATE TABLE t (i INTEGER)") end
    local errors = 0
    local q <close> = pyq.Queue{ workers = 4, exception_handler = function() errors = errors + 1 end }
    local t0 = pyq.now()
    for i = 1, 8 do
      q:put(pyq.async(function()
        local db <close> = pyq.sqlite.open(path, { busy_timeout = 2 })
        db:insert("t", { i = i })
        pyq.sleep(0.02)
      end)())
    end
    q:join()
    assert.equal(0, errors)
    assert.is_true(pyq.now() - t0 < 1.5, "no handle waited for another's group")
    local db <close> = pyq.sqlite.open(path)
    assert.equal(8, db:one("SELECT count(*) AS n FROM t").n)
  end)

  it("gives each rows() loop its own statement, bound once", function()
    local db <close> = fresh_db()
    db:exec("CREATE TABLE t (k INTEGER, v TEXT)")
    db:exec("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    local sql = "SELECT v FROM t WHERE k = ?"
    local a, a_state = db:rows(sql, 1)
    local b, b_state = db:rows(sql, 2)
    assert.equal("one", a(a_state).v)
    assert.equal("two", b(b_state).v)
  end)

  it("never loses a failed commit silently: it is logged, raised and the exit code is 1", function()
    local path = helper.fresh(".sqlite")
    local script = helper.tempfile(([[
      local db <close> = pyq.sqlite.open(%q, { batch = 100000 })
      db:exec("CREATE TABLE t (s TEXT)")
      pyq.sleep(0.01)
      for i = 1, 20 do db:insert("t", { s = ("x"):rep(10000) .. i }) end
      pyq.sleep(0.01)   -- the turn ends: the group's COMMIT fails
      local ok, err = pcall(db.insert, db, "t", { s = "y" })
      print(ok, pyq.is_error(err, "sqlite"), tostring(err))
    ]]):format(path))
    local out = helper.shell(("ulimit -f 100; %s %s 2>&1; echo \"exit $?\""):format(
      helper.quote(helper.pyqhost), helper.quote(script)))
    assert.matches("ERROR pyq.sqlite: .- COMMIT failed, 20 writes rolled back", out)
    assert.matches("false\ttrue\t.-an earlier group commit failed and its 20 writes were lost", out)
    assert.matches("exit 1\n$", out)
  end)

  it("refuses to open a database from a finalizer run at exit, instead of crashing", function()
    local path = helper.fresh(".sqlite")
    local r = helper.run{ script = ([[
      setmetatable({}, { __gc = function()
        local ok, err = pcall(pyq.sqlite.open, %q)
        io.stderr:write("opened: ", tostring(ok), " ", tostring(err), "\n")
      end })
      local db <close> = pyq.sqlite.open(%q)
    ]]):format(path, path) }
    assert.equal(0, r.code, r.err)
    assert.matches("pyq.sqlite is closed", r.err, 1, true)
  end)

  it("says so when fn closes the database inside db:transaction", function()
    local db = fresh_db()
    db:exec("CREATE TABLE t (i INTEGER)")
    local err = failure(db.transaction, db, function() db:insert("t", { i = 1 }); db:close() end)
    assert.matches("closed inside the transaction", tostring(err), 1, true)
  end)
end)
