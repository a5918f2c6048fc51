/* sqlite.c -- pyq.sqlite: a place to put the data a job collects.
 *
 *   local db <close> = pyq.sqlite.open("out.sqlite", { batch = 1000 })
 *   db:exec("CREATE TABLE IF NOT EXISTS m (id TEXT PRIMARY KEY, doc TEXT)")
 *   db:insert("m", { id = id, doc = pyq.json.encode(doc) })
 *   for row in db:rows("SELECT id FROM m WHERE id > ?", last) do ... end
 *
 * Parameters are always bound (`?`, `?NNN`), never formatted into the SQL,
 * so scraped text cannot inject SQL.  Statements are prepared once per SQL
 * text and kept in a table on the database's uservalue (text -> light
 * userdata); one that is busy (a rows() loop still open over the same text)
 * is prepared afresh.  Writes are grouped into transactions by db.c.
 * Values: nil <-> NULL, integers <-> INTEGER, floats <-> REAL, strings <->
 * TEXT (bytes kept as they are), pyq.sqlite.blob(s) -> BLOB (read back as a
 * string), booleans -> 0/1.  A table is refused (encode it with
 * pyq.json.encode).  Errors are pyq.Errors of kind "sqlite" with SQLite's
 * message, its code and the SQL (cut at 200 bytes) in the message. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include "db.h"
#include "sqlite.h"
#include "lua/check.h"
#include "lua/error.h"

#define DB "pyq.sqlite.db"
#define ROWS "pyq.sqlite.rows"
#define BLOB "pyq.sqlite.blob"
#define SQL_SHOWN 200

typedef struct ldb {
  pyq_db d;
  int closed;
  int cached;             /* statements in the cache */
} ldb;

typedef struct rows_it {
  sqlite3_stmt *stmt;     /* the loop's own, finalized when it ends */
  ldb *db;
  int done;
} rows_it;

/* ---- errors ------------------------------------------------------------ */

static int sqlite_error (lua_State *L, const char *fname, ldb *db, int rc,
                         const char *sql) {
  const char *msg = db && db->d.db ? sqlite3_errmsg(db->d.db) : sqlite3_errstr(rc);
  size_t n = sql ? strlen(sql) : 0;
  luaL_where(L, 1);
  if (sql)
    lua_pushfstring(L, "%s: %s (SQL: %s%s)", fname, msg,
                    lua_pushlstring(L, sql, n > SQL_SHOWN ? SQL_SHOWN : n),
                    n > SQL_SHOWN ? "..." : "");
  else
    lua_pushfstring(L, "%s: %s", fname, msg);
  if (sql) lua_remove(L, -2);
  lua_concat(L, 2);
  pyq_error_new(L, "sqlite", lua_tostring(L, -1));
  lua_pushinteger(L, db && db->d.db ? sqlite3_extended_errcode(db->d.db) : rc);
  lua_setfield(L, -2, "code");
  return lua_error(L);
}

/* Raises the error of a group commit that failed in the background (at the
 * end of a turn), once, from the database's next call. */
static void raise_lost (lua_State *L, const char *fname, ldb *db) {
  if (db->d.lost == 0) return;
  pyq_error_new(L, "sqlite", lua_pushfstring(L, "%s: an earlier group commit "
                "failed and its %d write%s were lost: %s", fname, db->d.lost,
                db->d.lost == 1 ? "" : "s", db->d.err));
  lua_pushinteger(L, db->d.lost_code);
  lua_setfield(L, -2, "code");
  db->d.lost = 0;
  lua_error(L);
}

static void commit_failed (lua_State *L, const char *fname, ldb *db) {
  pyq_error_new(L, "sqlite", lua_pushfstring(L, "%s: COMMIT failed, the "
                "group's writes were rolled back: %s", fname, db->d.err));
  lua_pushinteger(L, db->d.lost_code);
  lua_setfield(L, -2, "code");
  db->d.lost = 0;   /* raised here: not again */
  lua_error(L);
}

static ldb *check_db (lua_State *L, const char *fname) {
  ldb *db = luaL_testudata(L, 1, DB);
  if (db == NULL)
    pyq_usage(L, "%s: bad self (a pyq.sqlite database expected, got %s); "
              "call it with ':'", fname, luaL_typename(L, 1));
  if (db->closed) pyq_usage(L, "%s: the database is closed", fname);
  raise_lost(L, fname, db);
  return db;
}

