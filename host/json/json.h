/* json.h -- the host's JSON codec (json.c) and JSON Lines files (jsonl.c).
 *
 * The codec decodes straight into Lua values and encodes straight from
 * them into a growable byte buffer: integers stay integers, arrays and
 * objects carry marker metatables so empty ones round-trip, and encoding
 * reads tables with raw access only, so it never runs Lua code. */
#ifndef PYQ_JSON_H
#define PYQ_JSON_H

#include <stddef.h>
#include <lua.h>

/* A growable byte buffer; zero-initialised is empty. */
typedef struct pyq_jbuf { char *p; size_t n, size; } pyq_jbuf;

enum {
  PYQ_JSON_UTF8_ERROR = 1,  /* encode: invalid UTF-8 is an error, not U+FFFD */
  PYQ_JSON_ONE_LINE = 2     /* decode: positions give the column only */
};

#define PYQ_JSON_MAXDEPTH 1000

int pyq_jbuf_grow (pyq_jbuf *b, size_t more);   /* 0: out of memory */
void pyq_jbuf_free (pyq_jbuf *b);

/* Appends the JSON text of the value at idx to b and returns 1; or leaves
 * b->n as it was, pushes an error message (no function name) and returns
 * 0.  Runs no Lua code.  Raises only on memory errors. */
int pyq_json_encode (lua_State *L, int idx, pyq_jbuf *b, int flags);

/* Decodes the whole of s[0..n) and pushes the value, returning 1; or
 * pushes an error message naming the position and returns 0. */
int pyq_json_decode (lua_State *L, const char *s, size_t n, int flags);

/* pyq.json and pyq.jsonl go into package.preload (called by pyq.core). */
void pyq_open_json (lua_State *L);
int luaopen_pyq_json (lua_State *L);
int luaopen_pyq_jsonl (lua_State *L);

#endif
