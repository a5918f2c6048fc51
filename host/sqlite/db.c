/* db.c -- SQLite databases with writes grouped into transactions.
 *
 * One fsync-free commit per group instead of one transaction per statement
 * is what makes single-row inserts from many tasks fast: under WAL with
 * synchronous=NORMAL a commit appends to the log and a crash keeps every
 * committed group.  A group opens at the first write (BEGIN) and is
 * committed when `batch` writes are in it, by a libuv check handle after
 * the loop turn that opened it (so tasks finishing in one turn share a
 * commit and nothing waits long), on an interrupt (a hook registered with
 * pyq_on_interrupt, run before tasks unwind), and at close.
 *
 * Scripts cannot open or close transactions behind the grouping's back:
 * an authorizer refuses transaction statements unless the module runs
 * them.  Two handles on one file in one process would lock each other out
 * while a group is open, so the busy handler commits this process's other
 * groups before it waits.  A commit that fails is never silent: it is
 * logged, the database's next call raises it, and the exit code says the
 * output is incomplete.  The check handle is the module's, made with
 * malloc: libuv may hold it after Lua's memory is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "db.h"
#include "core/log.h"
#include "core/signal.h"

struct pyq_dbs {
  pyq_host *h;
  pyq_link all;           /* every open database */
  pyq_link open;          /* databases with a group open */
  uv_check_t *check;      /* commits them after the turn */
  int checking;
  pyq_job hook;           /* on interrupt: commit every group */
};

/* A commit nobody is there to raise from (the turn's end, an interrupt,
 * a finalizer): logged, and the job's exit code says output was lost; the
 * database's next call raises it too. */
static void commit_quietly (pyq_db *db) {
  pyq_host *h = db->dbs ? db->dbs->h : NULL;
  int lost = db->writes;
  if (pyq_db_commit(db) == SQLITE_OK || h == NULL) return;
  h->write_errors++;
  pyq_log(h, PYQ_ERROR, "pyq.sqlite", "%s: COMMIT failed, %d write%s rolled "
          "back: %s", sqlite3_db_filename(db->db, "main"), lost,
          lost == 1 ? "" : "s", db->err);
}

static void commit_all (pyq_dbs *dbs, pyq_db *except) {
  pyq_link *l = dbs->open.next;
  while (l != &dbs->open) {
    pyq_link *next = l->next;
    pyq_db *db = pyq_container(l, pyq_db, link);
    if (db != except && !db->explicit_tx) commit_quietly(db);
    l = next;
  }
}

static void on_check (uv_check_t *c) {
  pyq_dbs *dbs = c->data;
  commit_all(dbs, NULL);
  if (pyq_list_empty(&dbs->open)) {   /* a locked one waits a turn more */
    uv_check_stop(c);
    dbs->checking = 0;
  }
}

static void on_interrupt (pyq_host *h, pyq_job *hook) {
  (void)h;
  commit_all(pyq_container(hook, pyq_dbs, hook), NULL);
}

pyq_dbs *pyq_dbs_new (pyq_host *h) {
  pyq_dbs *dbs = calloc(1, sizeof *dbs);
  if (dbs == NULL) return NULL;
  if ((dbs->check = malloc(sizeof *dbs->check)) == NULL) {
    free(dbs);
    return NULL;
  }
  dbs->h = h;
  pyq_list_init(&dbs->all);
  pyq_list_init(&dbs->open);
  uv_check_init(h->loop, dbs->check);
  uv_unref((uv_handle_t *)dbs->check);
  dbs->check->data = dbs;
  pyq_list_init(&dbs->hook.link);
  dbs->hook.run = on_interrupt;
  pyq_on_interrupt(h, &dbs->hook);
  return dbs;
}

static void check_closed (uv_handle_t *c) { free(c); }

/* The module goes (lua_close): every group is committed, and databases
 * still open (closed later by their __gc) go on without grouping. */
void pyq_dbs_free (pyq_dbs *dbs) {
  pyq_link *l;
  commit_all(dbs, NULL);
  while ((l = pyq_list_shift(&dbs->all)) != NULL) {
    pyq_db *db = pyq_container(l, pyq_db, member);
    pyq_list_remove(&db->link);
    db->dbs = NULL;
  }
  pyq_list_remove(&dbs->hook.link);
  uv_close((uv_handle_t *)dbs->check, check_closed);
  free(dbs);
}

static int exec (pyq_db *db, const char *sql) {
  int rc;
  db->internal = 1;
  rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
  db->internal = 0;
  if (rc != SQLITE_OK)
    snprintf(db->err, sizeof db->err, "%s", sqlite3_errmsg(db->db));
  return rc;
}

