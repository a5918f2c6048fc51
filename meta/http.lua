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
---@field cache boolean? false: neither look in the response cache nor store this answer
---@field cache_ttl number? seconds: an entry older than this is not used (instead of the cache's cache_ttl)
---@field output string? download a 2xx body to this path (through path..".part", renamed when whole); res.body is nil, res.size and res.path are set; max_body is unlimited unless given
---@field keep_partial boolean? with output: keep the .part when the download fails (default: resume's value)
---@field resume boolean? with output: continue an existing .part with a Range request
---@field on_data fun(chunk: string): boolean? called with the 2xx body in chunks as it arrives, in the task; it cannot wait; return false to stop (res.aborted)
---@field form table<string, string|number|boolean|(string|number|boolean)[]>? URL-encoded body (names sorted, a list repeats the name), application/x-www-form-urlencoded unless a Content-Type header is given; POST unless a method is
---@field multipart table<string, string|number|{ path: string?, data: string?, filename: string?, type: string? }>? multipart/form-data through libcurl's mime: a string or number is a field, a table a part with one of `path` (a file, streamed from disk) or `data`; POST unless a method is
---@field auth { [1]: string, [2]: string, type: "basic"|"digest"? }? user and password (basic unless type = "digest"); dropped on a redirect to another origin
---@field bearer string? sends `Authorization: Bearer <token>`; not with auth or an Authorization header
---@field proxy string|false? "http://[user:pw@]host:port", "socks5h://host:port", ...; false: no proxy, not even the environment's; unset: the session's, else http_proxy/https_proxy/all_proxy/no_proxy as curl reads them
---@field http_version "1.0"|"1.1"|"2"|"2-prior-knowledge"? the version to ask for (unset: HTTP/2 over TLS when offered, else 1.1; "2": as curl --http2, also asking plain http to upgrade (h2c); "2-prior-knowledge": HTTP/2 over plain http at once)

---Process-wide defaults.
---@class pyq.http.ConfigureOptions
---@field user_agent string? instead of pyqhost/<version> libcurl/<version>
---@field max_connections integer? the old name of max_total
---@field max_total integer? connections open at once, all hosts together (0: no limit, the default)
---@field max_per_host integer? connections open at once to one host (0: no limit, the default)
---@field http2 boolean?
---@field proxy string|false? every request's proxy unless the request or its session names one (false: none, not even the environment's)
---@field http_version "1.0"|"1.1"|"2"|"2-prior-knowledge"?
---@field retries integer?
---@field backoff number?
---@field max_retry_after number?
---@field sensitive_headers string[]? added to each request's
---@field sensitive_query string[]? added to each request's
---@field cache string|false? a SQLite file holding the response cache (GET and HEAD answers with a status of cache_statuses), or a "redis://host:port/db" URL (shared by every process); false: none
---@field cache_ttl number? seconds an entry answers for (86400)
---@field cache_statuses integer[]? the statuses stored ({ 200, 203, 300, 301, 404, 410 })
---@field cache_vary string[]? request headers whose values are part of the key (e.g. { "Accept-Language" })

---An HTTP answer (an error status is a response too).
---@class pyq.http.Response
---@field status integer
---@field ok boolean status is 2xx
---@field headers table<string, string> lower-case names, repeated headers joined with ", "
---@field raw_headers string the header block as received
---@field body string? decoded when compressed; nil when output or on_data took a 2xx body
---@field size integer bytes of body: in res.body, in the file (output) or handed to on_data
---@field path string? output: the file, set when it holds the whole body
---@field aborted boolean? on_data returned false and stopped the transfer
---@field url string after redirects
---@field method string the last hop's
---@field elapsed number seconds, every hop
---@field http_version string
---@field retries integer retries it took
---@field content_type string? the media type ("application/json"), lower case, no parameters
---@field cached boolean answered from the response cache (nothing was sent)
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
---@field cache_hits integer requests the response cache answered
---@field cache_misses integer requests it could have answered and did not

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
---A last argument `{ shared = "redis://host:port/db" }` (or `shared = true`:
---the job's Redis, from `--worker` or the cluster queue opened first)
---counts the given rates in Redis for every process of the job, and a
---Retry-After holds the host in all of them; `"auto"` stays per process.
---@param host string
---@param rate string|"auto"|nil "N/D", D like 500ms, 1s, 2m, 1h; or "auto"
---@param ... string|"auto"|{ shared: string|boolean|nil } more windows, then the options
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
---@field proxy string|false? as the request option, for every request of the session
---@field http_version "1.0"|"1.1"|"2"|"2-prior-knowledge"?
---@field base_url string? http(s) URL relative URLs resolve against (RFC 3986; a '/' is added to its path: "v1" + "users" is v1/users, "/x" is from the host's root)
---@field cookies boolean|string? true: a cookie jar of the session's own; a path: a Netscape cookie file loaded now and saved when the session ends
---@field headers table<string, string>? sent with every request; a request's headers of the same name (any case) win
---@field query table<string, string|number|boolean|(string|number)[]>? added to every request's; the request's win by name
---@field auth { [1]: string, [2]: string, type: "basic"|"digest"? }? unless the request gives auth, bearer or an Authorization header
---@field bearer string? unless the request gives auth, bearer or an Authorization header
---@field timeout number? the default of the request option
---@field connect_timeout number?
---@field attempt_timeout number?
---@field follow_redirects boolean?
---@field max_redirects integer?
---@field max_body integer?
---@field verify boolean?
---@field allow_downgrade boolean?
---@field retry_unsafe boolean?
---@field cache string|false? a SQLite file holding the response cache (GET and HEAD answers with a status of cache_statuses), or a "redis://host:port/db" URL (shared by every process); false: none
---@field cache_ttl number? seconds an entry answers for (86400)
---@field cache_statuses integer[]? the statuses stored ({ 200, 203, 300, 301, 404, 410 })
---@field cache_vary string[]? request headers whose values are part of the key (e.g. { "Accept-Language" })

---A cookie of a session's jar.
---@class pyq.http.Cookie
---@field name string
---@field value string
---@field domain string without a leading "."
---@field path string
---@field secure boolean sent over https only
---@field http_only boolean
---@field expires integer Unix time; 0: a session cookie

---Requests with settings of their own; the plain pyq.http functions are
---the default session.  Connections, limits and holds are shared.
---```lua
---local s <close> = pyq.http.session{ base_url = "https://api.example.org/v1",
---  headers = { Accept = "application/json" }, bearer = token, cookies = true, retries = 5 }
---local res = s:get("users", { query = { page = 2 } })
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
---A cookie file is saved when the last request in flight has finished.
function Session:close() end

---The cookies of the session's jar (sessions made with `cookies`).
---@return pyq.http.Cookie[]
function Session:cookies() end
