/* css.c -- the CSS selector subset of pyq.html, translated to XPath 1.0.
 *
 * One pass over the selector, writing the expression as it goes: a list
 * of selectors separated by commas becomes a union; each selector is
 * compound selectors joined by descendant (whitespace) or child (>)
 * combinators, the first one searched among all descendants of the
 * context node ("descendant::"), the others below the previous step.  A
 * compound selector is a tag or *, then any of #id, .class, [attr],
 * [attr=v] (and ~= ^= $= *=), :nth-child(an+b), :first-child and
 * :last-child, each one predicate.  Tags and attribute names are
 * lowercased, as libxml2's HTML parser stores them.  Anything else
 * (escapes, other combinators and pseudo-classes) is refused with the
 * reason and the offset, never guessed at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "html.h"

typedef struct out { char *p; size_t n, size; int oom; } out;

typedef struct parser {
  const char *s;
  size_t n, i;
  const char *why;
  size_t at;
  out o;
} parser;

static void put (out *o, const char *s, size_t n) {
  if (o->oom) return;
  if (o->size - o->n <= n) {
    size_t size = o->size ? o->size : 64;
    char *p;
    while (size - o->n <= n) size *= 2;
    if ((p = realloc(o->p, size)) == NULL) { o->oom = 1; return; }
    o->p = p;
    o->size = size;
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
  o->p[o->n] = '\0';
}

static void puts_ (out *o, const char *s) { put(o, s, strlen(s)); }

/* An XPath string literal for s[0..n), quoted with the quote it does not
 * contain: a CSS string without escapes never holds both. */
static void literal (out *o, const char *s, size_t n) {
  const char *q = memchr(s, '\'', n) ? "\"" : "'";
  puts_(o, q);
  put(o, s, n);
  puts_(o, q);
}

static int fail (parser *p, const char *why) {
  if (p->why == NULL) { p->why = why; p->at = p->i; }
  return 0;
}

