require "busted.runner"()
-- pyq.url (host/http/url.c): URLs parsed, resolved and built by libcurl's
-- URL API, and percent-encoding of one component.
local url = pyq.url

local function failure(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("pyq.url", function()
  it("is a submodule of pyq and a module of its own", function()
    assert.equal(url, require "pyq.url")
    for _, name in ipairs { "parse", "join", "build", "encode", "decode" } do
      assert.is_function(url[name], name)
    end
  end)
end)

describe("pyq.url.join", function()
  local base = "http://a/b/c/d;p?q"

  -- RFC 3986, 5.4.1 and 5.4.2, as libcurl resolves them
  local examples = {
    { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" }, { "g/", "http://a/b/c/g/" },
    { "/g", "http://a/g" }, { "?y", "http://a/b/c/d;p?y" }, { "g?y", "http://a/b/c/g?y" },
    { "#s", "http://a/b/c/d;p?q#s" }, { "g#s", "http://a/b/c/g#s" },
    { "g?y#s", "http://a/b/c/g?y#s" }, { ";x", "http://a/b/c/;x" }, { "g;x", "http://a/b/c/g;x" },
    { "g;x?y#s", "http://a/b/c/g;x?y#s" }, { "", "http://a/b/c/d;p?q" }, { ".", "http://a/b/c/" },
    { "./", "http://a/b/c/" }, { "..", "http://a/b/" }, { "../", "http://a/b/" },
    { "../g", "http://a/b/g" }, { "../..", "http://a/" }, { "../../", "http://a/" },
    { "../../g", "http://a/g" },
    -- abnormal examples
    { "../../../g", "http://a/g" }, { "../../../../g", "http://a/g" }, { "/./g", "http://a/g" },
    { "/../g", "http://a/g" }, { "g.", "http://a/b/c/g." }, { ".g", "http://a/b/c/.g" },
    { "g..", "http://a/b/c/g.." }, { "..g", "http://a/b/c/..g" }, { "./../g", "http://a/b/g" },
    { "./g/.", "http://a/b/c/g/" }, { "g/./h", "http://a/b/c/g/h" }, { "g/../h", "http://a/b/c/h" },
    { "g;x=1/./y", "http://a/b/c/g;x=1/y" }, { "g;x=1/../y", "http://a/b/c/y" },
    { "g?y/./x", "http://a/b/c/g?y/./x" }, { "g?y/../x", "http://a/b/c/g?y/../x" },
    { "g#s/./x", "http://a/b/c/g#s/./x" }, { "g#s/../x", "http://a/b/c/g#s/../x" },
  }

  for _, ex in ipairs(examples) do
    it(("resolves %q as RFC 3986 says"):format(ex[1]), function()
      assert.equal(ex[2], url.join(base, ex[1]))
    end)
  end

  it("gives //g with the path curl normalizes an empty one to (RFC: http://g)", function()
    assert.equal("http://g/", url.join(base, "//g"))
  end)

  it("refuses g:h and http:g (no authority: curl takes only scheme:// URLs)", function()
    for _, ref in ipairs { "g:h", "http:g" } do
      local err = failure(url.join, base, ref)
      assert.equal("url", err.kind)
      assert.equal(ref, err.url)
      assert.is_string(err.reason)
      assert.matches('pyq.url.join: curl refuses ref "' .. ref .. '" (base "' .. base .. '"): '
        .. err.reason, tostring(err), 1, true)
    end
  end)

  it("keeps everything of the base but its fragment for '' and '#frag'", function()
    assert.equal("http://a/b/c/d;p?q", url.join("http://a/b/c/d;p?q#old", ""))
    assert.equal("http://a/b/c/d;p?q#new", url.join("http://a/b/c/d;p?q#old", "#new"))
  end)

  it("takes an absolute ref as it is, of any scheme with an authority", function()
    assert.equal("https://other.example/x?y=1", url.join(base, "https://other.example/x?y=1"))
    assert.equal("wss://h:9000/s", url.join(base, "wss://h:9000/s"))
  end)

  it("resolves against the base's port, credentials and scheme", function()
    assert.equal("https://u:p@h:8443/a/next", url.join("https://u:p@h:8443/a/page", "next"))
    assert.equal("https://cdn.example/i.png", url.join("https://h/a", "//cdn.example/i.png"))
  end)

  it("refuses a base curl refuses, naming it: kind url, curl's reason", function()
    local err = failure(function() return url.join("not a url", "g") end)
    assert.equal("url", err.kind)
    assert.equal("not a url", err.url)
    assert.matches('url_spec.lua:%d+: pyq.url.join: curl refuses base "not a url": ', tostring(err))
  end)

  it("refuses a result curl would not parse", function()
    local err = failure(url.join, "http://a/", "#a b")
    assert.equal("url", err.kind)
    assert.equal("Bad fragment", err.reason)
  end)

  it("checks its arguments: usage errors naming base and ref", function()
    local err = failure(url.join, nil, "g")
    assert.equal("usage", err.kind)
    assert.matches("pyq.url.join: base must be a string, got nil", tostring(err), 1, true)
    err = failure(url.join, base, 42)
    assert.equal("usage", err.kind)
    assert.matches("pyq.url.join: ref must be a string, got 42", tostring(err), 1, true)
    err = failure(url.join, base, "g\0h")
    assert.matches("pyq.url.join: ref contains a NUL byte", tostring(err), 1, true)
  end)
end)

describe("pyq.url.parse", function()
  it("splits a URL into its parts, still percent-encoded, port an integer", function()
    local t = url.parse("https://us%40er:p%3Ass@Example.COM:8443/a/b%20c/?x=1&y=%C3%A9#top")
    assert.same({ scheme = "https", user = "us%40er", password = "p%3Ass", host = "Example.COM",
                  port = 8443, path = "/a/b%20c/", query = "x=1&y=%C3%A9", fragment = "top" }, t)
    assert.is_true(math.type(t.port) == "integer")
  end)

  it("leaves out the parts a URL does not have; port only when written", function()
    assert.same({ scheme = "http", host = "h", path = "/" }, url.parse("http://h"))
    assert.same({ scheme = "https", host = "h", path = "/x" }, url.parse("https://h/x?#"))
  end)

  it("normalizes as curl does before a transfer: scheme case, dot segments", function()
    local t = url.parse("HTTP://h/a/./b/../c")
    assert.equal("http", t.scheme)
    assert.equal("/a/c", t.path)
  end)

  it("reads IPv6 hosts with their brackets and zone ids apart", function()
    assert.same({ scheme = "http", host = "[::1]", port = 8080, path = "/" }, url.parse("http://[::1]:8080/"))
    local t = url.parse("http://[fe80::1%25eth0]/")
    assert.equal("[fe80::1]", t.host)
    assert.equal("eth0", t.zoneid)
  end)

  it("takes any scheme with an authority, and file URLs", function()
    assert.same({ scheme = "foo", host = "x", path = "/y" }, url.parse("foo://x/y"))
    assert.same({ scheme = "file", path = "/etc/hosts" }, url.parse("file:///etc/hosts"))
  end)

  it("refuses what curl parses but writes back as a URL it refuses", function()
    -- "file:x//y" is written "file://x//y"; port 0 cannot be set again
    for _, bad in ipairs { "file:W//etc/hosts", "http://h:0/", "http://h:00/x", "http:/q%o/" } do
      local err = failure(url.parse, bad)
      assert.equal("url", err.kind, bad)
      assert.equal(bad, err.url)
    end
    assert.equal("port 0", failure(url.parse, "http://h:0/").reason)
    assert.equal("url", failure(url.join, "http://h:0/a", "b").kind)
    assert.equal("http://h:1/b", url.join("http://h:0/a", "http://h:1/b"))
  end)

  it("reads file:/// (curl 7.88 writes its empty path as \"(nil)\")", function()
    assert.same({ scheme = "file", path = "/" }, url.parse("file:///"))
    assert.equal("file:///", url.build(url.parse("file:///a/..")))
  end)

  it("raises kind url with curl's reason and the URL for what curl refuses", function()
    for _, bad in ipairs { "http://a/b c", "mailto:someone@example.com", "http://h:99999/",
                           "http://[::1/", "h/no/scheme", "" } do
      local err = failure(function() return url.parse(bad) end)
      assert.equal("url", err.kind, bad)
      assert.equal(bad, err.url)
      assert.matches('url_spec.lua:%d+: pyq.url.parse: curl refuses "', tostring(err))
      assert.matches(err.reason, tostring(err), 1, true)
    end
  end)

  it("cuts a long URL in the message but keeps it whole in err.url", function()
    local long = "http://h/" .. ("x"):rep(300) .. " y"
    local err = failure(url.parse, long)
    assert.equal(long, err.url)
    assert.matches('..."', tostring(err), 1, true)
    assert.is_true(#tostring(err) < 300)
  end)

  it("refuses what is not a string: usage", function()
    for _, v in ipairs { 1, true, {} } do
      local err = failure(url.parse, v)
      assert.equal("usage", err.kind)
      assert.matches("pyq.url.parse: the URL must be a string", tostring(err), 1, true)
    end
    assert.equal("usage", failure(url.parse).kind)
    assert.equal("usage", failure(url.parse, "http://h/\0x").kind)
  end)
end)

describe("pyq.url.build", function()
  it("is parse's inverse", function()
    for _, u in ipairs {
      "http://[fe80::1%25eth0]:8080/p?q",
      "https://us%40er:p%3ass@Example.COM:8443/a/b%20c/?x=1&y=%c3%a9#top", "http://h/",
      "http://[::1]:8080/x", "foo://x/y", "file:///etc/hosts", "http://h/?q", "http://u@h/#f",
    } do
      assert.equal(u, url.build(url.parse(u)))
      assert.same(url.parse(u), url.parse(url.build(url.parse(u))))
    end
  end)

  it("writes the hex digits of escapes in lower case, as curl 7.88 does (the same URL)", function()
    local t = url.parse("http://h/%7Ea?q=%C3%A9#%2F")
    assert.equal("/%7Ea", t.path)
    assert.equal("http://h/%7ea?q=%c3%a9#%2f", url.build(t))
    assert.equal(url.decode(t.query), url.decode(url.parse(url.build(t)).query))
  end)

  it("builds from parts given by hand; the path gets its leading slash", function()
    assert.equal("https://api.example:8443/v1/items?page=2#x",
      url.build { scheme = "https", host = "api.example", port = 8443, path = "/v1/items",
                  query = "page=2", fragment = "x" })
    assert.equal("http://h/a/b", url.build { scheme = "http", host = "h", path = "a/b" })
    assert.equal("http://h/?q=" .. url.encode("a b&c"),
      url.build { scheme = "http", host = "h", query = "q=" .. url.encode("a b&c") })
  end)

  it("refuses a part that would read back as another: usage naming it", function()
    local err = failure(url.build, { scheme = "http", host = "h", query = "a#b" })
    assert.equal("usage", err.kind)
    assert.matches('"http://h/?a#b" has query "a", not "a#b"', tostring(err), 1, true)
    err = failure(url.build, { scheme = "http", host = "h", path = "/a?b" })
    assert.matches('has query "b", not none', tostring(err), 1, true)
    err = failure(url.build, { scheme = "http", host = "h", user = "a:b" })
    assert.matches('has user "a", not "a:b"', tostring(err), 1, true)
  end)

  it("refuses bad fields with usage errors naming the field", function()
    local cases = {
      { { host = "h" }, "pyq.url.build: scheme is missing" },
      { { scheme = "http", host = "h", hostname = "x" }, 'pyq.url.build: unknown field "hostname"' },
      { { scheme = "http", host = "h", [1] = "x" }, "pyq.url.build: unknown field 1" },
      { { scheme = "http", host = "h", port = 0 }, "pyq.url.build: port must be an integer from 1 to 65535, got 0" },
      { { scheme = "http", host = "h", port = 65536 }, "port must be an integer from 1 to 65535, got 65536" },
      { { scheme = "http", host = "h", port = "80" }, 'port must be an integer from 1 to 65535, got "80"' },
      { { scheme = "http", host = "h", port = 80.5 }, "port must be an integer from 1 to 65535, got 80.5" },
      { { scheme = "http", host = 7 }, "pyq.url.build: host must be a string, got 7" },
      { { scheme = "http", host = "h", path = false }, "pyq.url.build: path must be a string, got false" },
      { { scheme = "http", host = "a b" }, 'pyq.url.build: curl refuses host "a b": Bad hostname' },
      { { scheme = "http", host = "h", path = "/a b" }, 'pyq.url.build: curl refuses path "/a b" in "http://h/a b": Bad path' },
      { { scheme = "http", host = "h", fragment = "a b" }, "pyq.url.build: curl refuses fragment" },
      { { scheme = "ht tp", host = "h" }, 'pyq.url.build: curl refuses scheme "ht tp"' },
      { { scheme = "http" }, "pyq.url.build: host: No host part in the URL" },
      { { scheme = "http", host = "h\0i" }, "pyq.url.build: host contains a NUL byte" },
    }
    for _, case in ipairs(cases) do
      local err = failure(function() return url.build(case[1]) end)
      assert.equal("usage", err.kind, case[2])
      assert.matches(case[2], tostring(err), 1, true)
      assert.matches("url_spec.lua:%d+: ", tostring(err))
    end
    assert.matches("expected a table of URL parts, got \"http://h/\"",
      tostring(failure(url.build, "http://h/")), 1, true)
  end)

  it("writes no empty query or fragment, as curl does not", function()
    assert.equal("http://h/", url.build { scheme = "http", host = "h", query = "", fragment = "" })
  end)
end)

describe("pyq.url.encode and decode", function()
  it("encode every byte but the unreserved ones (RFC 3986, 2.3)", function()
    assert.equal("AZaz09-._~", url.encode("AZaz09-._~"))
    assert.equal("a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh%25", url.encode("a b/c?d#e&f=g+h%"))
    assert.equal("%C3%A9%00%FF", url.encode("\xC3\xA9\0\xFF"))
    assert.equal("", url.encode(""))
  end)

  it("decode %XX in either case; + stays a plus", function()
    assert.equal("a b/c\0\xff+", url.decode("a%20b%2fc%00%FF+"))
  end)

  it("are inverse for every byte", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, url.decode(url.encode(all)))
  end)

  it("decode keeps a % that starts no escape, as curl and Python's unquote do", function()
    assert.equal("100% %zz %4 %", url.decode("100% %zz %4 %"))
    assert.equal("%A", url.decode("%%41"))
  end)

  it("handle strings larger than curl takes at once (8 MB)", function()
    local s = ("\1 x"):rep(4 * 1024 * 1024)   -- 12 MiB, 8 MiB of it to encode
    local e = url.encode(s)
    assert.equal(#s + 2 * 8 * 1024 * 1024, #e)
    assert.equal(s, url.decode(e))
  end)

  it("refuse what is not a string: usage", function()
    assert.matches("pyq.url.encode: expected a string, got 5", tostring(failure(url.encode, 5)), 1, true)
    assert.equal("usage", failure(url.decode, nil).kind)
  end)
end)

describe("the handle userdata", function()
  it("cannot be reached to free twice", function()
    -- every call frees its curl handle through __gc; a script never gets it
    for _ = 1, 1000 do pcall(url.parse, "http://a/b c") end
    collectgarbage()
    collectgarbage()
    assert.equal("http://h/", url.build(url.parse("http://h")))
  end)
end)
