/* jsonl.c -- pyq.jsonl: JSON Lines files, every line whole and written once.
 *
 * A writer encodes each value with the codec (json.c) straight into its C
 * buffer, in one C call that runs no Lua code, so an interrupt can land
 * before or after a line but never inside one.  Buffered lines go to the
 * file with write(2), whole: when the buffer passes 64 KiB, when the oldest
 * line is `flush` seconds old (checked by every write, and by one libuv
 * timer, unref'd, for writers that sit idle), at writer:flush(), at close
 * and __gc, and when SIGINT, SIGTERM or a closed stdout interrupts the job
 * (a hook registered with pyq_on_interrupt).  A write that fails part-way
 * (disk full, file-size limit) cuts the file back to its last whole line,
 * so it always ends at a line boundary.  The module's state (open writers,
 * the timer, the hook) is one userdata anchored in the registry. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include "lua/check.h"
#include "lua/error.h"
#include "core/log.h"
#include "core/signal.h"
#include "json.h"

#define WRITER "pyq.jsonl.writer"
#define READER "pyq.jsonl.reader"
#define STATE "pyq.jsonl.state"
#define FLUSH_BYTES (64 * 1024)

static const char STATE_KEY = 's';

typedef struct jsonl_state {
  pyq_host *h;
  pyq_link writers;      /* open writers */
  uv_timer_t *timer;     /* writes lines whose interval has run out; its
                            own allocation: libuv may hold it after lua_close */
  double timer_due;      /* when it fires; 0 when stopped */
  pyq_job hook;          /* on interrupt: every writer writes its lines */
} jsonl_state;

typedef struct writer {
  pyq_link link;         /* in state->writers while open */
  jsonl_state *st;
  pyq_jbuf buf;          /* lines not yet written; whole lines end at `whole` */
  size_t whole;
  int fd;
  int seekable;          /* a regular file: can be cut back on failure */
  off_t end;             /* the file's length up to its last whole line */
  lua_Integer lines;
  double interval;       /* seconds a line may wait; 0: written at once */
  double due;            /* when the oldest buffered line must be written */
  int flags;             /* the codec's (invalid_utf8) */
  int err;               /* errno of a failed background write, to raise */
  int closed;
  char path[1];
} writer;


/* Writes the whole lines; 0, or the errno of a failure after which the
 * file ends at its last whole line and the lines not written stay. */
static int write_lines (writer *w) {
  size_t off = 0, keep;
  int err = 0;
  while (off < w->whole) {
    ssize_t k = write(w->fd, w->buf.p + off, w->whole - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) { err = k < 0 ? errno : EIO; break; }
    off += (size_t)k;
  }
  if (!err) {
    w->end += (off_t)off;
    w->buf.n = w->whole = 0;
    w->due = 0;
    return 0;
  }
  for (keep = off; keep > 0 && w->buf.p[keep - 1] != '\n'; keep--) {}
  if (w->seekable && keep < off) {   /* cut the half line off */
    if (ftruncate(w->fd, w->end + (off_t)keep) == 0)
      lseek(w->fd, w->end + (off_t)keep, SEEK_SET);
  }
  w->end += (off_t)keep;
  memmove(w->buf.p, w->buf.p + keep, w->whole - keep);
  w->whole -= keep;
  w->buf.n = w->whole;
  return err;
}

static lua_Integer count_lines (writer *w) {
  lua_Integer n = 0;
  size_t i;
  for (i = 0; i < w->whole; i++) n += w->buf.p[i] == '\n';
  return n;
}

/* From the loop (timer, interrupt, __gc): no task to raise in, so log the
 * failure and keep it for the writer's next call to raise. */
static void write_in_background (writer *w) {
  int err;
  if (w->whole == 0) return;
  err = write_lines(w);
  if (err) {
    w->err = err;
    pyq_log(w->st->h, PYQ_WARNING, "pyq.jsonl", "cannot write '%s': %s "
            "(%d lines kept; the writer's next call raises this)",
            w->path, strerror(err), (int)count_lines(w));
  }
}

static void on_timer (uv_timer_t *t);

static void arm (jsonl_state *st, double due) {
  double wait;
  if (st->timer == NULL) return;   /* lua_close collected the state */
  if (st->timer_due != 0 && st->timer_due <= due) return;
  st->timer_due = due;
  wait = due - pyq_clock();
  uv_timer_start(st->timer, on_timer, wait > 0 ? (uint64_t)(wait * 1000) + 1 : 0, 0);
}

static void on_timer (uv_timer_t *t) {
  jsonl_state *st = t->data;
  double at = pyq_clock(), next = 0;
  pyq_link *l;
  st->timer_due = 0;
  for (l = st->writers.next; l != &st->writers; l = l->next) {
    writer *w = pyq_container(l, writer, link);
    if (w->whole == 0) continue;
    if (w->due <= at + 0.001 && !w->err) write_in_background(w);
    if (w->whole > 0 && !w->err && (next == 0 || w->due < next)) next = w->due;
  }
  if (next != 0) arm(st, next);
}

