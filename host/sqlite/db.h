/* db.h -- SQLite databases on the host's loop, with grouped commits (db.c).
 *
 * The C half that pyq.sqlite, and next the job store and the response
 * cache, share: a database opened in WAL mode whose writes are grouped
 * into one transaction, committed every `batch` writes, at the end of the
 * loop turn that opened it, on SIGINT/SIGTERM (an interrupt hook) and at
 * close.  Reads are never delayed; a kill -9 loses at most the open group. */
#ifndef PYQ_DB_H
#define PYQ_DB_H

#include <sqlite3.h>
#include "core/host.h"

typedef struct pyq_dbs pyq_dbs;   /* the module: open databases, its hook */

typedef struct pyq_db {
  sqlite3 *db;
  pyq_dbs *dbs;           /* NULL once the module is gone (at exit) */
  pyq_link member;        /* in dbs->all while open */
  pyq_link link;          /* in dbs->open while it has a group open */
  int grouped;            /* a BEGIN of the grouping is open */
  int explicit_tx;        /* db:transaction runs */
  int internal;           /* the module runs BEGIN/COMMIT: the authorizer
                             lets transaction statements through */
  int refused;            /* the authorizer refused a transaction statement */
  int writes;             /* writes in the open group */
  int batch;              /* commit after this many writes */
  int busy_ms;            /* how long a lock held elsewhere is waited for */
  double busy_since;      /* when the current wait for a lock began */
  int lost;               /* writes of a failed group commit, to report */
  int lost_code;          /* its SQLite code */
  char err[256];          /* its message */
} pyq_db;

pyq_dbs *pyq_dbs_new (pyq_host *h);
void pyq_dbs_free (pyq_dbs *dbs);
/* The host's databases: one module state for pyq.sqlite, the job store
 * and whatever else opens a database, made on first use and kept in the
 * registry (pushed here; *result is NULL once the host's exit freed it).
 * One state means one commit loop: groups commit in the order they were
 * opened, whichever module opened them. */
pyq_dbs **pyq_dbs_push (lua_State *L);

/* Opens path (created if missing): 1, or 0 with a message in db->err.
 * db is the caller's (a userdata or a struct of its own). */
int pyq_db_open (pyq_dbs *dbs, pyq_db *db, const char *path, int wal,
                 int batch, int busy_ms);
/* Before a statement that writes: the group's BEGIN when none is open.
 * SQLITE_OK, or SQLite's code. */
int pyq_db_write_begin (pyq_db *db);
/* After it: counts the write; commits when the batch is full (SQLITE_OK,
 * or the failed commit's code, with db->err and db->lost set). */
int pyq_db_write_end (pyq_db *db);
/* Commits the open group now, if any.  A commit that fails rolls the
 * group back and keeps its message and size in db->err and db->lost for
 * the caller to raise (commits made in the background log it and mark the
 * job's output as damaged, h->write_errors); a database another
 * connection locks is retried at the next turn instead. */
int pyq_db_commit (pyq_db *db);
/* Commits and closes; safe twice. */
void pyq_db_close (pyq_db *db);

#endif