/* ---- binding and reading ----------------------------------------------- */

static void bind_one (lua_State *L, const char *fname, ldb *db,
                      sqlite3_stmt *s, int i, int idx) {
  int rc;
  size_t n;
  const char *p;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = sqlite3_bind_null(s, i); break;
    case LUA_TBOOLEAN: rc = sqlite3_bind_int(s, i, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
      rc = lua_isinteger(L, idx)
           ? sqlite3_bind_int64(s, i, lua_tointeger(L, idx))
           : sqlite3_bind_double(s, i, lua_tonumber(L, idx));
      break;
    case LUA_TSTRING:
      p = lua_tolstring(L, idx, &n);
      rc = sqlite3_bind_text64(s, i, p, n, SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    default:
      if ((p = luaL_testudata(L, idx, BLOB)) != NULL) {
        lua_getiuservalue(L, idx, 1);
        p = lua_tolstring(L, -1, &n);
        rc = sqlite3_bind_blob64(s, i, p, n, SQLITE_TRANSIENT);
        lua_pop(L, 1);
        break;
      }
      sqlite3_reset(s);
      pyq_usage(L, "%s: parameter %d is a %s; bind nil, booleans, numbers, "
                "strings or pyq.sqlite.blob(s) (encode tables with "
                "pyq.json.encode)", fname, i, luaL_typename(L, idx));
      return;
  }
  if (rc != SQLITE_OK) {
    sqlite3_reset(s);
    sqlite_error(L, fname, db, rc, sqlite3_sql(s));
  }
}

/* Binds the values from index first on: their count must match. */
static void bind_all (lua_State *L, const char *fname, ldb *db,
                      sqlite3_stmt *s, int first) {
  int i, n = lua_gettop(L) - first + 1, want = sqlite3_bind_parameter_count(s);
  if (n < 0) n = 0;
  sqlite3_clear_bindings(s);
  if (n != want)
    pyq_usage(L, "%s: the SQL has %d parameter%s, got %d value%s (SQL: %s)",
              fname, want, want == 1 ? "" : "s", n, n == 1 ? "" : "s",
              sqlite3_sql(s));
  for (i = 1; i <= n; i++) bind_one(L, fname, db, s, i, first + i - 1);
}

static void push_column (lua_State *L, sqlite3_stmt *s, int c) {
  switch (sqlite3_column_type(s, c)) {
    case SQLITE_INTEGER: lua_pushinteger(L, sqlite3_column_int64(s, c)); break;
    case SQLITE_FLOAT: lua_pushnumber(L, sqlite3_column_double(s, c)); break;
    case SQLITE_NULL: lua_pushnil(L); break;
    case SQLITE_BLOB: {
      const void *p = sqlite3_column_blob(s, c);
      lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(s, c));
      break;
    }
    default:
      lua_pushlstring(L, (const char *)sqlite3_column_text(s, c),
                      (size_t)sqlite3_column_bytes(s, c));
  }
}

static void push_row (lua_State *L, sqlite3_stmt *s) {
  int c, n = sqlite3_column_count(s);
  lua_createtable(L, 0, n);
  for (c = 0; c < n; c++) {
    push_column(L, s, c);
    lua_setfield(L, -2, sqlite3_column_name(s, c));
  }
}

/* ---- statements --------------------------------------------------------- */

/* Past whitespace and SQL comments. */
static const char *skip_space (const char *p) {
  for (;;) {
    while (isspace((unsigned char)*p)) p++;
    if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n') p++;
    } else if (p[0] == '/' && p[1] == '*') {
      const char *end = strstr(p + 2, "*/");
      p = end ? end + 2 : p + strlen(p);
    } else {
      return p;
    }
  }
}

static int starts_with (const char *sql, const char *word) {
  size_t n = strlen(word);
  sql = skip_space(sql);
  return strncasecmp(sql, word, n) == 0 && !isalnum((unsigned char)sql[n]) &&
         sql[n] != '_';
}

/* PRAGMA and VACUUM cannot run inside a transaction (a PRAGMA silently
 * does nothing there): the open group is committed first and they run on
 * their own. */
static int outside_groups (const char *sql) {
  return starts_with(sql, "pragma") || starts_with(sql, "vacuum");
}

#define CACHE_MAX 256

