/* url.h -- pyq.url: URLs parsed, resolved and built by libcurl's URL API,
 * and percent-encoding of one component (url.c). */
#ifndef PYQ_URL_H
#define PYQ_URL_H

#include <lua.h>

/* pyq.url goes into package.preload (called by pyq.core). */
void pyq_open_url (lua_State *L);
int luaopen_pyq_url (lua_State *L);

#endif
