/* redis.h -- a Redis connection on the host's loop (redis.c): hiredis's
 * async context driven by a uv_poll and a uv_timer of the host's own.
 *
 * Commands go out in order and are answered in order.  Each has a
 * deadline (hiredis 0.14 has none): when the oldest sent command passes
 * it the connection is dropped, every command sent on it fails, and the
 * connection comes back with backoff (logged); commands issued meanwhile
 * wait, unsent, until it is back or their own deadline passes.  A command's
 * callback runs exactly once, with the reply or with an error message,
 * unless it was cancelled first (pyq_redis_cancel): then never. */
#ifndef PYQ_REDIS_H
#define PYQ_REDIS_H

#include <hiredis/hiredis.h>
#include "core/sched.h"

typedef struct pyq_redis pyq_redis;
typedef struct pyq_redis_req pyq_redis_req;

/* reply is NULL when err is set (a timeout, a lost connection); an error
 * reply of Redis comes as a reply of type REDIS_REPLY_ERROR.  The reply is
 * freed after the callback returns. */
typedef void (*pyq_redis_fn) (void *ud, redisReply *reply, const char *err);

/* Parses redis://host[:port][/db] into host (size hn), port and db; 0 with
 * *why set when the URL is not one. */
int pyq_redis_parse_url (const char *url, char *host, size_t hn, int *port,
                         int *db, const char **why);
/* A connection to url (parsed already: pyq_redis_parse_url), connecting
 * now; NULL without memory.  timeout: the default deadline of a command,
 * seconds. */
pyq_redis *pyq_redis_new (pyq_host *h, const char *url, double timeout);
/* Sends argv (argc strings of lens bytes) with a deadline of timeout
 * seconds (<= 0: the connection's default); NULL without memory. */
pyq_redis_req *pyq_redis_cmd (pyq_redis *r, double timeout, pyq_redis_fn fn,
                              void *ud, int argc, const char **argv,
                              const size_t *lens);
void pyq_redis_cancel (pyq_redis_req *q);
/* Drops the connection; commands not answered are cancelled. */
void pyq_redis_free (pyq_redis *r);
/* Lets the commands issued go out and frees the connection once they are
 * answered (or failed); their callbacks no longer run. */
void pyq_redis_close (pyq_redis *r);
/* Monotonic seconds of the last reply (pyq_clock); when connected first. */
double pyq_redis_last_reply (const pyq_redis *r);
const char *pyq_redis_url (const pyq_redis *r);

/* core._redis(url[, timeout]) -> a connection with :call(...) (waits),
 * :send(...), :close() (what was sent still goes out) and :drop() (gone
 * now; also when collected): the internal Lua surface. */
void pyq_open_redis (lua_State *L);

#endif
