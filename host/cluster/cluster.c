/* cluster.c -- pyq.Queue{ cluster = "redis://...", name = n }: the main
 * process's backend on Redis Streams.
 *
 * The job's keys are pyq:<n>:tasks (a stream: fields s, the backend's own
 * sequence number of the put, f, the task's pyq.async name, and a, its
 * arguments as a JSON array), pyq:<n>:results (fields s, ok "1" or "0",
 * v the result as JSON ("" for nil) or the error's message, k the error's
 * kind when it was a pyq.Error, p the process that ran it; or, from a
 * worker that stops, b "1" and p its name: the main process then takes
 * over at once what that process holds) and pyq:<n>:meta
 * (workers, main), with the consumer group "pyq" on both streams.  Worker
 * processes (lualib/pyq/cluster.lua) read tasks through the group, run
 * them, add the outcome to results and XACK.
 *
 * push XADDs (hiredis pipelines what a turn issues).  The main process's
 * workers pop from one XREADGROUP over both streams on a second
 * connection (its BLOCK would hold up the first); results are
 * acknowledged as they are read, tasks when they end here; after a read
 * that failed, the entries pending for this consumer are read again
 * first, as Redis may have delivered them into a connection that was
 * being dropped (recover).  A task entry becomes the
 * named task again, run here; a result entry becomes a stand-in task that
 * returns the result or raises the error (named after the process), so
 * the queue counts, keeps and hands failures to exception_handler as for
 * a local task, in put order.  Each put is counted once: the first entry
 * of its sequence number wins, later ones (a task run twice after a
 * reclaim) are dropped.  Every visibility/2 seconds the main process
 * XAUTOCLAIMs tasks idle longer than visibility (a worker died) and runs
 * them.  When Redis has not answered for cluster_timeout seconds while
 * tasks are unfinished, the queue is broken (backend.h): join raises. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster.h"
#include "core/log.h"
#include "json/json.h"
#include "lua/check.h"
#include "lua/error.h"
#include "lua/task.h"
#include "queue/backend.h"
#include "queue/queue.h"
#include "redis/redis.h"

enum { E_TASK, E_OUTCOME };
enum { RECOVER_COUNT = 1000 };   /* pending entries read again per page */
enum { ACK_BATCH = 256 };        /* result entries acknowledged at once */
enum { RUN_HERE = -1 };          /* idx[seq] of a task this process took */

typedef struct entry {
  pyq_link link;
  int kind;
  lua_Integer seq;
  char *id;                /* stream id (tasks: for XACK) */
  char *f, *a;             /* task: name, arguments; outcome: ok, value */
  size_t alen;
  char *k, *p;             /* outcome: error kind, process */
  char *x, *t;             /* outcome: the error's fields or, after '=',
                              the table raised; the traceback */
} entry;

typedef struct cluster {
  pyq_backend base;
  pyq_host *h;
  pyq_redis *cmd, *rd;     /* commands; the blocking read */
  char key_tasks[300], key_results[300], key_meta[300];
  char me[200];            /* this process's consumer name */
  char where[300];
  double visibility, timeout, ctimeout, last_claim;
  pyq_link entries;        /* read, not popped yet */
  pyq_link waiters;        /* workers parked in pop */
  pyq_link xadds;          /* puts Redis has not confirmed */
  int nwait, reading, claiming, pinging;
  int recovering;          /* reading pending entries again (recover) */
  char from[2][64];        /* ... from these ids, tasks and results */
  char *racks[ACK_BATCH];  /* result entries read, not acknowledged yet */
  size_t nracks;
  lua_Integer seq;         /* puts so far */
  lua_Integer cap;         /* size of the arrays below */
  lua_Integer *idx;        /* seq -> put index; 0 once popped or dropped,
                              RUN_HERE once popped as a task to run here */
  lua_Integer npending;
  lua_Integer ackcap;
  char **ack;              /* put index -> stream id to XACK at settle */
  lua_Integer held, done, failed;   /* stream tasks here; settled here */
  lua_Integer shown[3];    /* what meta says of them (--cluster-status) */
  uv_timer_t tick;
  char why[512];
} cluster;

#define C(b) ((cluster *)(b))

/* ---- entries -------------------------------------------------------------- */

static void entry_free (entry *e) {
  free(e->id); free(e->f); free(e->a); free(e->k); free(e->p);
  free(e->x); free(e->t);
  free(e);
}

static char *dup_str (const redisReply *x) {
  char *s;
  if (x == NULL || (x->type != REDIS_REPLY_STRING &&
                    x->type != REDIS_REPLY_STATUS)) return NULL;
  if ((s = malloc(x->len + 1)) == NULL) return NULL;
  memcpy(s, x->str, x->len);
  s[x->len] = '\0';
  return s;
}

