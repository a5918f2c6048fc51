/* report.c -- what the host tells about queues: live progress and the exit
 * summary.
 *
 * Each queue counts into a pyq_qstats record that the host owns, so the
 * summary still has it after the queue is gone.  On a terminal, progress is
 * a block of lines at the bottom of stderr, one per queue, redrawn at most
 * ten times a second; a log line first erases the block, which the next
 * tick draws again.  Off a terminal, progress is an INFO line every five
 * seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lualib.h>
#include "host.h"
#include "http.h"

#define TTY_MS 100
#define PLAIN_MS 5000

static double now_s (void) { return (double)uv_hrtime() / 1e9; }

pyq_qstats *pyq_report_queue (pyq_host *h) {
  pyq_qstats *st = calloc(1, sizeof *st);
  if (st == NULL) return NULL;
  st->started = now_s();
  pyq_list_push(&h->stats, &st->link);
  return st;
}

static void format_line (const pyq_qstats *st, double now, char *buf,
                         size_t size) {
  lua_Integer finished = st->done + st->failed + st->cancelled;
  double wall = (st->closed_at > 0 ? st->closed_at : now) - st->started;
  double rate = wall > 0 ? (double)finished / wall : 0;
  char pct[32] = "", eta[32] = "", done[64];
  snprintf(done, sizeof done, "%lld", (long long)st->done);
  if (st->total > 0) {
    snprintf(done, sizeof done, "%lld/%lld", (long long)st->done,
             (long long)st->total);
    snprintf(pct, sizeof pct, "[%5.1f%%] ", 100.0 * (double)finished / (double)st->total);
    if (rate > 0 && finished < st->total) {
      long left = (long)((double)(st->total - finished) / rate + 0.5);
      snprintf(eta, sizeof eta, "  ETA %ld:%02ld", left / 60, left % 60);
    }
  }
  snprintf(buf, size, "%s %sdone %s  failed %lld  running %lld  pending %lld"
           "  %.1f/s%s", st->where, pct, done, (long long)st->failed,
           (long long)st->running, (long long)st->pending, rate, eta);
}

/* Erases the live block, so a log line can take its place. */
void pyq_progress_clear (pyq_host *h) {
  for (; h->progress_lines > 0; h->progress_lines--)
    fputs("\x1b[1A\x1b[2K", stderr);
}

static void draw (pyq_host *h) {
  char line[512];
  pyq_link *l;
  double now = now_s();
  pyq_progress_clear(h);
  for (l = h->stats.next; l != &h->stats; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, link);
    if (!st->progress || st->closed_at > 0) continue;
    format_line(st, now, line, sizeof line);
    if (h->progress_tty) {
      fprintf(stderr, "\r\x1b[2K%s\n", line);
      h->progress_lines++;
    } else {
      pyq_log_line(h, PYQ_INFO, "progress", line);
    }
  }
  fflush(stderr);
}

static void tick (uv_timer_t *t) { draw(t->data); }

/* Called for each queue that shows progress, when it is created. */
void pyq_progress_watch (pyq_host *h, pyq_qstats *st) {
  st->progress = 1;
  if (h->progress_timer.data != NULL) return;
  h->progress_tty = isatty(2);
  uv_timer_init(h->loop, &h->progress_timer);
  h->progress_timer.data = h;
  uv_unref((uv_handle_t *)&h->progress_timer);
  uv_timer_start(&h->progress_timer, tick, h->progress_tty ? TTY_MS : PLAIN_MS,
                 h->progress_tty ? TTY_MS : PLAIN_MS);
}

/* The queue closed: its line is drawn one last time and left in place. */
void pyq_report_closed (pyq_host *h, pyq_qstats *st) {
  char line[512];
  st->closed_at = now_s();
  if (!st->progress) return;
  format_line(st, st->closed_at, line, sizeof line);
  if (h->progress_tty) {
    pyq_progress_clear(h);
    fprintf(stderr, "\r\x1b[2K%s\n", line);
  } else {
    pyq_log_line(h, PYQ_INFO, "progress", line);
  }
}

void pyq_report_summary (pyq_host *h) {
  char line[512];
  pyq_link *l;
  double now = now_s();
  pyq_progress_clear(h);
  fprintf(stderr, "pyqhost summary: %.2f s\n", now - h->started);
  for (l = h->stats.next; l != &h->stats; l = l->next) {
    pyq_qstats *st = pyq_container(l, pyq_qstats, link);
    double wall = (st->closed_at > 0 ? st->closed_at : now) - st->started;
    lua_Integer finished = st->done + st->failed + st->cancelled;
    snprintf(line, sizeof line, "  queue %s: put %lld = done %lld + failed %lld "
             "+ cancelled %lld%s in %.2f s (%.1f/s)", st->where,
             (long long)st->put, (long long)st->done, (long long)st->failed,
             (long long)st->cancelled,
             finished == st->put ? "" : " (tasks unaccounted for!)", wall,
             wall > 0 ? (double)finished / wall : 0.0);
    fprintf(stderr, "%s\n", line);
  }
  if (h->http) pyq_http_report(h->http, stderr);
  fflush(stderr);
}

/* print, io.write and file:write erase the live block first, so output
 * never lands between its lines (the next tick draws it again). */
static int clear_then_call (lua_State *L) {
  pyq_progress_clear(pyq_host_of(L));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void wrap (lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  lua_pushcclosure(L, clear_then_call, 1);
  lua_setfield(L, t, name);
}

void pyq_open_report (lua_State *L) {
  lua_pushglobaltable(L);
  wrap(L, lua_gettop(L), "print");
  lua_getfield(L, -1, "io");
  wrap(L, lua_gettop(L), "write");
  luaL_getmetatable(L, LUA_FILEHANDLE);
  lua_getfield(L, -1, "__index");
  wrap(L, lua_gettop(L), "write");
  lua_pop(L, 4);
}

void pyq_report_close (pyq_host *h) {
  pyq_link *l;
  if (h->progress_timer.data != NULL)
    uv_close((uv_handle_t *)&h->progress_timer, NULL);
  while ((l = pyq_list_shift(&h->stats)) != NULL)
    free(pyq_container(l, pyq_qstats, link));
}
