/* log.c -- the host's log lines.
 *
 * A line is "UTC-timestamp LEVEL where: message", written to stderr with a
 * single write so lines from one process never interleave.  Levels are
 * Python's numbers; the threshold lives in the host (pyq.log.level). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

static const struct { const char *name; int level; } levels[] = {
  {"DEBUG", PYQ_DEBUG}, {"INFO", PYQ_INFO}, {"WARNING", PYQ_WARNING},
  {"WARN", PYQ_WARNING}, {"ERROR", PYQ_ERROR}, {"CRITICAL", PYQ_CRITICAL},
  {"NOTSET", 0}, {NULL, 0}
};

static const char *level_name (int level, char *buf, size_t size) {
  int i;
  for (i = 0; levels[i].name; i++)
    if (levels[i].level == level && level != 0) return levels[i].name;
  snprintf(buf, size, "Level %d", level);
  return buf;
}

/* Accepts a level name in any case or a number; 1 if s was one. */
int pyq_log_level_parse (const char *s, int *level) {
  char *end;
  long n;
  int i;
  for (i = 0; levels[i].name; i++)
    if (strcasecmp(s, levels[i].name) == 0) {
      *level = levels[i].level;
      return 1;
    }
  n = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || n < 0 || n > 1000) return 0;
  *level = (int)n;
  return 1;
}

static void write_line (pyq_host *h, int level, const char *where,
                   const char *msg) {
  char stamp[32], lbuf[16], line[8192];
  struct timeval tv;
  struct tm tm;
  int n;
  if (h->before_output) h->before_output(h, NULL);
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  n = snprintf(line, sizeof line, "%s.%03dZ %s %s: %s\n", stamp,
               (int)(tv.tv_usec / 1000), level_name(level, lbuf, sizeof lbuf),
               where, msg);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) {   /* long message: same line, two writes */
    fprintf(stderr, "%s.%03dZ %s %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            level_name(level, lbuf, sizeof lbuf), where, msg);
    return;
  }
  fwrite(line, 1, (size_t)n, stderr);
}

/* Writes a log line whatever the threshold. */
void pyq_log_line (pyq_host *h, int level, const char *where,
                   const char *msg) {
  if (h->hold_screen) h->hold_screen(h);
  write_line(h, level, where, msg);
  if (h->release_screen) h->release_screen(h);
}

void pyq_log (pyq_host *h, int level, const char *where, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  if (level < h->log_level || level <= 0) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pyq_log_line(h, level, where, msg);
}