/* One stream entry [id, [field, value, ...]] as an entry of kind. */
static entry *parse_entry (const redisReply *x, int kind) {
  entry *e;
  size_t i;
  const redisReply *fv;
  if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
      x->element[1]->type != REDIS_REPLY_ARRAY) return NULL;
  if ((e = calloc(1, sizeof *e)) == NULL) return NULL;
  e->kind = kind;
  e->id = dup_str(x->element[0]);
  fv = x->element[1];
  for (i = 0; i + 1 < fv->elements; i += 2) {
    const char *k = fv->element[i]->str;
    const redisReply *v = fv->element[i + 1];
    if (k == NULL || v->type != REDIS_REPLY_STRING) continue;
    switch (*k) {
    case 's': e->seq = strtoll(v->str, NULL, 10); break;
    case 'f': case 'o': free(e->f); e->f = dup_str(v); break;
    case 'a': case 'v': free(e->a); e->a = dup_str(v); e->alen = v->len; break;
    case 'k': free(e->k); e->k = dup_str(v); break;
    case 'p': free(e->p); e->p = dup_str(v); break;
    case 'x': if (v->len) { free(e->x); e->x = dup_str(v); } break;
    case 't': if (v->len) { free(e->t); e->t = dup_str(v); } break;
    }
  }
  if (e->id == NULL || e->f == NULL || e->a == NULL) {
    entry_free(e);
    return NULL;
  }
  return e;
}

static void release (cluster *c, const redisReply *who);

/* The process named by a result entry that says it stops (b "1", p), or
 * NULL. */
static const redisReply *stopping (const redisReply *x) {
  const redisReply *fv, *who = NULL;
  size_t i;
  int bye = 0;
  if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
      x->element[1]->type != REDIS_REPLY_ARRAY) return NULL;
  fv = x->element[1];
  for (i = 0; i + 1 < fv->elements; i += 2) {
    const char *k = fv->element[i]->str;
    if (k == NULL || fv->element[i + 1]->type != REDIS_REPLY_STRING) continue;
    if (strcmp(k, "b") == 0) bye = 1;
    else if (strcmp(k, "p") == 0) who = fv->element[i + 1];
  }
  return bye ? who : NULL;
}

/* Buffers the entries of a stream's array; wakes a parked worker each.
 * A task this process runs itself (its own pending entry, claimed or
 * read again) is left to its settle.  Returns how many it buffered. */
static size_t take_entries (cluster *c, const redisReply *list, int kind) {
  size_t i, n = 0;
  if (list == NULL || list->type != REDIS_REPLY_ARRAY) return 0;
  for (i = 0; i < list->elements; i++) {
    const redisReply *who = kind == E_OUTCOME ? stopping(list->element[i])
                                              : NULL;
    entry *e;
    pyq_link *w;
    if (who) {
      release(c, who);
      continue;
    }
    if ((e = parse_entry(list->element[i], kind)) == NULL) continue;
    if (kind == E_TASK && e->seq >= 1 && e->seq <= c->seq &&
        c->idx[e->seq] == RUN_HERE) {
      entry_free(e);
      continue;
    }
    if (kind == E_TASK) c->held++;
    n++;
    pyq_list_push(&c->entries, &e->link);
    if ((w = pyq_list_shift(&c->waiters)) != NULL) {
      c->nwait--;
      pyq_wake(pyq_container(w, pyq_fiber, wait), 0);
    }
  }
  return n;
}

/* ---- giving up ----------------------------------------------------------- */

static void break_queue (cluster *c, const char *fmt, const char *arg) {
  if (c->base.failure) return;
  snprintf(c->why, sizeof c->why, fmt, arg);
  pyq_log(c->h, PYQ_ERROR, c->where, "%s", c->why);
  c->base.failure = c->why;
  if (c->base.broken) c->base.broken(&c->base);
}

/* ---- reading ------------------------------------------------------------ */

static void arm_read (cluster *c);
static void send_cmd (cluster *c, int argc, const char **argv);

/* Sends one XACK for the result entries read since the last. */
static void flush_acks (cluster *c) {
  const char **argv;
  size_t *lens, i;
  if (c->nracks == 0) return;
  argv = malloc((c->nracks + 3) * sizeof *argv);
  lens = malloc((c->nracks + 3) * sizeof *lens);
  if (argv && lens) {
    argv[0] = "XACK"; argv[1] = c->key_results; argv[2] = "pyq";
    for (i = 0; i < 3; i++) lens[i] = strlen(argv[i]);
    for (i = 0; i < c->nracks; i++) {
      argv[i + 3] = c->racks[i];
      lens[i + 3] = strlen(c->racks[i]);
    }
    pyq_redis_cmd(c->cmd, 0, NULL, NULL, (int)(c->nracks + 3), argv, lens);
  }
  free(argv);
  free(lens);
  for (i = 0; i < c->nracks; i++) free(c->racks[i]);
  c->nracks = 0;
}

/* The result entries of a read are acknowledged soon, in batches (one
 * XACK per ACK_BATCH entries or per tick): they are in this process's
 * memory now (the main process is the job: if it dies, so does the
 * job).  Until then, or if a reply is lost with its connection, they stay
 * in the group's pending list, which recover reads again. */
static void ack_results (cluster *c, const redisReply *list) {
  size_t i;
  if (list == NULL || list->type != REDIS_REPLY_ARRAY) return;
  for (i = 0; i < list->elements; i++) {
    const redisReply *x = list->element[i];
    char *id;
    if (x->type != REDIS_REPLY_ARRAY || x->elements < 1 ||
        (id = dup_str(x->element[0])) == NULL) continue;
    c->racks[c->nracks++] = id;
    if (c->nracks == ACK_BATCH) flush_acks(c);
  }
}

