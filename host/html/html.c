/* html.c -- pyq.html: HTML documents parsed by libxml2, queried with XPath
 * and CSS selectors.
 *
 * pyq.html.parse(text [, base_url]) runs libxml2's HTML parser (recover,
 * no network, no error output) into a document userdata; doc:xpath() and
 * doc:css() (css.c translates the selector) evaluate against it and give
 * elements as node userdata, other nodes as their text.  A node holds its
 * document in its user value, so the tree lives as long as any node of
 * it; doc:close() (or <close>) frees the tree at once, after which every
 * node of it raises instead of reading freed memory.
 *
 * Lua may run finalizers at any allocation, and a finalizer may close the
 * document a method is walking: so every method that reads the tree while
 * it pushes values marks the document busy, and a close while busy only
 * marks it closed, the tree being freed when the last method ends.  What a
 * method holds outside Lua (XPath context and result, output buffer, URL
 * handles) sits in a scratch userdata whose __gc frees it should Lua raise
 * half-way (out of memory).
 *
 * doc:links() resolves the href of every <a> and <area> against the base
 * URL given to parse and the document's first <base href> with libcurl's
 * URL API (RFC 3986), keeping the http and https ones, each once. */
#include <math.h>
#include <limits.h>
#include <string.h>
#include <curl/curl.h>
#include <libxml/HTMLparser.h>
#include <libxml/HTMLtree.h>
#include <libxml/xpath.h>
#include <lauxlib.h>
#include "html.h"
#include "lua/check.h"
#include "lua/error.h"

#define DOC "pyq.html.Document"
#define NODE "pyq.html.Node"
#define SCRATCH "pyq.html.scratch"

#define PARSE_OPTIONS (HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | \
  HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_NODEFDTD | \
  HTML_PARSE_COMPACT)

unsigned long pyq_html_op_limit = 0;

typedef struct doc {
  htmlDocPtr doc;   /* NULL once freed */
  int closed;       /* doc:close() was called */
  int busy;         /* methods reading the tree now */
} doc;

typedef struct node { xmlNodePtr n; } node;   /* user value 1: its doc */

typedef struct scratch {
  doc *d;           /* busy while set (user value 1 keeps it alive) */
  xmlXPathContextPtr ctx;
  xmlXPathObjectPtr obj;
  xmlOutputBufferPtr out;
  CURLU *base, *url;
  char *str;        /* from curl_url_get */
  char *xpath;      /* from pyq_html_css */
} scratch;

static void free_tree (doc *d) {
  if (d->doc) xmlFreeDoc(d->doc);
  d->doc = NULL;
}

static void free_result (scratch *s) {
  if (s->obj) xmlXPathFreeObject(s->obj);
  if (s->ctx) xmlXPathFreeContext(s->ctx);
  s->obj = NULL;
  s->ctx = NULL;
}

/* Frees what s holds and ends its method's hold on the document. */
static void done (scratch *s) {
  free_result(s);
  if (s->out) xmlOutputBufferClose(s->out);
  curl_url_cleanup(s->base);
  curl_url_cleanup(s->url);
  curl_free(s->str);
  free(s->xpath);
  s->out = NULL; s->base = s->url = NULL; s->str = s->xpath = NULL;
  if (s->d) {
    doc *d = s->d;
    s->d = NULL;
    if (--d->busy == 0 && d->closed) free_tree(d);
  }
}

static int scratch_gc (lua_State *L) {
  done(luaL_checkudata(L, 1, SCRATCH));
  return 0;
}

/* Pushes a scratch holding the document at docidx busy. */
static scratch *acquire (lua_State *L, int docidx) {
  doc *d = lua_touserdata(L, docidx);
  scratch *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SCRATCH);
  lua_pushvalue(L, docidx);
  lua_setiuservalue(L, -2, 1);
  s->d = d;
  d->busy++;
  return s;
}

/* ---- self -------------------------------------------------------------- */

static doc *check_doc (lua_State *L, const char *fname) {
  doc *d = luaL_testudata(L, 1, DOC);
  if (d == NULL)
    pyq_usage(L, "%s: bad self (a pyq.html document expected, got %s)", fname, pyq_got(L, 1));
  return d;
}

