/* sink.c -- the memory sink: an answer's header block and body in
 * growing buffers, the body refused past max_body. */
#include <stdlib.h>
#include <string.h>
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
