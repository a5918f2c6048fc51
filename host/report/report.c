/* report.c -- what the host tells about queues: live progress and the exit
 * summary.
 *
 * Each queue counts into a pyq_qstats record that the host owns, so the
 * summary still has it after the queue is gone.  When the queue is
 * collected (pyq_report_release) its record is folded into totals, except
 * for the KEEP largest, so a job that makes a million queues keeps ten.
 *
 * On a terminal, progress is a block of lines at the bottom of stderr, one
 * per watched queue in creation order, redrawn at most ten times a second
 * and when a queue closes.  Every line is cut to the terminal's width
 * (re-read on SIGWINCH) so that it takes exactly one row: the eraser moves
 * up one row a line and never miscounts.  A closed queue keeps its line in
 * the block, whose counts still change while cancelled tasks unwind; when
 * every queue in the block is closed and idle, or at exit, the block is
 * drawn a last time and left on the screen.  A log line or a write to the
 * terminal erases the block first; the next tick draws it again.  Off a
 * terminal, progress is INFO log lines: every five seconds for the open
 * queues, and the final lines, in creation order, where the block would be
 * left. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lualib.h>
#include "report.h"
#include "core/log.h"
#include "core/signal.h"

#define TTY_MS 100
#define PLAIN_MS 5000
#define KEEP 10          /* released queues the summary lists */
#define WHERE_MIN 12     /* "...me.lua:12": shortest useful `where` */
#define LINE_SIZE 512

typedef struct counts {
  lua_Integer queues, put, done, failed, cancelled, skipped;
} counts;

typedef struct pyq_report {
  pyq_link block;          /* watched records not yet drawn final */
  pyq_qstats *kept[KEEP];  /* released records the summary lists */
  int nkept;
  counts more;             /* released records folded away */
  int cols, rows;          /* the terminal's size */
  int stdout_tty;          /* stdout is the block's terminal too */
  int winch_on;
  uv_signal_t winch;
  char *out;               /* the next write to the terminal */
  size_t len, cap;
  pyq_link stats;          /* pyq_qstats of every queue */
  int tty;                 /* stderr is a terminal */
  int lines;               /* live lines now on the terminal */
  uv_timer_t timer;        /* progress ticks; data set once started */
  int handles;             /* handles to close before r is freed */
  pyq_report_fn section;   /* another subsystem's summary line (HTTP) */
  void *section_ud;
} pyq_report;


/* ---- records ------------------------------------------------------------ */

pyq_qstats *pyq_report_queue (pyq_host *h) {
  pyq_qstats *st;
  if (h->report == NULL) return NULL;   /* closed: the host is going */
  if ((st = calloc(1, sizeof *st)) == NULL) return NULL;
  st->started = pyq_clock();
  pyq_list_init(&st->watch);
  pyq_list_push(&h->report->stats, &st->link);
  return st;
}

static void add_counts (counts *c, const pyq_qstats *st) {
  c->queues++;
  c->put += st->put;
  c->done += st->done;
  c->failed += st->failed;
  c->cancelled += st->cancelled;
  c->skipped += st->skipped;
}

/* Keeps st if it is among the KEEP largest released records; the smaller
 * one goes into the totals and is freed. */
static void fold (pyq_report *r, pyq_qstats *st) {
  int i, min = 0;
  if (r->nkept < KEEP) {
    r->kept[r->nkept++] = st;
    return;
  }
  for (i = 1; i < KEEP; i++)
    if (r->kept[i]->put < r->kept[min]->put) min = i;
  if (st->put > r->kept[min]->put) {
    pyq_qstats *out = r->kept[min];
    r->kept[min] = st;
    st = out;
  }
  add_counts(&r->more, st);
  pyq_list_remove(&st->link);
  free(st);
}

void pyq_report_release (pyq_host *h, pyq_qstats *st) {
  if (h->report == NULL) return;   /* after pyq_report_close freed st */
  st->released = 1;
  if (st->closed_at == 0) st->closed_at = pyq_clock();
  if (!pyq_linked(&st->watch)) fold(h->report, st);
  /* else the block folds it when it is drawn final */
}

