/* sink.h -- where a transfer's answer goes (sink.c).
 *
 * A transfer hands its sink the header lines of the answer it keeps (a
 * status line starts a new answer), the body as it arrives, and the end.
 * headers and data return 0 to stop the transfer.  The memory sink keeps
 * both in buffers, the body up to max bytes.  A download sink (output =
 * path, on_data = fn) keeps the headers in a memory sink too, and so the
 * body of an answer that is not 2xx (an error page); a 2xx body goes to
 * the file path..".part" (renamed to path when whole) or, for on_data, to
 * a chunk buffer that the task empties into its callback. */
#ifndef PYQ_SINK_H
#define PYQ_SINK_H

#include <stddef.h>
#include <curl/curl.h>

typedef struct pyq_sink pyq_sink;
/* data returns this to pause the transfer, keeping the bytes for later
 * (libcurl's CURL_WRITEFUNC_PAUSE). */
#define PYQ_SINK_PAUSE 2
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

/* A download: output = path (file) or on_data = fn (chunks). */
typedef struct pyq_sink_dl {
  pyq_sink sink;
  pyq_sink_mem *mem;     /* the headers; a body that is not 2xx */
  int chunks;            /* 1: on_data, 0: output */
  int status;            /* the current answer's */
  int inbody;            /* past the current answer's headers */
  int to_mem;            /* this answer's body goes to mem */
  curl_off_t size;       /* bytes of 2xx body: in the file, or handed on */
  curl_off_t max;        /* max_body */
  int too_big;
  int ended;             /* done() ran */
  /* output */
  char *path, *part;
  int fd;                /* the .part, open while a 2xx body arrives */
  int opened;            /* this transfer opened the .part */
  int keep;              /* keep_partial */
  int whole;             /* path is written: res.path, res.size */
  curl_off_t from;       /* resume: bytes in the .part when sent; 0 none */
  curl_off_t range_at, range_total;   /* this answer's Content-Range */
  int err;               /* errno of what failed, with op */
  const char *op;        /* what failed: "open", "write", ...; NULL: fine */
  /* on_data */
  pyq_buf buf;           /* body bytes the callback has not had yet */
  int woken;             /* the task is posted to empty buf */
  int running;           /* the task is emptying buf: no wake */
  int finished;          /* the transfer is over (done ran) */
  int aborted;           /* on_data returned false */
  void (*ready) (void *ud);   /* buf has bytes: wake the task */
  void *ud;
} pyq_sink_dl;

/* A download sink for output = path (with keep_partial, resume) into
 * path..".part", or with path NULL for on_data; max is max_body, mem the
 * transfer's memory sink.  NULL when out of memory. */
pyq_sink_dl *pyq_sink_dl_new (pyq_sink_mem *mem, const char *path, int keep,
                              int resume, curl_off_t max);
/* Ends it as a failure if done() has not run (the .part removed unless
 * kept) and frees it. */
void pyq_sink_dl_free (pyq_sink_dl *d);
/* What stopped the download, in buf: its pyq.Error kind ("io",
 * "too_big", "transport"), or NULL when the sink stopped nothing. */
const char *pyq_sink_dl_error (const pyq_sink_dl *d, char *buf, size_t n);

#endif