/* The context node of a doc or node method at 1; pushes its document
 * (*docidx) and names the method "doc:<m>" or "node:<m>" in *fname. */
static xmlNodePtr self (lua_State *L, const char *m, char *fname, size_t size,
                        int *docidx) {
  doc *d = luaL_testudata(L, 1, DOC);
  node *u = NULL;
  if (d) lua_pushvalue(L, 1);
  else if ((u = luaL_testudata(L, 1, NODE)) != NULL) {
    lua_getiuservalue(L, 1, 1);
    d = lua_touserdata(L, -1);
  }
  snprintf(fname, size, "%s:%s", u ? "node" : "doc", m);
  if (d == NULL)
    pyq_usage(L, "%s: bad self (a pyq.html document or node expected, got %s)", fname,
              pyq_got(L, 1));
  if (d->closed)
    pyq_usage(L, u ? "%s: the node's document is closed" : "%s: the document is closed", fname);
  *docidx = lua_gettop(L);
  return u ? u->n : (xmlNodePtr)d->doc;
}

/* ---- values ------------------------------------------------------------ */

static void push_node (lua_State *L, xmlNodePtr n, int docidx) {
  node *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->n = n;
  luaL_setmetatable(L, NODE);
  lua_pushvalue(L, docidx);
  lua_setiuservalue(L, -2, 1);
}

/* The text of a node: for elements, documents and attributes the text
 * nodes below it in document order (walked without recursion, however
 * deep the tree); for text, comments and processing instructions their
 * content. */
static void push_text (lua_State *L, xmlNodePtr top) {
  luaL_Buffer b;
  xmlNodePtr n;
  switch (top->type) {
    case XML_ELEMENT_NODE: case XML_ATTRIBUTE_NODE:
    case XML_DOCUMENT_NODE: case XML_HTML_DOCUMENT_NODE:
      break;
    case XML_TEXT_NODE: case XML_CDATA_SECTION_NODE: case XML_COMMENT_NODE: case XML_PI_NODE:
      lua_pushstring(L, top->content ? (const char *)top->content : "");
      return;
    default:
      lua_pushliteral(L, "");
      return;
  }
  luaL_buffinit(L, &b);
  for (n = top->children; n != NULL; ) {
    if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content)
      luaL_addstring(&b, (const char *)n->content);
    if (n->type == XML_ELEMENT_NODE && n->children) { n = n->children; continue; }
    while (n != top && n->next == NULL) n = n->parent;
    if (n == top) break;
    n = n->next;
  }
  luaL_pushresult(&b);
}

/* An XPath node: elements and documents as nodes, the rest as text. */
static void push_item (lua_State *L, xmlNodePtr n, int docidx) {
  switch (n->type) {
    case XML_ELEMENT_NODE: case XML_DOCUMENT_NODE: case XML_HTML_DOCUMENT_NODE:
      push_node(L, n, docidx);
      break;
    case XML_NAMESPACE_DECL: {
      const xmlChar *href = ((xmlNsPtr)n)->href;
      lua_pushstring(L, href ? (const char *)href : "");
      break;
    }
    default:
      push_text(L, n);
  }
}

static void push_number (lua_State *L, double x) {
  lua_Integer i;
  if (x == floor(x) && lua_numbertointeger(x, &i)) lua_pushinteger(L, i);
  else lua_pushnumber(L, x);
}

static void push_result (lua_State *L, xmlXPathObjectPtr obj, int docidx) {
  switch (obj->type) {
    case XPATH_NODESET: case XPATH_XSLT_TREE: {
      xmlNodeSetPtr set = obj->nodesetval;
      int i, n = set ? set->nodeNr : 0;
      lua_createtable(L, n, 0);
      for (i = 0; i < n; i++) {
        push_item(L, set->nodeTab[i], docidx);
        lua_rawseti(L, -2, i + 1);
      }
      break;
    }
    case XPATH_BOOLEAN: lua_pushboolean(L, obj->boolval); break;
    case XPATH_NUMBER: push_number(L, obj->floatval); break;
    case XPATH_STRING:
      lua_pushstring(L, obj->stringval ? (const char *)obj->stringval : "");
      break;
    default: lua_pushnil(L);
  }
}

