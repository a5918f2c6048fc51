/* store.c -- the job store: a queue's keyed tasks recorded in SQLite.
 *
 *   local queue <close> = pyq.Queue{ workers = 25, store = "job.sqlite", name = "matches" }
 *   queue:put(fetch(id), { key = "match:" .. id })
 *
 * A store is a queue backend (queue/backend.h) that wraps the in-memory
 * ring and observes it: push notes which put index holds which key (in a
 * Lua table anchored in the registry: key -> index and index -> key, for
 * the tasks pending or running), settle records a done task's key and its
 * result, JSON-encoded by host/json's encoder, in the table pyq_jobs
 * (name, key, result) of the database.  A later put of a recorded key is
 * answered by recall, a primary-key read on a prepared statement: the
 * queue then puts a stand-in instead, a closure that returns the recorded
 * result, which settle counts as skipped; so join and completed() give
 * the result in put order as if the task had run.  Failed and cancelled
 * tasks are not recorded and run again next time.
 *
 * Writes go through db.c's grouped commits (WAL, synchronous=NORMAL): one
 * transaction per loop turn (or BATCH records), committed at join, at
 * close, on SIGINT/SIGTERM and at exit; a kill -9 loses at most the open
 * group, whose tasks run again (at least once).  Every queue has its own
 * connection; db.c's busy handler commits the other groups of this
 * process before it waits, so queues sharing a file do not lock each
 * other out.  pyq.store.open(path) inspects and resets a store. */
#include <stdlib.h>
#include <string.h>
#include "store.h"
#include "core/host.h"
#include "lua/check.h"
#include "lua/error.h"
#include "json/json.h"
#include "sqlite/db.h"
#include "queue/backend.h"

#define BATCH 10000       /* records per group at most */
#define BUSY_MS 5000
#define HANDLE "pyq.store"


static const char *const schema =
  "CREATE TABLE IF NOT EXISTS pyq_jobs (name TEXT NOT NULL, key TEXT NOT "
  "NULL, result TEXT, PRIMARY KEY (name, key)) WITHOUT ROWID";

enum { S_GET, S_PUT, S_DEL, S_N };

static const char *const sqls[S_N] = {
  "SELECT result FROM pyq_jobs WHERE name = ?1 AND key = ?2",
  "INSERT OR REPLACE INTO pyq_jobs (name, key, result) VALUES (?1, ?2, ?3)",
  "DELETE FROM pyq_jobs WHERE name = ?1 AND key = ?2"
};

typedef struct store {
  pyq_backend base;
  pyq_backend *inner;     /* the ring holding the pending tasks, or the
                             cluster's stream */
  pyq_backend *local;     /* with a cluster: a ring for the stand-ins,
                             which run here (they are no named tasks) */
  lua_Integer *lidx;      /* ... and their put indexes, in order: the ring
                             numbers its tasks as if no other put came
                             between them, and the stream's do */
  size_t lhead, lcount, lcap;
  pyq_db d;
  sqlite3_stmt *st[S_N];
  char *name;             /* scopes the keys in the file */
  int keys;               /* registry ref: the keys in flight */
  lua_Integer last;       /* put index of the last push */
} store;

#define S(b) ((store *)(b))

/* ---- the database -------------------------------------------------------- */

/* pyq.sqlite's state: one commit loop for every database of the host, so
 * a job's rows and the keys of the tasks that wrote them commit in the
 * order their groups were opened. */
static pyq_dbs *module_dbs (lua_State *L) {
  pyq_dbs **p = pyq_dbs_push(L);
  lua_pop(L, 1);
  return *p;
}

/* Opens path with the table and statements: 1, or 0 with db->err set. */
static int store_db_open (lua_State *L, pyq_db *db, sqlite3_stmt **st,
                          const char *path) {
  pyq_dbs *dbs = module_dbs(L);
  int i;
  if (dbs == NULL) {
    memset(db, 0, sizeof *db);
    strcpy(db->err, "the host is exiting");
    return 0;
  }
  if (!pyq_db_open(dbs, db, path, 1, BATCH, BUSY_MS)) return 0;
  if (sqlite3_exec(db->db, schema, NULL, NULL, NULL) != SQLITE_OK) goto fail;
  for (i = 0; i < S_N; i++)
    if (sqlite3_prepare_v3(db->db, sqls[i], -1, SQLITE_PREPARE_PERSISTENT,
                           &st[i], NULL) != SQLITE_OK)
      goto fail;
  return 1;
fail:
  snprintf(db->err, sizeof db->err, "%s", sqlite3_errmsg(db->db));
  pyq_db_close(db);
  return 0;
}

