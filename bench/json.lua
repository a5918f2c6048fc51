-- JSON throughput: pyq.json against lua-cjson on the same inputs, in one
-- process.  Prints "name value" lines (MB/s of JSON text) for bench/run.sh.
--   pyqhost bench/json.lua DIR [rounds]   (DIR from bench/json_data.py)
local dir = arg[1] or error("usage: pyqhost bench/json.lua DIR [rounds]")
local rounds = tonumber(arg[2]) or 20
local cjson = require "cjson"
local codecs = { pyq = pyq.json, cjson = cjson }

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local docs = {}
for line in io.lines(dir .. "/matches.jsonl") do docs[#docs + 1] = line end
local big = slurp(dir .. "/big.json")

-- Process CPU time (os.clock: the codecs are single-threaded), best of
-- five: the machine is shared, and the best run is the least disturbed.
local function best(f)
  local t = math.huge
  for _ = 1, 5 do
    collectgarbage()
    local t0 = os.clock()
    f()
    t = math.min(t, os.clock() - t0)
  end
  return t
end

local function measure(name, codec)
  -- (a) the match documents, `rounds` passes over the 64
  local bytes, values = 0, {}
  for i, s in ipairs(docs) do bytes = bytes + #s; values[i] = codec.decode(s) end
  local t = best(function()
    for _ = 1, rounds do for i = 1, #docs do codec.decode(docs[i]) end end
  end)
  print(name .. "_docs_decode_mbs", bytes * rounds / t / 1e6)
  local out = 0
  for i = 1, #values do out = out + #codec.encode(values[i]) end
  t = best(function()
    for _ = 1, rounds do for i = 1, #values do codec.encode(values[i]) end end
  end)
  print(name .. "_docs_encode_mbs", out * rounds / t / 1e6)
  values = nil
  -- (b) one ~50 MB array
  local v
  t = best(function() v = nil; v = codec.decode(big) end)
  print(name .. "_big_decode_mbs", #big / t / 1e6)
  local s
  t = best(function() s = nil; s = codec.encode(v) end)
  print(name .. "_big_encode_mbs", #s / t / 1e6)
  v, s = nil, nil
  collectgarbage()
end

print("docs_bytes", #docs[1])
print("big_bytes", #big)
measure("pyq", codecs.pyq)
measure("cjson", codecs.cjson)