/* ---- XPath ------------------------------------------------------------- */

static void silent (void *ud, xmlErrorPtr e) { (void)ud; (void)e; }
static void quiet (void *ud, const char *fmt, ...) { (void)ud; (void)fmt; }

/* Evaluates expr from context node n into s->obj; or returns 0 and pushes
 * libxml2's reason (its errors reach the silent structured handler, which
 * leaves them in xmlGetLastError). */
static int eval (lua_State *L, scratch *s, xmlNodePtr n, const char *expr) {
  xmlErrorPtr e;
  free_result(s);
  s->ctx = xmlXPathNewContext(s->d->doc);
  if (s->ctx == NULL) luaL_error(L, "not enough memory");
  s->ctx->node = n;
  s->ctx->opLimit = pyq_html_op_limit;
  xmlResetLastError();
  s->obj = xmlXPathEvalExpression((const xmlChar *)expr, s->ctx);
  if (s->obj == NULL) {
    const char *why = (e = xmlGetLastError()) && e->message ? e->message : "";
    size_t len = strlen(why);
    while (len > 0 && (why[len - 1] == '\n' || why[len - 1] == ' ')) len--;
    if (len) lua_pushlstring(L, why, len);
    else lua_pushliteral(L, "invalid expression");
    if (len && e->str1 && e->int1 >= 0)
      lua_pushfstring(L, " at offset %d", e->int1);
    else lua_pushliteral(L, "");
    lua_concat(L, 2);
    return 0;
  }
  return 1;
}

static const char *check_string (lua_State *L, int arg, const char *fname,
                                 const char *what) {
  size_t len;
  const char *s;
  if (lua_type(L, arg) != LUA_TSTRING)
    pyq_usage(L, "%s: %s must be a string, got %s", fname, what, pyq_got(L, arg));
  s = lua_tolstring(L, arg, &len);
  if (strlen(s) != len) pyq_usage(L, "%s: %s contains a NUL byte", fname, what);
  return s;
}

/* doc:xpath(expr), node:xpath(expr) */
static int m_xpath (lua_State *L) {
  char fname[32];
  int docidx;
  xmlNodePtr n;
  const char *expr;
  scratch *s;
  lua_settop(L, 2);   /* self pushes the document above the arguments */
  n = self(L, "xpath", fname, sizeof fname, &docidx);
  expr = check_string(L, 2, fname, "expression");
  s = acquire(L, docidx);
  if (!eval(L, s, n, expr)) {
    done(s);
    return pyq_usage(L, "%s: bad XPath expression %s: %s", fname, pyq_got(L, 2),
                     lua_tostring(L, -1));
  }
  push_result(L, s->obj, docidx);
  done(s);
  return 1;
}

/* doc:css(selector), node:css(selector) */
static int m_css (lua_State *L) {
  char fname[32];
  int docidx;
  const char *why;
  size_t len, at;
  xmlNodePtr n;
  const char *sel;
  scratch *s;
  lua_settop(L, 2);   /* self pushes the document above the arguments */
  n = self(L, "css", fname, sizeof fname, &docidx);
  if (lua_type(L, 2) != LUA_TSTRING)
    return pyq_usage(L, "%s: selector must be a string, got %s", fname, pyq_got(L, 2));
  sel = lua_tolstring(L, 2, &len);
  s = acquire(L, docidx);
  s->xpath = pyq_html_css(sel, len, &why, &at);
  if (s->xpath == NULL) {
    done(s);
    if (strcmp(why, "out of memory") == 0) return luaL_error(L, "not enough memory");
    return pyq_usage(L, "%s: unsupported selector %s: %s (at offset %d)", fname,
                     pyq_got(L, 2), why, (int)at);
  }
  if (!eval(L, s, n, s->xpath)) {
    done(s);
    return pyq_usage(L, "%s: unsupported selector %s: %s", fname, pyq_got(L, 2),
                     lua_tostring(L, -1));
  }
  push_result(L, s->obj, docidx);
  done(s);
  return 1;
}

