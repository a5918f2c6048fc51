require "busted.runner"()
-- pyq.html: libxml2's HTML parser (host/html/html.c), XPath, the CSS
-- subset (host/html/css.c), links resolved with curl_url, and the life of
-- documents and nodes (close, <close>, GC, nodes outliving a close).
local helper = require "tests.helper"
local html = pyq.html

local function fixture(name, base)
  local f = assert(io.open(helper.source .. "/tests/fixtures/html/" .. name, "rb"))
  local text = f:read("a")
  f:close()
  return html.parse(text, base)
end

local function texts(nodes)
  local out = {}
  for i, n in ipairs(nodes) do out[i] = n:text() end
  return out
end

local function usage(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  assert.equal("usage", pyq.is_error(err) and err.kind, tostring(err))
  return tostring(err)
end

local PAGE = [[
<html><head><title>Shop &amp; more</title></head><body>
<div id="main" class="box  wide">
  <h1>Items</h1>
  <ul class="items">
    <li class="item first" data-id="1"><a href="/a">Alpha</a></li>
    <li class="item" data-id="2"><a href="/b" title="it's &quot;B&quot;">Beta</a></li>
    <li class="item-x" data-id="3"><span><a href="/c">Gamma</a></span></li>
    <li class="item last" data-id="4" lang="en-GB">Delta</li>
    <li class="item" data-id="5">Epsilon</li>
  </ul>
  <p>Total: <b>5</b> items</p>
</div>
<DIV CLASS="Box">upper</DIV>
</body></html>]]

describe("pyq.html.parse", function()
  it("is pyq.html and require 'pyq.html'", function()
    assert.equal(html, require "pyq.html")
    assert.is_function(html.parse)
  end)

  it("gives elements with tag, attr, text and html", function()
    local doc <close> = html.parse(PAGE)
    local a = doc:css("li a")[2]
    assert.equal("a", a.tag)
    assert.equal("/b", a.attr.href)
    assert.equal([[it's "B"]], a.attr.title)
    assert.is_nil(a.attr.nope)
    assert.equal("Beta", a:text())
    assert.equal([[<a href="/b" title="it's &quot;B&quot;">Beta</a>]], a:html())
    assert.equal("Total: 5 items", doc:css("p")[1]:text())
    assert.equal("pyq.html.Node <a>", tostring(a))
    assert.equal("pyq.html.Document", tostring(doc))
    -- tags and attribute names are lowercase, as the parser stores them
    local up = doc:css("div.Box")[1]
    assert.equal("div", up.tag)
    assert.equal("Box", up.attr.class)
  end)

  it("gives nodes that compare equal when they are the same element", function()
    local doc <close> = html.parse(PAGE)
    assert.equal(doc:css("#main")[1], doc:xpath("//div[@id='main']")[1])
    assert.are_not.equal(doc:css("li")[1], doc:css("li")[2])
  end)

  it("reads text in the declared charset and gives UTF-8", function()
    local doc <close> = fixture("windows1252.html")
    assert.equal("Café crème – € 3,50", doc:xpath("string(//title)"))
    assert.equal("Crème brûlée • naïve • “quoted”", doc:css("#menu")[1]:text())
    assert.equal("/menü/grüße", doc:css("a")[1].attr.href)
    local sj <close> = fixture("shift_jis.html")
    assert.equal("東京の天気", sj:xpath("string(//title)"))
    assert.equal("晴れ時々曇り", sj:css("p.forecast")[1]:text())
    -- no declaration: UTF-8 when the bytes are UTF-8, Latin-1 otherwise
    local u <close> = html.parse("<p>café</p>")
    assert.equal("café", u:css("p")[1]:text())
    local l <close> = html.parse("<p>caf\xe9</p>")
    assert.equal("café", l:css("p")[1]:text())
  end)

  it("parses an empty text into an empty document", function()
    local doc <close> = html.parse("")
    assert.same({}, doc:xpath("//*"))
    assert.same({}, doc:links())
    assert.equal("", doc:xpath("string(/)"))
  end)

  it("refuses what is not text or an absolute base URL, as usage errors", function()
    assert.matches("pyq.html.parse: text must be a string, got no value", usage(html.parse), 1, true)
    assert.matches("pyq.html.parse: text must be a string, got 5", usage(html.parse, 5), 1, true)
    assert.matches([[pyq.html.parse: base_url must be an absolute URL, got "page.html"]],
                   usage(html.parse, "<p>", "page.html"), 1, true)
    assert.matches("pyq.html.parse: base_url must be a string, got table", usage(html.parse, "<p>", {}), 1, true)
    assert.matches("pyq.html.parse: base_url contains a NUL byte",
                   usage(html.parse, "<p>", "http://a/\0b"), 1, true)
  end)
end)

describe("doc:xpath", function()
  it("gives node sets as arrays: elements as nodes, text and attributes as strings", function()
    local doc <close> = html.parse(PAGE)
    local lis = doc:xpath("//li")
    assert.equal(5, #lis)
    assert.equal("li", lis[1].tag)
    assert.same({ "/a", "/b", "/c" }, doc:xpath("//a/@href"))
    assert.same({ "Alpha", "Beta", "Gamma" }, doc:xpath("//a/text()"))
    assert.same({}, doc:xpath("//table"))
    local root = doc:xpath("/")[1]
    assert.is_nil(root.tag)              -- the document node
    assert.equal("html", doc:xpath("/*")[1].tag)
  end)

  it("gives numbers, integers when whole, strings and booleans as XPath computes them", function()
    local doc <close> = html.parse(PAGE)
    assert.equal(5, doc:xpath("count(//li)"))
    assert.equal("integer", math.type(doc:xpath("count(//li)")))
    assert.equal(1.5, doc:xpath("3 div 2"))
    assert.is_true(doc:xpath("0 div 0") ~= doc:xpath("0 div 0"))   -- NaN
    assert.equal(math.huge, doc:xpath("1 div 0"))
    assert.equal("Shop & more", doc:xpath("string(//title)"))
    assert.equal("", doc:xpath("string(//nothing)"))
    assert.is_true(doc:xpath("count(//a) = 3"))
    assert.is_false(doc:xpath("boolean(//table)"))
  end)

  it("evaluates node:xpath from the node, absolute paths from the root", function()
    local doc <close> = html.parse(PAGE)
    local third = doc:css("li")[3]
    assert.same({ "Gamma" }, texts(third:xpath(".//a")))
    assert.same({}, third:xpath("a"))                 -- not a child of the li
    assert.equal(3, #third:xpath("//a"))
    assert.equal("3", third:xpath("string(@data-id)"))
    assert.equal("ul", third:xpath("..")[1].tag)
  end)

  it("refuses a bad expression naming it, with libxml2's reason, and no output", function()
    local doc <close> = html.parse(PAGE)
    local msg = usage(doc.xpath, doc, "//a[")
    assert.matches([[doc:xpath: bad XPath expression "//a[": ]], msg, 1, true)
    assert.matches("doc:xpath: bad XPath expression", usage(doc.xpath, doc, "$undefined"), 1, true)
    assert.matches("doc:xpath: bad XPath expression", usage(doc.xpath, doc, "nosuch(1)"), 1, true)
    assert.matches("node:xpath: bad XPath expression", usage(doc.xpath, doc:css("li")[1], "]"), 1, true)
    assert.matches("doc:xpath: expression must be a string, got nil", usage(doc.xpath, doc), 1, true)
    assert.matches("doc:xpath: expression contains a NUL byte", usage(doc.xpath, doc, "//a\0"), 1, true)
    assert.matches("bad self", usage(doc.xpath, {}, "//a"), 1, true)
    -- libxml2 prints nothing of its own
    local r = helper.run{ script = [[
      local d = pyq.html.parse("<p>")
      pcall(d.xpath, d, "//p[")
      pcall(d.css, d, "p[")
      print("done")]] }
    assert.equal(0, r.code)
    assert.equal("done\n", r.out)
    assert.equal("", r.err)
  end)
end)

describe("doc:css", function()
  local doc
  before_each(function() doc = html.parse(PAGE) end)
  after_each(function() doc:close() end)

  local function ids(sel, ctx)
    local out = {}
    for i, n in ipairs((ctx or doc):css(sel)) do out[i] = n.attr["data-id"] or n.tag end
    return out
  end

  it("selects by tag, *, #id, .class and attributes", function()
    assert.same({ "1", "2", "3", "4", "5" }, ids("li"))
    assert.same({ "1", "2", "3", "4", "5" }, ids("LI"))   -- HTML tags ignore case
    assert.equal(1, #doc:css("#main"))
    assert.same({ "1", "2", "4", "5" }, ids(".item"))      -- not item-x
    assert.same({ "1", "4" }, ids("li.item.first, li.last"))
    assert.same({ "div" }, ids("div.box.wide"))              -- classes among spaces
    assert.same({ "1", "2", "3", "4", "5" }, ids("[data-id]"))
    assert.same({ "3" }, ids("[data-id=3]"))
    assert.same({ "3" }, ids("li[data-id='3']"))
    assert.same({ "3" }, ids('li[ data-id = "3" ]'))
  end)

  it("compares attribute values exactly, quotes of both kinds included", function()
    assert.same({}, doc:css("a[title='it']"))
    assert.equal(1, #doc:css([=[a[title^="it's"]]=]))
    assert.equal(1, #doc:css([=[a[title*='"B"']]=]))
    assert.equal(1, #doc:css([=[a[title$='"B"']]=]))
    assert.equal(1, #doc:css([=[[lang~=en-GB]]=]))
    assert.same({ "2", "3" }, ids("li:nth-child(n+2):nth-child(-n+3)"))
    assert.same({}, doc:css("a[title^='']"))                -- an empty value matches nothing
  end)

  it("follows descendant and child combinators", function()
    assert.same({ "a", "a", "a" }, ids("ul a"))
    assert.same({ "a", "a" }, ids("ul > li > a"))
    assert.same({ "a" }, ids("li>span>a"))
    assert.same({ "a" }, ids("#main   .item-x a"))
    assert.same({}, ids("p > a"))
  end)

  it("counts :nth-child among element siblings: n, odd, even, an+b", function()
    assert.same({ "2" }, ids("li:nth-child(2)"))
    assert.same({ "1", "3", "5" }, ids("li:nth-child(odd)"))
    assert.same({ "2", "4" }, ids("li:nth-child(even)"))
    assert.same({ "2", "5" }, ids("li:nth-child(3n+2)"))
    assert.same({ "1", "2" }, ids("li:nth-child(-n+2)"))
    assert.same({ "3", "4", "5" }, ids("li:nth-child(n + 3)"))
    assert.same({}, ids("li:nth-child(0)"))
    assert.same({ "1" }, ids("li:first-child"))
    assert.same({ "5" }, ids("li:last-child"))
    assert.same({ "h1" }, ids("#main > :first-child"))
  end)

  it("searches below a node for node:css", function()
    local ul = doc:css("ul")[1]
    assert.same({ "a", "a", "a" }, ids("a", ul))
    assert.same({ "3" }, ids("li:nth-child(3)", ul))
    assert.same({}, ids("ul", ul))                 -- the node itself is not below it
    assert.same({ "a" }, ids("span a", doc:css("li")[3]))
  end)

  it("refuses a selector outside the subset, naming it and why", function()
    local cases = {
      ["a + b"] = "only the descendant and child (>) combinators are supported",
      ["a ~ b"] = "only the descendant and child (>) combinators are supported",
      ["a:hover"] = "only :nth-child(), :first-child and :last-child are supported",
      [":not(a)"] = "only :nth-child(), :first-child and :last-child are supported",
      ["p::before"] = "pseudo-elements are not supported",
      ["#a\\:b"] = "escapes are not supported",
      ["[lang|=en]"] = "the |= operator is not supported",
      ["li:nth-child(2n+)"] = "bad :nth-child() argument",
      ["li:nth-child(x)"] = "bad :nth-child() argument",
      ["a >"] = "a selector was expected",
      ["a,"] = "a selector was expected after ,",
      [""] = "a selector was expected",
      ["a[href"] = "] or an attribute operator was expected",
      ["a[href='x]"] = "unterminated string",
      ["a!"] = "unexpected character",
      ["p.caf\xe9"] = "invalid UTF-8",   -- libxml2's XPath reads UTF-8 only
    }
    for sel, why in pairs(cases) do
      local msg = usage(doc.css, doc, sel)
      assert.matches(('doc:css: unsupported selector "%s": %s'):format(sel, why), msg, 1, true)
    end
    assert.equal(1, #doc:css("[lang='en-GB'], p.café"))   -- UTF-8 is fine
    assert.matches("node:css: unsupported selector", usage(doc.css, doc:css("ul")[1], "a ~ b"), 1, true)
    assert.matches("doc:css: selector must be a string, got 42", usage(doc.css, doc, 42), 1, true)
  end)

  it("gives the same nodes as the XPath it stands for", function()
    local pairs_ = {
      { "ul > li.item a", "//ul/li[contains(concat(' ', @class, ' '), ' item ')]//a" },
      { "#main p b", "//*[@id='main']//p//b" },
      { "li:nth-child(2n)", "//li[position() mod 2 = 0]" },
    }
    for _, p in ipairs(pairs_) do
      local a, b = doc:css(p[1]), doc:xpath(p[2])
      assert.equal(#b, #a, p[1])
      for i = 1, #a do assert.equal(b[i], a[i], p[1]) end
    end
  end)
end)

describe("doc:links", function()
  it("resolves every href against the base URL and the first <base href>, once each", function()
    local doc <close> = fixture("base_href.html", "https://api.example.com/start/index.html")
    assert.same({
      "https://api.example.com/docs/v2/intro.html",
      "https://api.example.com/docs/v2/guide/auth.html#tokens",
      "https://api.example.com/docs/v1/",
      "https://api.example.com/search?q=rate+limits",
      "https://cdn.example.net/assets/api.pdf",
      "https://api.example.com/docs/v2/changelog.html",
      "https://api.example.com/docs/v2/ref/a%20b.html",
      "https://api.example.com/docs/v2/#toc",
      "https://status.example.com/",
      "https://api.example.com/docs/v2/map/area.html",
    }, doc:links())
  end)

  it("follows RFC 3986's examples of reference resolution", function()
    -- RFC 3986 section 5.4.1, base http://a/b/c/d;p?q
    local cases = {
      { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" }, { "g/", "http://a/b/c/g/" },
      { "/g", "http://a/g" }, { "//g", "http://g/" }, { "?y", "http://a/b/c/d;p?y" },
      { "g?y", "http://a/b/c/g?y" }, { "#s", "http://a/b/c/d;p?q#s" },
      { "g#s", "http://a/b/c/g#s" }, { "g?y#s", "http://a/b/c/g?y#s" },
      { ";x", "http://a/b/c/;x" }, { "g;x", "http://a/b/c/g;x" },
      { "", "http://a/b/c/d;p?q" }, { ".", "http://a/b/c/" }, { "./", "http://a/b/c/" },
      { "..", "http://a/b/" }, { "../", "http://a/b/" }, { "../g", "http://a/b/g" },
      { "../..", "http://a/" }, { "../../g", "http://a/g" }, { "../../../g", "http://a/g" },
    }
    for _, c in ipairs(cases) do
      local doc <close> = html.parse(('<a href="%s">x</a>'):format(c[1]), "http://a/b/c/d;p?q")
      assert.same({ c[2] }, doc:links(), c[1])
    end
  end)

  it("takes a relative <base href> against the base URL, an absolute one alone", function()
    local rel <close> = html.parse('<base href="sub/"><a href="x">x</a>', "http://h.test/dir/page")
    assert.same({ "http://h.test/dir/sub/x" }, rel:links())
    local abs <close> = html.parse('<base href="https://cdn.test/v/"><a href="x">x</a>')
    assert.same({ "https://cdn.test/v/x" }, abs:links())
    local bad <close> = html.parse('<base href="http://[::1"><a href="x">x</a>', "http://h.test/d/p")
    assert.same({ "http://h.test/d/x" }, bad:links())   -- a broken <base> is ignored
  end)

  it("keeps http and https links only, and without a base only absolute ones", function()
    local doc <close> = html.parse([[<a href="/rel">r</a><a href="mailto:a@b.c">m</a>
      <a href="javascript:void(0)">j</a><a href="ftp://f.test/x">f</a><a href="tel:123">t</a>
      <a href="HTTPS://Abs.Test/p">a</a><a href="http://[bad">b</a><area href="http://x.test/">]])
    assert.same({ "https://Abs.Test/p", "http://x.test/" }, doc:links())
  end)

  it("gives absolute links of a real-world listing page", function()
    local doc <close> = fixture("listing.html", "https://shop.example.com/c/boots?page=2")
    local links = doc:links()
    assert.equal(11, #links)   -- ?page=1 and ?page=3 twice each, mailto: and javascript: left out
    assert.equal("https://shop.example.com/", links[1])
    assert.equal("https://shop.example.com/p/summit-lite?color=grey&size=42", links[6])
    assert.equal("https://shop.example.com/p/caf%C3%A9-trekker", links[7])
    assert.equal("https://shop.example.com/c/boots?page=1", links[9])
    assert.equal("https://shop.example.com/c/boots?page=3", links[10])
    assert.equal("https://social.example.net/trailhead", links[11])
  end)
end)

describe("real-world-shaped pages", function()
  it("extract the items of a listing page", function()
    local doc <close> = fixture("listing.html", "https://shop.example.com/c/boots?page=2")
    local items = {}
    for _, card in ipairs(doc:css("div.grid > article.product")) do
      items[#items + 1] = {
        sku = card.attr["data-sku"],
        title = card:css("h2.title")[1]:text(),
        price = card:css("span.price[data-currency]")[1]:text(),
        url = card:css("a.card-link")[1].attr.href,
        tags = texts(card:css("ul.tags > li")),
      }
    end
    assert.equal(4, #items)
    assert.same({ sku = "TB-1002", title = "Summit Lite", price = "99,00\u{a0}€",
                  url = "/p/summit-lite?color=grey&size=42", tags = { "sale", "women", "lightweight" } },
                items[2])
    assert.equal('Glacier "Pro" Boot', items[4].title)
    assert.equal("Café Trekker", items[3].title)
    assert.equal("Hiking boots – Page 2 of 5 | Trailhead Outfitters", doc:xpath("normalize-space(//title)"))
    assert.equal("?page=3", doc:css("nav.pagination a[rel=next]")[1].attr.href)
    assert.equal(1, #doc:css("article.sold-out"))
    assert.equal(4, doc:xpath("count(//article[contains(@class, 'product')])"))
    -- a script's text stays whole, markup-looking strings and all
    assert.matches([["<div class='x'>" + "</div>"]], doc:css("body > script")[1]:text(), 1, true)
  end)

  it("recover the structure of broken markup", function()
    local doc <close> = fixture("broken.html")
    assert.equal("Broken markup & friends", doc:xpath("string(//title)"))
    assert.same({ "one", "two", "three" }, texts(doc:css("ul > li")))
    assert.same({ "cell 1", "cell 2", "cell 3" }, texts(doc:css("table td")))
    assert.equal(2, #doc:css("div.outer > p"))
    assert.equal("unquoted attributes", doc:css("#box.unquoted[data-x='1']")[1]:text())
    assert.same({ "/ok", "/also-ok" }, { doc:css("a")[1].attr.href, doc:css("a")[2].attr.href })
    assert.equal(2, #doc:css("option"))
  end)
end)

describe("documents and nodes", function()
  it("close once, again harmlessly, and through <close>", function()
    local doc = html.parse(PAGE)
    doc:close()
    doc:close()
    assert.equal("pyq.html.Document (closed)", tostring(doc))
    assert.matches("doc:css: the document is closed", usage(doc.css, doc, "a"), 1, true)
    assert.matches("doc:xpath: the document is closed", usage(doc.xpath, doc, "//a"), 1, true)
    assert.matches("doc:links: the document is closed", usage(doc.links, doc), 1, true)
    assert.matches("doc:html: the document is closed", usage(doc.html, doc), 1, true)
    local kept
    do
      local d <close> = html.parse(PAGE)
      kept = d
    end
    assert.equal("pyq.html.Document (closed)", tostring(kept))
  end)

  it("raise, never read freed memory, when a node outlives its document's close", function()
    local doc = html.parse(PAGE)
    local a = doc:css("a")[1]
    local li = doc:css("li")[1]
    doc:close()
    assert.matches("node.tag: the node's document is closed", usage(function() return a.tag end), 1, true)
    assert.matches("node.attr: the node's document is closed", usage(function() return a.attr end), 1, true)
    assert.matches("node:text: the node's document is closed", usage(a.text, a), 1, true)
    assert.matches("node:html: the node's document is closed", usage(a.html, a), 1, true)
    assert.matches("node:css: the node's document is closed", usage(li.css, li, "a"), 1, true)
    assert.matches("node:xpath: the node's document is closed", usage(li.xpath, li, "a"), 1, true)
    assert.equal("pyq.html.Node (document closed)", tostring(a))
  end)

  it("keep their document alive when only a node is left", function()
    local a = html.parse(PAGE):css("a")[2]
    collectgarbage()
    collectgarbage()
    assert.equal("Beta", a:text())
    assert.equal("/b", a.attr.href)
  end)

  it("survive a finalizer that closes the document while a method walks it", function()
    local big = { "<ul>" }
    for i = 1, 20000 do big[#big + 1] = ('<li class="c" title="t%d">item %d</li>'):format(i, i) end
    big[#big + 1] = "</ul>"
    big = table.concat(big)
    local hit = false
    for _ = 1, 20 do
      local doc = html.parse(big)
      local walking = false
      local closed_during
      -- garbage whose finalizer closes the document, collected while css() allocates
      for _ = 1, 50 do
        setmetatable({}, { __gc = function()
          if closed_during == nil and walking then closed_during = true; doc:close() end
        end })
      end
      walking = true
      local nodes = doc:css("li.c")
      walking = false
      assert.equal(20000, #nodes)
      if closed_during then
        hit = true
        assert.equal("pyq.html.Document (closed)", tostring(doc))
        assert.matches("the node's document is closed", usage(nodes[1].text, nodes[1]), 1, true)
        break
      end
      doc:close()
    end
    assert.is_true(hit, "no finalizer ran during doc:css")
  end)

  it("count their tree for the collector, so dropped documents do not pile up", function()
    local page = "<table>" .. ('<tr><td class="n">1</td><td><a href="/r">row</a></td></tr>'):rep(100) .. "</table>"
    collectgarbage()
    local before = helper.rss_mib()
    local alive = setmetatable({}, { __mode = "k" })
    for _ = 1, 1000 do alive[html.parse(page)] = true end   -- no close: only the parse's hint runs the GC
    local after, n = helper.rss_mib(), 0
    for _ in pairs(alive) do n = n + 1 end
    assert.is_true(n < 500, ("%d of 1000 dropped documents not collected"):format(n))
    -- the sanitizers keep freed memory in quarantine: RSS says nothing there (LSan checks leaks)
    if not helper.sanitized then
      assert.is_true(after - before < 40, ("RSS grew %.1f MiB"):format(after - before))
    end
  end)

  it("free their memory: RSS stays flat over 1,000 parse/close cycles and 1,000 dropped documents", function()
    local rows = {}
    for i = 1, 100 do rows[i] = ('<tr><td class="n">%d</td><td><a href="/r/%d">row %d</a></td></tr>'):format(i, i, i) end
    local page = "<table>" .. table.concat(rows) .. "</table>"   -- ~6 KB, ~600 nodes a parse
    local function cycle(close)
      local doc = html.parse(page, "http://h.test/")
      assert.equal(100, #doc:css("td.n"))
      assert.equal(100, #doc:links())
      assert.equal("row 7", doc:css("tr:nth-child(7) a")[1]:text())
      if close then doc:close() end
    end
    for _ = 1, 100 do cycle(true) end
    collectgarbage()
    local before = helper.rss_mib()
    for _ = 1, 1000 do cycle(true) end
    collectgarbage()
    local closed = helper.rss_mib()
    for _ = 1, 1000 do cycle(false) end
    collectgarbage()
    collectgarbage()
    local dropped = helper.rss_mib()
    -- a leaked tree is over 100 KB: 1,000 of them would be over 100 MiB
    if not helper.sanitized then   -- quarantine: see above
      assert.is_true(closed - before < 8, ("closed: RSS grew %.1f MiB"):format(closed - before))
      assert.is_true(dropped - before < 40, ("dropped: RSS grew %.1f MiB"):format(dropped - before))
    end
  end)
end)

describe("big and hostile input", function()
  it("parses a 5 MB page", function()
    local parts, n = {}, 0
    while n < 5 * 1024 * 1024 do
      local row = ('<div class="row r%d"><a href="/item/%d?ref=list">Item %d &amp; more</a><span class="p">%d.99</span><p>%s</p></div>\n')
        :format(#parts % 7, #parts, #parts, #parts, ("lorem ipsum dolor "):rep(3))
      parts[#parts + 1] = row
      n = n + #row
    end
    local text = "<!DOCTYPE html><html><body>" .. table.concat(parts) .. "</body></html>"
    assert.is_true(#text >= 5 * 1024 * 1024)
    local t0 = pyq.now()
    local doc <close> = html.parse(text, "https://big.test/list")
    local t1 = pyq.now()
    local rows = doc:css("div.row")
    local t2 = pyq.now()
    local links = doc:links()
    local t3 = pyq.now()
    assert.equal(#parts, #rows)
    assert.equal(#parts, #links)
    assert.equal("https://big.test/item/" .. (#parts - 1) .. "?ref=list", links[#links])
    assert.equal("Item 3 & more", rows[4]:css("a")[1]:text())
    assert.equal(#parts, doc:xpath("count(//div[contains(@class, 'r')])"))
    io.stderr:write(("# 5 MB page (%d rows): parse %.3f s, css %.3f s, links %.3f s\n")
      :format(#parts, t1 - t0, t2 - t1, t3 - t2))
  end)

  it("keeps nesting to libxml2's 256 levels without crashing", function()
    local depth = 100000
    local doc <close> = html.parse(("<div>"):rep(depth) .. "x" .. ("</div>"):rep(depth))
    local divs = doc:xpath("count(//div)")
    assert.is_true(divs > 200 and divs < 300, tostring(divs))
    assert.is_string(doc:html())
    assert.is_string(doc:css("div")[1]:text())
  end)

  it("never crashes on random bytes and markup fragments", function()
    local pieces = { "<div", ">", "</", "<a href=\"", "\"", "'", "<!--", "-->", "<![CDATA[", "]]>",
                     "<script>", "</script>", "&", "&#", "&amp", ";", "<table>", "<td>", "<base href=",
                     "\0", "\xff", "\xc3", "é", "<meta charset=", "utf-16", "shift_jis", " ", "=", "x" }
    local seed = 12345
    local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
    for _ = 1, 300 do
      local t = {}
      for j = 1, rand(60) do
        t[j] = rand(4) == 1 and string.char(rand(256) - 1) or pieces[rand(#pieces)]
      end
      local doc <close> = html.parse(table.concat(t), "http://fuzz.test/a/b")
      doc:css("a, div > td, [href]")
      doc:xpath("//@*")
      doc:links()
      for _, n in ipairs(doc:xpath("//*")) do n:text(); n:html(); local _ = n.attr end
    end
  end)
end)