static void on_interrupt (pyq_host *h, pyq_job *hook) {
  jsonl_state *st = pyq_container(hook, jsonl_state, hook);
  pyq_link *l;
  (void)h;
  for (l = st->writers.next; l != &st->writers; l = l->next)
    write_in_background(pyq_container(l, writer, link));
}

static writer *check_writer (lua_State *L, const char *fname) {
  writer *w = luaL_testudata(L, 1, WRITER);
  if (w == NULL)
    pyq_usage(L, "%s: bad self (a pyq.jsonl writer expected, got %s)", fname,
               luaL_typename(L, 1));
  return w;
}

static int raise_write (lua_State *L, writer *w, const char *fname, int err) {
  return pyq_raise(L, "io", "%s: cannot write '%s': %s", fname, w->path, strerror(err));
}

/* A failure the timer or the interrupt found is raised once, here. */
static void raise_pending (lua_State *L, writer *w, const char *fname) {
  int err = w->err;
  if (err) {
    w->err = 0;
    raise_write(L, w, fname, err);
  }
}

static int writer_write (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.write");
  size_t start;
  double t;
  int err;
  if (w->closed) return pyq_usage(L, "pyq.jsonl.write: '%s' is closed", w->path);
  luaL_checkany(L, 2);
  raise_pending(L, w, "pyq.jsonl.write");
  w->buf.n = start = w->whole;   /* drop what an error left half-encoded */
  if (!pyq_json_encode(L, 2, &w->buf, w->flags))
    return pyq_raise(L, "encode", "pyq.jsonl.write: cannot encode a line for '%s': %s",
                      w->path, lua_tostring(L, -1));
  if (!(w->buf.size > w->buf.n || pyq_jbuf_grow(&w->buf, 1))) {
    w->buf.n = start;
    return luaL_error(L, "pyq.jsonl.write: out of memory");
  }
  w->buf.p[w->buf.n++] = '\n';
  w->whole = w->buf.n;
  w->lines++;
  t = pyq_clock();
  if (start == 0) w->due = t + w->interval;
  if (w->interval == 0 || w->whole >= FLUSH_BYTES || t >= w->due) {
    size_t len = w->whole - start;
    if ((err = write_lines(w)) != 0) {
      /* this value is not in the file (a failed write never gets as far
       * as the end of the buffer): it raises and is not kept */
      w->whole -= len;
      w->buf.n = w->whole;
      w->lines--;
      return raise_write(L, w, "pyq.jsonl.write", err);
    }
  } else if (start == 0) {
    arm(w->st, w->due);
  }
  return 0;
}

static int writer_flush (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.flush");
  int err;
  if (w->closed) return pyq_usage(L, "pyq.jsonl.flush: '%s' is closed", w->path);
  raise_pending(L, w, "pyq.jsonl.flush");
  if (w->whole > 0 && (err = write_lines(w)) != 0)
    return raise_write(L, w, "pyq.jsonl.flush", err);
  return 0;
}

/* Writes what is left and closes; 0 or the errno of a failure (the lines
 * not written are counted in *lost). */
static int finish (writer *w, lua_Integer *lost) {
  int err = w->err;
  *lost = 0;
  if (w->closed) return 0;
  w->closed = 1;
  if (w->whole > 0) {
    int e = write_lines(w);
    if (e) { err = e; *lost = count_lines(w); }
  }
  close(w->fd);
  pyq_list_remove(&w->link);
  pyq_jbuf_free(&w->buf);
  w->whole = 0;
  return err;
}

static int writer_close (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.close");
  lua_Integer lost;
  int err = finish(w, &lost);
  if (err)
    return pyq_raise(L, "io", "pyq.jsonl.close: cannot write '%s': %s (%I lines lost)",
                      w->path, strerror(err), lost);
  return 0;
}

static int writer_gc (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.writer.__gc");
  lua_Integer lost;
  int err = finish(w, &lost);
  if (err)
    pyq_log(w->st->h, PYQ_WARNING, "pyq.jsonl", "cannot write '%s' at exit: %s "
            "(%d lines lost)", w->path, strerror(err), (int)lost);
  return 0;
}

static int writer_tostring (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.writer.__tostring");
  lua_pushfstring(L, "pyq.jsonl.writer: %s (%I lines%s)", w->path, w->lines,
                  w->closed ? ", closed" : "");
  return 1;
}

static int writer_index (lua_State *L) {
  writer *w = check_writer(L, "pyq.jsonl.writer.__index");
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "path") == 0) lua_pushstring(L, w->path);
  else if (k && strcmp(k, "lines") == 0) lua_pushinteger(L, w->lines);
  else if (k && strcmp(k, "closed") == 0) lua_pushboolean(L, w->closed);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));   /* the methods */
  }
  return 1;
}