/* doc:html(), node:html(): the markup, UTF-8, as libxml2 serializes it. */
static int m_html (lua_State *L) {
  char fname[32];
  int docidx;
  xmlNodePtr n;
  scratch *s;
  lua_settop(L, 1);
  n = self(L, "html", fname, sizeof fname, &docidx);
  s = acquire(L, docidx);
  s->out = xmlAllocOutputBuffer(NULL);
  if (s->out == NULL) luaL_error(L, "not enough memory");
  htmlNodeDumpFormatOutput(s->out, s->d->doc, n, NULL, 0);
  if (s->out->error) luaL_error(L, "not enough memory");
  lua_pushlstring(L, (const char *)xmlOutputBufferGetContent(s->out),
                  xmlOutputBufferGetSize(s->out));
  done(s);
  return 1;
}

/* ---- links ------------------------------------------------------------- */

/* Pushes href as a URL parser takes it: without leading and trailing
 * spaces and control characters, without tabs and newlines inside. */
static void push_clean (lua_State *L, const char *href) {
  size_t n = strlen(href), i;
  luaL_Buffer b;
  while (n > 0 && (unsigned char)href[n - 1] <= ' ') n--;
  while (n > 0 && (unsigned char)*href <= ' ') { href++; n--; }
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++)
    if (href[i] != '\t' && href[i] != '\n' && href[i] != '\r') luaL_addchar(&b, href[i]);
  luaL_pushresult(&b);
}

/* Resolves ref against s->base (or alone when there is none) into s->url.
 * curl 7.88 resolves "" and "#frag" against the base's directory, so
 * those set the fragment of a copy of the base instead (RFC 3986 5.2.2). */
static int resolve (scratch *s, const char *ref) {
  CURLUcode rc;
  curl_url_cleanup(s->url);
  s->url = s->base ? curl_url_dup(s->base) : curl_url();
  if (s->url == NULL) return 0;
  if (s->base && ref[0] == '\0') rc = curl_url_set(s->url, CURLUPART_FRAGMENT, NULL, 0);
  else if (s->base && ref[0] == '#')
    rc = curl_url_set(s->url, CURLUPART_FRAGMENT, ref[1] ? ref + 1 : NULL, CURLU_URLENCODE);
  else rc = curl_url_set(s->url, CURLUPART_URL, ref, CURLU_URLENCODE);
  return rc == CURLUE_OK;
}

/* Pushes the URL s->url holds when its scheme is http or https. */
static int push_url (lua_State *L, scratch *s) {
  int ok;
  curl_free(s->str);
  s->str = NULL;
  if (curl_url_get(s->url, CURLUPART_SCHEME, &s->str, 0) != CURLUE_OK) return 0;
  ok = strcmp(s->str, "http") == 0 || strcmp(s->str, "https") == 0;
  curl_free(s->str);
  s->str = NULL;
  if (!ok || curl_url_get(s->url, CURLUPART_URL, &s->str, 0) != CURLUE_OK) return 0;
  lua_pushstring(L, s->str);
  return 1;
}

/* The first <base href>, resolved against the base URL, becomes the base. */
static void use_base_element (lua_State *L, scratch *s) {
  xmlNodeSetPtr set;
  if (!eval(L, s, (xmlNodePtr)s->d->doc, "(//base[@href])[1]/@href")) {
    lua_pop(L, 1);
    return;
  }
  set = s->obj->nodesetval;
  if (set && set->nodeNr > 0) {
    push_text(L, set->nodeTab[0]);
    push_clean(L, lua_tostring(L, -1));
    if (resolve(s, lua_tostring(L, -1))) {
      curl_url_cleanup(s->base);
      s->base = s->url;
      s->url = NULL;
    }
    lua_pop(L, 2);
  }
}

