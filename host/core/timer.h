/* timer.h -- timed waits and pyq.timeout's deadlines (timer.c). */
#ifndef PYQ_TIMER_H
#define PYQ_TIMER_H

#include "sched.h"

/* A pyq.timeout scope: its timer, on the task's chain of scopes. */
struct pyq_deadline {
  uv_timer_t timer;
  pyq_fiber *f;
  pyq_deadline *outer;
  double seconds;
  int fired;
};

int pyq_sleep_park (lua_State *L, pyq_fiber *f, double seconds,
                    lua_KFunction k);
pyq_deadline *pyq_deadline_push (lua_State *L, pyq_fiber *f, double s);
int pyq_deadline_pop (pyq_fiber *f);
void pyq_deadlines_free (pyq_fiber *f);

#endif