static double check_flush (lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "line") == 0)
    return 0;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double s = lua_tonumber(L, idx);
    if (s > 0 && s <= 86400) return s;
  }
  pyq_usage(L, "pyq.jsonl.open: flush must be a number of seconds (0 < s <= 86400) "
             "or \"line\", got %s", luaL_tolstring(L, idx, NULL));
  return 0;
}

/* pyq.jsonl.open(path [, { append =, flush =, invalid_utf8 = }]) -> writer */
static int jsonl_open (lua_State *L) {
  jsonl_state *st = lua_touserdata(L, lua_upvalueindex(1));
  size_t n;
  const char *path;
  int append = 0, flags = 0, fd;
  double interval = 1;
  writer *w;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pyq_usage(L, "pyq.jsonl.open: path must be a string, got %s", luaL_typename(L, 1));
  path = lua_tolstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2))
      return pyq_usage(L, "pyq.jsonl.open: options must be a table, got %s", luaL_typename(L, 2));
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (strcmp(k, "append") == 0) {
        if (!lua_isboolean(L, -1))
          return pyq_usage(L, "pyq.jsonl.open: append must be a boolean, got %s", luaL_typename(L, -1));
        append = lua_toboolean(L, -1);
      } else if (strcmp(k, "flush") == 0) {
        interval = check_flush(L, lua_gettop(L));
      } else if (strcmp(k, "invalid_utf8") == 0) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(v, "error") == 0) flags = PYQ_JSON_UTF8_ERROR;
        else if (strcmp(v, "replace") != 0)
          return pyq_usage(L, "pyq.jsonl.open: invalid_utf8 must be \"replace\" or \"error\", got %s",
                            pyq_got(L, -1));
      } else {
        return pyq_usage(L, "pyq.jsonl.open: unknown option '%s'", luaL_tolstring(L, -2, NULL));
      }
      lua_pop(L, 1);
    }
  }
  if (strlen(path) != n) return pyq_usage(L, "pyq.jsonl.open: path contains a NUL byte");
  w = lua_newuserdatauv(L, sizeof(writer) + n, 0);
  memset(w, 0, sizeof(writer));
  memcpy(w->path, path, n + 1);
  w->fd = -1;
  w->closed = 1;   /* until the file is open: __gc has nothing to do */
  luaL_setmetatable(L, WRITER);
  /* appending reads the last byte, if the file lets us */
  fd = append ? open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_APPEND, 0666) : -1;
  if (fd < 0)
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0666);
  if (fd < 0)
    return pyq_raise(L, "io", "pyq.jsonl.open: cannot open '%s': %s", path, strerror(errno));
  w->fd = fd;
  w->st = st;
  w->interval = interval;
  w->flags = flags;
  w->end = lseek(fd, 0, SEEK_END);
  w->seekable = w->end >= 0;
  if (w->end < 0) w->end = 0;
  if (append && w->end > 0) {   /* a half line left by someone else stays apart */
    char last;
    if (pread(fd, &last, 1, w->end - 1) == 1 && last != '\n' && write(fd, "\n", 1) == 1)
      w->end++;
  }
  w->closed = 0;
  pyq_list_push(&st->writers, &w->link);
  return 1;
}

/* ---- reading ----------------------------------------------------------- */

/* Decodes one line (not blank) and pushes its value, or raises naming the
 * file and the line number. */
static void decode_line (lua_State *L, const char *fname, const char *path,
                         lua_Integer lineno, const char *s, size_t n) {
  if (!pyq_json_decode(L, s, n, PYQ_JSON_ONE_LINE))
    pyq_raise(L, "decode", "%s: '%s' line %I: %s", fname, path, lineno, lua_tostring(L, -1));
}

static int blank (const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
  return 1;
}

/* pyq.jsonl.lines' iterator state; pyq.jsonl.read uses it too, to own
 * its FILE. */
typedef struct reader {
  FILE *f;
  char *line;
  size_t cap;
  lua_Integer lineno, count;
  char path[1];
} reader;

/* Pushes a reader with the file at argument 1 open for reading. */
static reader *open_reader (lua_State *L, const char *fname) {
  size_t n;
  const char *path;
  reader *r;
  if (lua_type(L, 1) != LUA_TSTRING)
    pyq_usage(L, "%s: path must be a string, got %s", fname, luaL_typename(L, 1));
  path = lua_tolstring(L, 1, &n);
  r = lua_newuserdatauv(L, sizeof(reader) + n, 0);
  memset(r, 0, sizeof(reader));
  memcpy(r->path, path, n + 1);
  luaL_setmetatable(L, READER);
  r->f = fopen(path, "rb");
  if (r->f == NULL)
    pyq_raise(L, "io", "%s: cannot open '%s': %s", fname, path, strerror(errno));
  return r;
}

