/* http.h -- pyq.http's C side.
 *
 * Layers inside host/http/, lowest first: curl_uv.c (libcurl's multi
 * handle on the loop, no Lua), sink.c (where an answer goes), http_input.c
 * (the option tables and the checks of what Lua passes; the fuzz target's
 * entry), http.c (sessions, transfers and the Lua verbs). */
#ifndef PYQ_HTTP_H
#define PYQ_HTTP_H

#include <stdint.h>
#include <stdio.h>
#include <curl/curl.h>
#include "core/sched.h"
#include "lua/check.h"

typedef struct pyq_http pyq_http;

/* How an option's value is checked. */
enum {
  PYQ_HT_URL, PYQ_HT_METHOD, PYQ_HT_TABLE, PYQ_HT_STRING, PYQ_HT_ANY,
  PYQ_HT_SECONDS,     /* 0 .. 1e9 */
  PYQ_HT_ATTEMPT,     /* above 0 .. 1e9 */
  PYQ_HT_DURATION,    /* 0 .. math.huge */
  PYQ_HT_COUNT,       /* an integer >= 0 */
  PYQ_HT_BOOL,
  PYQ_HT_NAMES,       /* a list of non-empty strings */
  PYQ_HT_LINE,        /* a string without CR, LF or NUL */
  PYQ_HT_FUNCTION,
  PYQ_HT_PROXY,       /* a proxy URL, or false: none (not even the env's) */
  PYQ_HT_VERSION      /* "1.0", "1.1", "2", "2-prior-knowledge" */
};

/* Where a value goes once checked. */
enum {
  PYQ_HTO_URL,        /* the request line: URL, method, query */
  PYQ_HTO_HEADERS,    /* the header list */
  PYQ_HTO_BODY,       /* the body (json encoded here) */
  PYQ_HTO_EASY,       /* an option of the easy handle */
  PYQ_HTO_MULTI,      /* an option of the multi handle */
  PYQ_HTO_SESSION,    /* the session's defaults, masking lists */
  PYQ_HTO_PLAN,       /* the retry plan */
  PYQ_HTO_SINK,       /* where the body goes: a file, a callback */
  PYQ_HTO_DEFAULT     /* a session's default for its requests' option */
};

/* One row per option of an API: the checks, the messages, the fuzz
 * target's keys and the README all come from these tables. */
typedef struct pyq_http_option {
  const char *name;
  unsigned char type;     /* PYQ_HT_* */
  unsigned char to;       /* PYQ_HTO_* */
  unsigned char lua;      /* 1: consumed by http.lua (the retry loop) */
} pyq_http_option;

/* The request options, in the order of these ids. */
enum {
  PYQ_HO_URL, PYQ_HO_METHOD, PYQ_HO_HEADERS, PYQ_HO_BODY, PYQ_HO_JSON,
  PYQ_HO_QUERY, PYQ_HO_TIMEOUT, PYQ_HO_CTIMEOUT, PYQ_HO_FOLLOW,
  PYQ_HO_MAXREDIR, PYQ_HO_MAXBODY, PYQ_HO_VERIFY, PYQ_HO_DOWNGRADE,
  PYQ_HO_SHEADERS, PYQ_HO_SQUERY, PYQ_HO_RETRIES, PYQ_HO_BACKOFF,
  PYQ_HO_UNSAFE, PYQ_HO_ATTEMPT, PYQ_HO_MAXRA,
  PYQ_HO_FORM, PYQ_HO_MULTIPART, PYQ_HO_AUTH, PYQ_HO_BEARER, PYQ_HO_PROXY,
  PYQ_HO_VERSION, PYQ_HO_OUTPUT, PYQ_HO_KEEP, PYQ_HO_RESUME, PYQ_HO_ONDATA,
  PYQ_HO_CACHE, PYQ_HO_CTTL,
  PYQ_HO_N
};
/* A set of options present, one bit per id. */
typedef uint64_t pyq_http_set;
#define PYQ_BIT(id) ((pyq_http_set)1 << (id))
/* The configure options, in the order of these ids; a session's are the
 * first PYQ_HC_SESSION of them (the rest set the shared multi handle). */
enum {
  PYQ_HC_AGENT, PYQ_HC_HTTP2, PYQ_HC_SHEADERS, PYQ_HC_SQUERY,
  PYQ_HC_RETRIES, PYQ_HC_BACKOFF, PYQ_HC_MAXRA, PYQ_HC_PROXY, PYQ_HC_VERSION,
  PYQ_HC_CACHE, PYQ_HC_CTTL, PYQ_HC_CSTATUSES, PYQ_HC_CVARY,
  PYQ_HC_SESSION,
  PYQ_HC_MAXCONN = PYQ_HC_SESSION, PYQ_HC_PERHOST, PYQ_HC_MAXTOTAL, PYQ_HC_N
};
extern const pyq_http_option pyq_http_request_options[PYQ_HO_N + 1];
extern const pyq_http_option pyq_http_configure_options[PYQ_HC_N + 1];
/* A session's options: the first PYQ_HC_SESSION as configure's, then its
 * own, then the request options it keeps as defaults (PYQ_HTO_DEFAULT). */
