/* sink.h -- where a transfer's answer goes (sink.c).
 *
 * A transfer hands its sink the header lines of the answer it keeps (a
 * status line starts a new answer), the body as it arrives, and the end.
 * headers and data return 0 to stop the transfer.  The memory sink keeps
 * both in buffers, the body up to max bytes; a file and a chunk callback
 * are the next sinks (issue 10) and fit the same three functions. */
#ifndef PYQ_SINK_H
#define PYQ_SINK_H

#include <stddef.h>
#include <curl/curl.h>

typedef struct pyq_sink pyq_sink;
typedef struct pyq_sink_ops {
  int (*headers) (pyq_sink *s, const char *line, size_t n);
  int (*data) (pyq_sink *s, const char *p, size_t n);
  void (*done) (pyq_sink *s, CURLcode result);
} pyq_sink_ops;

struct pyq_sink {
  const pyq_sink_ops *ops;
};

typedef struct pyq_buf { char *p; size_t len, cap; } pyq_buf;

/* The memory sink: the last answer's header block and its body. */
typedef struct pyq_sink_mem {
  pyq_sink sink;
  pyq_buf head, body;
  curl_off_t max;        /* max_body */
  int too_big;           /* the body went over max */
} pyq_sink_mem;

void pyq_sink_mem_init (pyq_sink_mem *m, curl_off_t max);
/* Empties the buffers for the next transfer; keeps at most `keep` bytes of
 * body buffer allocated (the header buffer as it grew). */
void pyq_sink_mem_reset (pyq_sink_mem *m, size_t keep);
void pyq_sink_mem_free (pyq_sink_mem *m);

int pyq_buf_add (pyq_buf *b, const char *p, size_t n);

#endif
