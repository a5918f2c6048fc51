---@meta _
-- pyq.http: HTTP requests from tasks, on libcurl's multi interface driven by
-- the host's loop.  Every request waits (suspends only the calling task).

---Options of one request (`http.request` takes `url` and `method` too).
---@class pyq.http.Options
---@field url string? with http:// or https:// (http.request)
---@field method string? GET, or POST with a body (http.request)
---@field headers table<string, string>?
---@field body string? sent as application/octet-stream unless a Content-Type header says otherwise
---@field json any? encoded with pyq.json, sent as application/json
---@field query table<string, string|number|boolean|(string|number)[]>? URL-encoded, names sorted, appended
---@field timeout number? the whole request in seconds, every attempt and wait included (30)
---@field attempt_timeout number? one try, when smaller than what is left of timeout
---@field connect_timeout number? seconds (10)
---@field follow_redirects boolean? (true)
---@field max_redirects integer? (10)
---@field allow_downgrade boolean? follow an https -> http redirect (false)
---@field sensitive_headers string[]? extra header names to treat as credentials
---@field sensitive_query string[]? extra query names to treat as credentials
---@field max_body integer? bytes (64 MiB)
---@field verify boolean? TLS peer and host verification (true)
---@field retries integer? (0)
---@field backoff number? seconds before the first retry, doubling, with jitter (0.5)
---@field retry_unsafe boolean? retry POST and PATCH too (false)
---@field max_retry_after number? longest Retry-After hold to wait for, seconds (300)

---Process-wide defaults.
---@class pyq.http.ConfigureOptions
---@field user_agent string? instead of pyqhost/<version> libcurl/<version>
---@field max_connections integer?
---@field max_per_host integer?
---@field http2 boolean?
---@field retries integer?
---@field backoff number?
---@field max_retry_after number?
---@field sensitive_headers string[]? added to each request's
---@field sensitive_query string[]? added to each request's

---An HTTP answer (an error status is a response too).
---@class pyq.http.Response
---@field status integer
---@field ok boolean status is 2xx
---@field headers table<string, string> lower-case names, repeated headers joined with ", "
---@field raw_headers string the header block as received
---@field body string decoded when compressed
---@field url string after redirects
---@field method string the last hop's
---@field elapsed number seconds, every hop
---@field http_version string
---@field retries integer retries it took
---@field content_type string? the media type ("application/json"), lower case, no parameters
local Response = {}

---Decodes the body as JSON; an invalid body raises an error naming the URL.
---@return any
function Response:json() end

---Raises a "status" pyq.Error (method, masked url, status) unless 2xx.
---@return pyq.http.Response self
function Response:raise_for_status() end

---The body's lines, without their end of line.
---@return fun(): string?
function Response:lines() end

---The body parsed as HTML, links resolving against res.url.
---@return pyq.html.Document
function Response:html() end

---@class pyq.http.Stats
---@field requests integer
---@field retries integer
---@field bytes integer

---@class pyq.http
pyq.http = {}

---@async
---@param opts pyq.http.Options with `url`
---@return pyq.http.Response
function pyq.http.request(opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.get(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.head(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.delete(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.options(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.post(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.put(url, opts) end

---@async
---@param url string
---@param opts? pyq.http.Options
---@return pyq.http.Response
function pyq.http.patch(url, opts) end

---Sets process-wide defaults.
---@param opts pyq.http.ConfigureOptions
function pyq.http.configure(opts) end

---Requests to `host` ("name" or "name:port") wait until every window allows
---them: `http.limit("api.example.org", "20/1s", "100/2m")`; calling it again
---replaces the limits, `http.limit(host, nil)` removes them.
---`"auto"` (alone or among rates, the stricter applying) keeps to the limits
---the host's answers state: `X-App-Rate-Limit`/`X-Method-Rate-Limit` (+
---`-Count`, per method path), `RateLimit-Policy` and `RateLimit`,
---`RateLimit-*` and `X-RateLimit-*` (hold until the reset when none
---remain), and a 429's `X-Rate-Limit-Type`; the first request goes alone
---until they are known.  Naming `"auto"` again keeps what was learned.
---@param host string
---@param rate string|"auto"|nil "N/D", D like 500ms, 1s, 2m, 1h; or "auto"
---@param ... string|"auto" more windows
function pyq.http.limit(host, rate, ...) end

---The process's figures so far.
---@return pyq.http.Stats
function pyq.http.stats() end

---A session's settings (the process-wide defaults of http.configure at the
---time it is made, these changed).
---@class pyq.http.SessionOptions
---@field user_agent string?
---@field http2 boolean?
---@field sensitive_headers string[]?
---@field sensitive_query string[]?
---@field retries integer?
---@field backoff number?
---@field max_retry_after number?

---Requests with settings of their own; the plain pyq.http functions are
---the default session.  Connections, limits and holds are shared.
---```lua
---local s <close> = pyq.http.session{ user_agent = "my-job/1.0", retries = 5 }
---local res = s:get(url)
---```
---@param opts pyq.http.SessionOptions?
---@return pyq.http.Session
function pyq.http.session(opts) end

---@class pyq.http.Session: userdata
local Session = {}

---@async
---@param opts pyq.http.Options
---@return pyq.http.Response
function Session:request(opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:get(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:head(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:delete(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:options(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:post(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:put(url, opts) end

---@async
---@param url string
---@param opts pyq.http.Options?
---@return pyq.http.Response
function Session:patch(url, opts) end

---Refuses later requests; requests in flight finish.  Twice is harmless.
function Session:close() end
