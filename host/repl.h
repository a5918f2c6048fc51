/* repl.h -- the interactive prompt (repl.c). */
#ifndef PYQ_REPL_H
#define PYQ_REPL_H

#include "core/host.h"

int pyq_repl_run (pyq_host *h);

#endif