static int peek (parser *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static int is_space (int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

static int skip_space (parser *p) {
  size_t i = p->i;
  while (is_space(peek(p))) p->i++;
  return p->i > i;
}

/* Name characters: ASCII letters, digits, - and _, and for ids, classes
 * and values any byte of a UTF-8 sequence. */
static int name_char (int c, int wide) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || (wide && c >= 0x80);
}

/* Reads a name; tag and attribute names must start with a letter or _. */
static int name (parser *p, int wide, size_t *start, size_t *len) {
  int c = peek(p);
  *start = p->i;
  if (!wide && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
    return fail(p, c == '\\' ? "escapes are not supported" : "a name was expected");
  while (name_char(peek(p), wide)) p->i++;
  *len = p->i - *start;
  if (*len == 0)
    return fail(p, peek(p) == '\\' ? "escapes are not supported" : "a name was expected");
  if (peek(p) == '\\') return fail(p, "escapes are not supported");
  return 1;
}

static void lower (out *o, const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    put(o, &c, 1);
  }
}

/* [name], [name=v], [name~=v], [name^=v], [name$=v], [name*=v] */
static int attribute (parser *p) {
  size_t ns, nl, vs = 0, vl = 0;
  char op = 0;
  out *o = &p->o;
  p->i++;   /* [ */
  skip_space(p);
  if (!name(p, 0, &ns, &nl)) return 0;
  skip_space(p);
  if (peek(p) == ']') {
    p->i++;
    puts_(o, "[@"); lower(o, p->s + ns, nl); puts_(o, "]");
    return 1;
  }
  switch (peek(p)) {
    case '=': op = '='; p->i++; break;
    case '~': case '^': case '$': case '*':
      op = p->s[p->i];
      if (p->i + 1 < p->n && p->s[p->i + 1] == '=') { p->i += 2; break; }
      return fail(p, "an attribute operator was expected");
    case '|': return fail(p, "the |= operator is not supported");
    default: return fail(p, "] or an attribute operator was expected");
  }
  skip_space(p);
  if (peek(p) == '"' || peek(p) == '\'') {
    char q = p->s[p->i++];
    vs = p->i;
    while (p->i < p->n && p->s[p->i] != q) {
      if (p->s[p->i] == '\\') return fail(p, "escapes are not supported");
      p->i++;
    }
    if (p->i >= p->n) { p->i = vs - 1; return fail(p, "unterminated string"); }
    vl = p->i++ - vs;
  } else if (!name(p, 1, &vs, &vl)) return 0;
  skip_space(p);
  if (peek(p) != ']') return fail(p, "] was expected");
  p->i++;
  if (op != '=' && (vl == 0 || (op == '~' && (memchr(p->s + vs, ' ', vl) ||
                                              memchr(p->s + vs, '\t', vl) ||
                                              memchr(p->s + vs, '\n', vl))))) {
    puts_(o, "[false()]");   /* CSS: an empty (or, for ~=, spaced) value matches nothing */
    return 1;
  }
  puts_(o, "[");
  switch (op) {
    case '=':
      puts_(o, "@"); lower(o, p->s + ns, nl); puts_(o, " = ");
      literal(o, p->s + vs, vl);
      break;
    case '~':
      puts_(o, "contains(concat(' ', normalize-space(@"); lower(o, p->s + ns, nl);
      puts_(o, "), ' '), concat(' ', "); literal(o, p->s + vs, vl); puts_(o, ", ' '))");
      break;
    case '^':
      puts_(o, "starts-with(@"); lower(o, p->s + ns, nl); puts_(o, ", ");
      literal(o, p->s + vs, vl); puts_(o, ")");
      break;
    case '*':
      puts_(o, "contains(@"); lower(o, p->s + ns, nl); puts_(o, ", ");
      literal(o, p->s + vs, vl); puts_(o, ")");
      break;
    case '$':
      puts_(o, "substring(@"); lower(o, p->s + ns, nl);
      puts_(o, ", string-length(@"); lower(o, p->s + ns, nl);
      puts_(o, ") - string-length("); literal(o, p->s + vs, vl);
      puts_(o, ") + 1) = "); literal(o, p->s + vs, vl);
      break;
  }
  puts_(o, "]");
  return 1;
}

/* Up to 9 digits into *v; 0 when there are none. */
static int digits (parser *p, long *v) {
  size_t start = p->i;
  *v = 0;
  while (peek(p) >= '0' && peek(p) <= '9') {
    if (p->i - start >= 9) return fail(p, "the number is too large");
    *v = *v * 10 + (p->s[p->i++] - '0');
  }
  return p->i > start;
}

static int word (parser *p, const char *w) {
  size_t n = strlen(w), i;
  if (p->n - p->i < n) return 0;
  for (i = 0; i < n; i++) {
    char c = p->s[p->i + i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != w[i]) return 0;
  }
  if (name_char(p->i + n < p->n ? (unsigned char)p->s[p->i + n] : -1, 0)) return 0;
  p->i += n;
  return 1;
}

static void nth (out *o, long a, long b) {
  char buf[160];
  const char *pos = "(count(preceding-sibling::*) + 1)";
  if (a == 0) snprintf(buf, sizeof buf, "[%s = %ld]", pos, b);
  else if (a > 0) snprintf(buf, sizeof buf, "[%s >= %ld and (%s - %ld) mod %ld = 0]", pos, b, pos, b, a);
  else snprintf(buf, sizeof buf, "[%s <= %ld and (%ld - %s) mod %ld = 0]", pos, b, b, pos, -a);
  puts_(o, buf);
}

/* :nth-child(an+b | odd | even), :first-child, :last-child */
static int pseudo (parser *p) {
  size_t start = p->i;
  long a = 0, b = 0;
  p->i++;   /* : */
  if (peek(p) == ':') return fail(p, "pseudo-elements are not supported");
  if (word(p, "first-child")) { nth(&p->o, 0, 1); return 1; }
  if (word(p, "last-child")) { puts_(&p->o, "[not(following-sibling::*)]"); return 1; }
  if (!word(p, "nth-child") || peek(p) != '(') {
    p->i = start;
    return fail(p, "only :nth-child(), :first-child and :last-child are supported");
  }
  p->i++;
  skip_space(p);
  if (word(p, "odd")) { a = 2; b = 1; }
  else if (word(p, "even")) { a = 2; b = 0; }
  else {   /* [+-]? digits? n ([+-] digits)? | [+-]? digits */
    long sign = 1, x;
    int has;
    if (peek(p) == '+' || peek(p) == '-') sign = p->s[p->i++] == '-' ? -1 : 1;
    has = digits(p, &x);
    if (p->why) return 0;
    if (peek(p) == 'n' || peek(p) == 'N') {
      p->i++;
      a = sign * (has ? x : 1);
      skip_space(p);
      if (peek(p) == '+' || peek(p) == '-') {
        sign = p->s[p->i++] == '-' ? -1 : 1;
        skip_space(p);
        if (!digits(p, &x)) return p->why ? 0 : fail(p, "bad :nth-child() argument");
        b = sign * x;
      }
    } else if (has) b = sign * x;
    else return fail(p, "bad :nth-child() argument");
  }
  skip_space(p);
  if (peek(p) != ')') return fail(p, ") was expected");
  p->i++;
  nth(&p->o, a, b);
  return 1;
}

/* tag or *, then #id .class [attr] :pseudo; at least one of them. */
static int compound (parser *p) {
  size_t start = p->i, s, n;
  int c = peek(p);
  if (c == '*') { p->i++; puts_(&p->o, "*"); }
  else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
    if (!name(p, 0, &s, &n)) return 0;
    lower(&p->o, p->s + s, n);
  } else puts_(&p->o, "*");
  for (;;) {
    switch (peek(p)) {
      case '#':
        p->i++;
        if (!name(p, 1, &s, &n)) return 0;
        puts_(&p->o, "[@id = "); literal(&p->o, p->s + s, n); puts_(&p->o, "]");
        continue;
      case '.':
        p->i++;
        if (!name(p, 1, &s, &n)) return 0;
        puts_(&p->o, "[contains(concat(' ', normalize-space(@class), ' '), ' ");
        put(&p->o, p->s + s, n);
        puts_(&p->o, " ')]");
        continue;
      case '[':
        if (!attribute(p)) return 0;
        continue;
      case ':':
        if (!pseudo(p)) return 0;
        continue;
    }
    break;
  }
  if (p->i == start) {
    switch (peek(p)) {
      case '+': case '~': return fail(p, "only the descendant and child (>) combinators are supported");
      case '\\': return fail(p, "escapes are not supported");
      case -1: return fail(p, "a selector was expected");
      default: return fail(p, "unexpected character");
    }
  }
  return 1;
}

