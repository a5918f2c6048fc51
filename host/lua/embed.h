/* embed.h -- the pyq Lua library built into the executable (embed.c). */
#ifndef PYQ_EMBED_H
#define PYQ_EMBED_H

#include <stddef.h>
#include <lua.h>

typedef struct pyq_embedded {
  const char *module;     /* "pyq.http"; NULL ends the list */
  const char *chunkname;  /* "@pyq/http.lua" */
  const char *bytes;
  size_t size;
} pyq_embedded;

/* lualib/pyq/ as byte arrays, made by tools/embed_lualib.cmake */
extern const pyq_embedded pyq_embedded_lualib[];

void pyq_open_lualib (lua_State *L);

#endif
