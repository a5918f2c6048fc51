/* sink.c -- the memory sink: an answer's header block and body in
 * growing buffers, the body refused past max_body; and the download sink
 * of output = path and on_data = fn.
 *
 * A download's file is written with plain write(2) in libcurl's write
 * callback: the writes are sequential and land in the page cache, so they
 * cost less than handing each piece (copied) to libuv's thread pool, and
 * a full disk fails the transfer at once.  The body goes into
 * path..".part", opened when a 2xx answer's headers end; done() renames it
 * to path when the transfer succeeded, so path only ever holds a whole
 * body.  There is no fsync: after a kill -9 the kernel still has every byte
 * written before the rename (path is whole or absent); a power cut may
 * leave path short, as with curl -o or wget. */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include "sink.h"

int pyq_buf_add (pyq_buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *np;
    while (cap < b->len + n + 1) cap *= 2;
    if ((np = realloc(b->p, cap)) == NULL) return 0;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 1;
}

/* A status line starts the next answer (after a 100 Continue or a
 * redirect): only the last one's headers are kept. */
static int mem_headers (pyq_sink *s, const char *line, size_t n) {
  pyq_sink_mem *m = (pyq_sink_mem *)s;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) m->head.len = 0;
  return pyq_buf_add(&m->head, line, n);
}

static int mem_data (pyq_sink *s, const char *p, size_t n) {
  pyq_sink_mem *m = (pyq_sink_mem *)s;
  if ((curl_off_t)(m->body.len + n) > m->max) {
    m->too_big = 1;
    return 0;
  }
  return pyq_buf_add(&m->body, p, n);
}

static void mem_done (pyq_sink *s, CURLcode result) {
  (void)s;
  (void)result;
}

static const pyq_sink_ops mem_ops = { mem_headers, mem_data, mem_done };

void pyq_sink_mem_init (pyq_sink_mem *m, curl_off_t max) {
  m->sink.ops = &mem_ops;
  m->max = max;
  m->too_big = 0;
}

void pyq_sink_mem_reset (pyq_sink_mem *m, size_t keep) {
  if (m->body.cap > keep) {
    free(m->body.p);
    m->body.p = NULL;
    m->body.cap = 0;
  }
  m->body.len = m->head.len = 0;
  m->too_big = 0;
}

void pyq_sink_mem_free (pyq_sink_mem *m) {
  free(m->body.p);
  free(m->head.p);
  m->body.p = m->head.p = NULL;
  m->body.len = m->body.cap = m->head.len = m->head.cap = 0;
}

/* ---- downloads ------------------------------------------------------------ */

/* "HTTP/1.1 206 Partial Content" -> 206 */
static int status_of (const char *line, size_t n) {
  size_t i = 5;
  int code = 0;
  while (i < n && line[i] != ' ') i++;
  while (i < n && line[i] == ' ') i++;
  for (; i < n && line[i] >= '0' && line[i] <= '9' && code < 1000; i++)
    code = code * 10 + (line[i] - '0');
  return code;
}

/* A decimal number at *p (no sign), -1 when none; advances *p. */
static curl_off_t number (const char **p, const char *end) {
  curl_off_t v = -1;
  for (; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
    if (v > ((curl_off_t)INT64_MAX - 9) / 10) return -1;
    v = (v < 0 ? 0 : v * 10) + (**p - '0');
  }
  return v;
}

/* Content-Range: bytes a-b/c (a 206) or bytes star/c (a 416). */
static void content_range (pyq_sink_dl *d, const char *line, size_t n) {
  const char *p = line + 14, *end = line + n;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0) return;
  p += 6;
  if (p < end && *p == '*') p++;
  else {
    d->range_at = number(&p, end);
    if (p < end && *p == '-') p++;
    number(&p, end);
  }
  if (p < end && *p == '/') {
    p++;
    d->range_total = number(&p, end);
  }
}

static int fail (pyq_sink_dl *d, const char *op, int err) {
  if (d->op == NULL) {
    d->op = op;
    d->err = err;
  }
  return 0;
}

/* The headers of this answer are over: where does its body go?  A 2xx
 * body to the file (a 206 appended to the .part it resumes, any other
 * truncating it) or the chunks; anything else to memory.  With resume, a
 * 416 saying the resource is as long as the .part means the .part is
 * already whole; any other 416 means it is not this resource's: removed. */
static int start_body (pyq_sink_dl *d) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
  d->inbody = 1;
  d->to_mem = d->status < 200 || d->status >= 300;
  if (d->to_mem) {
    if (d->status == 416 && d->from > 0) {
      if (d->range_total == d->from) d->whole = 1;
      else unlink(d->part);
    }
    return 1;
  }
  if (d->chunks) return 1;
  if (d->opened) {   /* a second 2xx answer (not a proxy's CONNECT reply: those are suppressed) */
    close(d->fd);
    d->opened = 0;
    d->fd = -1;
  }
  if (d->status == 206 && (d->from == 0 || d->range_at != d->from))
    return fail(d, "resume", 0);
  flags |= d->status == 206 ? O_APPEND : O_TRUNC;
  if ((d->fd = open(d->part, flags, 0666)) < 0) return fail(d, "open", errno);
  d->opened = 1;
  d->size = d->status == 206 ? d->from : 0;
  return 1;
}