/* ---- one line ----------------------------------------------------------- */

enum { F_WHERE, F_PCT, F_DONE, F_FAILED, F_RUNNING, F_PENDING, F_RATE, F_ETA,
       NF };

/* What goes first when a line is too wide; `done` always stays. */
static const int drop_order[] = {
  F_PENDING, F_RUNNING, F_RATE, F_PCT, F_ETA, F_WHERE, F_FAILED
};

static size_t compose (char f[NF][sizeof ((pyq_qstats *)0)->where],
                       char *buf, size_t size) {
  size_t len = 0;
  int i, prev = -1;
  buf[0] = '\0';
  for (i = 0; i < NF; i++) {
    if (f[i][0] == '\0') continue;
    if (prev >= 0)   /* where and the percentage sit close to what follows */
      len += (size_t)snprintf(buf + len, size - len, "%s",
                              prev == F_WHERE || prev == F_PCT ? " " : "  ");
    if (len >= size) return size - 1;
    len += (size_t)snprintf(buf + len, size - len, "%s", f[i]);
    if (len >= size) return size - 1;
    prev = i;
  }
  return len;
}

/* "where [ 42.0%] done 42/100  failed 0  running 8  pending 50  12.3/s
 * ETA 0:05" in at most `width` columns: the `where` part is shortened to
 * its file name and then to its tail, then fields are dropped, and only
 * then is the line cut. */
static void format_line (const pyq_host *h, const pyq_qstats *st, double now,
                         size_t width, char *buf, size_t size) {
  char f[NF][sizeof st->where];
  lua_Integer finished = st->done + st->failed + st->cancelled + st->skipped;
  double wall = (st->closed_at > 0 ? st->closed_at : now) - st->started;
  double rate = wall > 0 ? (double)finished / wall : 0, secs;
  size_t i, len, wlen;
  char *slash;
  memset(f, 0, sizeof f);
  snprintf(f[F_WHERE], sizeof f[F_WHERE], "%s", st->where);
  snprintf(f[F_DONE], sizeof f[F_DONE], "done %lld", (long long)st->done);
  if (st->total > 0) {
    snprintf(f[F_DONE], sizeof f[F_DONE], "done %lld/%lld",
             (long long)st->done, (long long)st->total);
    snprintf(f[F_PCT], sizeof f[F_PCT], "[%5.1f%%]",
             100.0 * (double)finished / (double)st->total);
    secs = rate > 0 ? (double)(st->total - finished) / rate : -1;
    if (secs >= 0 && secs < 1e8 && finished < st->total &&
        st->closed_at == 0 && !h->signal) {
      long left = (long)(secs + 0.5);
      if (left >= 3600)
        snprintf(f[F_ETA], sizeof f[F_ETA], "ETA %ld:%02ld:%02ld", left / 3600,
                 left / 60 % 60, left % 60);
      else
        snprintf(f[F_ETA], sizeof f[F_ETA], "ETA %ld:%02ld", left / 60,
                 left % 60);
    }
  }
  snprintf(f[F_FAILED], sizeof f[F_FAILED], "failed %lld",
           (long long)st->failed);
  snprintf(f[F_RUNNING], sizeof f[F_RUNNING], "running %lld",
           (long long)st->running);
  snprintf(f[F_PENDING], sizeof f[F_PENDING], "pending %lld",
           (long long)st->pending);
  snprintf(f[F_RATE], sizeof f[F_RATE], "%.1f/s", rate);
  if (width >= size) width = size - 1;
  if ((len = compose(f, buf, size)) <= width) return;
  if ((slash = strrchr(f[F_WHERE], '/')) != NULL)
    memmove(f[F_WHERE], slash + 1, strlen(slash + 1) + 1);
  if ((len = compose(f, buf, size)) <= width) return;
  wlen = strlen(f[F_WHERE]);
  if (wlen > WHERE_MIN) {
    size_t keep = len - width < wlen - WHERE_MIN ? wlen - (len - width)
                                                 : WHERE_MIN;
    memmove(f[F_WHERE] + 3, f[F_WHERE] + wlen - (keep - 3), keep - 3 + 1);
    memcpy(f[F_WHERE], "...", 3);
    if ((len = compose(f, buf, size)) <= width) return;
  }
  for (i = 0; i < sizeof drop_order / sizeof drop_order[0]; i++) {
    f[drop_order[i]][0] = '\0';
    if ((len = compose(f, buf, size)) <= width) return;
  }
  buf[width] = '\0';
}

