/* fuzz_html.c -- libFuzzer target over pyq.html (host/html/).
 *
 * The input's first line (up to 80 bytes) is a selector, the rest a page.
 * The selector goes through the CSS translator, whose XPath must then
 * compile whenever it gives one (a translation libxml2 refuses is a bug);
 * the page is parsed with a base URL and queried the way scripts do: the
 * selector as CSS and as XPath (usage errors allowed), fixed selectors,
 * links, and text, html, tag and attr of its first elements.  Then the
 * document is closed, and a node of it must raise.  Anything but a Lua
 * error is a failure: a crash, a sanitizer report, an abort here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include <libxml/xpath.h>
#include "html/html.h"

static const char *const script =
  "local html, sel, page = ...\n"
  "local doc = html.parse(page, 'http://fuzz.test/a/b;p?q#f')\n"
  "pcall(doc.css, doc, sel)\n"
  "pcall(doc.xpath, doc, sel)\n"
  "doc:css('a[href], div > p:nth-child(2n+1), .c #i, [x^=y]')\n"
  "doc:xpath('//@*')\n"
  "doc:xpath('string(/)')\n"
  "doc:links()\n"
  "local nodes = doc:xpath('(//*)[position() <= 16]')\n"
  "for _, n in ipairs(nodes) do\n"
  "  local _ = n.tag, n.attr, n:text(), n:html()\n"
  "  pcall(n.css, n, sel)\n"
  "end\n"
  "doc:html()\n"
  "doc:close()\n"
  "if nodes[1] and pcall(nodes[1].text, nodes[1]) then error('a node read its closed document') end\n"
  "return true\n";

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static lua_State *L;
  const char *p = (const char *)data, *nl = memchr(p, '\n', size < 80 ? size : 80);
  size_t sel = nl ? (size_t)(nl - p) : 0;
  const char *why;
  size_t at;
  char *xpath;
  if (L == NULL) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "pyq.html", luaopen_pyq_html, 0);
    lua_pop(L, 1);
    if (luaL_loadstring(L, script) != LUA_OK) abort();
    lua_setfield(L, LUA_REGISTRYINDEX, "fuzz_html");
    pyq_html_op_limit = 1000000;   /* a pathological expression ends */
  }
  xpath = pyq_html_css(p, sel, &why, &at);
  if (xpath) {
    xmlXPathCompExprPtr comp = xmlXPathCompile((const xmlChar *)xpath);
    if (comp == NULL) abort();
    xmlXPathFreeCompExpr(comp);
    free(xpath);
  } else if (at > sel) abort();
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_html");
  luaL_requiref(L, "pyq.html", luaopen_pyq_html, 0);
  lua_pushlstring(L, p, sel);
  lua_pushlstring(L, p + (nl ? sel + 1 : 0), size - (nl ? sel + 1 : 0));
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg && strstr(msg, "closed document")) abort();   /* the script's own check */
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