static void cache_clear (lua_State *L, ldb *db) {
  lua_getiuservalue(L, 1, 1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    sqlite3_finalize(lua_touserdata(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
  db->cached = 0;
}

static int sql_failed (lua_State *L, const char *fname, ldb *db, int rc,
                       const char *sql) {
  if (rc == SQLITE_AUTH && db->d.refused)
    return pyq_usage(L, "%s: transactions are managed by pyq.sqlite (writes "
                     "are grouped); use db:transaction(fn) for an atomic "
                     "group", fname);
  return sqlite_error(L, fname, db, rc, sql);
}

/* The SQL at idx, prepared: the statement cached for that text (exec, one,
 * insert and upsert step it to its end and reset it within one call, so it
 * is never shared), or, for text holding several statements, NULL with
 * *script set (db:exec runs those one by one). */
static sqlite3_stmt *prepare (lua_State *L, const char *fname, ldb *db,
                              int idx, int *script) {
  size_t n;
  const char *sql, *tail = NULL;
  sqlite3_stmt *s = NULL;
  int rc;
  if (lua_type(L, idx) != LUA_TSTRING)
    pyq_usage(L, "%s: sql must be a string, got %s", fname, pyq_got(L, idx));
  sql = lua_tolstring(L, idx, &n);
  *script = 0;
  /* a PRAGMA compiled inside a transaction does nothing: none is open */
  if (outside_groups(sql) && pyq_db_commit(&db->d) != SQLITE_OK)
    commit_failed(L, fname, db);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TLIGHTUSERDATA) {
    s = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return s;
  }
  lua_pop(L, 2);
  db->d.refused = 0;
  db->d.internal = outside_groups(sql);   /* VACUUM runs a transaction */
  rc = sqlite3_prepare_v2(db->d.db, sql, (int)n + 1, &s, &tail);
  db->d.internal = 0;
  if (rc != SQLITE_OK) sql_failed(L, fname, db, rc, sql);
  if (s == NULL) pyq_usage(L, "%s: the SQL holds no statement", fname);
  tail = skip_space(tail ? tail : "");
  while (*tail == ';') tail = skip_space(tail + 1);
  if (*tail) {   /* several statements */
    sqlite3_finalize(s);
    *script = 1;
    return NULL;
  }
  if (db->cached >= CACHE_MAX) cache_clear(L, db);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, s);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  db->cached++;
  return s;
}

/* Steps s to its end; raises on an error.  The write grouping wraps a
 * statement that writes; PRAGMA and VACUUM run outside any group. */
static void run (lua_State *L, const char *fname, ldb *db, sqlite3_stmt *s) {
  int rc, alone = outside_groups(sqlite3_sql(s));
  int writes = !alone && !sqlite3_stmt_readonly(s);
  if (alone && pyq_db_commit(&db->d) != SQLITE_OK) commit_failed(L, fname, db);
  if (writes && (rc = pyq_db_write_begin(&db->d)) != SQLITE_OK) {
    sqlite3_reset(s);
    sqlite_error(L, fname, db, rc, sqlite3_sql(s));
  }
  db->d.internal = alone;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
  db->d.internal = 0;
  if (rc != SQLITE_DONE) {
    rc = sqlite3_reset(s);
    sqlite_error(L, fname, db, rc, sqlite3_sql(s));
  }
  sqlite3_reset(s);
  if (writes && pyq_db_write_end(&db->d) != SQLITE_OK)
    commit_failed(L, fname, db);
}

/* db:exec(sql, ...) -> changes, last insert rowid.  Text holding several
 * statements (a schema) runs them all; it takes no parameters then. */
static int db_exec (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.exec");
  int script;
  sqlite3_stmt *s = prepare(L, "pyq.sqlite.exec", db, 2, &script);
  if (script) {
    const char *tail = NULL, *sql = lua_tostring(L, 2);
    int rc;
    if (lua_gettop(L) > 2)
      return pyq_usage(L, "pyq.sqlite.exec: SQL holding several statements "
                       "takes no parameters (got %d)", lua_gettop(L) - 2);
    while (sql && *(sql = skip_space(sql))) {   /* each statement in turn */
      s = NULL;
      db->d.refused = 0;
      if (outside_groups(sql) && pyq_db_commit(&db->d) != SQLITE_OK)
        commit_failed(L, "pyq.sqlite.exec", db);
      db->d.internal = outside_groups(sql);
      rc = sqlite3_prepare_v2(db->d.db, sql, -1, &s, &tail);
      db->d.internal = 0;
      if (rc != SQLITE_OK) sql_failed(L, "pyq.sqlite.exec", db, rc, sql);
      if (s == NULL) break;
      {
        int ok = 1, alone = outside_groups(sqlite3_sql(s));
        int writes = !alone && !sqlite3_stmt_readonly(s);
        if (alone && pyq_db_commit(&db->d) != SQLITE_OK) ok = -1;
        else if (writes && (rc = pyq_db_write_begin(&db->d)) != SQLITE_OK) ok = 0;
        else {
          db->d.internal = alone;
          while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
          db->d.internal = 0;
          if (rc != SQLITE_DONE) ok = 0;
        }
        if (ok == 0) rc = sqlite3_reset(s);
        sqlite3_finalize(s);
        if (ok == -1) commit_failed(L, "pyq.sqlite.exec", db);
        if (ok == 0) sqlite_error(L, "pyq.sqlite.exec", db, rc, sql);
        if (writes && pyq_db_write_end(&db->d) != SQLITE_OK)
          commit_failed(L, "pyq.sqlite.exec", db);
      }
      sql = tail;
    }
  } else {
    bind_all(L, "pyq.sqlite.exec", db, s, 3);
    run(L, "pyq.sqlite.exec", db, s);
  }
  lua_pushinteger(L, sqlite3_changes64(db->d.db));
  lua_pushinteger(L, sqlite3_last_insert_rowid(db->d.db));
  return 2;
}

/* db:one(sql, ...) -> the first row as a table, or nil */
static int db_one (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.one");
  int script, rc, writes;
  sqlite3_stmt *s = prepare(L, "pyq.sqlite.one", db, 2, &script);
  if (script)
    return pyq_usage(L, "pyq.sqlite.one: the SQL holds several statements");
  bind_all(L, "pyq.sqlite.one", db, s, 3);
  writes = !sqlite3_stmt_readonly(s);   /* INSERT ... RETURNING */
  if (writes && (rc = pyq_db_write_begin(&db->d)) != SQLITE_OK)
    sqlite_error(L, "pyq.sqlite.one", db, rc, sqlite3_sql(s));
  rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) push_row(L, s);
  else lua_pushnil(L);
  if (rc == SQLITE_ROW)   /* a statement finishes its work only at its end */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
  if (rc != SQLITE_DONE) {
    rc = sqlite3_reset(s);
    sqlite_error(L, "pyq.sqlite.one", db, rc, lua_tostring(L, 2));
  }
  sqlite3_reset(s);
  if (writes && pyq_db_write_end(&db->d) != SQLITE_OK)
    commit_failed(L, "pyq.sqlite.one", db);
  return 1;
}

