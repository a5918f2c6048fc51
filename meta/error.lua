---@meta _
-- pyq.Error: every error the host raises, and task outcomes.

---The kinds of the README's Errors table (tests/host/types_spec.lua checks
---the list), plus `failed` for a task's outcome; scripts may use their own.
---@alias pyq.ErrorKind
---| "usage"       # a bad argument or a call that cannot work
---| "cancelled"   # a wait of a cancelled task, or a cancelled task's outcome
---| "timeout"     # pyq.timeout when it fires
---| "interrupted" # SIGINT, SIGTERM or a closed stdout
---| "exit"        # os.exit unwinding the tasks
---| "deadlock"    # waiting for something nothing can wake
---| "decode"      # pyq.json, pyq.jsonl
---| "encode"      # pyq.json, pyq.jsonl
---| "io"          # pyq.jsonl, pyq.http's output: opening, reading or writing a file
---| "sqlite"      # pyq.sqlite
---| "url"         # pyq.url: a URL libcurl refuses
---| "transport"   # pyq.http: the connection failed or broke
---| "too_big"     # pyq.http: the body passed max_body
---| "status"      # pyq.http: a Retry-After longer than max_retry_after
---| "redis"       # a cluster queue's Redis: an error reply, no answer in time, cluster_timeout
---| "failed"      # a task's outcome in join{ all = true } and completed()
---| string        # a kind of your own

---An error object: `tostring(err)` is its message.  Kinds add fields; a
---pyq.Error made by a script carries the fields it was given.
---@class pyq.Error
---@field kind pyq.ErrorKind
---@field message string the text, as when errors were strings
---@field error any? a task outcome's ("failed", "cancelled"): what the task raised
---@field index integer? a task outcome's: its put index
---@field code integer? kind "sqlite": SQLite's extended result code
---@field url string? kinds "url" (the URL refused) and pyq.http's (masked)
---@field method string? pyq.http's kinds: the request's method
---@field status integer? kind "status": the HTTP status
---@field refused string? kind "transport": "redirect" for a refused downgrade
---@field reason string? kind "url": curl's reason

---Makes an error object (raise it with `error`).
---```lua
---error(pyq.Error("quota", "daily quota used up", { remaining = 0 }))
---```
---@param kind pyq.ErrorKind
---@param message string
---@param fields? table copied into the error
---@return pyq.Error
function pyq.Error(kind, message, fields) end

---Whether `value` is a pyq.Error (of `kind`, when given).
---@param value any
---@param kind? pyq.ErrorKind
---@return boolean
function pyq.is_error(value, kind) end