/* Raises a "sqlite" pyq.Error for a statement that failed, after
 * resetting it. */
static int db_error (lua_State *L, const char *fname, pyq_db *db,
                     sqlite3_stmt *s) {
  int code = sqlite3_extended_errcode(db->db);
  sqlite3_reset(s);
  luaL_where(L, 1);
  lua_pushfstring(L, "%s: store '%s': %s", fname,
                  sqlite3_db_filename(db->db, "main"), sqlite3_errmsg(db->db));
  lua_concat(L, 2);
  pyq_error_new(L, "sqlite", lua_tostring(L, -1));
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  return lua_error(L);
}

/* ---- the backend --------------------------------------------------------- */

/* The stand-in a skipped put runs: gives back the recorded result. */
static int replayed (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

/* The key at kidx in flight: PYQ_KEY_BUSY; recorded: its stand-in pushed,
 * PYQ_KEY_DONE; else PYQ_KEY_NEW. */
static int store_recall (pyq_backend *b, lua_State *L, int kidx) {
  store *s = S(b);
  sqlite3_stmt *get = s->st[S_GET];
  size_t n;
  const char *key = lua_tolstring(L, kidx, &n);
  int rc;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->keys);
  lua_pushvalue(L, kidx);
  rc = lua_rawget(L, -2);
  lua_pop(L, 2);
  if (rc != LUA_TNIL) return PYQ_KEY_BUSY;
  sqlite3_bind_text(get, 1, s->name, -1, SQLITE_STATIC);
  sqlite3_bind_text64(get, 2, key, n, SQLITE_STATIC, SQLITE_UTF8);
  rc = sqlite3_step(get);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(get);
    return PYQ_KEY_NEW;
  }
  if (rc != SQLITE_ROW) return db_error(L, "pyq.Queue.put", &s->d, get);
  if (sqlite3_column_type(get, 0) == SQLITE_NULL) {
    lua_pushnil(L);
  } else if (!pyq_json_decode(L, (const char *)sqlite3_column_text(get, 0),
                              (size_t)sqlite3_column_bytes(get, 0), 0)) {
    const char *why = lua_tostring(L, -1);
    sqlite3_reset(get);
    return pyq_raise(L, "decode", "pyq.Queue.put: the result recorded for "
                     "key %s in store '%s' does not decode: %s",
                     pyq_got(L, kidx), sqlite3_db_filename(s->d.db, "main"),
                     why);
  }
  sqlite3_reset(get);
  lua_pushcclosure(L, replayed, 1);
  return PYQ_KEY_DONE;
}

/* Doubles the FIFO of the stand-ins' put indexes, in order. */
static int grow_lidx (store *s) {
  size_t cap = s->lcap ? s->lcap * 2 : 64, i;
  lua_Integer *p = malloc(cap * sizeof *p);
  if (p == NULL) return 0;
  for (i = 0; i < s->lcount; i++) p[i] = s->lidx[(s->lhead + i) % s->lcap];
  free(s->lidx);
  s->lidx = p;
  s->lhead = 0;
  s->lcap = cap;
  return 1;
}

static void store_push (pyq_backend *b, lua_State *L, int qidx, int tidx,
                        int kidx, lua_Integer index) {
  store *s = S(b);
  int replay = !kidx && lua_tocfunction(L, tidx) == replayed;
  /* pushed first: a push that raises (a cluster task that cannot travel)
   * leaves nothing of this put behind */
  if (replay && s->local) {
    if (s->lcount == s->lcap && !grow_lidx(s)) luaL_error(L, "not enough memory");
    s->local->ops->push(s->local, L, qidx, tidx, 0, index);
    s->lidx[(s->lhead + s->lcount++) % s->lcap] = index;
    if (s->inner->ops->nudge) s->inner->ops->nudge(s->inner);
  } else s->inner->ops->push(s->inner, L, qidx, tidx, kidx, index);
  s->last = index;
  if (kidx || replay) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->keys);
    if (kidx) {
      lua_pushvalue(L, kidx);
      lua_pushinteger(L, index);
      lua_rawset(L, -3);
      lua_pushvalue(L, kidx);
    } else {
      lua_pushboolean(L, 0);   /* a stand-in: counted as skipped */
    }
    lua_rawseti(L, -2, index);
    lua_pop(L, 1);
  }
}

