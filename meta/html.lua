---@meta _
-- pyq.html: HTML documents on libxml2's parser, XPath, a CSS subset, links.

---@class pyq.html
pyq.html = {}

---Parses HTML text (never fetches anything); base_url resolves links.
---```lua
---local doc <close> = pyq.html.parse(res.body, res.url)
---for _, a in ipairs(doc:css("ul.items > li a")) do print(a.attr.href, a:text()) end
---```
---@param text string
---@param base_url string? an absolute URL
---@return pyq.html.Document
function pyq.html.parse(text, base_url) end

---A parsed document; closed by `close`, `<close>` or garbage collection.
---@class pyq.html.Document: userdata
local Document = {}

---The XPath expression's result: nodes (elements as pyq.html.Node, text
---and attributes as strings), a number, a string or a boolean.
---@param expr string
---@return (pyq.html.Node|string)[]|number|string|boolean
function Document:xpath(expr) end

---The elements a CSS selector matches (tag, *, #id, .class, [attr],
---[attr=v], ~= ^= $= *=, descendant and > combinators, :nth-child,
---:first-child, :last-child, a, b).
---@param selector string
---@return pyq.html.Node[]
function Document:css(selector) end

---The document as HTML text.
---@return string
function Document:html() end

---The absolute http(s) URLs of every <a> and <area>, resolved against
---base_url and <base href>, in document order, each once.
---@return string[]
function Document:links() end

---Frees the document; its nodes raise afterwards.  Twice is harmless.
function Document:close() end

---An element of a document (it keeps the document alive).
---@class pyq.html.Node: userdata
---@field tag string? the element's name
---@field attr table<string, string> its attributes (a fresh table each time)
local Node = {}

---XPath relative to the node (`//` still means the whole document).
---@param expr string
---@return (pyq.html.Node|string)[]|number|string|boolean
function Node:xpath(expr) end

---The elements below the node that a CSS selector matches.
---@param selector string
---@return pyq.html.Node[]
function Node:css(selector) end

---The node as HTML text.
---@return string
function Node:html() end

---All the text below the node.
---@return string
function Node:text() end