static int rows_close (lua_State *L) {
  rows_it *it = luaL_checkudata(L, 1, ROWS);
  if (it->stmt && it->db->d.db) sqlite3_finalize(it->stmt);
  it->stmt = NULL;
  return 0;
}

static int rows_next (lua_State *L) {
  rows_it *it = luaL_checkudata(L, 1, ROWS);
  int rc;
  if (it->stmt == NULL || it->done) return 0;
  if (it->db->closed)
    return pyq_usage(L, "pyq.sqlite.rows: the database was closed during "
                     "the loop");
  rc = sqlite3_step(it->stmt);
  if (rc == SQLITE_ROW) {
    push_row(L, it->stmt);
    return 1;
  }
  it->done = 1;
  if (rc != SQLITE_DONE) {
    rc = sqlite3_reset(it->stmt);
    lua_pushstring(L, sqlite3_sql(it->stmt));
    sqlite_error(L, "pyq.sqlite.rows", it->db, rc, lua_tostring(L, -1));
  }
  rows_close(L);
  return 0;
}

/* for row in db:rows(sql, ...) do ... end: each loop prepares its own
 * statement (two loops over the same text never share one), owned by the
 * iterator from the start, so an error binding it or a loop left early
 * (break, error: the closing value) finalizes it. */
static int db_rows (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.rows");
  const char *sql, *tail = NULL;
  size_t n;
  rows_it *it;
  int rc;
  if (lua_type(L, 2) != LUA_TSTRING)
    return pyq_usage(L, "pyq.sqlite.rows: sql must be a string, got %s",
                     pyq_got(L, 2));
  sql = lua_tolstring(L, 2, &n);
  lua_pushcfunction(L, rows_next);
  it = lua_newuserdatauv(L, sizeof *it, 1);
  memset(it, 0, sizeof *it);
  it->db = db;
  luaL_setmetatable(L, ROWS);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);   /* the database outlives the loop */
  db->d.refused = 0;
  rc = sqlite3_prepare_v2(db->d.db, sql, (int)n + 1, &it->stmt, &tail);
  if (rc != SQLITE_OK) sql_failed(L, "pyq.sqlite.rows", db, rc, sql);
  if (it->stmt == NULL)
    return pyq_usage(L, "pyq.sqlite.rows: the SQL holds no statement");
  if (*skip_space(tail ? tail : "") && *skip_space(tail) != ';')
    return pyq_usage(L, "pyq.sqlite.rows: the SQL holds several statements");
  if (!sqlite3_stmt_readonly(it->stmt))
    return pyq_usage(L, "pyq.sqlite.rows: the SQL writes; use db:exec (or "
                     "db:one for RETURNING)");
  lua_rotate(L, 3, 2);   /* the iterator and its function below the values */
  bind_all(L, "pyq.sqlite.rows", db, it->stmt, 5);
  lua_settop(L, 4);
  lua_pushnil(L);
  lua_pushvalue(L, 4);
  return 4;
}

