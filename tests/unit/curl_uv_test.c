/* curl_uv_test.c -- the HTTP layers without Lua: curl_uv (libcurl's multi
 * handle on a libuv loop) and the memory sink, against a one-answer HTTP
 * server on loopback that this test runs on the same loop.
 * Checks: a transfer's done callback runs once with its result and the
 * sink holds the answer; max_body stops the transfer; a transfer removed
 * before it is done never calls back and leaves the loop free to end; a
 * refused connection is reported; close frees everything (the sanitizer
 * build checks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "http/curl_uv.h"
#include "http/sink.h"

static int failures;
#define CHECK(c) do { if (!(c)) { failures++; \
    fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c); } } while (0)

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                             "Connection: close\r\n\r\nhello";

/* ---- the server: answers every connection with `answer` ------------- */

typedef struct conn { uv_tcp_t tcp; uv_write_t w; } conn;

static void conn_closed (uv_handle_t *h) { free(h->data); }
static void alloc_cb (uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[4096];
  (void)h; (void)n;
  *b = uv_buf_init(buf, sizeof buf);
}
static void written (uv_write_t *w, int status) {
  (void)status;
  uv_close((uv_handle_t *)w->handle, conn_closed);
}
static void on_read (uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  uv_buf_t out = uv_buf_init((char *)answer, sizeof answer - 1);
  (void)b;
  if (n > 0) {   /* the whole request fits one read here */
    uv_read_stop(s);
    uv_write(&c->w, s, &out, 1, written);
  } else if (n < 0) {
    uv_close((uv_handle_t *)s, conn_closed);
  }
}
static void on_connection (uv_stream_t *server, int status) {
  conn *c = calloc(1, sizeof *c);
  (void)status;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  else
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* ---- a transfer into a memory sink ---------------------------------- */

typedef struct req {
  CURL *easy;
  pyq_sink_mem mem;
  int done;
  CURLcode result;
} req;

static size_t on_header (char *p, size_t s, size_t n, void *ud) {
  req *r = ud;
  return r->mem.sink.ops->headers(&r->mem.sink, p, s * n) ? s * n : 0;
}
static size_t on_body (char *p, size_t s, size_t n, void *ud) {
  req *r = ud;
  return r->mem.sink.ops->data(&r->mem.sink, p, s * n) ? s * n : 0;
}
static void done (CURL *e, CURLcode result, void *ud) {
  req *r = ud;
  CHECK(e == r->easy);
  r->done++;
  r->result = result;
  r->mem.sink.ops->done(&r->mem.sink, result);
}

static void start (pyq_curl_uv *cu, req *r, const char *url, curl_off_t max) {
  memset(r, 0, sizeof *r);
  pyq_sink_mem_init(&r->mem, max);
  r->easy = curl_easy_init();
  curl_easy_setopt(r->easy, CURLOPT_URL, url);
  curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
  pyq_curl_uv_count_sockets(cu, r->easy);
  CHECK(pyq_curl_uv_add(cu, r->easy, done, r));
}

static void finish (req *r) {
  curl_easy_cleanup(r->easy);
  pyq_sink_mem_free(&r->mem);
}

int main (void) {
  uv_loop_t loop;
  uv_tcp_t server;
  struct sockaddr_in addr;
  int len = sizeof addr;
  char url[64], refused[64];
  pyq_curl_uv *cu;
  req a, b, c, d;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  uv_loop_init(&loop);
  uv_tcp_init(&loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, (struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&server, 16, on_connection);
  uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(addr.sin_port));
  snprintf(refused, sizeof refused, "http://127.0.0.1:1/x");
  uv_unref((uv_handle_t *)&server);   /* the loop runs while transfers do */
  cu = pyq_curl_uv_open(&loop);
  CHECK(cu != NULL);

  start(cu, &a, url, 1000);        /* an answer into the sink */
  start(cu, &b, url, 2);           /* over max_body */
  start(cu, &c, refused, 1000);    /* nobody listens */
  start(cu, &d, url, 1000);        /* taken out before it is done */
  pyq_curl_uv_remove(cu, d.easy);
  uv_run(&loop, UV_RUN_DEFAULT);   /* returns: no transfer left in flight */

  CHECK(a.done == 1 && a.result == CURLE_OK);
  CHECK(a.mem.body.len == 5 && memcmp(a.mem.body.p, "hello", 5) == 0);
  CHECK(a.mem.head.len > 0 && strncmp(a.mem.head.p, "HTTP/1.1 200", 12) == 0);
  CHECK(!a.mem.too_big);
  CHECK(b.done == 1 && b.result == CURLE_WRITE_ERROR && b.mem.too_big);
  CHECK(c.done == 1 && c.result == CURLE_COULDNT_CONNECT);
  CHECK(d.done == 0);
  CHECK(pyq_curl_uv_busy(cu));         /* every answer closed its socket: none idle */

  pyq_sink_mem_reset(&a.mem, 0);       /* reset keeps nothing over keep */
  CHECK(a.mem.body.len == 0 && a.mem.body.p == NULL && a.mem.head.len == 0);
  finish(&a); finish(&b); finish(&c); finish(&d);
  pyq_curl_uv_close(cu);
  uv_close((uv_handle_t *)&server, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);       /* the closes complete: memory freed */
  CHECK(uv_loop_close(&loop) == 0);
  curl_global_cleanup();
  if (failures == 0) printf("curl_uv_test: ok\n");
  return failures != 0;
}
