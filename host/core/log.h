/* log.h -- the host's log lines (log.c): "UTC-stamp LEVEL where: msg". */
#ifndef PYQ_LOG_H
#define PYQ_LOG_H

#include "host.h"

enum { PYQ_DEBUG = 10, PYQ_INFO = 20, PYQ_WARNING = 30, PYQ_ERROR = 40,
       PYQ_CRITICAL = 50 };

void pyq_log (pyq_host *h, int level, const char *where, const char *fmt, ...);
void pyq_log_line (pyq_host *h, int level, const char *where, const char *msg);
int pyq_log_level_parse (const char *s, int *level);

#endif
