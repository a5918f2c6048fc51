/* report.h -- what the host tells about queues: live progress and the exit
 * summary (report.c). */
#ifndef PYQ_REPORT_H
#define PYQ_REPORT_H

#include <stdio.h>
#include "core/sched.h"

/* A queue's counts, made by the report; once the queue is collected
 * (pyq_report_release) they are folded into the summary's totals. */
typedef struct pyq_qstats {
  pyq_link link;          /* in the report's list of records */
  pyq_link watch;         /* in the progress block until drawn final */
  char where[160];        /* script:line that created the queue */
  lua_Integer total;      /* expected tasks, for progress; 0 unknown */
  lua_Integer put, done, failed, cancelled, pending, running;
  lua_Integer skipped;    /* keyed puts a job store had a result for */
  double started, closed_at;   /* seconds; closed_at 0 while open */
  int progress;           /* drawn by report.c */
  int released;           /* its queue is gone (pyq_report_release) */
} pyq_qstats;

/* Writes a subsystem's summary line(s) (HTTP's); registered by it, so the
 * report never calls upward. */
typedef void (*pyq_report_fn) (void *ud, FILE *out);

void pyq_open_report (lua_State *L);
void pyq_report_close (pyq_host *h);
void pyq_report_section (pyq_host *h, pyq_report_fn fn, void *ud);
pyq_qstats *pyq_report_queue (pyq_host *h);
void pyq_report_closed (pyq_host *h, pyq_qstats *st);
/* The queue is gone (its __gc): st is never used again by the caller. */
void pyq_report_release (pyq_host *h, pyq_qstats *st);
void pyq_progress_watch (pyq_host *h, pyq_qstats *st);
void pyq_progress_clear (pyq_host *h);
void pyq_report_summary (pyq_host *h);
int pyq_report_summary_json (pyq_host *h, const char *path, int exit_code);

#endif