/* After a read that failed (its reply may have been lost with the
 * connection while Redis delivered the entries), read this consumer's
 * pending entries again from the start of each stream before new ones:
 * nothing delivered is lost, and entries seen twice count once (a put's
 * first entry wins). */
static void recover (cluster *c) {
  c->recovering = 1;
  strcpy(c->from[0], "0");
  strcpy(c->from[1], "0");
}

static void read_done (void *ud, redisReply *reply, const char *err) {
  cluster *c = ud;
  size_t i, got[2] = {0, 0};
  c->reading = 0;
  if (reply && reply->type == REDIS_REPLY_ERROR) err = reply->str;
  if (err) {   /* the group may not exist yet; the connection comes back */
    pyq_log(c->h, PYQ_DEBUG, c->where, "read: %s", err);
    recover(c);
    return;   /* the tick reads again */
  }
  if (reply->type == REDIS_REPLY_ARRAY)
    for (i = 0; i < reply->elements; i++) {
      const redisReply *s = reply->element[i], *list;
      int k;
      if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
          s->element[0]->type != REDIS_REPLY_STRING) continue;
      k = strcmp(s->element[0]->str, c->key_tasks) == 0 ? 0 : 1;
      list = s->element[1];
      if (list->type != REDIS_REPLY_ARRAY) continue;
      got[k] = list->elements;
      if (c->recovering && got[k] > 0) {   /* the next page from the last */
        const redisReply *last = list->element[got[k] - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements > 0 &&
            last->element[0]->type == REDIS_REPLY_STRING)
          snprintf(c->from[k], sizeof c->from[k], "%s", last->element[0]->str);
      }
      if (k == 1) ack_results(c, list);
      take_entries(c, list, k == 0 ? E_TASK : E_OUTCOME);
    }
  if (c->recovering) {   /* a stream whose history ended reads new ones */
    for (i = 0; i < 2; i++)
      if (got[i] < RECOVER_COUNT) strcpy(c->from[i], ">");
    c->recovering = strcmp(c->from[0], ">") != 0 ||
                    strcmp(c->from[1], ">") != 0;
  }
  if (c->nwait > 0 || c->recovering) arm_read(c);
}

/* One read for the parked workers: up to as many new entries of each
 * stream as there are of them, blocking up to a second; or, recovering,
 * a page of this consumer's pending entries, not blocking. */
static void arm_read (cluster *c) {
  char count[32];
  const char *argv[14];
  size_t lens[14];
  int i, n = 0;
  if (c->reading || c->base.failure) return;
  if (c->recovering) snprintf(count, sizeof count, "%d", RECOVER_COUNT);
  else snprintf(count, sizeof count, "%d", c->nwait > 0 ? c->nwait : 1);
  argv[n++] = "XREADGROUP"; argv[n++] = "GROUP"; argv[n++] = "pyq";
  argv[n++] = c->me; argv[n++] = "COUNT"; argv[n++] = count;
  if (!c->recovering) {
    argv[n++] = "BLOCK";
    argv[n++] = "1000";
  }
  argv[n++] = "STREAMS";
  if (!c->recovering) {
    argv[n++] = c->key_tasks; argv[n++] = c->key_results;
    argv[n++] = ">"; argv[n++] = ">";
  } else {   /* only the streams still paging: not 1000 new tasks at once */
    int k, m = 0;
    const char *ids[2];
    for (k = 0; k < 2; k++)
      if (strcmp(c->from[k], ">") != 0) {
        argv[n++] = k == 0 ? c->key_tasks : c->key_results;
        ids[m++] = c->from[k];
      }
    for (k = 0; k < m; k++) argv[n++] = ids[k];
  }
  for (i = 0; i < n; i++) lens[i] = strlen(argv[i]);
  if (pyq_redis_cmd(c->rd, c->timeout + 1, read_done, c, n, argv, lens))
    c->reading = 1;
}

static void claim_done (void *ud, redisReply *reply, const char *err) {
  cluster *c = ud;
  size_t n;
  c->claiming = 0;
  if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
      reply->element[1]->type != REDIS_REPLY_ARRAY) return;
  n = take_entries(c, reply->element[1], E_TASK);
  if (n > 0)
    pyq_log(c->h, PYQ_INFO, c->where, "took over %d tasks unacknowledged for "
            "%gs (visibility): their process died or is slow", (int)n,
            c->visibility);
}

/* ---- a worker that stops ----------------------------------------------- */

/* The tasks a process that stops holds (read, and not acknowledged: those
 * it ran and those its last read got as it went) are taken over now with
 * XCLAIM, rather than after visibility: XPENDING lists them, XCLAIM
 * brings them here. */
static void released (void *ud, redisReply *reply, const char *err) {
  cluster *c = ud;
  size_t i, n = 0;
  if (err || reply->type != REDIS_REPLY_ARRAY) return;   /* visibility will */
  for (i = 0; i < reply->elements; i++)
    if (reply->element[i]->type == REDIS_REPLY_ARRAY) n++;
  if (n > 0)
    pyq_log(c->h, PYQ_INFO, c->where, "took over %d tasks from a worker "
            "that stopped", (int)n);
  take_entries(c, reply, E_TASK);
}