/* doc:links() */
static int doc_links (lua_State *L) {
  doc *d = check_doc(L, "doc:links");
  scratch *s;
  xmlNodeSetPtr set;
  int i, n, k = 0;
  if (d->closed) return pyq_usage(L, "doc:links: the document is closed");
  s = acquire(L, 1);                                  /* 2 */
  lua_newtable(L);                                    /* 3: result */
  lua_newtable(L);                                    /* 4: seen */
  if (lua_getiuservalue(L, 1, 1) == LUA_TSTRING) {
    s->base = curl_url();
    if (s->base == NULL) luaL_error(L, "not enough memory");
    if (curl_url_set(s->base, CURLUPART_URL, lua_tostring(L, -1), 0) != CURLUE_OK) {
      curl_url_cleanup(s->base);
      s->base = NULL;
    }
  }
  lua_pop(L, 1);
  use_base_element(L, s);
  if (!eval(L, s, (xmlNodePtr)d->doc, "//a[@href] | //area[@href]"))
    return luaL_error(L, "doc:links: %s", lua_tostring(L, -1));
  set = s->obj->nodesetval;
  n = set ? set->nodeNr : 0;
  for (i = 0; i < n; i++) {
    xmlAttrPtr href = xmlHasProp(set->nodeTab[i], (const xmlChar *)"href");
    if (href == NULL) continue;
    push_text(L, (xmlNodePtr)href);
    push_clean(L, lua_tostring(L, -1));
    if (resolve(s, lua_tostring(L, -1)) && push_url(L, s)) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, 4) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, 4);
        lua_rawseti(L, 3, ++k);
      } else lua_pop(L, 2);
    }
    lua_settop(L, 4);
  }
  done(s);
  lua_settop(L, 3);
  return 1;
}

/* ---- document ---------------------------------------------------------- */

static int doc_close (lua_State *L) {
  doc *d = check_doc(L, "doc:close");
  d->closed = 1;
  if (d->busy == 0) free_tree(d);
  return 0;
}

static int doc_gc (lua_State *L) {
  doc *d = luaL_checkudata(L, 1, DOC);
  free_tree(d);   /* unreachable: no method is running on it */
  return 0;
}

static int doc_tostring (lua_State *L) {
  doc *d = check_doc(L, "tostring");
  lua_pushstring(L, d->closed ? "pyq.html.Document (closed)" : "pyq.html.Document");
  return 1;
}

/* ---- node -------------------------------------------------------------- */

static node *check_node (lua_State *L, const char *fname) {
  node *u = luaL_testudata(L, 1, NODE);
  doc *d;
  if (u == NULL)
    pyq_usage(L, "%s: bad self (a pyq.html node expected, got %s)", fname, pyq_got(L, 1));
  lua_getiuservalue(L, 1, 1);
  d = lua_touserdata(L, -1);
  lua_pop(L, 1);   /* the node keeps it */
  if (d->closed) pyq_usage(L, "%s: the node's document is closed", fname);
  return u;
}