static int store_pop (pyq_backend *b, lua_State *L, int qidx,
                      lua_Integer *index, const pyq_wait_ops **ops, void **on) {
  store *s = S(b);
  if (s->local && s->local->ops->pending(s->local) > 0) {
    int r = s->local->ops->pop(s->local, L, qidx, index, ops, on);
    *index = s->lidx[s->lhead];   /* the put's own, not the ring's count */
    s->lhead = (s->lhead + 1) % s->lcap;
    s->lcount--;
    return r;
  }
  return s->inner->ops->pop(s->inner, L, qidx, index, ops, on);
}

/* Lets go of the put index idx in the in-flight table at t; its key, if
 * any, is pushed (else nil, or false for a stand-in). */
static int let_go (lua_State *L, int t, lua_Integer idx) {
  int type = lua_rawgeti(L, t, idx);
  if (type == LUA_TNIL) return type;
  lua_pushnil(L);
  lua_rawseti(L, t, idx);
  if (type == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TNUMBER && lua_tointeger(L, -1) == idx) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, t);
    }
    lua_pop(L, 1);
  }
  return type;
}

/* Records the key at kidx with the result at ridx: PYQ_SETTLE_OK, or
 * PYQ_SETTLE_FAILED with an error pushed. */
static int record (store *s, lua_State *L, int ridx, int kidx) {
  sqlite3_stmt *put = s->st[S_PUT];
  pyq_jbuf buf = { NULL, 0, 0 };
  size_t n;
  const char *key = lua_tolstring(L, kidx, &n);
  int rc;
  if (!lua_isnil(L, ridx) && !pyq_json_encode(L, ridx, &buf, 0)) {
    const char *why = lua_tostring(L, -1), *shown = pyq_got(L, kidx);
    pyq_jbuf_free(&buf);
    pyq_error_new(L, "encode", lua_pushfstring(L, "pyq.Queue: the result of "
                  "the task put with key %s cannot be stored: %s", shown, why));
    return PYQ_SETTLE_FAILED;
  }
  rc = pyq_db_write_begin(&s->d);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(put, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text64(put, 2, key, n, SQLITE_STATIC, SQLITE_UTF8);
    if (buf.p) sqlite3_bind_text64(put, 3, buf.p, buf.n, SQLITE_STATIC, SQLITE_UTF8);
    else sqlite3_bind_null(put, 3);
    rc = sqlite3_step(put);
    sqlite3_reset(put);
    sqlite3_clear_bindings(put);
    if (rc == SQLITE_DONE) rc = pyq_db_write_end(&s->d);
  }
  pyq_jbuf_free(&buf);
  if (rc == SQLITE_OK) return PYQ_SETTLE_OK;
  pyq_error_new(L, "sqlite", lua_pushfstring(L, "pyq.Queue: cannot record "
                "key %s in store '%s': %s", pyq_got(L, kidx),
                sqlite3_db_filename(s->d.db, "main"),
                s->d.err[0] ? s->d.err : sqlite3_errmsg(s->d.db)));
  lua_pushinteger(L, rc);
  lua_setfield(L, -2, "code");
  return PYQ_SETTLE_FAILED;
}

/* The task at index ended, its result or error on top: a keyed task that
 * finished is recorded; a stand-in is counted as skipped. */
