/* timer.c -- pyq.sleep and pyq.now.
 *
 * Each fiber owns at most one uv_timer_t, made on its first sleep and kept
 * until the fiber ends: a fiber waits on one thing at a time. */
#include <math.h>
#include <stdlib.h>
#include "host.h"

static void timer_fired (uv_timer_t *t) {
  pyq_wake((pyq_fiber *)t->data, 0);
}

void pyq_timer_disarm (pyq_fiber *f) {
  uv_timer_stop(f->timer);
}

/* Arms f's timer; the caller then parks with pyq_timer_disarm. */
void pyq_timer_start (pyq_fiber *f, double seconds) {
  double ms = ceil(seconds * 1000.0);
  if (f->timer == NULL) {
    f->timer = malloc(sizeof *f->timer);
    if (f->timer == NULL) luaL_error(f->L, "not enough memory");
    uv_timer_init(f->host->loop, f->timer);
    f->timer->data = f;
  }
  uv_update_time(f->host->loop);   /* the cached time lags after long CPU work */
  uv_timer_start(f->timer, timer_fired, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
}

int pyq_checkseconds (lua_State *L, int arg, const char *fname,
                      const char *what) {
  lua_Number s = lua_tonumber(L, arg);
  if (lua_type(L, arg) != LUA_TNUMBER || !(s >= 0))
    return luaL_error(L, "%s: %s must be a non-negative number of seconds, "
                     "got %s", fname, what, lua_type(L, arg) == LUA_TNUMBER ?
                     lua_tostring(L, arg) : luaL_typename(L, arg));
  return 1;
}

static int pyq_sleep (lua_State *L) {
  pyq_fiber *f;
  pyq_checkseconds(L, 1, "pyq.sleep", "seconds");
  f = pyq_fiber_check(L, "pyq.sleep");
  pyq_timer_start(f, lua_tonumber(L, 1));
  return pyq_park(L, f, pyq_timer_disarm, NULL);
}

static int pyq_now (lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

void pyq_open_timer (lua_State *L) {
  lua_pushcfunction(L, pyq_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, pyq_now);
  lua_setfield(L, -2, "now");
}