/* node.tag, node.attr, and the methods (upvalue 1). */
static int node_index (lua_State *L) {
  const char *key = lua_tostring(L, 2);
  node *u;
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(key, "tag") == 0) {
    u = check_node(L, "node.tag");
    if (u->n->type == XML_ELEMENT_NODE && u->n->name) lua_pushstring(L, (const char *)u->n->name);
    else lua_pushnil(L);
  } else if (lua_type(L, 2) == LUA_TSTRING && strcmp(key, "attr") == 0) {
    xmlAttrPtr a;
    scratch *s;
    u = check_node(L, "node.attr");
    lua_getiuservalue(L, 1, 1);
    s = acquire(L, lua_gettop(L));
    lua_newtable(L);
    for (a = u->n->type == XML_ELEMENT_NODE ? u->n->properties : NULL; a; a = a->next) {
      push_text(L, (xmlNodePtr)a);
      lua_setfield(L, -2, (const char *)a->name);
    }
    done(s);
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static int node_text (lua_State *L) {
  node *u = check_node(L, "node:text");
  scratch *s;
  lua_getiuservalue(L, 1, 1);
  s = acquire(L, lua_gettop(L));
  push_text(L, u->n);
  done(s);
  return 1;
}

static int node_eq (lua_State *L) {
  node *a = luaL_testudata(L, 1, NODE), *b = luaL_testudata(L, 2, NODE);
  lua_pushboolean(L, a && b && a->n == b->n);
  return 1;
}

static int node_tostring (lua_State *L) {
  node *u = luaL_testudata(L, 1, NODE);
  doc *d;
  if (u == NULL) return pyq_usage(L, "tostring: a pyq.html node expected");
  lua_getiuservalue(L, 1, 1);
  d = lua_touserdata(L, -1);
  if (d->closed) lua_pushliteral(L, "pyq.html.Node (document closed)");
  else if (u->n->type == XML_ELEMENT_NODE && u->n->name)
    lua_pushfstring(L, "pyq.html.Node <%s>", (const char *)u->n->name);
  else lua_pushliteral(L, "pyq.html.Node (document)");
  return 1;
}

/* ---- module ------------------------------------------------------------ */

/* pyq.html.parse(text [, base_url]) */
static int html_parse (lua_State *L) {
  size_t len;
  const char *text;
  doc *d;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.html.parse: text must be a string, got %s", pyq_got(L, 1));
  text = lua_tolstring(L, 1, &len);
  if (len > INT_MAX)
    return pyq_usage(L, "pyq.html.parse: text must be under 2 GiB, got %I bytes",
                     (lua_Integer)len);
  if (!lua_isnoneornil(L, 2)) {
    const char *base = check_string(L, 2, "pyq.html.parse", "base_url");
    CURLU *u = curl_url();
    CURLUcode rc;
    if (u == NULL) return luaL_error(L, "not enough memory");
    rc = curl_url_set(u, CURLUPART_URL, base, 0);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK)
      return pyq_usage(L, "pyq.html.parse: base_url must be an absolute URL, got %s (%s)",
                       pyq_got(L, 2), curl_url_strerror(rc));
  }
  lua_settop(L, 2);
  d = lua_newuserdatauv(L, sizeof *d, 1);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, DOC);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  d->doc = len == 0 ? htmlNewDocNoDtD(NULL, NULL)
                    : htmlReadMemory(text, (int)len, NULL, NULL, PARSE_OPTIONS);
  if (d->doc == NULL)
    return pyq_raise(L, "decode", "pyq.html.parse: libxml2 could not parse the text");
  /* the tree lives outside Lua's heap: let the collector count it (a tree
   * takes 3 to 30 times its text), so a loop that drops documents without
   * closing them does not outrun it */
  lua_gc(L, LUA_GCSTEP, (int)(len / 256));
  return 1;
}

static void new_meta (lua_State *L, const char *name, const luaL_Reg *meta) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
}

int luaopen_pyq_html (lua_State *L) {
  static const luaL_Reg doc_meta[] = {
    {"__gc", doc_gc}, {"__close", doc_close}, {"__tostring", doc_tostring}, {NULL, NULL}
  };
  static const luaL_Reg doc_methods[] = {
    {"xpath", m_xpath}, {"css", m_css}, {"html", m_html}, {"links", doc_links},
    {"close", doc_close}, {NULL, NULL}
  };
  static const luaL_Reg node_meta[] = {
    {"__eq", node_eq}, {"__tostring", node_tostring}, {NULL, NULL}
  };
  static const luaL_Reg node_methods[] = {
    {"xpath", m_xpath}, {"css", m_css}, {"html", m_html}, {"text", node_text},
    {NULL, NULL}
  };
  static const luaL_Reg scratch_meta[] = { {"__gc", scratch_gc}, {NULL, NULL} };
  static const luaL_Reg funcs[] = { {"parse", html_parse}, {NULL, NULL} };
  xmlInitParser();
  xmlSetGenericErrorFunc(NULL, quiet);   /* libxml2 never writes to stderr */
  xmlSetStructuredErrorFunc(NULL, silent);
  new_meta(L, DOC, doc_meta);
  luaL_newlib(L, doc_methods);
  lua_setfield(L, -2, "__index");
  new_meta(L, NODE, node_meta);
  luaL_newlib(L, node_methods);
  lua_pushcclosure(L, node_index, 1);
  lua_setfield(L, -2, "__index");
  new_meta(L, SCRATCH, scratch_meta);
  lua_pop(L, 3);
  luaL_newlib(L, funcs);
  return 1;
}

void pyq_open_html (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pyq_html);
  lua_setfield(L, -2, "pyq.html");
  lua_pop(L, 1);
}