static int store_settle (pyq_backend *b, lua_State *L, lua_Integer index,
                         int outcome) {
  store *s = S(b);
  int top = lua_gettop(L), type, r = PYQ_SETTLE_OK;
  /* the cluster acknowledges, and fails a result no worker could send */
  if (s->inner->ops->settle &&
      s->inner->ops->settle(s->inner, L, index, outcome) == PYQ_SETTLE_FAILED) {
    lua_replace(L, top);   /* the error in place of the result */
    outcome = PYQ_OUT_FAILED;
    r = PYQ_SETTLE_FAILED;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->keys);
  type = let_go(L, top + 1, index);
  if (type == LUA_TBOOLEAN && outcome == PYQ_OUT_DONE) {
    r = PYQ_SETTLE_SKIPPED;
  } else if (type == LUA_TSTRING && outcome == PYQ_OUT_DONE &&
             (r = record(s, L, top, top + 2)) == PYQ_SETTLE_FAILED) {
    lua_replace(L, top + 1);
  }
  if (r == PYQ_SETTLE_FAILED && outcome == PYQ_OUT_FAILED) {
    lua_settop(L, top);   /* the inner's error, given as ours */
    lua_pushvalue(L, top);
    return r;
  }
  lua_settop(L, r == PYQ_SETTLE_FAILED ? top + 1 : top);
  return r;
}

static lua_Integer store_pending (const pyq_backend *b) {
  const store *s = (const store *)b;
  return s->inner->ops->pending(s->inner) +
         (s->local ? s->local->ops->pending(s->local) : 0);
}

/* queue:cancel(): the dropped tasks are the last ones pushed; their keys
 * are no longer in flight. */
static lua_Integer store_drop (pyq_backend *b, lua_State *L, int qidx) {
  store *s = S(b);
  lua_Integer i, n = s->inner->ops->drop(s->inner, L, qidx);
  int t;
  if (s->local) {
    n += s->local->ops->drop(s->local, L, qidx);
    s->lhead = s->lcount = 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->keys);
  t = lua_gettop(L);
  for (i = s->last - n + 1; i <= s->last; i++) {
    let_go(L, t, i);
    lua_settop(L, t);
  }
  lua_pop(L, 1);
  return n;
}

static void store_free (store *s, lua_State *L) {
  if (s->inner) s->inner->ops->close(s->inner, L, 0);
  if (s->local) s->local->ops->close(s->local, L, 0);
  free(s->lidx);
  luaL_unref(L, LUA_REGISTRYINDEX, s->keys);
  pyq_db_close(&s->d);   /* commits; finalizes the statements */
  free(s->name);
  free(s);
}

static void store_close (pyq_backend *b, lua_State *L, int qidx) {
  (void)qidx;
  store_free(S(b), L);
}

static int store_forget (pyq_backend *b, lua_State *L, int kidx) {
  store *s = S(b);
  sqlite3_stmt *del = s->st[S_DEL];
  size_t n;
  const char *key = lua_tolstring(L, kidx, &n);
  int rc = pyq_db_write_begin(&s->d);
  if (rc != SQLITE_OK) return db_error(L, "pyq.Queue.forget", &s->d, del);
  sqlite3_bind_text(del, 1, s->name, -1, SQLITE_STATIC);
  sqlite3_bind_text64(del, 2, key, n, SQLITE_STATIC, SQLITE_UTF8);
  if (sqlite3_step(del) != SQLITE_DONE)
    return db_error(L, "pyq.Queue.forget", &s->d, del);
  sqlite3_reset(del);
  n = (size_t)sqlite3_changes(s->d.db);
  pyq_db_write_end(&s->d);
  pyq_db_commit(&s->d);   /* rare, and other connections see it at once */
  return n > 0;
}

static void store_commit (pyq_backend *b) {
  pyq_db_commit(&S(b)->d);   /* a failure is logged by db.c's next try */
}

static const pyq_backend_ops store_ops = {
  "store", store_push, store_pop, store_settle, store_pending, store_drop,
  store_close, store_recall, store_forget, store_commit, NULL
};

/* The wrapped cluster gave up: so does the store, for the queue. */
static void inner_broken (pyq_backend *inner) {
  store *s = inner->queue;
  s->base.failure = inner->failure;
  if (s->base.broken) s->base.broken(&s->base);
}

/* Why the options store (at -2) and name (at -1) are bad, or NULL. */
static const char *bad_options (lua_State *L) {
  size_t n;
  const char *p;
  if (lua_isnil(L, -2))
    return "pyq.Queue: name needs a store (pyq.Queue{ store = path, name = "
           "... }): it scopes the keys inside one";
  p = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
  if (p == NULL || n == 0 || strlen(p) != n)
    return lua_pushfstring(L, "pyq.Queue: store must be a path (a non-empty "
                           "string without NUL), got %s", pyq_got(L, -2));
  if (lua_isnil(L, -1)) return NULL;
  p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (p == NULL || n == 0 || strlen(p) != n)
    return lua_pushfstring(L, "pyq.Queue: name must be a non-empty string "
                           "without NUL, got %s", pyq_got(L, -1));
  return NULL;
}

