/* ring_test.c -- the in-memory ring (host/queue/ring.c) through the backend
 * ops of queue/backend.h, on a real Lua state: put order and put indices,
 * growth and wrap-around, the drained ring giving its peak back, popped and
 * dropped tasks left to the GC, the stack each op leaves.  A userdata with
 * one user value stands in for the queue that keeps the ring's table. */
#include <stdlib.h>
#include "unit.h"
#include "queue/backend.h"

enum { SLOT = 1, Q = 1 };   /* the ring's user value; the queue's index */

static lua_State *L;
static pyq_backend *b;

static void open_ring (void) {
  L = luaL_newstate();
  lua_newuserdatauv(L, 8, 1);   /* the queue, at index Q */
  b = pyq_ring_open(L, Q, SLOT);
  CHECK(b != NULL);
}

static void close_ring (void) {
  b->ops->close(b, L, Q);
  lua_close(L);
}

static void push_int (lua_Integer v, lua_Integer index) {
  int top = lua_gettop(L);
  lua_pushinteger(L, v);
  b->ops->push(b, L, Q, lua_gettop(L), 0, index);
  CHECK_INT(lua_gettop(L), top + 1);   /* push leaves the stack as it was */
  lua_pop(L, 1);
}

/* Pops one task: its integer value, or -1 when the ring was empty. */
static lua_Integer pop_int (lua_Integer *index) {
  int top = lua_gettop(L), r;
  lua_Integer v;
  const pyq_wait_ops *ops = NULL;
  void *on = NULL;
  r = b->ops->pop(b, L, Q, index, &ops, &on);
  if (r == PYQ_POP_EMPTY) {
    CHECK_INT(lua_gettop(L), top);
    return -1;
  }
  CHECK_INT(r, PYQ_POP_TASK);
  CHECK(ops == NULL && on == NULL);   /* the ring never waits */
  CHECK_INT(lua_gettop(L), top + 1);
  v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static const void *ring_table (void) {
  const void *p;
  lua_getiuservalue(L, Q, SLOT);
  p = lua_topointer(L, -1);
  lua_pop(L, 1);
  return p;
}

static void test_order (void) {
  lua_Integer i, idx = 0;
  open_ring();
  CHECK(b->ops->settle == NULL);   /* nothing to do when a task ends */
  CHECK_INT(b->ops->pending(b), 0);
  CHECK_INT(pop_int(&idx), -1);
  for (i = 1; i <= 5; i++) push_int(i * 10, i);
  CHECK_INT(b->ops->pending(b), 5);
  for (i = 1; i <= 5; i++) {
    CHECK_INT(pop_int(&idx), i * 10);
    CHECK_INT(idx, i);
  }
  CHECK_INT(pop_int(&idx), -1);
  push_int(60, 6);   /* indices go on after the ring drained */
  CHECK_INT(pop_int(&idx), 60);
  CHECK_INT(idx, 6);
  close_ring();
}

/* Three in, two out, many times: the ring grows while its head is not at
 * slot 1, and the order holds. */
static void test_grow_and_wrap (void) {
  lua_Integer next_in = 1, next_out = 1, idx = 0;
  int round;
  open_ring();
  for (round = 0; round < 2000; round++) {
    int k;
    for (k = 0; k < 3; k++, next_in++) push_int(next_in, next_in);
    for (k = 0; k < 2; k++, next_out++) {
      CHECK_INT(pop_int(&idx), next_out);
      CHECK_INT(idx, next_out);
    }
  }
  CHECK_INT(b->ops->pending(b), next_in - next_out);
  while (next_out < next_in) {
    CHECK_INT(pop_int(&idx), next_out);
    next_out++;
  }
  CHECK_INT(b->ops->pending(b), 0);
  close_ring();
}

/* A drained ring that grew big is replaced by a small table; a small one
 * is kept. */
static void test_shrink (void) {
  const void *before, *big;
  lua_Integer i, idx;
  open_ring();
  before = ring_table();
  for (i = 1; i <= 4; i++) push_int(i, i);
  for (i = 1; i <= 4; i++) pop_int(&idx);
  CHECK(ring_table() == before);
  for (i = 1; i <= 5000; i++) push_int(i, i);
  CHECK(ring_table() != before);
  big = ring_table();
  for (i = 1; i <= 5000; i++) pop_int(&idx);
  CHECK(ring_table() != big);   /* the peak was given back */
  lua_getiuservalue(L, Q, SLOT);
  lua_pushnil(L);
  CHECK(lua_next(L, -2) == 0);   /* empty */
  lua_pop(L, 1);
  push_int(7, 5001);
  CHECK_INT(pop_int(&idx), 7);
  CHECK_INT(idx, 5001);
  close_ring();
}

/* Pushes n tables, each also in the weak table at index weak. */
static void push_tracked (int weak, int n, lua_Integer first) {
  int i;
  for (i = 0; i < n; i++) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, weak, first + i);
    b->ops->push(b, L, Q, lua_gettop(L), 0, first + i);
    lua_pop(L, 1);
  }
}

static int alive (int weak, lua_Integer i) {
  int t = lua_rawgeti(L, weak, i);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

/* Popped and dropped tasks are the GC's at once; pending ones are kept. */
static void test_gc (void) {
  lua_Integer idx, n;
  int weak, i;
  open_ring();
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  weak = lua_gettop(L);
  push_tracked(weak, 10, 1);
  for (i = 0; i < 3; i++) {
    const pyq_wait_ops *ops;
    void *on;
    CHECK_INT(b->ops->pop(b, L, Q, &idx, &ops, &on), PYQ_POP_TASK);
    lua_pop(L, 1);
  }
  lua_gc(L, LUA_GCCOLLECT);
  for (i = 1; i <= 3; i++) CHECK(!alive(weak, i));
  for (i = 4; i <= 10; i++) CHECK(alive(weak, i));
  n = b->ops->drop(b, L, Q);
  CHECK_INT(n, 7);
  CHECK_INT(lua_gettop(L), weak);
  CHECK_INT(b->ops->pending(b), 0);
  CHECK_INT(pop_int(&idx), -1);
  lua_gc(L, LUA_GCCOLLECT);
  for (i = 4; i <= 10; i++) CHECK(!alive(weak, i));
  push_tracked(weak, 2, 11);   /* usable after a drop */
  CHECK_INT(b->ops->pending(b), 2);
  close_ring();
}

int main (void) {
  test_order();
  test_grow_and_wrap();
  test_shrink();
  test_gc();
  return unit_done("ring_test");
}