/* pyq.jsonl.read(path) -> a list of the values, blank lines skipped */
static int jsonl_read (lua_State *L) {
  const char *path, *s, *end;
  reader *r;   /* owns the FILE: closed by its __gc if a Lua call raises */
  luaL_Buffer B;
  size_t n, k;
  lua_Integer lineno = 0, count = 0;
  lua_settop(L, 1);
  r = open_reader(L, "pyq.jsonl.read");
  path = r->path;
  luaL_buffinit(L, &B);
  do {
    char *p = luaL_prepbuffer(&B);
    k = fread(p, 1, LUAL_BUFFERSIZE, r->f);
    luaL_addsize(&B, k);
  } while (k == LUAL_BUFFERSIZE);
  k = (size_t)ferror(r->f);
  fclose(r->f);
  r->f = NULL;
  if (k) return pyq_raise(L, "io", "pyq.jsonl.read: cannot read '%s'", path);
  luaL_pushresult(&B);
  s = lua_tolstring(L, -1, &n);
  end = s + n;
  lua_pushvalue(L, lua_upvalueindex(1));   /* pyq.json.array, as it was */
  lua_call(L, 0, 1);
  while (s < end) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
    lineno++;
    if (!blank(s, len)) {
      decode_line(L, "pyq.jsonl.read", path, lineno, s, len);
      lua_rawseti(L, -2, ++count);
    }
    s += len + 1;
  }
  return 1;
}


static int reader_close (lua_State *L) {
  reader *r = luaL_checkudata(L, 1, READER);
  if (r->f) fclose(r->f);
  free(r->line);
  r->f = NULL;
  r->line = NULL;
  return 0;
}

static int reader_next (lua_State *L) {
  reader *r = luaL_checkudata(L, 1, READER);
  ssize_t len;
  while (r->f && (len = getline(&r->line, &r->cap, r->f)) >= 0) {
    size_t n = (size_t)len;
    r->lineno++;
    if (n > 0 && r->line[n - 1] == '\n') n--;
    if (blank(r->line, n)) continue;
    lua_pushinteger(L, ++r->count);
    decode_line(L, "pyq.jsonl.lines", r->path, r->lineno, r->line, n);
    return 2;
  }
  reader_close(L);
  return 0;
}

/* for i, value in pyq.jsonl.lines(path) do ... end (the file is closed when
 * the loop ends, by break or error too) */
static int jsonl_lines (lua_State *L) {
  lua_pushcfunction(L, reader_next);
  open_reader(L, "pyq.jsonl.lines");
  lua_pushnil(L);
  lua_pushvalue(L, -2);
  return 4;
}

/* ---- the module -------------------------------------------------------- */

static void timer_free (uv_handle_t *t) { free(t); }

static int state_gc (lua_State *L) {
  jsonl_state *st = luaL_checkudata(L, 1, STATE);
  if (pyq_linked(&st->hook.link)) pyq_list_remove(&st->hook.link);
  if (st->timer != NULL) uv_close((uv_handle_t *)st->timer, timer_free);
  st->timer = NULL;
  return 0;
}

int luaopen_pyq_jsonl (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", writer_write}, {"flush", writer_flush}, {"close", writer_close},
    {NULL, NULL}
  };
  pyq_host *h = pyq_host_of(L);
  jsonl_state *st;
  if (luaL_newmetatable(L, WRITER)) {
    luaL_newlib(L, methods);
    lua_pushcclosure(L, writer_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, writer_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, writer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, writer_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, READER)) {
    lua_pushcfunction(L, reader_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, reader_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    st->h = h;
    pyq_list_init(&st->writers);
    pyq_list_init(&st->hook.link);
    st->hook.run = on_interrupt;
    if ((st->timer = malloc(sizeof *st->timer)) == NULL)
      return luaL_error(L, "not enough memory");
    uv_timer_init(h->loop, st->timer);
    uv_unref((uv_handle_t *)st->timer);
    st->timer->data = st;
    pyq_on_interrupt(h, &st->hook);
    if (luaL_newmetatable(L, STATE)) {
      lua_pushcfunction(L, state_gc);
      lua_setfield(L, -2, "__gc");
      lua_pushliteral(L, STATE);
      lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  }
  lua_pushcclosure(L, jsonl_open, 1);
  lua_setfield(L, -2, "open");
  luaL_requiref(L, "pyq.json", luaopen_pyq_json, 0);
  lua_getfield(L, -1, "array");
  lua_remove(L, -2);
  lua_pushcclosure(L, jsonl_read, 1);
  lua_setfield(L, -2, "read");
  lua_pushcfunction(L, jsonl_lines);
  lua_setfield(L, -2, "lines");
  return 1;
}