/* ---- the block ---------------------------------------------------------- */

static void out_add (pyq_report *r, const char *s, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 1024;
    char *p;
    while (cap < r->len + n) cap *= 2;
    if ((p = realloc(r->out, cap)) == NULL) return;   /* drawn next tick */
    r->out = p;
    r->cap = cap;
  }
  memcpy(r->out + r->len, s, n);
  r->len += n;
}

/* One write: stderr is unbuffered, and a block written piecemeal flickers. */
static void out_flush (pyq_report *r) {
  if (r->len > 0) fwrite(r->out, 1, r->len, stderr);
  r->len = 0;
  fflush(stderr);
}

static void out_erase (pyq_host *h, pyq_report *r) {
  for (; h->report->lines > 0; h->report->lines--)
    out_add(r, "\x1b[1A\x1b[2K", 8);
}

static void out_line (pyq_report *r, const char *line) {
  out_add(r, "\r\x1b[2K", 5);
  out_add(r, line, strlen(line));
  out_add(r, "\n", 1);
}

/* Erases the live block, so a log line can take its place. */
void pyq_progress_clear (pyq_host *h) {
  if (h->report == NULL || h->report->lines == 0) return;
  out_erase(h, h->report);
  out_flush(h->report);
}

static int is_final (const pyq_qstats *st) {
  return st->closed_at > 0 && st->running == 0 && st->pending == 0;
}

/* Draws the block over the last one; the last time, every line stays.  A
 * block taller than the terminal ends with a "more" line instead, since
 * the cursor cannot go up into the scrollback to erase it. */
static void draw (pyq_host *h, int last, double now) {
  pyq_report *r = h->report;
  char line[LINE_SIZE];
  size_t width = r->cols > 1 ? (size_t)r->cols - 1 : 1;
  int n = 0, shown = 0, room = r->rows > 1 ? r->rows - 1 : 1;
  pyq_link *l;
  for (l = r->block.next; l != &r->block; l = l->next) n++;
  if (last) room = n;
  out_erase(h, r);
  for (l = r->block.next; l != &r->block; l = l->next, shown++) {
    if (n > room && shown == room - 1) {
      snprintf(line, sizeof line, "... %d more queues", n - shown);
      if (width < sizeof line) line[width] = '\0';
      out_line(r, line);
      shown++;
      break;
    }
    format_line(h, pyq_container(l, pyq_qstats, watch), now, width, line,
                sizeof line);
    out_line(r, line);
  }
  h->report->lines = last ? 0 : shown;
  out_flush(r);
}

/* Off a terminal: INFO lines, which the log level may hide. */
static void log_lines (pyq_host *h, int last, double now) {
  char line[LINE_SIZE];
  pyq_link *l;
  if (PYQ_INFO < h->log_level) return;
  for (l = h->report->block.next; l != &h->report->block; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, watch);
    if (last || st->closed_at == 0) {
      format_line(h, st, now, sizeof line - 1, line, sizeof line);
      pyq_log(h, PYQ_INFO, "progress", "%s", line);
    }
  }
}

/* Shows the block: drawn, or logged when `periodic`.  When every queue in
 * it has finished, or `last`, the lines are final and the block empties. */