static int dl_headers (pyq_sink *s, const char *line, size_t n) {
  pyq_sink_dl *d = (pyq_sink_dl *)s;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {   /* the next answer */
    d->status = status_of(line, n);
    d->inbody = d->to_mem = 0;
    d->range_at = d->range_total = -1;
  } else if (!d->inbody && n >= 14 && strncasecmp(line, "content-range:", 14) == 0) {
    content_range(d, line, n);
  }
  if (!d->mem->sink.ops->headers(&d->mem->sink, line, n)) return 0;
  if (!d->inbody && n <= 2 && (line[0] == '\r' || line[0] == '\n'))
    return start_body(d);
  return 1;
}

static int dl_data (pyq_sink *s, const char *p, size_t n) {
  pyq_sink_dl *d = (pyq_sink_dl *)s;
  if (d->to_mem) return d->mem->sink.ops->data(&d->mem->sink, p, n);
  if (d->chunks && d->buf.len > 0) return PYQ_SINK_PAUSE;   /* libcurl keeps it */
  if (d->size > d->max - (curl_off_t)n) {
    d->too_big = 1;
    return 0;
  }
  if (d->chunks) {
    if (!pyq_buf_add(&d->buf, p, n)) return fail(d, "keep a chunk of", ENOMEM);
    if (!d->woken && !d->running && d->ready) {
      d->woken = 1;
      d->ready(d->ud);
    }
  } else {
    size_t done = 0;
    while (done < n) {
      ssize_t w = write(d->fd, p + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail(d, "write", errno);
      done += (size_t)w;
    }
  }
  d->size += (curl_off_t)n;
  return 1;
}

/* The end: a whole .part becomes path; a failed one goes unless kept. */
static void dl_done (pyq_sink *s, CURLcode result) {
  pyq_sink_dl *d = (pyq_sink_dl *)s;
  int ok;
  if (d->ended) return;
  d->ended = d->finished = 1;
  if (d->chunks) return;
  if (d->fd >= 0) {
    if (close(d->fd) != 0) fail(d, "write", errno);
    d->fd = -1;
  }
  ok = result == CURLE_OK && d->op == NULL && !d->too_big;
  if (ok && (d->opened || d->whole)) {
    if (rename(d->part, d->path) != 0) {
      fail(d, "rename", errno);
      ok = 0;
    } else {
      if (!d->opened) d->size = d->from;   /* the .part was whole */
      d->whole = 1;
    }
  }
  if (!ok) {
    d->whole = 0;
    if (d->opened && !d->keep) unlink(d->part);
  }
}

static const pyq_sink_ops dl_ops = { dl_headers, dl_data, dl_done };

pyq_sink_dl *pyq_sink_dl_new (pyq_sink_mem *mem, const char *path, int keep,
                              int resume, curl_off_t max) {
  pyq_sink_dl *d = calloc(1, sizeof *d);
  struct stat st;
  if (d == NULL) return NULL;
  d->sink.ops = &dl_ops;
  d->mem = mem;
  d->fd = -1;
  d->max = max;
  d->keep = keep;
  d->range_at = d->range_total = -1;
  d->chunks = path == NULL;
  if (path) {
    size_t n = strlen(path);
    if ((d->path = strdup(path)) == NULL || (d->part = malloc(n + 6)) == NULL) {
      free(d->path);
      free(d);
      return NULL;
    }
    memcpy(d->part, path, n);
    memcpy(d->part + n, ".part", 6);
    if (resume && stat(d->part, &st) == 0 && S_ISREG(st.st_mode))
      d->from = (curl_off_t)st.st_size;
  }
  return d;
}

void pyq_sink_dl_free (pyq_sink_dl *d) {
  dl_done(&d->sink, CURLE_ABORTED_BY_CALLBACK);
  free(d->buf.p);
  free(d->path);
  free(d->part);
  free(d);
}

const char *pyq_sink_dl_error (const pyq_sink_dl *d, char *buf, size_t n) {
  if (d->too_big) {
    snprintf(buf, n, "the response body is over max_body (%lld bytes)",
             (long long)d->max);
    return "too_big";
  }
  if (d->op == NULL) return NULL;
  if (strcmp(d->op, "resume") == 0) {
    snprintf(buf, n, "resume: the server sent bytes from %lld on, but '%s' "
             "holds %lld", (long long)d->range_at, d->part, (long long)d->from);
    return "transport";
  }
  if (strcmp(d->op, "rename") == 0)
    snprintf(buf, n, "output: cannot rename '%s' to '%s': %s", d->part,
             d->path, strerror(d->err));
  else if (d->chunks)
    snprintf(buf, n, "on_data: cannot %s the body: %s", d->op, strerror(d->err));
  else
    snprintf(buf, n, "output: cannot %s '%s': %s", d->op, d->part,
             strerror(d->err));
  return "io";
}