/* pyq.Queue{ store = path, name = name [, cluster = url] }: the hook
 * queue_new calls; inner is the cluster's backend, or NULL. */
static pyq_backend *store_open (lua_State *L, int oidx, int qidx, int slot,
                                pyq_backend *inner) {
  const char *path, *name, *why;
  store *s;
  pyq_backend *ring = NULL;
  int keys;
  lua_getfield(L, oidx, "store");
  lua_getfield(L, oidx, "name");
  if ((why = bad_options(L)) != NULL) {
    if (inner) inner->ops->close(inner, L, qidx);
    pyq_usage(L, "%s", why);
  }
  path = lua_tostring(L, -2);
  name = lua_isnil(L, -1) ? "default" : lua_tostring(L, -1);
  /* with a cluster the ring keeps the stand-ins only; it uses slot, which
   * the cluster does not */
  if ((ring = pyq_ring_open(L, qidx, slot)) == NULL) {
    if (inner) inner->ops->close(inner, L, qidx);
    return NULL;
  }
  lua_newtable(L);
  keys = luaL_ref(L, LUA_REGISTRYINDEX);
  if ((s = calloc(1, sizeof *s)) == NULL || (s->name = strdup(name)) == NULL) {
    free(s);
    ring->ops->close(ring, L, qidx);
    if (inner) inner->ops->close(inner, L, qidx);
    luaL_unref(L, LUA_REGISTRYINDEX, keys);
    return NULL;
  }
  s->base.ops = &store_ops;
  s->inner = inner ? inner : ring;
  s->local = inner ? ring : NULL;
  if (inner) {
    inner->broken = inner_broken;
    inner->queue = s;
  }
  s->keys = keys;
  if (!store_db_open(L, &s->d, s->st, path)) {
    lua_pushstring(L, s->d.err);
    s->d.db = NULL;
    store_free(s, L);
    pyq_raise(L, "sqlite", "pyq.Queue: cannot open store '%s': %s", path,
              lua_tostring(L, -1));
  }
  lua_pop(L, 2);
  return &s->base;
}

/* ---- pyq.store: inspection --------------------------------------------- */

typedef struct handle {
  pyq_db d;
  sqlite3_stmt *st[S_N];
  int closed;
} handle;

static handle *check_handle (lua_State *L, const char *fname) {
  handle *hd = luaL_testudata(L, 1, HANDLE);
  if (hd == NULL)
    pyq_usage(L, "%s: bad self (a pyq.store expected, got %s); call it with "
              "':'", fname, luaL_typename(L, 1));
  if (hd->closed) pyq_usage(L, "%s: the store is closed", fname);
  return hd;
}

/* The name argument at 2: optional, "default" when absent. */
static const char *check_name (lua_State *L, const char *fname) {
  size_t n;
  const char *name;
  if (lua_isnoneornil(L, 2)) return "default";
  name = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
  if (name == NULL || n == 0 || strlen(name) != n)
    pyq_usage(L, "%s: name must be a non-empty string, got %s", fname,
              pyq_got(L, 2));
  return name;
}

/* Runs sql on the name at 2 for each row: rows are pushed by `row`. */
static sqlite3_stmt *prepare (lua_State *L, const char *fname, handle *hd,
                              const char *sql, const char *name) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(hd->d.db, sql, -1, &s, NULL) != SQLITE_OK)
    db_error(L, fname, &hd->d, NULL);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
  return s;
}

