/* db.c -- SQLite databases with writes grouped into transactions.
 *
 * One fsync-free commit per group instead of one transaction per statement
 * is what makes single-row inserts from many tasks fast: under WAL with
 * synchronous=NORMAL a commit appends to the log and a crash keeps every
 * committed group.  A group opens at the first write (BEGIN) and is
 * committed when `batch` writes are in it, by a libuv check handle after
 * the loop turn that opened it (so tasks finishing in one turn share a
 * commit and nothing waits long), on an interrupt (a hook registered with
 * pyq_on_interrupt, run before tasks unwind), and at close.  The check
 * handle is the module's, made with malloc: libuv may hold it after Lua's
 * memory is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "db.h"
#include "core/signal.h"

struct pyq_dbs {
  pyq_host *h;
  pyq_link open;          /* databases with a group open */
  uv_check_t *check;      /* commits them after the turn */
  int checking;
  pyq_job hook;           /* on interrupt: commit every group */
};

static void commit_all (pyq_dbs *dbs) {
  pyq_link *l;
  while ((l = pyq_list_shift(&dbs->open)) != NULL) {
    pyq_db *db = pyq_container(l, pyq_db, link);
    pyq_list_init(&db->link);
    pyq_db_commit(db);
  }
}

static void on_check (uv_check_t *c) {
  pyq_dbs *dbs = c->data;
  commit_all(dbs);
  uv_check_stop(c);
  dbs->checking = 0;
}

static void on_interrupt (pyq_host *h, pyq_job *hook) {
  (void)h;
  commit_all(pyq_container(hook, pyq_dbs, hook));
}

pyq_dbs *pyq_dbs_new (pyq_host *h) {
  pyq_dbs *dbs = calloc(1, sizeof *dbs);
  if (dbs == NULL) return NULL;
  if ((dbs->check = malloc(sizeof *dbs->check)) == NULL) {
    free(dbs);
    return NULL;
  }
  dbs->h = h;
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

void pyq_dbs_free (pyq_dbs *dbs) {
  commit_all(dbs);
  pyq_list_remove(&dbs->hook.link);
  uv_close((uv_handle_t *)dbs->check, check_closed);
  free(dbs);
}

static int fail (pyq_db *db, int rc) {
  snprintf(db->err, sizeof db->err, "%s", db->db ? sqlite3_errmsg(db->db)
                                                 : sqlite3_errstr(rc));
  return rc;
}

static int exec (pyq_db *db, const char *sql) {
  int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? rc : fail(db, rc);
}

int pyq_db_open (pyq_dbs *dbs, pyq_db *db, const char *path, int wal,
                 int batch, int busy_ms) {
  int rc;
  memset(db, 0, sizeof *db);
  db->dbs = dbs;
  db->batch = batch;
  pyq_list_init(&db->link);
  rc = sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE |
                       SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db->db, busy_ms);
  if (rc == SQLITE_OK && wal) rc = exec(db, "PRAGMA journal_mode=WAL");
  if (rc == SQLITE_OK && wal) rc = exec(db, "PRAGMA synchronous=NORMAL");
  if (rc == SQLITE_OK) return 1;
  fail(db, rc);
  sqlite3_close_v2(db->db);
  db->db = NULL;
  return 0;
}

int pyq_db_write_begin (pyq_db *db) {
  int rc;
  if (db->grouped || db->explicit_tx || !sqlite3_get_autocommit(db->db))
    return SQLITE_OK;
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
  db->grouped = 0;
  db->writes = 0;
  pyq_list_remove(&db->link);
  rc = exec(db, "COMMIT");
  if (rc != SQLITE_OK && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

void pyq_db_close (pyq_db *db) {
  sqlite3_stmt *s;
  if (db->db == NULL) return;
  pyq_db_commit(db);
  while ((s = sqlite3_next_stmt(db->db, NULL)) != NULL) sqlite3_finalize(s);
  sqlite3_close_v2(db->db);
  db->db = NULL;
}