static void show (pyq_host *h, int last, int periodic) {
  pyq_report *r = h->report;
  pyq_link *l;
  double now = pyq_clock();
  if (pyq_list_empty(&r->block)) return;
  if (!last) {
    last = 1;
    for (l = r->block.next; l != &r->block && last; l = l->next)
      last = is_final(pyq_container(l, pyq_qstats, watch));
  }
  if (h->report->tty) {
    if (h->hold_screen) h->hold_screen(h);
    draw(h, last, now);
    if (h->release_screen) h->release_screen(h);
  } else if (last || periodic) {
    log_lines(h, last, now);
  }
  if (!last) return;
  while ((l = pyq_list_shift(&r->block)) != NULL) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, watch);
    if (st->released) fold(r, st);
  }
}

static void tick (uv_timer_t *t) { show(t->data, 0, 1); }

static void read_size (pyq_report *r) {
  struct winsize ws;
  r->cols = 80;
  r->rows = 24;
  if (ioctl(2, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0) r->cols = ws.ws_col;
    if (ws.ws_row > 0) r->rows = ws.ws_row;
  }
}

static void on_winch (uv_signal_t *s, int sig) {
  pyq_host *h = s->data;
  (void)sig;
  read_size(h->report);
  show(h, 0, 0);
}

/* Called for each queue that shows progress, when it is created. */
void pyq_progress_watch (pyq_host *h, pyq_qstats *st) {
  pyq_report *r = h->report;
  st->progress = 1;
  pyq_list_push(&r->block, &st->watch);
  if (h->report->timer.data != NULL) return;
  h->report->tty = isatty(2);
  uv_timer_init(h->loop, &h->report->timer);
  h->report->timer.data = h;
  uv_unref((uv_handle_t *)&h->report->timer);
  uv_timer_start(&h->report->timer, tick, h->report->tty ? TTY_MS : PLAIN_MS,
                 h->report->tty ? TTY_MS : PLAIN_MS);
  if (!h->report->tty) return;
  read_size(r);
  if (uv_signal_init(h->loop, &r->winch) == 0) {
    r->winch_on = 1;
    r->winch.data = h;
    uv_signal_start(&r->winch, on_winch, SIGWINCH);
    uv_unref((uv_handle_t *)&r->winch);
  }
}

/* The queue closed: its line shows the final counts once its tasks have
 * unwound, in its place in the block. */
void pyq_report_closed (pyq_host *h, pyq_qstats *st) {
  if (h->report == NULL) return;   /* st is gone with the report */
  st->closed_at = pyq_clock();
  if (pyq_linked(&st->watch)) show(h, 0, 0);
}

/* ---- the summary -------------------------------------------------------- */

static const char *ending (const pyq_host *h, char *buf, size_t size) {
  switch (h->signal) {
    case 0: return "";
    case SIGINT: return ", interrupted by SIGINT";
    case SIGTERM: return ", interrupted by SIGTERM";
    case SIGPIPE: return ", stopped: stdout was closed";
    default:
      snprintf(buf, size, ", interrupted by signal %d", (int)h->signal);
      return buf;
  }
}

void pyq_report_section (pyq_host *h, pyq_report_fn fn, void *ud) {
  h->report->section = fn;
  h->report->section_ud = ud;
}

/* The registered section's line (HTTP), or "" when it has nothing. */
static char *http_line (pyq_host *h) {
  char *text = NULL;
  size_t len = 0;
  FILE *m;
  pyq_report *r = h->report;
  if (r->section == NULL || (m = open_memstream(&text, &len)) == NULL)
    return NULL;
  r->section(r->section_ud, m);
  fclose(m);
  return text;
}

/* Marks the (at most) KEEP records with the most puts; the rest are summed
 * into `more`. */
static int pick (pyq_host *h, pyq_qstats **best, counts *more) {
  int n = 0, i;
  pyq_link *l;
  for (l = h->report->stats.next; l != &h->report->stats; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, link);
    if (n == KEEP && st->put <= best[n - 1]->put) {
      add_counts(more, st);
      continue;
    }
    if (n == KEEP) add_counts(more, best[--n]);
    for (i = n++; i > 0 && best[i - 1]->put < st->put; i--)
      best[i] = best[i - 1];
    best[i] = st;
  }
  return n;
}

static int picked (pyq_qstats **best, int n, const pyq_qstats *st) {
  while (n-- > 0)
    if (best[n] == st) return 1;
  return 0;
}

