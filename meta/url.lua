---@meta _
-- pyq.url: URLs on libcurl's URL API (RFC 3986 resolution, parts, escapes).

---@class pyq.url
pyq.url = {}

---The parts of a URL, percent-encoded as in the URL.
---@class pyq.url.Parts
---@field scheme string
---@field user string?
---@field password string?
---@field host string?
---@field port integer?
---@field path string?
---@field query string?
---@field fragment string?
---@field zoneid string?
---@field options string?

---Resolves ref against base (RFC 3986, section 5).
---@param base string
---@param ref string
---@return string
function pyq.url.join(base, ref) end

---Splits an absolute URL into its parts.
---@param url string
---@return pyq.url.Parts
function pyq.url.parse(url) end

---Puts parts back together; every part must read back the same.
---@param parts pyq.url.Parts
---@return string
function pyq.url.build(parts) end

---Percent-encodes every byte but A-Z a-z 0-9 - . _ ~
---@param s string
---@return string
function pyq.url.encode(s) end

---Decodes %XX escapes; a bad escape stays as it is, `+` stays a plus.
---@param s string
---@return string
function pyq.url.decode(s) end