/* store:keys([name]) -> the recorded keys of name, sorted */
static int handle_keys (lua_State *L) {
  handle *hd = check_handle(L, "pyq.store.keys");
  const char *name = check_name(L, "pyq.store.keys");
  sqlite3_stmt *s = prepare(L, "pyq.store.keys", hd, "SELECT key FROM "
                            "pyq_jobs WHERE name = ?1 ORDER BY key", name);
  lua_Integer i = 0;
  int rc;
  lua_newtable(L);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    lua_pushlstring(L, (const char *)sqlite3_column_text(s, 0),
                    (size_t)sqlite3_column_bytes(s, 0));
    lua_rawseti(L, -2, ++i);
  }
  if (rc != SQLITE_DONE) {
    sqlite3_finalize(s);
    return pyq_raise(L, "sqlite", "pyq.store.keys: %s", sqlite3_errmsg(hd->d.db));
  }
  sqlite3_finalize(s);
  return 1;
}

/* store:count([name]) -> how many keys name has recorded */
static int handle_count (lua_State *L) {
  handle *hd = check_handle(L, "pyq.store.count");
  const char *name = check_name(L, "pyq.store.count");
  sqlite3_stmt *s = prepare(L, "pyq.store.count", hd, "SELECT count(*) FROM "
                            "pyq_jobs WHERE name = ?1", name);
  if (sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_finalize(s);
    return pyq_raise(L, "sqlite", "pyq.store.count: %s", sqlite3_errmsg(hd->d.db));
  }
  lua_pushinteger(L, sqlite3_column_int64(s, 0));
  sqlite3_finalize(s);
  return 1;
}

/* store:clear([name]) -> how many keys it dropped; committed at once */
static int handle_clear (lua_State *L) {
  handle *hd = check_handle(L, "pyq.store.clear");
  const char *name = check_name(L, "pyq.store.clear");
  sqlite3_stmt *s = prepare(L, "pyq.store.clear", hd, "DELETE FROM pyq_jobs "
                            "WHERE name = ?1", name);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE)
    return pyq_raise(L, "sqlite", "pyq.store.clear: %s", sqlite3_errmsg(hd->d.db));
  lua_pushinteger(L, sqlite3_changes(hd->d.db));
  return 1;
}

/* store:close(), <close> and __gc; twice is harmless. */
static int handle_close (lua_State *L) {
  handle *hd = luaL_testudata(L, 1, HANDLE);
  if (hd == NULL)
    return pyq_usage(L, "pyq.store.close: bad self (a pyq.store expected, got "
                     "%s)", luaL_typename(L, 1));
  if (hd->closed) return 0;
  hd->closed = 1;
  pyq_db_close(&hd->d);
  return 0;
}

static int handle_tostring (lua_State *L) {
  handle *hd = luaL_testudata(L, 1, HANDLE);
  if (hd == NULL)
    return pyq_usage(L, "pyq.store.__tostring: bad self (a pyq.store "
                     "expected, got %s)", luaL_typename(L, 1));
  lua_pushfstring(L, "pyq.store (%s)%s", hd->closed ? "?" :
                  sqlite3_db_filename(hd->d.db, "main"),
                  hd->closed ? " closed" : "");
  return 1;
}

/* pyq.store.open(path) */
static int store_open_lua (lua_State *L) {
  size_t n;
  const char *path = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n)
                                                   : NULL;
  handle *hd;
  if (path == NULL || n == 0 || strlen(path) != n)
    return pyq_usage(L, "pyq.store.open: path must be a non-empty string "
                     "without NUL, got %s", pyq_got(L, 1));
  hd = lua_newuserdatauv(L, sizeof *hd, 0);
  memset(hd, 0, sizeof *hd);
  hd->closed = 1;   /* until open: __gc does nothing */
  luaL_setmetatable(L, HANDLE);
  if (!store_db_open(L, &hd->d, hd->st, path))
    return pyq_raise(L, "sqlite", "pyq.store.open: cannot open '%s': %s",
                     path, hd->d.err);
  hd->closed = 0;
  return 1;
}

int luaopen_pyq_store (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"keys", handle_keys}, {"count", handle_count}, {"clear", handle_clear},
    {"close", handle_close}, {NULL, NULL}
  };
  if (luaL_newmetatable(L, HANDLE)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, handle_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, HANDLE);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, store_open_lua);
  lua_setfield(L, -2, "open");
  return 1;
}

void pyq_open_store (lua_State *L) {
  pyq_host *h = pyq_host_of(L);   /* the databases' state: on first use */
  pyq_queue_set_store(h, store_open);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pyq_store);
  lua_setfield(L, -2, "pyq.store");
  lua_pop(L, 1);
}
