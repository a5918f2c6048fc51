/* curl_uv.c -- libcurl's multi interface on a libuv loop, with no Lua.
 *
 * libcurl says which sockets to watch (socket_cb: one uv_poll_t each) and
 * when to call it back (timer_cb: one uv_timer_t); both feed
 * curl_multi_socket_action, and every finished transfer is taken out of the
 * multi handle and handed to the done callback it was added with.  Each
 * added handle carries a small record (its callback and user data) in
 * CURLOPT_PRIVATE; records are kept on a free list, so a busy loop
 * allocates none.  The timer keeps the loop alive only while transfers are
 * in flight: between jobs libcurl may ask for housekeeping the process need
 * not wait for. */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "curl_uv.h"

typedef struct slot {
  pyq_curl_uv_done done;
  void *ud;
  struct slot *next;     /* on the free list */
} slot;

typedef struct sock_watch {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;            /* what libcurl asked to watch */
  pyq_curl_uv *cu;
} sock_watch;

struct pyq_curl_uv {
  uv_timer_t timer;      /* first: its close callback frees the whole */
  uv_loop_t *loop;
  CURLM *multi;
  slot *free;
  int active;            /* handles in the multi handle */
  int sockets;           /* sockets libcurl has open */
};

static void check_done (pyq_curl_uv *cu) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(cu->multi, &left)) != NULL) {
    CURL *e = m->easy_handle;
    CURLcode result = m->data.result;
    slot *s = NULL;
    pyq_curl_uv_done done;
    void *ud;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
    done = s->done;
    ud = s->ud;
    pyq_curl_uv_remove(cu, e);
    done(e, result, ud);
  }
}

/* A poll error (a reset connection) is passed on as readable and writable:
 * libcurl then reads the socket itself and reports what the read says
 * ("Recv failure: Connection reset by peer"), not "select/poll returned
 * error". */
static void on_poll (uv_poll_t *p, int status, int events) {
  sock_watch *w = p->data;
  int flags = 0, running;
  if (status < 0) events = w->events;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(w->cu->multi, w->fd, flags, &running);
  check_done(w->cu);
}

static void watch_free (uv_handle_t *h) { free(h->data); }

static int socket_cb (CURL *e, curl_socket_t fd, int what, void *ud,
                      void *sockp) {
  pyq_curl_uv *cu = ud;
  sock_watch *w = sockp;
  int events = 0;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      uv_poll_stop(&w->poll);
      uv_close((uv_handle_t *)&w->poll, watch_free);
      curl_multi_assign(cu->multi, fd, NULL);
    }
    return 0;
  }
  if (w == NULL) {
    if ((w = calloc(1, sizeof *w)) == NULL) return -1;
    w->fd = fd;
    w->cu = cu;
    w->poll.data = w;
    if (uv_poll_init_socket(cu->loop, &w->poll, fd) != 0) {
      free(w);
      return -1;
    }
    curl_multi_assign(cu->multi, fd, w);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  w->events = events;
  uv_poll_start(&w->poll, events, on_poll);
  return 0;
}

static void on_timeout (uv_timer_t *t) {
  pyq_curl_uv *cu = t->data;
  int running;
  curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(cu);
}

static int timer_cb (CURLM *m, long ms, void *ud) {
  pyq_curl_uv *cu = ud;
  (void)m;
  if (ms < 0) uv_timer_stop(&cu->timer);
  else uv_timer_start(&cu->timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

pyq_curl_uv *pyq_curl_uv_open (uv_loop_t *loop) {
  pyq_curl_uv *cu = calloc(1, sizeof *cu);
  if (cu == NULL) return NULL;
  if ((cu->multi = curl_multi_init()) == NULL) {
    free(cu);
    return NULL;
  }
  cu->loop = loop;
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
  uv_timer_init(loop, &cu->timer);
  uv_unref((uv_handle_t *)&cu->timer);
  cu->timer.data = cu;
  return cu;
}

static void closed (uv_handle_t *h) {
  pyq_curl_uv *cu = h->data;
  while (cu->free) {
    slot *s = cu->free;
    cu->free = s->next;
    free(s);
  }
  free(cu);
}

void pyq_curl_uv_close (pyq_curl_uv *cu) {
  curl_multi_cleanup(cu->multi);
  cu->multi = NULL;
  uv_close((uv_handle_t *)&cu->timer, closed);
}

CURLM *pyq_curl_uv_multi (pyq_curl_uv *cu) { return cu->multi; }

int pyq_curl_uv_add (pyq_curl_uv *cu, CURL *easy, pyq_curl_uv_done done,
                     void *ud) {
  slot *s = cu->free;
  if (s != NULL) cu->free = s->next;
  else if ((s = malloc(sizeof *s)) == NULL) return 0;
  s->done = done;
  s->ud = ud;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, s);
  if (curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
    s->next = cu->free;
    cu->free = s;
    return 0;
  }
  if (cu->active++ == 0) uv_ref((uv_handle_t *)&cu->timer);
  return 1;
}

void pyq_curl_uv_remove (pyq_curl_uv *cu, CURL *easy) {
  slot *s = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&s);
  curl_multi_remove_handle(cu->multi, easy);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  if (s != NULL) {
    s->next = cu->free;
    cu->free = s;
  }
  if (--cu->active == 0) uv_unref((uv_handle_t *)&cu->timer);
}

/* libcurl's sockets are counted, to know when none can be idle. */
static curl_socket_t open_socket (void *ud, curlsocktype purpose,
                                  struct curl_sockaddr *a) {
  pyq_curl_uv *cu = ud;
  curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
  (void)purpose;
  if (fd != CURL_SOCKET_BAD) cu->sockets++;
  return fd;
}

static int close_socket (void *ud, curl_socket_t fd) {
  pyq_curl_uv *cu = ud;
  cu->sockets--;
  return close(fd);
}

void pyq_curl_uv_count_sockets (pyq_curl_uv *cu, CURL *easy) {
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, cu);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cu);
}

int pyq_curl_uv_busy (const pyq_curl_uv *cu) {
  return cu->sockets <= cu->active;
}
