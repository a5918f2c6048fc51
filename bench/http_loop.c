/* http_loop.c -- the ceiling without Lua: libcurl multi on a libuv loop
 * keeping C transfers in flight until N have completed.  Each request is
 * the one pyqhost sends (the same User-Agent header and Accept-Encoding),
 * so the two differ by the host's work only, not by the bytes on the wire.
 *   http_loop URL N C   prints "requests_per_s R" and "seconds S" */
#include <stdio.h>
#include <stdlib.h>
#include <curl/curl.h>
#include <uv.h>

typedef struct { uv_poll_t poll; curl_socket_t fd; } watch;

static CURLM *multi;
static uv_loop_t *loop;
static uv_timer_t timer;
static const char *url;
static char agent[128];
static long started, done, total;
static size_t bytes;

static size_t on_body (char *p, size_t s, size_t n, void *ud) {
  (void)p; (void)ud;
  bytes += s * n;
  return s * n;
}

static void start_one (void) {
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_USERAGENT, agent);
  curl_multi_add_handle(multi, e);
  started++;
}

static void check_done (void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    if (m->data.result != CURLE_OK)
      fprintf(stderr, "http_loop: %s\n", curl_easy_strerror(m->data.result));
    curl_multi_remove_handle(multi, m->easy_handle);
    curl_easy_cleanup(m->easy_handle);
    done++;
    if (started < total) start_one();
  }
}

static void on_poll (uv_poll_t *p, int status, int events) {
  watch *w = p->data;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(multi, w->fd, flags, &running);
  check_done();
}

static void on_close (uv_handle_t *h) { free(h->data); }

static int socket_cb (CURL *e, curl_socket_t fd, int what, void *ud, void *sp) {
  watch *w = sp;
  int ev = 0;
  (void)e; (void)ud;
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      uv_poll_stop(&w->poll);
      uv_close((uv_handle_t *)&w->poll, on_close);
      curl_multi_assign(multi, fd, NULL);
    }
    return 0;
  }
  if (!w) {
    w = calloc(1, sizeof *w);
    w->fd = fd;
    w->poll.data = w;
    uv_poll_init_socket(loop, &w->poll, fd);
    curl_multi_assign(multi, fd, w);
  }
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&w->poll, ev, on_poll);
  return 0;
}

static void on_timeout (uv_timer_t *t) {
  int running;
  (void)t;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static int timer_cb (CURLM *m, long ms, void *ud) {
  (void)m; (void)ud;
  if (ms < 0) uv_timer_stop(&timer);
  else uv_timer_start(&timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

int main (int argc, char **argv) {
  long conc, i;
  uint64_t t0;
  double secs;
  if (argc < 4) {
    fprintf(stderr, "usage: http_loop URL N CONCURRENCY\n");
    return 2;
  }
  url = argv[1];
  total = atol(argv[2]);
  conc = atol(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(agent, sizeof agent, "pyqhost/%s libcurl/%s", PYQ_VERSION,
           curl_version_info(CURLVERSION_NOW)->version);
  loop = uv_default_loop();
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  uv_timer_init(loop, &timer);
  t0 = uv_hrtime();
  for (i = 0; i < conc && i < total; i++) start_one();
  while (done < total) uv_run(loop, UV_RUN_ONCE);
  secs = (double)(uv_hrtime() - t0) / 1e9;
  printf("requests_per_s %.0f\nseconds %.3f\n", (double)total / secs, secs);
  curl_multi_cleanup(multi);
  return 0;
}
