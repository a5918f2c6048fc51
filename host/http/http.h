/* http.h -- pyq.http's C side: transfers (http.c) and the checks of what
 * Lua passes (http_input.c), shared with the fuzz target. */
#ifndef PYQ_HTTP_H
#define PYQ_HTTP_H

#include <stdio.h>
#include <curl/curl.h>
#include "core/sched.h"
#include "lua/check.h"

typedef struct pyq_http pyq_http;

typedef struct pyq_http_opts {
  const char *fname;      /* for errors: pyq.http.request, pyq.http.get, ... */
  char method[24];
  double timeout, connect_timeout;
  int follow, verify, has_headers, allow_downgrade;
  int has_type, has_agent;   /* Content-Type, User-Agent among the headers */
  long max_redirects;
  curl_off_t max_body;
} pyq_http_opts;

/* The names a user marks sensitive (sensitive_headers, sensitive_query) are
 * kept packed: lower-case, each ended by a NUL, the list by another NUL
 * ("x-sig\0x-pin\0\0").  NULL is the empty list. */

/* http_input.c: checking what Lua passes */
int pyq_http_check (lua_State *L, pyq_http_opts *o);
struct curl_slist *pyq_http_headers (lua_State *L, int t, pyq_http_opts *o);
const char *pyq_http_names (lua_State *L, const char *fname, const char *key);
int pyq_http_key_index (lua_State *L, const char *fname,
                        const char *const *known);
lua_Integer pyq_http_to_count (lua_State *L, const char *fname, const char *key);
int pyq_http_to_bool (lua_State *L, const char *fname, const char *key);
int pyq_http_header_safe (const char *s, size_t n);
int pyq_http_header_ok (const char *name, size_t nlen, const char *value,
                        size_t vlen);
int pyq_http_secret_name (const char *name, size_t n);
int pyq_http_secret (const char *name, size_t n, const char *names1,
                     const char *names2);
void pyq_http_mask (const char *url, char *out, size_t size,
                    const char *names1, const char *names2);
void pyq_http_mask_url (const char *url, char *out, size_t size);

/* http.c: the transfers */
void pyq_open_http (lua_State *L);
void pyq_http_close (pyq_http *hp);
void pyq_http_report (pyq_http *hp, FILE *out);

#endif