/* ---- insert and upsert --------------------------------------------------- */

static void push_ident (luaL_Buffer *b, const char *s) {
  luaL_addchar(b, '"');
  for (; *s; s++) {
    if (*s == '"') luaL_addchar(b, '"');
    luaL_addchar(b, *s);
  }
  luaL_addchar(b, '"');
}

static int cmp_str (const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The row's column names, sorted (so the SQL text, and its cached
 * statement, is the same for every row of the same shape). */
static int columns (lua_State *L, const char *fname, int row,
                    const char ***out) {
  int n = 0, cap = 8;
  const char **cols;
  lua_newuserdatauv(L, cap * sizeof *cols, 0);   /* anchored scratch */
  cols = lua_touserdata(L, -1);
  lua_pushnil(L);
  while (lua_next(L, row)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || lua_tostring(L, -1)[0] == '\0')
      pyq_usage(L, "%s: row keys must be column names (non-empty strings), "
                "got %s", fname, pyq_got(L, -1));
    if (n == cap) {
      const char **more;
      cap *= 2;
      more = lua_newuserdatauv(L, cap * sizeof *cols, 0);
      memcpy(more, cols, n * sizeof *cols);
      lua_replace(L, -3);   /* the old scratch goes; key stays on top */
      cols = more;
    }
    cols[n++] = lua_tostring(L, -1);
  }
  if (n == 0) pyq_usage(L, "%s: the row is empty", fname);
  qsort(cols, (size_t)n, sizeof *cols, cmp_str);
  *out = cols;
  return n;
}

static void check_row_args (lua_State *L, const char *fname) {
  if (lua_type(L, 2) != LUA_TSTRING || lua_tostring(L, 2)[0] == '\0')
    pyq_usage(L, "%s: table must be a table name, got %s", fname, pyq_got(L, 2));
  if (!lua_istable(L, 3))
    pyq_usage(L, "%s: row must be a table of column = value, got %s", fname,
              pyq_got(L, 3));
}

/* Runs the SQL on top with the row's values in column order. */
static int run_row (lua_State *L, const char *fname, ldb *db,
                    const char **cols, int n) {
  int script, i, sqlidx = lua_gettop(L);
  sqlite3_stmt *s = prepare(L, fname, db, sqlidx, &script);
  sqlite3_clear_bindings(s);
  for (i = 0; i < n; i++) {
    lua_getfield(L, 3, cols[i]);
    bind_one(L, fname, db, s, i + 1, -1);
    lua_pop(L, 1);
  }
  run(L, fname, db, s);
  lua_pushinteger(L, sqlite3_last_insert_rowid(db->d.db));
  return 1;
}

/* "INSERT INTO "t" ("a","b") VALUES (?,?" -- the closing parenthesis is
 * the caller's (upsert goes on with its conflict clause). */
