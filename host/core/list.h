/* list.h -- the intrusive circular doubly-linked list every layer uses.
 *
 * A node lives inside the struct it links (pyq_container gets the struct
 * back); an unlinked node points to itself, so removing twice is harmless. */
#ifndef PYQ_LIST_H
#define PYQ_LIST_H

#include <stddef.h>

typedef struct pyq_link { struct pyq_link *prev, *next; } pyq_link;

#define pyq_container(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

static inline void pyq_list_init (pyq_link *l) { l->prev = l->next = l; }
static inline int pyq_list_empty (const pyq_link *l) { return l->next == l; }
static inline int pyq_linked (const pyq_link *n) { return n->next != n; }

static inline void pyq_list_push (pyq_link *head, pyq_link *n) {
  n->prev = head->prev; n->next = head;
  head->prev->next = n; head->prev = n;
}

static inline void pyq_list_remove (pyq_link *n) {
  n->prev->next = n->next; n->next->prev = n->prev;
  n->prev = n->next = n;
}

static inline pyq_link *pyq_list_shift (pyq_link *head) {
  pyq_link *n = head->next;
  if (n == head) return NULL;
  pyq_list_remove(n);
  return n;
}

/* Moves every node of from to the end of to; from is left empty. */
static inline void pyq_list_splice (pyq_link *to, pyq_link *from) {
  if (pyq_list_empty(from)) return;
  from->next->prev = to->prev;
  from->prev->next = to;
  to->prev->next = from->next;
  to->prev = from->prev;
  pyq_list_init(from);
}

#endif
