---@meta _
-- LuaLS definitions of the `pyq` global: tasks, async functions, timers,
-- errors.  One file per module (queue.lua, http.lua, ...); each declares
-- the class named as the runtime object reports itself (`pyq.Queue`,
-- `pyq.http.Response`), and tests/host/types_spec.lua compares every name
-- here with the running host's, both ways.

---The pyq library: `pyq = require "pyq"`, set as a global by pyqhost.
---@class pyq
---@field version string pyqhost's version ("0.1.0")
---@field log pyq.log logging, Python's levels
---@field http pyq.http HTTP requests from tasks (libcurl on the host's loop)
---@field json pyq.json the host's JSON codec
---@field jsonl pyq.jsonl JSON Lines files
---@field sqlite pyq.sqlite SQLite databases on the host's loop
---@field store pyq.store the job store of keyed tasks, for inspection and reset
---@field itertools pyq.itertools helpers for feeding queues
---@field html pyq.html HTML documents: XPath, CSS selectors, links
---@field url pyq.url URLs: join, parse, build, encode, decode
---@field worker boolean true in `pyqhost --worker redis://... job.lua`: skip the producing part
pyq = {}

---A task: a call of an async function that has not run yet.  It runs once,
---by `pyq.await` or in a queue.  A fresh `coroutine.create(fn)` is accepted
---wherever a task is.
---@class pyq.Task: userdata

---Anything a queue or `pyq.await` takes as a task.
---@alias pyq.Taskish pyq.Task|thread

---What `pyq.async` returns: calling it makes a task (nothing runs yet).
---@alias pyq.AsyncFunction fun(...: any): pyq.Task

---Makes an async function: calling it with arguments returns a task that
---runs `fn(...)` when awaited or put into a queue.
---```lua
---local get = pyq.async(function(id) return pyq.http.get(base .. id):json() end)
---local doc = pyq.await(get(42))
---```
---With a name first, `pyq.async("fetch_match", fn)`, its tasks can go into
---a cluster queue and run in another process (`pyqhost --worker`): the
---name is unique in the script; arguments and results must be
---JSON-encodable (no nil argument).
---@param fn async fun(...: any): any
---@return pyq.AsyncFunction
---@overload fun(name: string, fn: async fun(...: any): any): pyq.AsyncFunction
function pyq.async(fn) end

---Runs the task here and returns its results; its errors re-raise here.
---@async
---@param task pyq.Taskish
---@return any ...
function pyq.await(task) end

---Suspends the calling task for `seconds` (0 yields to the loop).
---@async
---@param seconds number non-negative
function pyq.sleep(seconds) end

---Monotonic time in seconds.
---@return number
function pyq.now() end

---A task that runs `task` and raises an error of kind "timeout" if it is not
---done within `seconds`; whatever it waits on is cancelled and its
---to-be-closed variables are closed.
---@param seconds number
---@param task pyq.Taskish
---@return pyq.Task
function pyq.timeout(seconds, task) end
