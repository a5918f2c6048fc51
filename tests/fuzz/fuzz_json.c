/* fuzz_json.c -- libFuzzer target over the JSON codec (host/json.c).
 *
 * Decodes the bytes; when that succeeds, encodes the value and decodes
 * the text (the first encoding makes strings valid UTF-8, which may merge
 * two keys that differed only in invalid bytes), then encodes and decodes
 * twice more: from there the texts must be as long as each other and
 * decode to the same value (key order may differ between two tables with
 * the same keys, so texts are compared by length and value).  The only
 * encode failure allowed is a number that decoded to infinity
 * (1e400).  Bad input must end in an error, never a crash. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "json/json.h"

/* Same type and value, recursively; floats bit for bit. */
static int same (lua_State *L, int a, int b) {
  int ta = lua_type(L, a), n = 0;
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (ta != lua_type(L, b)) return 0;
  switch (ta) {
    case LUA_TNUMBER:
      if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
      if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
      {
        double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return memcmp(&x, &y, sizeof x) == 0;
      }
    case LUA_TTABLE:
      if (!lua_checkstack(L, 8)) abort();
      if (lua_getmetatable(L, a) + lua_getmetatable(L, b) == 2 && !lua_rawequal(L, -1, -2))
        return 0;
      lua_settop(L, b > a ? b : a);
      lua_pushnil(L);
      while (lua_next(L, a)) {
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        if (!same(L, -2, -1)) return 0;
        lua_pop(L, 2);
        n++;
      }
      lua_pushnil(L);
      while (lua_next(L, b)) { lua_pop(L, 1); n--; }
      return n == 0;
    default:
      return lua_rawequal(L, a, b);
  }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static lua_State *L;
  pyq_jbuf b1 = {0}, b2 = {0};
  if (L == NULL) L = luaL_newstate();
  lua_settop(L, 0);
  if (pyq_json_decode(L, (const char *)data, size, size & 1 ? PYQ_JSON_ONE_LINE : 0)) {
    if (!pyq_json_encode(L, 1, &b2, PYQ_JSON_UTF8_ERROR)) lua_pop(L, 1);   /* either way */
    b2.n = 0;
    if (!pyq_json_encode(L, 1, &b1, 0)) {
      if (strstr(lua_tostring(L, -1), "Infinity") == NULL) abort();
    } else {
      if (!pyq_json_decode(L, b1.p, b1.n, 0)) abort();            /* 2 */
      b1.n = 0;
      if (!pyq_json_encode(L, 2, &b1, 0)) abort();
      if (!pyq_json_decode(L, b1.p, b1.n, 0)) abort();            /* 3 */
      if (!pyq_json_encode(L, 3, &b2, 0)) abort();
      if (b1.n != b2.n) abort();
      if (!pyq_json_decode(L, b2.p, b2.n, 0)) abort();            /* 4 */
      if (!same(L, 3, 4)) abort();
    }
  }
  pyq_jbuf_free(&b1);
  pyq_jbuf_free(&b2);
  lua_settop(L, 0);
  return 0;
}
