/*
 * HTTP over curl's multi interface, driven by libuv (the multi-uv
 * pattern): one uv_timer for curl's timeouts, one uv_poll per socket.
 *
 * A request is built, started, and reported once through its done
 * callback, which runs from the event loop, never from inside a curl
 * callback, so it may start or free requests freely.  Redirects are never
 * followed, so headers such as a bearer token go only where the caller
 * sent them.  Response bodies either stream into a sink or are kept in
 * memory up to a cap.
 */
#ifndef BCDAD_HTTP_H
#define BCDAD_HTTP_H

#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

#define HTTP_BODY_MAX	(4u * 1024 * 1024)

struct http;
struct http_req;

typedef void (*http_done_cb)(struct http_req *, void *arg);
/*
 * Streams body bytes; returns 0, a negative code that aborts the transfer,
 * or HTTP_SINK_PAUSE to refuse the bytes for now: the transfer waits until
 * http_resume(), which hands the same bytes over again.
 */
typedef int (*http_sink)(const void *buf, size_t len, void *arg);

#define HTTP_SINK_PAUSE	1

struct http_resp {
	long		 status;	/* 0 when no response was read */
	CURLcode	 result;
	const char	*error;		/* curl's message when result != OK */
	int		 sink_error;	/* what the sink returned, if it failed */
	int		 socket_errno;	/* why no socket could be opened, or 0 */
	char		*body;		/* NUL-terminated; NULL with a sink */
	size_t		 body_len;
	/* Response headers bcdad reads; NULL when absent. */
	char		*content_location;
	char		*content_type;
	char		*content_encoding;
	char		*retry_after;
	char		*x_progress;
	char		*expires;
	char		*etag;
};

struct http	*http_new(uv_loop_t *, long connect_timeout, long low_speed_time);
void		 http_free(struct http *);

struct http_req	*http_req_new(const char *method, const char *url);
int		 http_req_header(struct http_req *, const char *line);
void		 http_req_basic_auth(struct http_req *, const char *user,
		    const char *password);
void		 http_req_sink(struct http_req *, http_sink, void *arg);
/*
 * The request body: a copy of buf, or len bytes of fd from off (read with
 * pread while sending, so a large file never sits in memory).  The fd
 * stays the caller's and must stay open until the request is done.
 * Sets Content-Length; a body makes PUT and POST send it.
 */
int		 http_req_body(struct http_req *, const void *buf, size_t len);
void		 http_req_body_file(struct http_req *, int fd, off_t off,
		    size_t len);
/* A whole-request time limit in seconds (0 = none: downloads). */
void		 http_req_timeout(struct http_req *, long seconds);
const char	*http_req_url(const struct http_req *);
const char	*http_req_method(const struct http_req *);
/* The header lines as they will be sent (for tests and debugging). */
const struct curl_slist *http_req_headers(const struct http_req *);
/* The request body when it is held in memory, else NULL. */
const char	*http_req_body_mem(const struct http_req *, size_t *len);
const struct http_resp *http_req_resp(const struct http_req *);
int		 http_start(struct http *, struct http_req *, http_done_cb,
		    void *arg);
/* Lets a transfer whose sink paused it go on (may call the sink). */
void		 http_resume(struct http *, struct http_req *);
/* Stops a started request; its done callback is not called. */
void		 http_cancel(struct http *, struct http_req *);
void		 http_req_free(struct http_req *);
/* The same, wiping the response body first (a token, a secret). */
void		 http_req_wipe_free(struct http_req *);

/* Seconds from a Retry-After value (delta-seconds or HTTP-date); -1 if none. */
long		 http_retry_after(const char *value, time_t now);

#endif
