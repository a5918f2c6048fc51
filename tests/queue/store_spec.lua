require "busted.runner"()
-- The job store (issue 11, part 1): keyed tasks recorded in SQLite, so a
-- re-run skips what an earlier run finished; end to end against the
-- fixture API with SIGINT and kill -9, and the API's edges in process.
local helper = require "tests.helper"

local failure = helper.error_of

-- A keyed job: n documents from the fixture API (/counted-bytes counts the
-- requests per document), results written as JSON to `out`; "half" is
-- printed when half of them are done in this run.
local JOB = [[
local base, path, n, out, prefix = ...
n = tonumber(n)
io.stdout:setvbuf("no")
local finished = 0
local fetch = pyq.async(function(i)
  local res = pyq.http.get(("%s/counted-bytes/%s%d/%d"):format(base, prefix, i, 10 + i % 7))
  pyq.sleep(0.02)
  finished = finished + 1
  if finished == n // 2 then print("half") end
  return { i = i, size = #res.body }
end)
local q <close> = pyq.Queue{ workers = 4, store = path, name = "docs" }
for i = 1, n do q:put(fetch(i), { key = "doc:" .. i }) end
local all = q:join()
local f = assert(io.open(out, "w"))
f:write(pyq.json.encode(all))
f:close()
print(("done %d skipped %d puts %d"):format(q.done, q.skipped, q.puts))
]]

local N, WORKERS = 120, 4

local function wait_for(path, text)
  for _ = 1, 500 do
    if helper.read_file(path):find(text, 1, true) then return true end
    pyq.sleep(0.01)
  end
  return false
end

-- requests the API saw for each document: a list, and their sum
local function seen(api, prefix)
  local counts, sum = {}, 0
  for i = 1, N do
    counts[i] = pyq.http.get(api.base .. "/seen/" .. prefix .. i):json().count
    sum = sum + counts[i]
  end
  return counts, sum
end

local function expected()
  local all = {}
  for i = 1, N do all[i] = { i = i, size = 10 + i % 7 } end
  return all
end

local function run_job(api, path, out, prefix)
  local r = helper.run{ script = JOB, args = { api.base, path, tostring(N), out, prefix } }
  assert.equal(0, r.code, r.err)
  return r
end

local function recorded(path)
  local db <close> = pyq.sqlite.open(path)
  assert.equal("ok", db:one("PRAGMA integrity_check").integrity_check)
  return db:one("SELECT count(*) AS n FROM pyq_jobs WHERE name = 'docs'").n
end

local function interrupted_then_resumed(signal, prefix, max_twice)
  local api = helper.start_api()
  local path, out = helper.fresh(".sqlite"), helper.fresh(".json")
  local ok, err = pcall(function()
    local job = helper.spawn("", JOB, table.concat({ api.base, path, N, out, prefix }, " "))
    assert.is_true(wait_for(job.out, "half"), "the job never got half-way")
    os.execute("kill -" .. signal .. " " .. job.pid)
    local code = helper.wait_exit(job)
    assert.equal(signal == "INT" and 130 or 137, code)
    local kept = recorded(path)   -- a whole database, part of the job in it
    assert.is_true(kept >= 1 and kept < N, "recorded after the stop: " .. kept)

    -- the re-run fetches only what is missing, and gives every result
    local r = run_job(api, path, out, prefix)
    local counts, sum = seen(api, prefix)
    for i = 1, N do assert.is_true(counts[i] >= 1, "document " .. i .. " never fetched") end
    assert.is_true(sum - N <= max_twice, ("%d documents fetched twice (at most %d)"):format(sum - N, max_twice))
    local done, skipped, puts = r.out:match("done (%d+) skipped (%d+) puts (%d+)")
    assert.equal(N, tonumber(puts))
    assert.is_true(tonumber(skipped) >= kept, r.out)
    assert.equal(N, tonumber(done) + tonumber(skipped))
    assert.same(expected(), pyq.json.decode(helper.read_file(out)))
    assert.equal(N, recorded(path))

    -- a third run fetches nothing and gives the same results
    r = run_job(api, path, out, prefix)
    assert.matches(("^done 0 skipped %d puts %d\n$"):format(N, N), r.out)
    assert.equal(sum, select(2, seen(api, prefix)))
    assert.same(expected(), pyq.json.decode(helper.read_file(out)))
  end)
  api.stop()
  assert(ok, err)
end

describe("a keyed job on a store", function()
  it("interrupted by SIGINT resumes where it stopped (at most `workers` fetched twice)", function()
    interrupted_then_resumed("INT", "int", WORKERS)
  end)

  it("killed with kill -9 loses at most the last group: at least once, nothing lost", function()
    interrupted_then_resumed("KILL", "kill", 2 * WORKERS)
  end)

  it("gives the same results as an uninterrupted run", function()
    local api = helper.start_api()
    local ok, err = pcall(function()
      local out = helper.fresh(".json")
      local r = run_job(api, helper.fresh(".sqlite"), out, "whole")
      assert.matches(("\ndone %d skipped 0 puts %d\n$"):format(N, N), r.out)
      assert.same(expected(), pyq.json.decode(helper.read_file(out)))
      assert.equal(N, select(2, seen(api, "whole")))
    end)
    api.stop()
    assert(ok, err)
  end)

  it("shows skipped tasks in --summary and --summary-json", function()
    local path, json = helper.fresh(".sqlite"), helper.fresh(".json")
    local script = ([[
      local q <close> = pyq.Queue{ store = %q }
      for i = 1, 5 do q:put(pyq.async(function() return i end)(), { key = "k" .. i }) end
    ]]):format(path)
    assert.equal(0, helper.run{ script = script }.code)
    local r = helper.run{ script = script, flags = { "--summary", "--summary-json", json } }
    assert.equal(0, r.code, r.err)
    assert.matches("put 5 = done 0 + failed 0 + cancelled 0 + skipped 5 in", r.err, 1, true)
    local q = pyq.json.decode(helper.read_file(json)).queues[1]
    assert.same({ 5, 0, 5 }, { q.put, q.done, q.skipped })
  end)
end)

describe("pyq.Queue with a store", function()
  local function counter()
    local runs = {}
    return runs, pyq.async(function(i, result)
      runs[#runs + 1] = i
      return result
    end)
  end

  it("skips recorded keys and joins their results in put order, nil too", function()
    local path = helper.fresh(".sqlite")
    local runs, task = counter()
    do
      local q <close> = pyq.Queue{ workers = 3, store = path }
      for i = 1, 6 do q:put(task(i, i % 3 ~= 0 and { n = i } or nil), { key = "k" .. i }) end
      local all = q:join{ all = true }
      assert.equal(6, all.n)
      assert.same({ n = 1 }, all[1])
      assert.is_nil(all[3])
      assert.same({ 1, 2, 3, 4, 5, 6 }, (function() table.sort(runs) return runs end)())
      assert.same({ 6, 0 }, { q.done, q.skipped })
    end
    runs, task = counter()
    local q <close> = pyq.Queue{ workers = 3, store = path }
    q:put(task(0, "new"))                          -- unkeyed: runs
    for i = 1, 7 do q:put(task(i, "again"), { key = "k" .. i }) end   -- k7 is new
    local all = q:join{ all = true }
    assert.same({ 0, 7 }, runs)
    assert.equal(8, all.n)
    assert.same({ "new", { n = 1 }, { n = 2 }, nil, { n = 4 }, { n = 5 }, nil, "again" },
                { all[1], all[2], all[3], all[4], all[5], all[6], all[7], all[8] })
    assert.same({ 8, 2, 6, 0, 0 }, { q.puts, q.done, q.skipped, q.failed, q.cancelled })
    -- completed() gives skipped tasks as finished, nil results too
    for i = 1, 3 do q:put(task(i, "x"), { key = "k" .. i }) end
    local got = {}
    for i, ok, value in q:completed() do got[i] = { ok, value } end
    assert.same({ { true, { n = 1 } }, { true, { n = 2 } }, { true } }, got)
  end)

  it("does not record failed or cancelled tasks: they run again", function()
    local path = helper.fresh(".sqlite")
    local q <close> = pyq.Queue{ workers = 1, store = path, exception_handler = function() end }
    q:put(pyq.async(function() error("boom") end)(), { key = "bad" })
    q:put(pyq.async(function() pyq.sleep(10) end)(), { key = "slow" })
    q:put(pyq.async(function() return 1 end)(), { key = "pending" })
    pyq.sleep(0.05)
    assert.equal(2, q:cancel())
    q:join()
    local store <close> = pyq.store.open(path)
    assert.same({}, store:keys())
    local ran = 0
    q:put(pyq.async(function() ran = ran + 1 end)(), { key = "bad" })
    q:put(pyq.async(function() ran = ran + 1 end)(), { key = "slow" })
    q:join()
    assert.equal(2, ran)
    assert.same({ "bad", "slow" }, store:keys())
  end)

  it("fails a task whose result JSON cannot encode, with a clear message, and records nothing", function()
    local path = helper.fresh(".sqlite")
    local errs = {}
    local q <close> = pyq.Queue{ store = path, exception_handler = function(e) errs[#errs + 1] = e end }
    q:put(pyq.async(function() return { f = print } end)(), { key = "fn" })
    local all = q:join{ all = true }
    assert.equal(1, q.failed)
    assert.is_true(pyq.is_error(all[1], "failed"))
    assert.is_true(pyq.is_error(errs[1], "encode"), tostring(errs[1]))
    assert.matches('the task put with key "fn" cannot be stored: ', tostring(errs[1]), 1, true)
    assert.matches("at .f", tostring(errs[1]), 1, true)
    local store <close> = pyq.store.open(path)
    assert.equal(0, store:count())
  end)

  it("refuses a key put while the same key is pending or running; once done it is skipped", function()
    local q <close> = pyq.Queue{ workers = 1, store = helper.fresh(".sqlite") }
    local ran = 0
    local task = pyq.async(function() ran = ran + 1; pyq.sleep(0.01); return ran end)
    q:put(task(), { key = "same" })
    local err = failure(q.put, q, task(), { key = "same" })
    assert.is_true(pyq.is_error(err, "usage"))
    assert.matches('pyq.Queue.put: key "same" is already pending or running', tostring(err), 1, true)
    assert.same({ 1 }, q:join())
    q:put(task(), { key = "same" })
    assert.same({ 1 }, q:join())
    assert.same({ 1, 1 }, { ran, q.skipped })
  end)

  it("forgets a key, so the next put runs it", function()
    local path = helper.fresh(".sqlite")
    local q <close> = pyq.Queue{ store = path }
    local ran = 0
    local task = pyq.async(function() ran = ran + 1 return ran end)
    q:put(task(), { key = "a" })
    q:join()
    assert.is_true(q:forget("a"))
    assert.is_false(q:forget("a"))
    q:put(task(), { key = "a" })
    assert.same({ 2 }, q:join())
  end)

  it("keeps put(task, delay) and unkeyed puts as they were", function()
    local q <close> = pyq.Queue{ workers = 2, store = helper.fresh(".sqlite") }
    local t0 = pyq.now()
    q:put(pyq.async(function() return 1 end)(), 0.05)
    q:put(pyq.async(function() return 2 end)(), { delay = 0.05 })
    assert.is_true(pyq.now() - t0 >= 0.09)   -- libuv timers count whole ms of a cached loop time
    assert.same({ 1, 2 }, q:join())
    local plain <close> = pyq.Queue{}
    plain:put(pyq.async(function() return 3 end)(), { delay = 0 })
    assert.same({ 3 }, plain:join())
  end)

  it("scopes keys by name: two queues in one store", function()
    local path = helper.fresh(".sqlite")
    local a <close> = pyq.Queue{ store = path, name = "a" }
    local b <close> = pyq.Queue{ store = path, name = "b" }
    a:put(pyq.async(function() return "a1" end)(), { key = "k" })
    b:put(pyq.async(function() return "b1" end)(), { key = "k" })
    assert.same({ "a1" }, a:join())
    assert.same({ "b1" }, b:join())
    a:put(pyq.async(function() return "a2" end)(), { key = "k" })
    b:put(pyq.async(function() return "b2" end)(), { key = "k2" })
    assert.same({ "a1" }, a:join())
    assert.same({ "b2" }, b:join())
    local store <close> = pyq.store.open(path)
    assert.same({ "k" }, store:keys("a"))
    assert.same({ "k", "k2" }, store:keys("b"))
    assert.same({ 1, 2, 0 }, { store:count("a"), store:count("b"), store:count() })
  end)

  it("refuses bad options and arguments by name", function()
    local path = helper.fresh(".sqlite")
    local function msg(f, ...)
      local err = failure(f, ...)
      assert.is_true(pyq.is_error(err, "usage"), tostring(err))
      return tostring(err)
    end
    assert.matches("pyq.Queue: store must be a path", msg(pyq.Queue, { store = 5 }), 1, true)
    assert.matches("pyq.Queue: store must be a path", msg(pyq.Queue, { store = "" }), 1, true)
    assert.matches("pyq.Queue: name must be a non-empty string", msg(pyq.Queue, { store = path, name = "" }), 1, true)
    assert.matches("pyq.Queue: name must be a non-empty string", msg(pyq.Queue, { store = path, name = {} }), 1, true)
    assert.matches("pyq.Queue: name needs a store", msg(pyq.Queue, { name = "x" }), 1, true)
    local err = failure(pyq.Queue, { store = helper.tempdir() })
    assert.is_true(pyq.is_error(err, "sqlite"), tostring(err))
    assert.matches("pyq.Queue: cannot open store", tostring(err), 1, true)
    local q <close> = pyq.Queue{ store = path }
    local plain <close> = pyq.Queue{}
    local task = pyq.async(function() end)
    assert.matches("key must be a non-empty string, got 5", msg(q.put, q, task(), { key = 5 }), 1, true)
    assert.matches("key must be a non-empty string", msg(q.put, q, task(), { key = "" }), 1, true)
    assert.matches("unknown option \"keys\" (expected key or delay)", msg(q.put, q, task(), { keys = "a" }), 1, true)
    assert.matches("delay must be", msg(q.put, q, task(), { key = "a", delay = -1 }), 1, true)
    assert.matches("key needs a queue with a store", msg(plain.put, plain, task(), { key = "a" }), 1, true)
    assert.matches("pyq.Queue.forget: key must be a non-empty string", msg(q.forget, q, 1), 1, true)
    assert.matches("pyq.Queue.forget: the queue has no store", msg(plain.forget, plain, "a"), 1, true)
    assert.matches("pyq.store.open: path must be", msg(pyq.store.open, 1), 1, true)
    local store <close> = pyq.store.open(path)
    assert.matches("pyq.store.keys: name must be", msg(store.keys, store, 1), 1, true)
    assert.matches("bad self", msg(store.count, {}), 1, true)
    q:put(task(), { key = "fine" })   -- a refused put changed nothing
    q:join()
    assert.same({ 1, 0 }, { q.puts, q.failed })
  end)
end)

describe("pyq.store", function()
  it("opens a store to list, count and clear its keys; close twice is fine, use after close refused", function()
    local path = helper.fresh(".sqlite")
    do
      local q <close> = pyq.Queue{ store = path, name = "m" }
      for i = 1, 3 do q:put(pyq.async(function() return i end)(), { key = "m:" .. i }) end
    end
    local store = pyq.store.open(path)
    assert.same({ "m:1", "m:2", "m:3" }, store:keys("m"))
    assert.equal(3, store:count("m"))
    assert.equal(0, store:count("other"))
    assert.equal(3, store:clear("m"))
    assert.equal(0, store:count("m"))
    assert.matches("pyq.store %(", tostring(store))
    store:close()
    store:close()
    local err = failure(store.keys, store, "m")
    assert.is_true(pyq.is_error(err, "usage"))
    assert.matches("the store is closed", tostring(err), 1, true)
    -- cleared: the tasks run again
    local ran = 0
    local q <close> = pyq.Queue{ store = path, name = "m" }
    q:put(pyq.async(function() ran = ran + 1 end)(), { key = "m:1" })
    q:join()
    assert.equal(1, ran)
  end)
end)