/* " + skipped N" for a queue with keyed puts a job store had done;
 * nothing otherwise, so the books of other queues read as before. */
static const char *skipped (lua_Integer n, char *buf, size_t size) {
  if (n == 0) return "";
  snprintf(buf, size, " + skipped %lld", (long long)n);
  return buf;
}

void pyq_report_summary (pyq_host *h) {
  pyq_report *r = h->report;
  pyq_qstats *best[KEEP];
  counts more;
  char buf[64], *http;
  pyq_link *l;
  double now = pyq_clock();
  int n;
  if (r == NULL) return;
  show(h, 1, 0);
  pyq_progress_clear(h);
  more = r->more;
  n = pick(h, best, &more);
  http = http_line(h);
  fprintf(stderr, "pyqhost summary: %.2f s%s%s\n", now - h->started,
          ending(h, buf, sizeof buf),
          n == 0 && h->unhandled == 0 && (http == NULL || *http == '\0') ?
          "; no queues, no HTTP requests" : "");
  for (l = h->report->stats.next; l != &h->report->stats; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, link);
    double wall = (st->closed_at > 0 ? st->closed_at : now) - st->started;
    lua_Integer finished = st->done + st->failed + st->cancelled + st->skipped;
    if (!picked(best, n, st)) continue;
    fprintf(stderr, "  queue %s: put %lld = done %lld + failed %lld + "
            "cancelled %lld%s%s in %.2f s (%.1f/s)\n", st->where,
            (long long)st->put, (long long)st->done, (long long)st->failed,
            (long long)st->cancelled, skipped(st->skipped, buf, sizeof buf),
            finished == st->put ? "" : " (tasks unaccounted for!)", wall,
            wall > 0 ? (double)finished / wall : 0.0);
  }
  if (more.queues > 0)
    fprintf(stderr, "  %lld more queue%s: put %lld = done %lld + failed %lld "
            "+ cancelled %lld%s%s\n", (long long)more.queues,
            more.queues == 1 ? "" : "s", (long long)more.put,
            (long long)more.done, (long long)more.failed,
            (long long)more.cancelled, skipped(more.skipped, buf, sizeof buf),
            more.put == more.done + more.failed + more.cancelled +
            more.skipped ? "" : " (tasks unaccounted for!)");
  if (h->unhandled > 0)   /* main.c exits 3 unless something says otherwise */
    fprintf(stderr, "  %lld task%s failed%s: %s error%s reached the default "
            "exception handler\n", (long long)h->unhandled,
            h->unhandled == 1 ? "" : "s",
            h->signal || h->exit_requested || h->exit_code ? "" :
            " (exit code 3)", h->unhandled == 1 ? "its" : "their",
            h->unhandled == 1 ? "" : "s");
  if (http) fputs(http, stderr);
  free(http);
  fflush(stderr);
}

/* ---- the summary as JSON -------------------------------------------------- */

static void json_str (FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
    else if (c < 0x20) fprintf(out, "\\u%04x", c);
    else fputc(c, out);
  }
  fputc('"', out);
}

static void json_counts (FILE *out, lua_Integer put, lua_Integer done,
                         lua_Integer failed, lua_Integer cancelled,
                         lua_Integer skipped) {
  fprintf(out, "\"put\": %lld, \"done\": %lld, \"failed\": %lld, "
          "\"cancelled\": %lld, \"skipped\": %lld", (long long)put,
          (long long)done, (long long)failed, (long long)cancelled,
          (long long)skipped);
}

/* --summary-json FILE: what the summary says, for scripts and dashboards;
 * the file is written whole (a temporary file renamed) or not at all.
 * Returns 0, or -1 with errno set. */
