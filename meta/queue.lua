---@meta _
-- pyq.Queue: pyot's worker queue.

---@class pyq.QueueOptions
---@field workers integer? tasks running at once (>= 1)
---@field maxsize integer? pending tasks before put waits: nil = 2 * workers, 0 = unbounded
---@field log_level integer? level of the "spawned/joined N workers" lines; 0 = never
---@field exception_handler (fun(err: any, traceback: string))? runs between tasks, cannot wait; the default logs at WARNING (exit 3)
---@field progress boolean? a live progress line
---@field total integer? expected tasks: progress shows the percentage and ETA
---@field store string? a SQLite file recording keyed tasks that finished: a re-run skips them
---@field name string? scopes the keys inside the store ("default"); with cluster, the job's Redis keys pyq:<name>:...
---@field cluster string? "redis://host:port/db": tasks (of named async functions) go through Redis Streams and `pyqhost --worker` processes run them too
---@field visibility number? cluster: seconds a task may stay unacknowledged before another process takes it over (30)
---@field cluster_timeout number? cluster: seconds without an answer from Redis, while tasks are unfinished, before join fails (60)

---@class pyq.PutOptions
---@field key string? the task's key in the queue's store: a key recorded by an earlier run is skipped
---@field delay number? seconds to wait before the put (not for a skipped key)

---@class pyq.JoinOptions
---@field all boolean? one entry per put (result, nil or pyq.Error), `n` the number of puts
---@field type type? check each result's type() first

---A queue of tasks run by `workers` workers; leaving its `<close>` scope
---joins it (or cancels it when an error leaves).
---```lua
---local queue <close> = pyq.Queue{ workers = 25 }
---for _, id in ipairs(ids) do queue:put(get(id)) end
---local docs = queue:join()
---```
---@class pyq.Queue
---@field workers_num integer read-only
---@field maxsize integer read-only
---@field log_level integer read-only
---@field counter integer puts since the last join
---@field pending integer tasks waiting for a worker (also `#queue`)
---@field running integer tasks running
---@field puts integer tasks put
---@field done integer tasks finished
---@field failed integer tasks that raised
---@field cancelled integer tasks cancelled
---@field skipped integer keyed puts whose result the store had (puts = done + failed + cancelled + skipped)
---@field total integer expected tasks (0 when unset)
---@field closed boolean
---@field exception_handler fun(err: any, traceback: string) may be reassigned (nil: the default)
---@operator len: integer
local Queue = {}

---Makes a queue.
---@param opts? pyq.QueueOptions
---@return pyq.Queue
function pyq.Queue(opts) end

---Waits `delay` seconds, then for room (producers served in order), then
---enqueues the task.  With `{ key = k }` on a queue with a store, a key
---recorded by an earlier run is not run: its recorded result stands in
---(counted as skipped); a key pending or running in the queue is refused.
---@async
---@param task pyq.Taskish
---@param delay? number|pyq.PutOptions seconds, or { key =, delay = }
function Queue:put(task, delay) end

---Drops the key's record from the queue's store, so its next put runs;
---true if there was one.
---@param key string
---@return boolean
function Queue:forget(key) end

---Waits until every task put so far has finished and returns the results in
---put order, nils and errors left out (or, with `{ all = true }`, one entry
---per put: result, nil or a pyq.Error, and `n`); then clears them.
---@async
---@param type_name? type each result's type() must be this
---@return any[]
---@overload fun(self: pyq.Queue, opts: pyq.JoinOptions): { [integer]: any, n: integer }
function Queue:join(type_name) end

---Iterates every task of the current round as it finishes:
---`for i, ok, value in queue:completed() do ... end` (put index, false for a
---failure or cancellation, the result or the pyq.Error).
---@async
---@return fun(): integer?, boolean, any
function Queue:completed() end

---Drops the pending tasks and cancels the running ones; returns how many,
---after the running ones have unwound.
---@async
---@return integer
function Queue:cancel() end

---Joins (results dropped) and stops the workers: what leaving the `<close>`
---scope does.
---@async
function Queue:close() end
