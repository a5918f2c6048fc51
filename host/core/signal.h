/* signal.h -- SIGINT, SIGTERM and a closed stdout interrupt the job
 * cleanly (signal.c). */
#ifndef PYQ_SIGNAL_H
#define PYQ_SIGNAL_H

#include "sched.h"

void pyq_signal_init (pyq_host *h);
void pyq_interrupt (pyq_host *h, int sig);
void pyq_signal_check (pyq_host *h);
const pyq_reason *pyq_interrupted (pyq_host *h);
const pyq_reason *pyq_interrupt_reason (int sig);
void pyq_interrupt_arm (pyq_host *h, lua_State *L);
void pyq_soft_arm (pyq_host *h, pyq_fiber *f);
void pyq_soft_interrupt (pyq_host *h);
void pyq_soft_clear (pyq_fiber *f);
/* Owners of buffered output register a pyq_job here (its link unused
 * otherwise); it runs, from the loop, when SIGINT, SIGTERM or a closed
 * stdout interrupts the job, so data reaches the disk before unwinding. */
void pyq_on_interrupt (pyq_host *h, pyq_job *hook);

#endif
