/* curl_uv.h -- libcurl's multi interface on a libuv loop (curl_uv.c).
 *
 * No Lua here: the same shape as hiredis's libuv adapter.  A caller adds an
 * easy handle with the function to call when it is done; the adapter
 * watches the sockets libcurl names, runs its timer, and calls done(easy,
 * result, ud) once the transfer has left the multi handle (done may add
 * the handle again, to follow a redirect). */
#ifndef PYQ_CURL_UV_H
#define PYQ_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct pyq_curl_uv pyq_curl_uv;
typedef void (*pyq_curl_uv_done) (CURL *easy, CURLcode result, void *ud);

/* NULL when out of memory. */
pyq_curl_uv *pyq_curl_uv_open (uv_loop_t *loop);
/* Closes the multi handle (remove the easy handles first); the memory goes
 * when libuv has closed the timer. */
void pyq_curl_uv_close (pyq_curl_uv *cu);
CURLM *pyq_curl_uv_multi (pyq_curl_uv *cu);

/* 0 when out of memory or refused by libcurl. */
int pyq_curl_uv_add (pyq_curl_uv *cu, CURL *easy, pyq_curl_uv_done done,
                     void *ud);
/* Takes a transfer out before it is done; done is not called. */
void pyq_curl_uv_remove (pyq_curl_uv *cu, CURL *easy);

/* Has libcurl open its sockets through the adapter, which counts them. */
void pyq_curl_uv_count_sockets (pyq_curl_uv *cu, CURL *easy);
/* 1 when every socket open is busy with a transfer: none to reuse. */
int pyq_curl_uv_busy (const pyq_curl_uv *cu);

#endif
