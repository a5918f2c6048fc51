/* unit.h -- the few checks the C unit tests need: each failure prints its
 * place and the test exits 1 at the end (unit_done), so CTest sees it. */
#ifndef PYQ_UNIT_H
#define PYQ_UNIT_H

#include <stdio.h>

static int unit_failures, unit_checks;

#define CHECK(c) do { unit_checks++; if (!(c)) { unit_failures++; \
  fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); } \
} while (0)

#define CHECK_INT(a, b) do { long long a_ = (a), b_ = (b); unit_checks++; \
  if (a_ != b_) { unit_failures++; fprintf(stderr, \
  "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); } \
} while (0)

static int unit_done (const char *name) {
  printf("%s: %d checks, %d failed\n", name, unit_checks, unit_failures);
  return unit_failures != 0;
}

#endif
