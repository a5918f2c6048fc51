/* html.h -- pyq.html: HTML documents on libxml2's HTML parser (html.c),
 * and the CSS selector subset translated to XPath (css.c). */
#ifndef PYQ_HTML_H
#define PYQ_HTML_H

#include <stddef.h>
#include <lua.h>

/* Translates the selector s[0..n) to an XPath 1.0 expression that, from a
 * context node, selects the descendants matching it, in document order.
 * Returns a malloc'd string; or NULL with *why a static reason and *at the
 * byte offset it refers to (errno-free: NULL with *why "out of memory"
 * when malloc fails). */
char *pyq_html_css (const char *s, size_t n, const char **why, size_t *at);

/* XPath evaluation steps allowed per call, 0 for no limit (the fuzz
 * target sets one, so that a pathological expression ends). */
extern unsigned long pyq_html_op_limit;

/* pyq.html goes into package.preload (called by pyq.core). */
void pyq_open_html (lua_State *L);
int luaopen_pyq_html (lua_State *L);

#endif