enum { PYQ_HSO_BASE = PYQ_HC_SESSION, PYQ_HSO_COOKIES, PYQ_HSO_N = PYQ_HSO_COOKIES + 14 };
extern const pyq_http_option pyq_http_session_options[PYQ_HSO_N + 1];

/* A checked scalar value; tables and strings stay in the Lua table. */
typedef struct pyq_http_value {
  double num;             /* SECONDS, ATTEMPT, DURATION */
  lua_Integer count;      /* COUNT, BOOL (0 or 1) */
} pyq_http_value;

/* Checks every key and scalar value of the options table at t against
 * `table` (ended by a NULL name); fills v by option id and returns the
 * bit set of the options present.  Raises a "usage" pyq.Error naming
 * fname and the option. */
pyq_http_set pyq_http_read (lua_State *L, int t, const char *fname,
                        const pyq_http_option *table, pyq_http_value *v);

typedef struct pyq_http_opts {
  const char *fname;      /* for errors: pyq.http.request, pyq.http.get, ... */
  char method[24];
  pyq_http_set present;   /* bit per PYQ_HO_* option given */
  double timeout, connect_timeout;
  int follow, verify, allow_downgrade;
  int has_type;           /* a Content-Type among the headers */
  long http_version;      /* CURL_HTTP_VERSION_*; 0: the session's */
  int nocache;            /* cache = false */
  double cache_ttl;       /* < 0: the cache's own */
  long max_redirects;
  curl_off_t max_body;
  /* the retry plan; < 0: the session's default */
  lua_Integer retries;
  double backoff, max_retry_after, attempt_timeout;   /* attempt: 0 none */
  int retry_unsafe;
  int keep_partial, resume;   /* output's; keep_partial defaults to resume */
} pyq_http_opts;

/* The names a user marks sensitive (sensitive_headers, sensitive_query) are
 * kept packed: lower-case, each ended by a NUL, the list by another NUL
 * ("x-sig\0x-pin\0\0").  NULL is the empty list. */

/* http_input.c: checking what Lua passes.  pyq_http_check takes 1: method
 * or nil, 2: url or nil, 3: the options or nil and pushes the slots below
 * (each may be nil), from 4 to PYQ_HS_END - 1; a request the retry loop
 * sends again keeps them as the user values of its userdata. */
enum {
  PYQ_HS_HNAMES = 4,  /* sensitive_headers, packed */
  PYQ_HS_QNAMES,      /* sensitive_query, packed */
  PYQ_HS_URL,         /* the final URL */
  PYQ_HS_BODY,        /* the body: a string, or the multipart table */
  PYQ_HS_AUTH,        /* "B" or "D", user, NUL, password */
  PYQ_HS_PROXY,       /* the proxy URL; "": none */
  PYQ_HS_SINK,        /* output's path, on_data's function */
  PYQ_HS_END
};
int pyq_http_check (lua_State *L, pyq_http_opts *o);
/* A session's request: replaces the options at 3 by the session's
 * defaults (the table at d) overlaid with them, headers merged by name
 * case-insensitively (the request's win); then a relative URL (at 2, or
 * the options' url) is resolved against base (RFC 3986), when given. */
void pyq_http_merge (lua_State *L, int d, const char *base, const char *fname);
/* base_url as a session keeps it: an http(s) URL whose path ends in '/'
 * (so "v1" + "users" is ".../v1/users"); pushed, or raises. */
void pyq_http_base_url (lua_State *L, int i, const char *fname);
struct curl_slist *pyq_http_headers (lua_State *L, int t, pyq_http_opts *o);
const char *pyq_http_names (lua_State *L, const char *fname, const char *key);
int pyq_http_header_safe (const char *s, size_t n);
int pyq_http_header_ok (const char *name, size_t nlen, const char *value,
                        size_t vlen);
int pyq_http_secret_name (const char *name, size_t n);
int pyq_http_secret (const char *name, size_t n, const char *names1,
                     const char *names2);
void pyq_http_mask (const char *url, char *out, size_t size,
                    const char *names1, const char *names2);
void pyq_http_mask_url (const char *url, char *out, size_t size);

/* http.c: sessions, transfers, the Lua verbs */
void pyq_open_http (lua_State *L);
void pyq_http_close (pyq_http *hp);
void pyq_http_report (pyq_http *hp, FILE *out);

#endif
