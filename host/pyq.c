/* pyq.c -- the C half of the pyq module, loaded as "pyq.core".
 *
 * lualib/pyq/init.lua builds the public `pyq` table on top of it. */
#include "pyqhost.h"
#include "html/html.h"
#include "http/http.h"
#include "http/url.h"
#include "json/json.h"
#include "lua/error.h"
#include "lua/log.h"
#include "lua/sleep.h"
#include "lua/task.h"
#include "queue/queue.h"
#include "sqlite/sqlite.h"
#include "store/store.h"
#include "redis/redis.h"
#include "cluster/cluster.h"

int luaopen_pyq_core (lua_State *L) {
  lua_newtable(L);
  pyq_open_task(L);
  pyq_open_time(L);
  pyq_open_queue(L);
  pyq_open_store(L);   /* after the queue: it registers itself there */
  pyq_open_cluster(L);   /* after the queue too */
  pyq_open_redis(L);
  pyq_open_log(L);
  pyq_open_error(L);
  pyq_open_http(L);
  pyq_open_json(L);   /* pyq.json and pyq.jsonl, for require */
  pyq_open_sqlite(L);
  pyq_open_url(L);    /* pyq.url, for require */
  pyq_open_html(L);   /* pyq.html, for require */
  lua_pushliteral(L, PYQ_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