int pyq_report_summary_json (pyq_host *h, const char *path, int exit_code) {
  pyq_report *r = h->report;
  pyq_qstats *best[KEEP];
  counts more;
  char tmp[4096], *http = NULL;
  pyq_link *l;
  double now = pyq_clock();
  int n, first = 1, ok;
  FILE *out;
  if (r == NULL) return 0;
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if ((out = fopen(tmp, "w")) == NULL) return -1;
  more = r->more;
  n = pick(h, best, &more);
  fprintf(out, "{\"seconds\": %.3f, \"exit_code\": %d, \"signal\": %d, "
          "\"unhandled\": %lld, \"queues\": [", now - h->started, exit_code,
          (int)h->signal, (long long)h->unhandled);
  for (l = r->stats.next; l != &r->stats; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, link);
    double wall = (st->closed_at > 0 ? st->closed_at : now) - st->started;
    if (!picked(best, n, st)) continue;
    fprintf(out, "%s\n  {\"where\": ", first ? "" : ",");
    first = 0;
    json_str(out, st->where);
    fputs(", ", out);
    json_counts(out, st->put, st->done, st->failed, st->cancelled,
                st->skipped);
    fprintf(out, ", \"seconds\": %.3f, \"per_second\": %.1f}", wall,
            wall > 0 ? (double)(st->done + st->failed + st->cancelled +
                                st->skipped) / wall : 0.0);
  }
  fprintf(out, "%s], \"more_queues\": {\"queues\": %lld, ", first ? "" : "\n",
          (long long)more.queues);
  json_counts(out, more.put, more.done, more.failed, more.cancelled,
              more.skipped);
  fputs("}, \"http\": ", out);
  if ((http = http_line(h)) != NULL && *http) {
    size_t len = strlen(http);
    while (len > 0 && http[len - 1] == '\n') http[--len] = '\0';
    json_str(out, http + strspn(http, " "));
  } else {
    fputs("null", out);
  }
  free(http);
  fputs("}\n", out);
  ok = !ferror(out);
  if (fclose(out) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    errno = e;
    return -1;
  }
  return 0;
}

/* ---- output from Lua ---------------------------------------------------- */


/* The stream f shows on the block's terminal. */
static int on_terminal (pyq_host *h, FILE *f) {
  if (f == stderr) return h->report->tty;
  return f == stdout && h->report->stdout_tty;
}

/* h->before_output: a log line (f NULL), print or io.write (f NULL too:
 * they always erase) or a file:write to f is about to be written; the
 * block goes first when the output would land between its lines. */
static void before_output (pyq_host *h, FILE *f) {
  if (h->report == NULL || h->report->lines == 0) return;
  if (f == NULL || on_terminal(h, f)) pyq_progress_clear(h);
}

/* stdout is a terminal, and the same one as stderr */
static int same_terminal (void) {
  struct stat out, err;
  return isatty(1) && isatty(2) && fstat(1, &out) == 0 &&
         fstat(2, &err) == 0 && out.st_rdev == err.st_rdev;
}

void pyq_open_report (lua_State *L) {
  pyq_host *h = pyq_host_of(L);
  pyq_report *r = calloc(1, sizeof *r);
  if (r == NULL) luaL_error(L, "not enough memory");
  pyq_list_init(&r->block);
  pyq_list_init(&r->stats);
  h->before_output = before_output;
  r->stdout_tty = same_terminal();
  h->report = r;
}

static void free_report (uv_handle_t *handle) {
  pyq_report *r = handle->data;
  if (--r->handles > 0) return;
  free(r->out);
  free(r);
}

void pyq_report_close (pyq_host *h) {
  pyq_report *r = h->report;
  pyq_link *l;
  if (r == NULL) return;
  show(h, 1, 0);
  while ((l = pyq_list_shift(&r->stats)) != NULL)
    free(pyq_container(l, pyq_qstats, link));
  h->report = NULL;
  r->handles = 1;   /* this function's own */
  if (r->timer.data != NULL) {
    r->handles++;
    r->timer.data = r;
    uv_close((uv_handle_t *)&r->timer, free_report);
  }
  if (r->winch_on) {
    r->handles++;
    r->winch.data = r;
    uv_close((uv_handle_t *)&r->winch, free_report);
  }
  if (--r->handles == 0) {
    free(r->out);
    free(r);
  }
}