static void insert_head (luaL_Buffer *b, const char *table, const char **cols,
                         int n) {
  int i;
  luaL_addstring(b, "INSERT INTO ");
  push_ident(b, table);
  luaL_addstring(b, " (");
  for (i = 0; i < n; i++) {
    if (i) luaL_addchar(b, ',');
    push_ident(b, cols[i]);
  }
  luaL_addstring(b, ") VALUES (");
  for (i = 0; i < n; i++) luaL_addstring(b, i ? ",?" : "?");
}

/* db:insert(table, row) -> rowid */
static int db_insert (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.insert");
  const char **cols;
  int n;
  luaL_Buffer b;
  check_row_args(L, "pyq.sqlite.insert");
  lua_settop(L, 3);
  n = columns(L, "pyq.sqlite.insert", 3, &cols);
  luaL_buffinit(L, &b);
  insert_head(&b, lua_tostring(L, 2), cols, n);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return run_row(L, "pyq.sqlite.insert", db, cols, n);
}

/* db:upsert(table, row, key) -> rowid: key is the conflict column or a
 * list of them (a primary key or a unique index); the row's other columns
 * are updated when a row with that key exists. */
static int db_upsert (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.upsert");
  const char **cols;
  int i, n, k, nk, updates = 0;
  luaL_Buffer b;
  check_row_args(L, "pyq.sqlite.upsert");
  if (lua_type(L, 4) == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 4);
    lua_rawseti(L, -2, 1);
    lua_replace(L, 4);
  } else if (!lua_istable(L, 4) || lua_rawlen(L, 4) == 0) {
    return pyq_usage(L, "pyq.sqlite.upsert: key must be a column name or a "
                     "list of them, got %s", pyq_got(L, 4));
  }
  lua_settop(L, 4);
  nk = (int)lua_rawlen(L, 4);
  for (k = 1; k <= nk; k++) {
    lua_rawgeti(L, 4, k);
    if (lua_type(L, -1) != LUA_TSTRING)
      return pyq_usage(L, "pyq.sqlite.upsert: key[%d] must be a column name, "
                       "got %s", k, pyq_got(L, -1));
    if (lua_getfield(L, 3, lua_tostring(L, -1)) == LUA_TNIL)
      return pyq_usage(L, "pyq.sqlite.upsert: the row has no value for the "
                       "key column '%s'", lua_tostring(L, -2));
    lua_pop(L, 2);
  }
  n = columns(L, "pyq.sqlite.upsert", 3, &cols);
  luaL_buffinit(L, &b);
  insert_head(&b, lua_tostring(L, 2), cols, n);
  luaL_addstring(&b, ") ON CONFLICT (");
  for (k = 1; k <= nk; k++) {
    const char *key;
    lua_rawgeti(L, 4, k);
    key = lua_tostring(L, -1);   /* table 4 keeps it alive */
    lua_pop(L, 1);   /* before the buffer grows: it lives on the stack top */
    if (k > 1) luaL_addchar(&b, ',');
    push_ident(&b, key);
  }
  luaL_addstring(&b, ") DO ");
  for (i = 0; i < n; i++) {
    int key = 0;
    for (k = 1; k <= nk && !key; k++) {
      lua_rawgeti(L, 4, k);   /* the buffer is not touched meanwhile */
      key = strcmp(lua_tostring(L, -1), cols[i]) == 0;
      lua_pop(L, 1);
    }
    if (key) continue;
    luaL_addstring(&b, updates++ ? ", " : "UPDATE SET ");
    push_ident(&b, cols[i]);
    luaL_addstring(&b, "=excluded.");
    push_ident(&b, cols[i]);
  }
  if (updates == 0) luaL_addstring(&b, "NOTHING");
  luaL_pushresult(&b);
  return run_row(L, "pyq.sqlite.upsert", db, cols, n);
}

/* ---- transactions, commit, close ----------------------------------------- */