/* Transaction statements are the grouping's, or db:transaction's. */
static int authorize (void *ud, int action, const char *a, const char *b,
                      const char *c, const char *d) {
  pyq_db *db = ud;
  (void)a; (void)b; (void)c; (void)d;
  if ((action == SQLITE_TRANSACTION || action == SQLITE_SAVEPOINT) &&
      !db->internal) {
    db->refused = 1;
    return SQLITE_DENY;
  }
  return SQLITE_OK;
}

/* A lock held elsewhere: first commit this process's other groups (a second
 * handle on the same file would otherwise wait for this very loop), then
 * wait in small sleeps up to busy_ms, as sqlite3_busy_timeout would. */
static int on_busy (void *ud, int count) {
  pyq_db *db = ud;
  if (count == 0) {
    db->busy_since = pyq_clock();
    if (db->dbs) commit_all(db->dbs, db);
    return 1;
  }
  if ((pyq_clock() - db->busy_since) * 1000 >= db->busy_ms) return 0;
  sqlite3_sleep(count < 10 ? 1 : 10);
  return 1;
}

int pyq_db_open (pyq_dbs *dbs, pyq_db *db, const char *path, int wal,
                 int batch, int busy_ms) {
  int rc;
  memset(db, 0, sizeof *db);
  db->dbs = dbs;
  db->batch = batch;
  db->busy_ms = busy_ms;
  pyq_list_init(&db->link);
  pyq_list_init(&db->member);
  rc = sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE |
                       SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_busy_handler(db->db, on_busy, db);
  if (rc == SQLITE_OK) rc = sqlite3_set_authorizer(db->db, authorize, db);
  if (rc == SQLITE_OK && wal) rc = exec(db, "PRAGMA journal_mode=WAL");
  if (rc == SQLITE_OK && wal) rc = exec(db, "PRAGMA synchronous=NORMAL");
  if (rc == SQLITE_OK) {
    pyq_list_push(&dbs->all, &db->member);
    return 1;
  }
  snprintf(db->err, sizeof db->err, "%s",
           db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
  sqlite3_close_v2(db->db);
  db->db = NULL;
  return 0;
}

int pyq_db_write_begin (pyq_db *db) {
  int rc;
  if (db->grouped || db->explicit_tx || db->dbs == NULL) return SQLITE_OK;
  if ((rc = exec(db, "BEGIN")) != SQLITE_OK) return rc;
  db->grouped = 1;
  db->writes = 0;
  pyq_list_push(&db->dbs->open, &db->link);
  if (!db->dbs->checking) {
    uv_check_start(db->dbs->check, on_check);
    db->dbs->checking = 1;
  }
  return SQLITE_OK;
}

int pyq_db_write_end (pyq_db *db) {
  if (db->grouped && ++db->writes >= db->batch) return pyq_db_commit(db);
  return SQLITE_OK;
}

int pyq_db_commit (pyq_db *db) {
  int rc;
  if (!db->grouped) return SQLITE_OK;
  rc = exec(db, "COMMIT");
  if (rc == SQLITE_BUSY && db->dbs != NULL)   /* retried at the next turn */
    return SQLITE_OK;
  db->grouped = 0;
  pyq_list_remove(&db->link);
  if (rc != SQLITE_OK) {
    if (!sqlite3_get_autocommit(db->db)) exec(db, "ROLLBACK");
    db->lost += db->writes;
    db->lost_code = rc;
  }
  db->writes = 0;
  return rc;
}

void pyq_db_close (pyq_db *db) {
  sqlite3_stmt *s;
  if (db->db == NULL) return;
  commit_quietly(db);
  if (db->grouped) {   /* still locked elsewhere at close: a last try */
    pyq_dbs *dbs = db->dbs;
    db->dbs = NULL;   /* no retry at a next turn now */
    pyq_db_commit(db);
    db->dbs = dbs;
    if (db->lost && dbs) {
      dbs->h->write_errors++;
      pyq_log(dbs->h, PYQ_ERROR, "pyq.sqlite", "%s: COMMIT failed at close, "
              "%d write%s rolled back: %s", sqlite3_db_filename(db->db, "main"),
              db->lost, db->lost == 1 ? "" : "s", db->err);
    }
  }
  pyq_list_remove(&db->member);
  while ((s = sqlite3_next_stmt(db->db, NULL)) != NULL) sqlite3_finalize(s);
  sqlite3_close_v2(db->db);
  db->db = NULL;
}

#define STATE "pyq.dbs"
static const char state_key = 'd';

static int state_gc (lua_State *L) {
  pyq_dbs **p = luaL_checkudata(L, 1, STATE);
  if (*p) pyq_dbs_free(*p);
  *p = NULL;
  return 0;
}

pyq_dbs **pyq_dbs_push (lua_State *L) {
  pyq_dbs **state;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  state = lua_newuserdatauv(L, sizeof *state, 0);
  *state = NULL;
  if (luaL_newmetatable(L, STATE)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, STATE);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  if ((*state = pyq_dbs_new(pyq_host_of(L))) == NULL)
    luaL_error(L, "not enough memory");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  return state;
}
