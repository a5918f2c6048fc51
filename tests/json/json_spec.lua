require "busted.runner"()
-- pyq.json: the host's codec (host/json.c).  Numbers keep their kind and
-- value, empty arrays and objects round-trip, bad values get errors that
-- name the path, bad text errors that name the position.
local helper = require "tests.helper"
local json = pyq.json

local function failure(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

describe("pyq.json numbers", function()
  it("decodes integers as Lua integers, exact over 64 bits", function()
    local v = json.decode("[5, 0, -7, 9223372036854775807, -9223372036854775808, 1234567890123456789]")
    for i = 1, #v do assert.equal("integer", math.type(v[i])) end
    assert.equal(5, v[1])
    assert.equal(math.maxinteger, v[4])
    assert.equal(math.mininteger, v[5])
    assert.equal(1234567890123456789, v[6])
    assert.equal("/detail/5", "/detail/" .. v[1])
  end)

  it("decodes numbers with a fraction or exponent, and beyond 64 bits, as floats", function()
    local v = json.decode("[1.5, 1e2, 2E-3, 0.1, -0.0, 9223372036854775808, 123456789012345678901234]")
    for i = 1, #v do assert.equal("float", math.type(v[i])) end
    assert.equal(1.5, v[1])
    assert.equal(100.0, v[2])
    assert.equal(0.002, v[3])
    assert.equal(0.1, v[4])
    assert.equal(2^63, v[6])
    assert.equal(1.2345678901234568e23, v[7])
  end)

  it("encodes integers exactly and floats so that they read back equal", function()
    assert.equal("[1234567890123456789,-9223372036854775808,9223372036854775807]",
                 json.encode({ 1234567890123456789, math.mininteger, math.maxinteger }))
    assert.equal("[1.0,2.5,-0.0,0.1,0.30000000000000004,1e+300,1.2345678901234568e+17]",
                 json.encode({ 1.0, 2.5, -0.0, 0.1, 0.1 + 0.2, 1e300, 123456789012345678.0 }))
    for _, x in ipairs({ 1 / 3, math.pi, 2^-1074, 1.7976931348623157e308, 1e16, 5e-324, 123.456 }) do
      local back = json.decode(json.encode({ x }))[1]
      assert.equal("float", math.type(back))
      assert.equal(x, back)
    end
    local id = json.decode('{"id":1234567890123456789}')
    assert.equal('{"id":1234567890123456789}', json.encode(id))
  end)

  it("refuses NaN and infinities, naming the path", function()
    assert.equal("pyq.json.encode: cannot encode NaN at .stats.ratio",
                 failure(json.encode, { stats = { ratio = 0 / 0 } }))
    assert.matches("cannot encode Infinity at .a[2]", failure(json.encode, { a = { 1, math.huge } }), 1, true)
    assert.matches("cannot encode -Infinity at .", failure(json.encode, -math.huge), 1, true)
  end)

  it("reads numbers whatever the C locale says", function()
    local old = os.setlocale()
    for _, loc in ipairs({ "de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "C" }) do
      if os.setlocale(loc, "numeric") then break end
    end
    local ok, err = pcall(function()
      assert.equal(1.5, json.decode("1.5"))
      assert.equal(0.30000000000000004, json.decode("0.30000000000000004"))
      assert.equal("[1.5,0.30000000000000004]", json.encode({ 1.5, 0.1 + 0.2 }))
    end)
    os.setlocale(old, "numeric")
    assert(ok, err)
  end)
end)

describe("pyq.json arrays and objects", function()
  it("round-trips empty arrays and objects", function()
    for _, text in ipairs({ '{"tags":[]}', '{"o":{}}', '[]', '{}', '[[],{},[{}]]' }) do
      assert.equal(text, json.encode(json.decode(text)))
    end
    assert.is_true(json.is_array(json.decode("[]")))
    assert.is_true(json.is_object(json.decode("{}")))
    assert.is_false(json.is_array(json.decode("{}")))
    assert.is_false(json.is_object({}))
  end)

  it("encodes an unmarked empty table as [] and marks tables on request", function()
    assert.equal('{"list":[]}', json.encode({ list = {} }))
    assert.equal('{"o":{}}', json.encode({ o = json.object{} }))
    assert.equal('{"o":{}}', json.encode({ o = json.object() }))
    assert.equal("[]", json.encode(json.array()))
    local t = { x = 1 }
    assert.equal(t, json.object(t))
    assert.equal('{"1":"a","2":"b"}', json.encode(json.object{ "a", "b" }))
    assert.matches("pyq.json.array: expected a table, got number", failure(json.array, 5), 1, true)
    assert.matches("pyq.json.object: the table has a metatable of its own",
                   failure(json.object, setmetatable({}, {})), 1, true)
  end)

  it("encodes 1..n as an array and string keys as an object, however built", function()
    assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equal("[1,2,3]", json.encode({ [3] = 3, [1] = 1, [2] = 2 }))
    local t = {}
    for i = 100, 1, -1 do t[i] = i end
    assert.equal(json.encode({ table.unpack(t) }), json.encode(t))
    assert.equal('{"a":1}', json.encode({ a = 1 }))
  end)

  it("refuses sparse arrays, mixed keys and keys of other types, naming the path", function()
    assert.matches("sparse array (2 values, largest index 3) at .a",
                   failure(json.encode, { a = { 1, nil, 3 } }), 1, true)
    assert.matches("both string and integer keys", failure(json.encode, { 1, 2, x = 3 }), 1, true)
    assert.matches("both string and integer keys", failure(json.encode, { x = 3, [1] = 2 }), 1, true)
    assert.matches("float key (1.5) at .", failure(json.encode, { [1.5] = 1 }), 1, true)
    assert.matches("boolean key at .b[1]", failure(json.encode, { b = { { [true] = 1 } } }), 1, true)
    assert.matches("table key", failure(json.encode, { [{}] = 1 }), 1, true)
    assert.matches("cannot encode a function at .f", failure(json.encode, { f = print }), 1, true)
    assert.matches("cannot encode a userdata at .", failure(json.encode, io.stdout), 1, true)
    assert.matches('at ["a key"]', failure(json.encode, { ["a key"] = print }), 1, true)
  end)

  it("refuses cycles and nesting deeper than 1000, both ways", function()
    local c = { a = { b = {} } }
    c.a.b.c = c
    assert.matches("cannot encode a cycle at .a.b.c", failure(json.encode, c), 1, true)
    local deep = {}
    local cur = deep
    for _ = 1, 1000 do cur[1] = {}; cur = cur[1] end
    assert.matches("nested deeper than 1000", failure(json.encode, deep), 1, true)
    assert.equal(string.rep("[", 1000) .. string.rep("]", 1000),
                 json.encode(json.decode(string.rep("[", 1000) .. string.rep("]", 1000))))
    assert.matches("nesting deeper than 1000",
                   failure(json.decode, string.rep("[", 100000) .. string.rep("]", 100000)), 1, true)
    -- a shared table that is not a cycle is fine
    local shared = { 1 }
    assert.equal('[[1],[1]]', json.encode({ shared, shared }))
  end)

  it("decodes null to pyq.json.null (cjson's) and encodes it back", function()
    local v = json.decode('{"a":[1,null,3]}')
    assert.equal(json.null, v.a[2])
    assert.equal(require("cjson").null, json.null)
    assert.equal('{"a":[1,null,3]}', json.encode(v))
    assert.equal("null", json.encode(nil))
  end)

  it("never runs metamethods while encoding", function()
    local called = false
    local t = setmetatable({ x = 1 }, {
      __index = function() called = true end,
      __pairs = function() called = true; return next, {}, nil end,
      __len = function() called = true; return 5 end,
    })
    assert.equal('{"x":1}', json.encode(t))
    assert.is_false(called)
  end)
end)

describe("pyq.json strings", function()
  it("escapes what RFC 8259 says and decodes escapes, surrogate pairs included", function()
    assert.equal([["a\"b\\c\n\t\u0001\u001f/é"]], json.encode('a"b\\c\n\t\1\31/é'))
    assert.equal('a"b\\c\n\t\1/é😀', json.decode([["a\"b\\c\n\t\u0001\/\u00e9\ud83d\ude00"]]))
    assert.equal("\0", json.decode([["\u0000"]]))
  end)

  it("decodes a lone surrogate as U+FFFD", function()
    assert.equal("\u{FFFD}x", json.decode([["\ud800x"]]))
    assert.equal("\u{FFFD}", json.decode([["\udc00"]]))
    assert.equal("\u{FFFD}\u{FFFD}", json.decode([["\ud800\ud800"]]))
  end)

  it("replaces invalid UTF-8 by U+FFFD, or raises when asked", function()
    assert.equal('"caf\u{FFFD} \u{FFFD}\u{FFFD} ok"', json.encode("caf\xe9 \xff\xfe ok"))
    assert.equal('"\u{FFFD}\u{FFFD}\u{FFFD}"', json.encode("\xed\xa0\x80"))   -- no surrogates
    assert.equal('"\u{FFFD}"', json.encode("\xf0\x9f\x98"))   -- a cut sequence: one U+FFFD
    assert.equal('"😀"', json.encode("😀", { invalid_utf8 = "error" }))
    assert.matches("pyq.json.encode: invalid UTF-8 (byte 0xE9 at offset 3 of a string) at .name",
                   failure(json.encode, { name = "caf\xe9" }, { invalid_utf8 = "error" }), 1, true)
    assert.matches("invalid_utf8 must be", failure(json.encode, 1, { invalid_utf8 = "drop" }), 1, true)
    assert.matches("unknown option 'utf8'", failure(json.encode, 1, { utf8 = 1 }), 1, true)
  end)

  it("keeps raw bytes inside decoded strings", function()
    assert.equal("caf\xe9", json.decode('"caf\xe9"'))
  end)

  it("writes lines Python's json module reads back", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir " .. dir)
    finally(function() os.execute("rm -rf " .. dir) end)
    local f = assert(io.open(dir .. "/x.json", "w"))
    f:write(json.encode({ s = "caf\xe9\0\1 \xff", n = 1234567890123456789, f = 0.1, e = {}, o = json.object() }))
    f:close()
    local out = helper.shell("python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
      .. "print(ascii(d[\"s\"]), d[\"n\"], d[\"f\"], d[\"e\"], d[\"o\"])' " .. dir .. "/x.json")
    assert.equal("'caf\\ufffd\\x00\\x01 \\ufffd' 1234567890123456789 0.1 [] {}\n", out)
  end)
end)

describe("pyq.json.decode errors", function()
  it("names the line, column and byte", function()
    assert.equal("pyq.json.decode: unexpected character 'x' at line 1 column 7 (byte 7)",
                 failure(json.decode, '{"a": x}'))
    assert.matches("unexpected character 'x' at line 3 column 8 (byte 20)",
                   failure(json.decode, '{\n  "a": 1,\n  "b": x}'), 1, true)
  end)

  it("refuses empty input, trailing garbage and malformed text", function()
    assert.equal("pyq.json.decode: empty input", failure(json.decode, ""))
    assert.equal("pyq.json.decode: empty input", failure(json.decode, "  \n "))
    assert.matches("unexpected character 'x' after the value", failure(json.decode, "[1] x"), 1, true)
    assert.matches("after the value", failure(json.decode, "1 2"), 1, true)
    for _, bad in ipairs({ "[1,]", "{\"a\"}", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "+1",
                           "[1", "{", "\"abc", "\"\\x\"", "\"\\u12\"", "tru", "nul", "NaN",
                           "Infinity", "[1 2]", "{1:2}", "'a'", "\0" }) do
      local ok, err = pcall(json.decode, bad)
      assert(not ok, "decoded: " .. bad)
      assert.matches("^pyq%.json%.decode: ", err)
    end
    assert.equal("pyq.json.decode: expected a string, got number", failure(json.decode, 5))
  end)

  it("is what res:json() and the json request option use", function()
    local api = helper.start_api()
    finally(api.stop)
    local res = pyq.http.post(api.base .. "/echo", { json = { list = {}, id = 1234567890123456789 } })
    local body = json.decode(res:json().body)
    assert.equal(1234567890123456789, body.id)
    assert.equal("integer", math.type(body.id))
    assert.is_true(json.is_array(body.list))
    assert.matches('"list":[]', res:json().body, 1, true)
    local status = pyq.http.get(api.base .. "/status/201"):json()
    assert.equal("integer", math.type(status.status))
  end)
end)