static int tx_end (lua_State *L, ldb *db, int ok) {
  int rc;
  if (db->closed) {   /* fn closed it: close rolled the transaction back */
    if (!ok) return lua_error(L);
    return pyq_usage(L, "pyq.sqlite.transaction: the database was closed "
                     "inside the transaction (its writes were rolled back)");
  }
  db->d.internal = 1;
  rc = sqlite3_exec(db->d.db, ok ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
  db->d.internal = 0;
  db->d.explicit_tx = 0;
  if (!ok) return lua_error(L);   /* the function's error, after ROLLBACK */
  if (rc != SQLITE_OK) {
    sqlite3_exec(db->d.db, "ROLLBACK", NULL, NULL, NULL);
    return sqlite_error(L, "pyq.sqlite.transaction", db, rc, "COMMIT");
  }
  return lua_gettop(L) - 2;
}

/* db:transaction(fn, ...) -> fn's results: fn's writes all land or none
 * do.  fn cannot wait (it runs in a plain protected call: a wait raises
 * "cannot wait here"), so no other task's writes slip into it. */
static int db_transaction (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.transaction");
  int rc;
  if (!lua_isfunction(L, 2))
    return pyq_usage(L, "pyq.sqlite.transaction: fn must be a function, got %s",
                     pyq_got(L, 2));
  if (db->d.explicit_tx)
    return pyq_usage(L, "pyq.sqlite.transaction: already in a transaction");
  if (pyq_db_commit(&db->d) != SQLITE_OK)
    commit_failed(L, "pyq.sqlite.transaction", db);
  db->d.internal = 1;
  rc = sqlite3_exec(db->d.db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  db->d.internal = 0;
  if (rc != SQLITE_OK)
    return sqlite_error(L, "pyq.sqlite.transaction", db, rc, "BEGIN IMMEDIATE");
  db->d.explicit_tx = 1;
  lua_pushvalue(L, 1);   /* keeps the database while fn runs */
  lua_insert(L, 2);
  return tx_end(L, db, lua_pcall(L, lua_gettop(L) - 3, LUA_MULTRET, 0) == LUA_OK);
}

static int db_commit (lua_State *L) {
  ldb *db = check_db(L, "pyq.sqlite.commit");
  if (pyq_db_commit(&db->d) != SQLITE_OK)
    commit_failed(L, "pyq.sqlite.commit", db);
  return 0;
}

static ldb *self_db (lua_State *L, const char *fname) {
  ldb *db = luaL_testudata(L, 1, DB);
  if (db == NULL)
    pyq_usage(L, "%s: bad self (a pyq.sqlite database expected, got %s)",
              fname, luaL_typename(L, 1));
  return db;
}

/* db:close(), <close> and __gc: commits and closes; twice is harmless. */
static int db_close (lua_State *L) {
  ldb *db = self_db(L, "pyq.sqlite.close");
  if (db->closed) return 0;
  db->closed = 1;
  if (db->d.explicit_tx) {   /* an error left a transaction open */
    db->d.internal = 1;
    sqlite3_exec(db->d.db, "ROLLBACK", NULL, NULL, NULL);
    db->d.internal = 0;
    db->d.explicit_tx = 0;
  }
  if (pyq_db_commit(&db->d) != SQLITE_OK) {   /* said where it was closed */
    pyq_db_close(&db->d);
    commit_failed(L, "pyq.sqlite.close", db);
  }
  pyq_db_close(&db->d);
  return 0;
}

/* __gc: nobody to raise to; a failed commit is logged (db.c). */
static int db_gc (lua_State *L) {
  ldb *db = self_db(L, "pyq.sqlite.db.__gc");
  if (db->closed) return 0;
  db->closed = 1;
  pyq_db_close(&db->d);
  return 0;
}

static int db_index (lua_State *L) {
  ldb *db = self_db(L, "pyq.sqlite.db.__index");
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "path") == 0) {
    const char *p = db->closed ? NULL : sqlite3_db_filename(db->d.db, "main");
    lua_pushstring(L, p ? p : "");
    return 1;
  }
  if (k && strcmp(k, "closed") == 0) {
    lua_pushboolean(L, db->closed);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int db_tostring (lua_State *L) {
  ldb *db = self_db(L, "pyq.sqlite.db.__tostring");
  lua_pushfstring(L, "pyq.sqlite.db (%s)%s", db->closed ? "?" :
                  sqlite3_db_filename(db->d.db, "main"),
                  db->closed ? " closed" : "");
  return 1;
}

/* ---- the module ---------------------------------------------------------- */

static lua_Integer opt_int (lua_State *L, int t, const char *key,
                            lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = dflt;
  if (lua_getfield(L, t, key) != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || (v = lua_tointeger(L, -1)) < lo || v > hi)
      pyq_usage(L, "pyq.sqlite.open: %s must be an integer from %I to %I, "
                "got %s", key, lo, hi, pyq_got(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

/* pyq.sqlite.open(path [, { wal = true, batch = 1000, busy_timeout = 5 }]) */
static int sqlite_open (lua_State *L) {
  static const char *const known[] = {"wal", "batch", "busy_timeout", NULL};
  pyq_dbs *dbs = *(pyq_dbs **)lua_touserdata(L, lua_upvalueindex(1));
  if (dbs == NULL)   /* a finalizer run by the host's exit */
    return pyq_usage(L, "pyq.sqlite.open: pyq.sqlite is closed (the host is "
                     "exiting)");
  size_t n;
  const char *path;
  int wal = 1, batch = 1000, busy = 5000;
  ldb *db;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.sqlite.open: path must be a string, got %s",
                     pyq_got(L, 1));
  path = lua_tolstring(L, 1, &n);
  if (strlen(path) != n)
    return pyq_usage(L, "pyq.sqlite.open: path contains a NUL byte");
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2))
      return pyq_usage(L, "pyq.sqlite.open: options must be a table, got %s",
                       pyq_got(L, 2));
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      int i, ok = 0;
      lua_pop(L, 1);
      for (i = 0; known[i] && lua_type(L, -1) == LUA_TSTRING; i++)
        ok |= strcmp(lua_tostring(L, -1), known[i]) == 0;
      if (!ok)
        return pyq_usage(L, "pyq.sqlite.open: unknown option %s (known: wal, "
                         "batch, busy_timeout)", pyq_got(L, -1));
    }
    if (lua_getfield(L, 2, "wal") != LUA_TNIL) {
      if (!lua_isboolean(L, -1))
        return pyq_usage(L, "pyq.sqlite.open: wal must be a boolean, got %s",
                         pyq_got(L, -1));
      wal = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    batch = (int)opt_int(L, 2, "batch", 1000, 1, 10000000);
    if (lua_getfield(L, 2, "busy_timeout") != LUA_TNIL) {
      lua_Number s = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(s >= 0 && s <= 3600))
        return pyq_usage(L, "pyq.sqlite.open: busy_timeout must be seconds "
                         "from 0 to 3600, got %s", pyq_got(L, -1));
      busy = (int)(s * 1000);
    }
    lua_pop(L, 1);
  }
  db = lua_newuserdatauv(L, sizeof *db, 1);
  memset(db, 0, sizeof *db);
  db->closed = 1;   /* until it is open: __gc does nothing */
  luaL_setmetatable(L, DB);
  lua_newtable(L);   /* statement cache: SQL text -> stmt */
  lua_setiuservalue(L, -2, 1);
  if (!pyq_db_open(dbs, &db->d, path, wal, batch, busy))
    return pyq_raise(L, "sqlite", "pyq.sqlite.open: cannot open '%s': %s",
                     path, db->d.err);
  db->closed = 0;
  return 1;
}

