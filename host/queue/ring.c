/* ring.c -- the in-memory backend: pending tasks in put order.
 *
 * The tasks sit in a Lua table used as a ring of `cap` slots (a power of
 * two), kept in the queue's user value `slot` so the GC sees them; the C
 * state holds only the ring's head, count and the put index of its head
 * (puts are numbered in order, so the rest follow).  A popped slot is
 * cleared at once: a finished task leaves nothing behind.  A full ring
 * doubles into a new table; a drained ring bigger than RING_KEEP slots is
 * replaced by a small one, which gives a peak's memory back. */
#include <stdlib.h>
#include "backend.h"

#define RING_MIN 8
#define RING_KEEP 1024

typedef struct ring {
  pyq_backend base;
  int slot;                /* the queue's user value holding the table */
  lua_Integer head, count, cap;
  lua_Integer first;       /* put index of the task at head */
} ring;

#define R(b) ((ring *)(b))

/* A fresh table of cap slots becomes the ring; the queue is at qidx. */
static void ring_reset (ring *r, lua_State *L, int qidx, lua_Integer cap) {
  lua_createtable(L, (int)cap, 0);
  lua_setiuservalue(L, qidx, r->slot);
  r->head = r->count = 0;
  r->cap = cap;
}

static void ring_grow (ring *r, lua_State *L, int qidx) {
  lua_Integer i, cap = r->cap * 2;
  lua_getiuservalue(L, qidx, r->slot);
  lua_createtable(L, (int)cap, 0);
  for (i = 0; i < r->count; i++) {
    lua_rawgeti(L, -2, ((r->head + i) & (r->cap - 1)) + 1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setiuservalue(L, qidx, r->slot);
  lua_pop(L, 1);
  r->head = 0;
  r->cap = cap;
}

static void ring_push (pyq_backend *b, lua_State *L, int qidx, int tidx,
                       int kidx, lua_Integer index) {
  ring *r = R(b);
  (void)kidx;   /* keys are the store's */
  if (r->count == r->cap) ring_grow(r, L, qidx);
  if (r->count == 0) r->first = index;
  lua_getiuservalue(L, qidx, r->slot);
  lua_pushvalue(L, tidx);
  lua_rawseti(L, -2, ((r->head + r->count) & (r->cap - 1)) + 1);
  lua_pop(L, 1);
  r->count++;
}

static int ring_pop (pyq_backend *b, lua_State *L, int qidx,
                     lua_Integer *index, const pyq_wait_ops **ops, void **on) {
  ring *r = R(b);
  lua_Integer at = r->head + 1;
  (void)ops; (void)on;   /* the ring never waits */
  if (r->count == 0) return PYQ_POP_EMPTY;
  lua_getiuservalue(L, qidx, r->slot);
  lua_rawgeti(L, -1, at);
  lua_pushnil(L);
  lua_rawseti(L, -3, at);
  lua_replace(L, -2);
  r->head = (r->head + 1) & (r->cap - 1);
  *index = r->first++;
  if (--r->count == 0 && r->cap > RING_KEEP) ring_reset(r, L, qidx, RING_MIN);
  return PYQ_POP_TASK;
}

static lua_Integer ring_pending (const pyq_backend *b) {
  return R(b)->count;
}

static lua_Integer ring_drop (pyq_backend *b, lua_State *L, int qidx) {
  lua_Integer n = R(b)->count;
  ring_reset(R(b), L, qidx, RING_MIN);
  return n;
}

static void ring_close (pyq_backend *b, lua_State *L, int qidx) {
  (void)L; (void)qidx;   /* the table goes with the queue */
  free(b);
}

static const pyq_backend_ops ring_ops = {
  "ring", ring_push, ring_pop, NULL, ring_pending, ring_drop, ring_close,
  NULL, NULL, NULL, NULL
};

pyq_backend *pyq_ring_open (lua_State *L, int qidx, int slot) {
  ring *r;
  lua_createtable(L, RING_MIN, 0);   /* first: it may raise */
  lua_setiuservalue(L, qidx, slot);
  if ((r = calloc(1, sizeof *r)) == NULL) return NULL;
  r->base.ops = &ring_ops;
  r->slot = slot;
  r->cap = RING_MIN;
  return &r->base;
}