static void pending_of (void *ud, redisReply *reply, const char *err) {
  cluster *c = ud;
  const char **argv;
  size_t *lens, i, n = 0;
  if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
    return;
  argv = malloc((reply->elements + 5) * sizeof *argv);
  lens = malloc((reply->elements + 5) * sizeof *lens);
  if (argv && lens) {
    argv[0] = "XCLAIM"; argv[1] = c->key_tasks; argv[2] = "pyq";
    argv[3] = c->me; argv[4] = "0";
    for (n = 5, i = 0; i < reply->elements; i++) {
      const redisReply *x = reply->element[i];
      if (x->type != REDIS_REPLY_ARRAY || x->elements < 1 ||
          x->element[0]->type != REDIS_REPLY_STRING) continue;
      argv[n] = x->element[0]->str;
      lens[n++] = x->element[0]->len;
    }
    for (i = 0; i < 5; i++) lens[i] = strlen(argv[i]);
    if (n > 5) pyq_redis_cmd(c->cmd, 0, released, c, (int)n, argv, lens);
  }
  free(argv);
  free(lens);
}

static void release (cluster *c, const redisReply *who) {
  const char *argv[] = {"XPENDING", c->key_tasks, "pyq", "-", "+", "10000",
                        who->str};
  size_t lens[7];
  int i;
  pyq_log(c->h, PYQ_INFO, c->where, "%s stops", who->str);
  for (i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  lens[6] = who->len;
  pyq_redis_cmd(c->cmd, 0, pending_of, c, 7, argv, lens);
}

/* Tasks idle longer than visibility in a consumer's pending list (their
 * process died or lost Redis) are taken over and run here. */
static void claim (cluster *c) {
  char ms[32];
  const char *argv[] = {"XAUTOCLAIM", c->key_tasks, "pyq", c->me, ms, "0-0",
                        "COUNT", "100"};
  size_t lens[8];
  int i;
  snprintf(ms, sizeof ms, "%lld", (long long)(c->visibility * 1000));
  for (i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
  if (pyq_redis_cmd(c->cmd, 0, claim_done, c, 8, argv, lens))
    c->claiming = 1;
}

/* What this process holds and settled, for --cluster-status (the group's
 * pending list also holds what this process read and buffers, and tasks
 * it took over twice); one HSET when changed. */
static void show_counts (cluster *c) {
  char f[3][220], v[3][32];
  const char *argv[8];
  lua_Integer now[3];
  int i;
  now[0] = c->held; now[1] = c->done; now[2] = c->failed;
  if (memcmp(now, c->shown, sizeof now) == 0) return;
  memcpy(c->shown, now, sizeof now);
  argv[0] = "HSET"; argv[1] = c->key_meta;
  for (i = 0; i < 3; i++) {
    snprintf(f[i], sizeof f[i], "%s:%s",
             i == 0 ? "running" : i == 1 ? "done" : "failed", c->me);
    snprintf(v[i], sizeof v[i], "%lld", (long long)now[i]);
    argv[2 + 2 * i] = f[i];
    argv[3 + 2 * i] = v[i];
  }
  send_cmd(c, 8, argv);
}

static void pinged (void *ud, redisReply *reply, const char *err) {
  (void)reply; (void)err;
  ((cluster *)ud)->pinging = 0;
}

static void on_tick (uv_timer_t *t) {
  cluster *c = t->data;
  double now = pyq_clock(), last;
  if (c->base.failure) return;
  show_counts(c);
  flush_acks(c);
  if (c->npending == 0) {   /* nothing unfinished: nothing to watch */
    c->last_claim = now;
    uv_unref((uv_handle_t *)&c->tick);
    return;
  }
  last = pyq_redis_last_reply(c->rd);
  if (pyq_redis_last_reply(c->cmd) > last) last = pyq_redis_last_reply(c->cmd);
  if (now - last > c->ctimeout) {
    char s[400];
    snprintf(s, sizeof s, "%.300s (cluster_timeout %g s)",
             pyq_redis_url(c->cmd), c->ctimeout);
    break_queue(c, "pyq.Queue: the cluster's Redis did not answer within "
                "%s; the unfinished tasks are lost", s);
    return;
  }
  if (c->nwait > 0 || c->recovering) arm_read(c);
  /* liveness is a reply: when nothing else asks Redis (every worker busy,
   * claims rare), a PING does, so a long task is not a dead Redis */
  if (!c->pinging && now - last >= (c->ctimeout / 4 < 1 ? c->ctimeout / 4 : 1)) {
    const char *argv[] = {"PING"};
    size_t len = 4;
    if (pyq_redis_cmd(c->cmd, 0, pinged, c, 1, argv, &len)) c->pinging = 1;
  }
  if (!c->claiming && now - c->last_claim >= c->visibility / 2) {
    c->last_claim = now;
    claim(c);
  }
}

/* ---- the backend ----------------------------------------------------------- */

static void send_cmd (cluster *c, int argc, const char **argv) {
  size_t lens[16];
  int i;
  for (i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  pyq_redis_cmd(c->cmd, 0, NULL, NULL, argc, argv, lens);
}

/* An XADD kept until Redis has it: a lost connection or a timeout sends
 * it again (a duplicate entry is dropped as a second run would be), until
 * cluster_timeout breaks the queue.  An error reply breaks it at once. */
typedef struct xadd {
  pyq_link link;          /* in c->xadds */
  cluster *c;
  const char *argv[9];
  size_t lens[9];
  char data[1];           /* the words, one after the other */
} xadd;

static void xadd_send (xadd *x);

static void push_done (void *ud, redisReply *reply, const char *err) {
  xadd *x = ud;
  cluster *c = x->c;
  if (reply && reply->type == REDIS_REPLY_ERROR) {
    break_queue(c, "pyq.Queue: a task could not be added to the cluster's "
                "stream: %s", reply->str);
  } else if (err && !c->base.failure) {
    pyq_log(c->h, PYQ_DEBUG, c->where, "XADD again: %s", err);
    xadd_send(x);
    return;
  }
  pyq_list_remove(&x->link);
  free(x);
}

static void xadd_send (xadd *x) {
  if (pyq_redis_cmd(x->c->cmd, 0, push_done, x, 9, x->argv, x->lens) == NULL)
    break_queue(x->c, "pyq.Queue: %s", "not enough memory");
}

static void xadd_new (cluster *c, const char **argv, const size_t *lens) {
  size_t n = 0;
  int i;
  xadd *x;
  for (i = 0; i < 9; i++) n += lens[i] + 1;
  if ((x = malloc(sizeof *x + n)) == NULL) {
    break_queue(c, "pyq.Queue: %s", "not enough memory");
    return;
  }
  x->c = c;
  for (i = 0, n = 0; i < 9; i++) {
    memcpy(x->data + n, argv[i], lens[i]);
    x->data[n + lens[i]] = '\0';
    x->argv[i] = x->data + n;
    x->lens[i] = lens[i];
    n += lens[i] + 1;
  }
  pyq_list_push(&c->xadds, &x->link);
  xadd_send(x);
}

static int grow (void **p, lua_Integer *cap, lua_Integer need, size_t size) {
  lua_Integer n = *cap ? *cap : 1024;
  void *np;
  if (need < *cap) return 1;
  while (n <= need) n *= 2;
  if ((np = realloc(*p, (size_t)n * size)) == NULL) return 0;
  memset((char *)np + (size_t)*cap * size, 0, (size_t)(n - *cap) * size);
  *p = np;
  *cap = n;
  return 1;
}

/* The arguments of the task at tidx as a JSON array into b: 1; or 0 with
 * the message pushed (b may hold memory either way). */
static int encode_args (lua_State *L, int tidx, pyq_jbuf *b) {
  int i, n, base = lua_gettop(L);
  lua_pushvalue(L, tidx);
  n = pyq_task_unpack(L);   /* the function, then the arguments */
  if (n == 0) {
    lua_settop(L, base);
    if (!pyq_jbuf_grow(b, 2)) luaL_error(L, "not enough memory");
    memcpy(b->p, "[]", 2);
    b->n = 2;
    return 1;
  }
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    if (lua_isnil(L, base + 1 + i))
      pyq_usage(L, "pyq.Queue.put: argument %d of a cluster task is nil "
                "(arguments travel as a JSON array: no nil)", i);
    lua_pushvalue(L, base + 1 + i);
    lua_rawseti(L, -2, i);
  }
  if (!pyq_json_encode(L, lua_gettop(L), b, PYQ_JSON_UTF8_ERROR)) {
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return 0;
  }
  lua_settop(L, base);
  return 1;
}

static void cl_push (pyq_backend *b, lua_State *L, int qidx, int tidx,
                     int kidx, lua_Integer index) {
  cluster *c = C(b);
  pyq_jbuf buf = {0};
  char seq[32];
  const char *argv[9];
  size_t lens[9];
  int i;
  (void)qidx; (void)kidx;
  if (b->failure) pyq_raise(L, "redis", "pyq.Queue.put: %s", b->failure);
  if (!pyq_task_name(L, tidx))
    pyq_usage(L, "pyq.Queue.put: a cluster queue takes tasks of named async "
              "functions (pyq.async(name, fn)), so other processes can run "
              "them");
  if (!encode_args(L, tidx, &buf)) {
    pyq_jbuf_free(&buf);
    pyq_usage(L, "pyq.Queue.put: the arguments of a cluster task must be "
              "JSON-encodable: %s", lua_tostring(L, -1));
  }
  if (!grow((void **)&c->idx, &c->cap, c->seq + 1, sizeof *c->idx)) {
    pyq_jbuf_free(&buf);
    luaL_error(L, "not enough memory");
  }
  c->idx[++c->seq] = index;
  if (c->npending++ == 0)   /* unfinished tasks: the watch keeps the loop */
    uv_ref((uv_handle_t *)&c->tick);
  snprintf(seq, sizeof seq, "%lld", (long long)c->seq);
  argv[0] = "XADD"; argv[1] = c->key_tasks; argv[2] = "*";
  argv[3] = "s"; argv[4] = seq; argv[5] = "f"; argv[6] = lua_tostring(L, -1);
  argv[7] = "a"; argv[8] = buf.p;
  for (i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
  lens[8] = buf.n;
  xadd_new(c, argv, lens);
  pyq_jbuf_free(&buf);
  lua_pop(L, 1);
}

/* Sets on the error at idx the fields of the JSON object x (a worker's
 * pyq.Error beyond kind and message); what does not decode is left. */
static void add_fields (lua_State *L, int idx, const char *x) {
  if (!pyq_json_decode(L, x, strlen(x), 0) || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, idx);
    } else lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The stand-in of a task that ran elsewhere: (ok, value, process, kind,
 * extra, traceback).  A failure is raised again as it was raised there:
 * a pyq.Error with its kind and fields, a table as that table (JSON's),
 * else a string; named after the process (field process, or the message's
 * start), with the process's traceback for exception_handler. */
static int standin (lua_State *L) {
  const char *x;
  if (lua_toboolean(L, 1)) {
    lua_settop(L, 2);
    return 1;
  }
  lua_settop(L, 6);
  x = lua_tostring(L, 5);
  if (!lua_isnil(L, 6)) {
    lua_pushfstring(L, "stack traceback (%s):%s", lua_tostring(L, 3),
                    strncmp(lua_tostring(L, 6), "stack traceback:", 16) == 0
                    ? lua_tostring(L, 6) + 16 : lua_tostring(L, 6));
    pyq_queue_traceback(L);
  }
  if (x && *x == '=' && lua_isnil(L, 4) &&
      pyq_json_decode(L, x + 1, strlen(x + 1), 0) && lua_istable(L, -1)) {
    lua_pushnil(L);   /* a plain table, as raised: no array/object marker */
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "process");
    return lua_error(L);
  }
  lua_settop(L, 6);
  lua_pushfstring(L, "%s: %s", lua_tostring(L, 3), lua_tostring(L, 2));
  if (lua_isnil(L, 4)) return lua_error(L);
  pyq_error_new(L, lua_tostring(L, 4), lua_tostring(L, -1));
  if (x && *x == '{') add_fields(L, lua_gettop(L), x);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "process");
  return lua_error(L);
}

/* Pushes the task of entry e (its function and arguments made a task). */
static void make_task (cluster *c, lua_State *L, entry *e) {
  int top = lua_gettop(L), n, i;
  if (e->kind == E_OUTCOME) {
    int ok = strcmp(e->f, "1") == 0;
    lua_pushcfunction(L, standin);
    lua_pushboolean(L, ok);
    if (!ok) lua_pushstring(L, e->a);
    else if (e->alen == 0 || !pyq_json_decode(L, e->a, e->alen, 0) ||
             lua_islightuserdata(L, -1)) {
      lua_settop(L, top + 2);
      lua_pushnil(L);   /* nil, null, or not JSON (a worker's bug) */
    }
    lua_pushstring(L, e->p ? e->p : "a worker");
    if (e->k && *e->k) lua_pushstring(L, e->k);
    else lua_pushnil(L);
    if (e->x) lua_pushstring(L, e->x);
    else lua_pushnil(L);
    if (e->t) lua_pushstring(L, e->t);
    else lua_pushnil(L);
    pyq_task_new(L, 6);
    return;
  }
  if (!pyq_task_named(L, e->f)) {
    lua_pushcfunction(L, standin);
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "no pyq.async named '%s' in this script", e->f);
    lua_pushstring(L, c->me);
    lua_pushliteral(L, "usage");
    pyq_task_new(L, 4);
    return;
  }
  if (!pyq_json_decode(L, e->a, e->alen, 0) || !lua_istable(L, -1)) {
    lua_settop(L, top);
    lua_pushcfunction(L, standin);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the task's arguments are not a JSON array");
    lua_pushstring(L, c->me);
    lua_pushliteral(L, "decode");
    pyq_task_new(L, 4);
    return;
  }
  n = (int)lua_rawlen(L, -1);
  luaL_checkstack(L, n, "too many task arguments");
  for (i = 1; i <= n; i++) lua_rawgeti(L, top + 2, i);
  lua_remove(L, top + 2);
  pyq_task_new(L, n);
}

static void xack (cluster *c, const char *id) {
  const char *argv[] = {"XACK", c->key_tasks, "pyq", id};
  send_cmd(c, 4, argv);
}

static void pop_disarm (pyq_fiber *f, void *on) {
  cluster *c = on;
  pyq_list_remove(&f->wait);
  c->nwait--;
}

static const pyq_wait_ops pop_wait = {"pyq.Queue (cluster)", pop_disarm};

static int cl_pop (pyq_backend *b, lua_State *L, int qidx,
                   lua_Integer *index, const pyq_wait_ops **ops, void **on) {
  cluster *c = C(b);
  pyq_link *l;
  pyq_fiber *f;
  (void)qidx;
  while ((l = pyq_list_shift(&c->entries)) != NULL) {
    entry *e = pyq_container(l, entry, link);
    lua_Integer put = 0;
    if (e->seq < 1 || e->seq > c->seq || (put = c->idx[e->seq]) <= 0) {
      if (e->kind == E_TASK) {   /* done already (elsewhere: not RUN_HERE) */
        if (put == 0) xack(c, e->id);
        c->held--;
      }
      entry_free(e);
      continue;
    }
    c->idx[e->seq] = e->kind == E_TASK ? RUN_HERE : 0;
    c->npending--;
    make_task(c, L, e);
    if (e->kind == E_TASK && grow((void **)&c->ack, &c->ackcap, put,
                                  sizeof *c->ack)) {
      free(c->ack[put]);
      c->ack[put] = e->id;
      e->id = NULL;
    } else if (e->kind == E_TASK) {
      c->held--;   /* out of memory: not acknowledged, claimed again later */
    }
    entry_free(e);
    *index = put;
    return PYQ_POP_TASK;
  }
  if (b->failure || (f = pyq_fiber_of(L)) == NULL) return PYQ_POP_EMPTY;
  pyq_list_push(&c->waiters, &f->wait);
  c->nwait++;
  arm_read(c);
  *ops = &pop_wait;
  *on = c;
  return PYQ_POP_WAIT;
}

/* A result this process made is made what a worker would have sent back,
 * the result decoded from its JSON (invalid UTF-8 mended, array/object
 * markers set, a top-level null nil, as a worker's): else the same job
 * would give other results, or fail, with the number of workers.  1, the result on top
 * replaced; or 0 with the error pushed (kind "encode", as a worker's). */
static int result_travels (cluster *c, lua_State *L) {
  pyq_jbuf buf = {0};
  int ok;
  if (lua_isnil(L, -1)) return 1;
  ok = pyq_json_encode(L, lua_gettop(L), &buf, 0);
  if (ok) {
    if (!pyq_json_decode(L, buf.p, buf.n, 0) || lua_islightuserdata(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);   /* null, as a worker's make_task has it */
    }
    lua_replace(L, -2);
    pyq_jbuf_free(&buf);
    return 1;
  }
  pyq_jbuf_free(&buf);
  pyq_error_new(L, "encode", lua_pushfstring(L, "%s: the result is not "
                "JSON-encodable: %s", c->me, lua_tostring(L, -1)));
  lua_pushstring(L, c->me);
  lua_setfield(L, -2, "process");
  lua_replace(L, -3);   /* the error in place of the message */
  lua_pop(L, 1);
  return 0;
}

/* A task this process ran from the stream is acknowledged, whatever its
 * outcome (a failure is an outcome: it is not run again). */
static int cl_settle (pyq_backend *b, lua_State *L, lua_Integer index,
                      int outcome) {
  cluster *c = C(b);
  int r = PYQ_SETTLE_OK;
  if (index < c->ackcap && c->ack[index]) {
    if (outcome == PYQ_OUT_DONE && !result_travels(c, L))
      r = PYQ_SETTLE_FAILED;
    if (outcome == PYQ_OUT_DONE && r == PYQ_SETTLE_OK) c->done++;
    else if (outcome != PYQ_OUT_CANCELLED) c->failed++;
    c->held--;
    xack(c, c->ack[index]);
    free(c->ack[index]);
    c->ack[index] = NULL;
  }
  return r;
}

static lua_Integer cl_pending (const pyq_backend *b) {
  return C(b)->npending;
}

/* The tasks stay in the stream; their outcomes, when they come, are
 * dropped as those of puts already accounted. */
static lua_Integer cl_drop (pyq_backend *b, lua_State *L, int qidx) {
  cluster *c = C(b);
  lua_Integer n = c->npending, i;
  (void)L; (void)qidx;
  for (i = 1; i <= c->seq; i++) c->idx[i] = 0;
  c->npending = 0;
  return n;
}

static void tick_closed (uv_handle_t *handle) {
  free(handle->data);
}

/* Closed normally, the job's keys go; broken, they stay for a re-run's
 * look (and the workers, which stop when the keys are gone). */
static void cl_close (pyq_backend *b, lua_State *L, int qidx) {
  cluster *c = C(b);
  pyq_link *l;
  lua_Integer i;
  (void)L; (void)qidx;
  if (b->failure == NULL) {
    const char *argv[] = {"DEL", c->key_tasks, c->key_results, c->key_meta};
    send_cmd(c, 4, argv);
  }
  pyq_redis_free(c->rd);
  pyq_redis_close(c->cmd);   /* the DEL goes out; no callback runs */
  while ((l = pyq_list_shift(&c->xadds)) != NULL)
    free(pyq_container(l, xadd, link));
  while ((l = pyq_list_shift(&c->entries)) != NULL)
    entry_free(pyq_container(l, entry, link));
  for (i = 0; i < c->ackcap; i++) free(c->ack[i]);
  free(c->ack);
  while (c->nracks > 0) free(c->racks[--c->nracks]);
  free(c->idx);
  uv_close((uv_handle_t *)&c->tick, tick_closed);
}

/* A task pushed beside the stream: a parked worker pops again. */
static void cl_nudge (pyq_backend *b) {
  cluster *c = C(b);
  pyq_link *w = pyq_list_shift(&c->waiters);
  if (w == NULL) return;
  c->nwait--;
  pyq_wake(pyq_container(w, pyq_fiber, wait), 0);
}

static const pyq_backend_ops cluster_ops = {
  "cluster", cl_push, cl_pop, cl_settle, cl_pending, cl_drop, cl_close,
  NULL, NULL, NULL, cl_nudge
};

/* ---- options ------------------------------------------------------------ */

static double opt_seconds (lua_State *L, int oidx, const char *key,
                           double dflt) {
  double v;
  if (lua_getfield(L, oidx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  v = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || !(v > 0) || v > 1e6)
    pyq_usage(L, "pyq.Queue: %s must be a number of seconds greater than 0, "
              "got %s", key, pyq_got(L, -1));
  lua_pop(L, 1);
  return v;
}

static const char url_key = 'u';   /* registry: the job's Redis URL */

static pyq_backend *cluster_open (lua_State *L, int oidx, int qidx,
                                  int slot) {
  pyq_host *h = pyq_host_of(L);
  const char *url, *name, *why, *p;
  char host[128], hn[128], workers[32];
  int port, db;
  double visibility, ctimeout;
  cluster *c;
  (void)qidx; (void)slot;
  if (lua_getfield(L, oidx, "cluster") != LUA_TSTRING)
    pyq_usage(L, "pyq.Queue: cluster must be a redis:// URL, got %s",
              pyq_got(L, -1));
  url = lua_tostring(L, -1);
  if (!pyq_redis_parse_url(url, host, sizeof host, &port, &db, &why))
    pyq_usage(L, "pyq.Queue: cluster %s %s", pyq_got(L, -1), why);
  lua_getfield(L, oidx, "name");
  name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (*name == '\0' || strlen(name) > 200)
    pyq_usage(L, "pyq.Queue: a cluster queue needs a name (a string of 1 to "
              "200 letters, digits, '_', '-' or '.'), got %s", pyq_got(L, -1));
  for (p = name; *p; p++)
    if (!(*p == '_' || *p == '-' || *p == '.' || (*p >= '0' && *p <= '9') ||
          ((*p | 32) >= 'a' && (*p | 32) <= 'z')))
      pyq_usage(L, "pyq.Queue: name must be letters, digits, '_', '-' or "
                "'.', got %s", pyq_got(L, -1));
  visibility = opt_seconds(L, oidx, "visibility", 30);
  ctimeout = opt_seconds(L, oidx, "cluster_timeout", 60);
  lua_getfield(L, oidx, "workers");
  snprintf(workers, sizeof workers, "%lld",
           (long long)(lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 25));
  lua_pop(L, 1);
  if ((c = calloc(1, sizeof *c)) == NULL) return NULL;
  c->base.ops = &cluster_ops;
  c->h = h;
  snprintf(c->key_tasks, sizeof c->key_tasks, "pyq:%s:tasks", name);
  snprintf(c->key_results, sizeof c->key_results, "pyq:%s:results", name);
  snprintf(c->key_meta, sizeof c->key_meta, "pyq:%s:meta", name);
  if (gethostname(hn, sizeof hn) != 0) strcpy(hn, "localhost");
  hn[sizeof hn - 1] = '\0';
  snprintf(c->me, sizeof c->me, "main@%s:%ld", hn, (long)getpid());
  snprintf(c->where, sizeof c->where, "pyq.Queue(%s)", name);
  c->visibility = visibility;
  c->ctimeout = ctimeout;
  /* a command's own deadline: well inside cluster_timeout */
  c->timeout = ctimeout / 3 < 5 ? ctimeout / 3 : 5;
  c->last_claim = pyq_clock();
  pyq_list_init(&c->entries);
  pyq_list_init(&c->waiters);
  pyq_list_init(&c->xadds);
  c->rd = pyq_redis_new(h, url, c->timeout);
  c->cmd = pyq_redis_new(h, url, c->timeout);
  uv_timer_init(h->loop, &c->tick);
  c->tick.data = c;
  uv_timer_start(&c->tick, on_tick, 250, 250);
  uv_unref((uv_handle_t *)&c->tick);
  {
    const char *del[] = {"DEL", c->key_tasks, c->key_results, c->key_meta};
    const char *g1[] = {"XGROUP", "CREATE", c->key_tasks, "pyq", "$",
                        "MKSTREAM"};
    const char *g2[] = {"XGROUP", "CREATE", c->key_results, "pyq", "$",
                        "MKSTREAM"};
    const char *meta[] = {"HSET", c->key_meta, "workers", workers, "main",
                          c->me};
    send_cmd(c, 4, del);
    send_cmd(c, 6, g1);
    send_cmd(c, 6, g2);
    /* after meta: a worker that reads a new count, then finds no meta,
     * knows a job started and ended between its looks */
    const char *started[] = {"INCR", "pyq:jobs"};
    send_cmd(c, 6, meta);
    send_cmd(c, 2, started);
  }
  c->why[0] = '\0';
  lua_rawgetp(L, LUA_REGISTRYINDEX, &url_key);   /* the job's Redis: the first */
  if (lua_isnil(L, -1)) {
    lua_pushstring(L, url);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &url_key);
  }
  lua_pop(L, 3);
  return &c->base;
}

/* core._cluster_url([url]) -> the job's Redis URL, or nil when not known:
 * the first cluster queue's in the main process, --worker's (set by
 * pyq.cluster) in a worker.  What http.limit's shared = true uses. */
static int cluster_url (lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &url_key);
    return 0;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &url_key);
  return 1;
}

void pyq_open_cluster (lua_State *L) {
  pyq_queue_set_cluster(pyq_host_of(L), cluster_open);
  lua_pushcfunction(L, cluster_url);
  lua_setfield(L, -2, "_cluster_url");
}