/* pyq.sqlite.blob(s): a value bound as a BLOB rather than TEXT. */
static int sqlite_blob (lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.sqlite.blob: expected a string, got %s",
                     pyq_got(L, 1));
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, BLOB);
  return 1;
}

int luaopen_pyq_sqlite (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"exec", db_exec}, {"one", db_one}, {"rows", db_rows},
    {"insert", db_insert}, {"upsert", db_upsert},
    {"transaction", db_transaction}, {"commit", db_commit},
    {"close", db_close}, {NULL, NULL}
  };
  if (luaL_newmetatable(L, DB)) {
    luaL_newlib(L, methods);
    lua_pushcclosure(L, db_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, db_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, db_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, db_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, DB);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, ROWS)) {
    lua_pushcfunction(L, rows_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, rows_close);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, ROWS);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BLOB)) {
    lua_pushliteral(L, BLOB);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  pyq_dbs_push(L);   /* the upvalue keeps the state of every database */
  lua_pushcclosure(L, sqlite_open, 1);
  lua_setfield(L, -2, "open");
  lua_pushcfunction(L, sqlite_blob);
  lua_setfield(L, -2, "blob");
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "sqlite_version");
  return 1;
}

void pyq_open_sqlite (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pyq_sqlite);
  lua_setfield(L, -2, "pyq.sqlite");
  lua_pop(L, 1);
}
