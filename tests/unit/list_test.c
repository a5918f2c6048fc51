/* list_test.c -- the intrusive list of core/list.h. */
#include "unit.h"
#include "core/list.h"

typedef struct item { int v; pyq_link link; } item;

static int values (pyq_link *head, int *out, int max) {
  int n = 0;
  pyq_link *l;
  for (l = head->next; l != head && n < max; l = l->next)
    out[n++] = pyq_container(l, item, link)->v;
  return n;
}

static void test_push_shift (void) {
  pyq_link head;
  item a = {1, {0, 0}}, b = {2, {0, 0}}, c = {3, {0, 0}};
  int got[4];
  pyq_list_init(&head);
  pyq_list_init(&a.link); pyq_list_init(&b.link); pyq_list_init(&c.link);
  CHECK(pyq_list_empty(&head));
  CHECK(!pyq_linked(&a.link));
  pyq_list_push(&head, &a.link);
  pyq_list_push(&head, &b.link);
  pyq_list_push(&head, &c.link);
  CHECK(pyq_linked(&b.link));
  CHECK_INT(values(&head, got, 4), 3);
  CHECK_INT(got[0], 1); CHECK_INT(got[1], 2); CHECK_INT(got[2], 3);
  CHECK(pyq_list_shift(&head) == &a.link);
  CHECK(!pyq_linked(&a.link));   /* a shifted node points to itself */
  pyq_list_remove(&c.link);
  pyq_list_remove(&c.link);      /* removing twice is harmless */
  CHECK_INT(values(&head, got, 4), 1);
  CHECK_INT(got[0], 2);
  CHECK(pyq_list_shift(&head) == &b.link);
  CHECK(pyq_list_shift(&head) == NULL);
  CHECK(pyq_list_empty(&head));
}

static void test_splice (void) {
  pyq_link x, y;
  item it[5];
  int got[8], i;
  pyq_list_init(&x); pyq_list_init(&y);
  for (i = 0; i < 5; i++) {
    it[i].v = i;
    pyq_list_init(&it[i].link);
    pyq_list_push(i < 2 ? &x : &y, &it[i].link);
  }
  pyq_list_splice(&x, &y);
  CHECK(pyq_list_empty(&y));
  CHECK_INT(values(&x, got, 8), 5);
  for (i = 0; i < 5; i++) CHECK_INT(got[i], i);
  pyq_list_splice(&x, &y);       /* an empty list adds nothing */
  CHECK_INT(values(&x, got, 8), 5);
  /* links stay consistent backwards too */
  CHECK(pyq_container(x.prev, item, link)->v == 4);
  CHECK(x.prev->next == &x && y.next == &y && y.prev == &y);
}

int main (void) {
  test_push_shift();
  test_splice();
  return unit_done("list");
}
