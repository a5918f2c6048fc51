-- pyq.http: HTTP requests from tasks.  The transfers are C's (host/http.c,
-- libcurl's multi interface on the host's loop); this file adds the verbs,
-- JSON bodies and the response methods.
local core = require "pyq.core"
local json = require "pyq.json"

local C = core._http
local M = {}

local Response = { __name = "pyq.http.response" }

-- res.headers is parsed from res.raw_headers on first use.
function Response.__index(res, key)
  if key == "headers" then
    local headers = C.parse_headers(rawget(res, "raw_headers"))
    rawset(res, "headers", headers)
    return headers
  end
  return Response[key]
end

--- Decodes the body as JSON; an invalid body raises an error naming the URL.
function Response:json()
  local ok, value = pcall(json.decode, self.body)
  if not ok then
    error(("pyq.http: %s %s: the response is not valid JSON (%s)"):format(
      self.method, self.url, value), 2)
  end
  return value
end

function Response:__tostring()
  return ("pyq.http.response: %s %s -> %d (%d bytes)"):format(
    self.method, self.url, self.status, #self.body)
end

C.set_response_mt(Response)

local function has_header(headers, name)
  name = name:lower()
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- `json = value` becomes the body and a Content-Type header.
local function with_json(opts)
  local o = copy(opts)
  o.json = nil
  if o.body ~= nil then error("pyq.http.request: give body or json, not both", 3) end
  local ok, body = pcall(json.encode, opts.json)
  if not ok then error("pyq.http.request: json: " .. body, 3) end
  o.body = body
  o.headers = copy(o.headers or {})
  if not has_header(o.headers, "content-type") then
    o.headers["Content-Type"] = "application/json"
  end
  return o
end

--- http.request{ url =, method =, headers =, body =, json =, query =,
-- timeout =, connect_timeout =, follow_redirects =, max_redirects =,
-- max_body =, verify = } -> response
function M.request(opts)
  if type(opts) ~= "table" then
    error("pyq.http.request: expected a table of options, got " .. type(opts), 2)
  end
  if opts.json ~= nil then opts = with_json(opts) end
  return C.request(opts)
end

local send = C.send

local function verb(method)
  return function(url, opts)
    if opts ~= nil and opts.json ~= nil then opts = with_json(opts) end
    return send(method, url, opts)
  end
end

M.get = verb("GET")
M.head = verb("HEAD")
M.delete = verb("DELETE")
M.post = verb("POST")
M.put = verb("PUT")
M.patch = verb("PATCH")
M.options = verb("OPTIONS")

M.configure = C.configure
M.stats = C.stats

return M
