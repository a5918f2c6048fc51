-- quickstart.lua: the queue at work on a few thousand tasks.
--   pyqhost scripts/quickstart.lua [tasks] [workers]
local total = tonumber(arg[1]) or 3000
local workers = tonumber(arg[2]) or 100

-- A task: wait a little (as an HTTP request would), fail now and then.
local square = pyq.async(function(n)
  pyq.sleep(0.001 + (n % 7) * 0.002)
  if n % 500 == 0 then error(("task %d: simulated failure"):format(n), 0) end
  return n * n
end)

local failures = {}
local t0 = pyq.now()
local squares
do
  local queue <close> = pyq.Queue{
    workers = workers,
    progress = true, total = total,      -- a live line on a terminal
    exception_handler = function(err) failures[#failures + 1] = err end,
  }
  for n = 1, total do
    queue:put(square(n))                 -- waits while 2 * workers tasks are pending
  end
  squares = queue:join("number")         -- results in put order; failures left out
  print(("put %d = done %d + failed %d + cancelled %d"):format(
    queue.puts, queue.done, queue.failed, queue.cancelled))
end

print(("%d results in %.2fs; first five: %s; last: %d"):format(
  #squares, pyq.now() - t0, table.concat(squares, ", ", 1, 5), squares[#squares]))
print(("%d failures went to the exception handler, e.g. %q"):format(#failures, failures[1]))
