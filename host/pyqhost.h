/* pyqhost.h -- the host put together (host.c, pyq.c): what main.c and the
 * fuzz targets use.  The only place that knows every layer. */
#ifndef PYQ_PYQHOST_H
#define PYQ_PYQHOST_H

#include "core/log.h"
#include "core/sched.h"

int pyq_host_open (pyq_host *h, int log_level);
int pyq_host_run_main (pyq_host *h, int nargs);
int pyq_host_close (pyq_host *h, int code);
void pyq_host_summary (pyq_host *h);
int pyq_host_summary_json (pyq_host *h, const char *path, int exit_code);
int luaopen_pyq_core (lua_State *L);

#endif