/* compound (combinator compound)* up to a comma or the end. */
static int complex_ (parser *p) {
  puts_(&p->o, "descendant::");
  if (!compound(p)) return 0;
  for (;;) {
    int space = skip_space(p), c = peek(p);
    if (c == -1 || c == ',') return 1;
    if (c == '>') { p->i++; skip_space(p); puts_(&p->o, "/"); }
    else if (c == '+' || c == '~')
      return fail(p, "only the descendant and child (>) combinators are supported");
    else if (space) puts_(&p->o, "/descendant::");
    else return fail(p, "unexpected character");
    if (!compound(p)) return 0;
  }
}

/* The length of the UTF-8 sequence at s[0..n), 0 when it is not one. */
static size_t utf8_len (const unsigned char *s, size_t n) {
  size_t len, i;
  unsigned long c;
  if (s[0] < 0x80) return 1;
  if (s[0] < 0xC2 || s[0] > 0xF4) return 0;
  len = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
  if (n < len) return 0;
  c = s[0] & (0x3F >> (len - 1));
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
      (len == 4 && (c < 0x10000 || c > 0x10FFFF))) return 0;
  return len;
}

char *pyq_html_css (const char *s, size_t n, const char **why, size_t *at) {
  parser p;
  size_t k;
  memset(&p, 0, sizeof p);
  p.s = s;
  p.n = n;
  for (p.i = 0; p.i < n; p.i += k) {   /* libxml2's XPath takes UTF-8 only */
    if (s[p.i] == '\0') { fail(&p, "a NUL byte"); break; }
    if ((k = utf8_len((const unsigned char *)s + p.i, n - p.i)) == 0) { fail(&p, "invalid UTF-8"); break; }
  }
  p.i = 0;
  while (p.why == NULL) {
    skip_space(&p);
    if (!complex_(&p)) break;
    if (peek(&p) == -1) break;
    p.i++;   /* , */
    puts_(&p.o, " | ");
    skip_space(&p);
    if (peek(&p) == -1) fail(&p, "a selector was expected after ,");
  }
  if (p.why == NULL && p.o.oom) { p.why = "out of memory"; p.at = 0; }
  if (p.why) {
    free(p.o.p);
    *why = p.why;
    *at = p.at;
    return NULL;
  }
  return p.o.p;
}
