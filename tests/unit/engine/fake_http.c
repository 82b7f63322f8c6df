/*
 * A fake of lib/util/http.c, the engine's test seam: the whole http.h API,
 * linked into test_engine in place of the real module (the linker takes
 * these definitions first and never pulls http.o from libbcdad.a), so the
 * engine runs its stages, cancellation and shutdown without sockets.
 *
 * Each started request is put to the test's fake_answer(), which fills in
 * the response (status, headers, body) and returns 1, or returns 0 to hold
 * the request: it is then never answered, as a server that hangs, until it
 * is cancelled.  Answers are delivered from a zero timer, on the loop, as
 * the real module delivers them; a body goes through the request's sink
 * when it has one.  Every request is logged as "METHOD URL".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/http.h"

struct fake_answer {
	long		 status;
	const char	*body;
	const char	*content_location;
	const char	*x_progress;
	const char	*retry_after;
	int		 socket_errno;	/* no socket: curl's COULDNT_CONNECT */
};

/* The test's server: 1 to answer with *a, 0 to hold the request. */
static int (*fake_answer)(const char *method, const char *url,
    struct fake_answer *a);

#define FAKE_LOG_MAX	256
static char	*fake_log[FAKE_LOG_MAX];
static int	 fake_nlog;
static int	 fake_held;		/* requests held and not yet cancelled */
#define FAKE_DELIVERED_MAX	64
static char	*fake_done[FAKE_DELIVERED_MAX];	/* URLs answered, in order */
static int	 fake_ndone;

struct http {
	uv_loop_t	*loop;
};

struct http_req {
	char		*method, *url;
	struct curl_slist *headers;
	char		*body;
	size_t		 body_len;
	http_sink	 sink;
	void		*sink_arg;
	struct http_resp resp;
	http_done_cb	 cb;
	void		*cb_arg;
	uv_timer_t	*timer;		/* pending delivery; freed on close */
	int		 held;
	int		 paused;	/* the sink said HTTP_SINK_PAUSE */
	struct fake_answer ans;
};

static void
fake_log_clear(void)
{
	while (fake_nlog > 0)
		free(fake_log[--fake_nlog]);
	while (fake_ndone > 0)
		free(fake_done[--fake_ndone]);
}

/* How many answers to url were delivered (their callbacks have run). */
static int
fake_delivered(const char *url)
{
	int i, n = 0;

	for (i = 0; i < fake_ndone; i++)
		n += strcmp(fake_done[i], url) == 0;
	return n;
}

/* How many logged requests start with prefix ("GET http://h/api"). */
static int
fake_count(const char *prefix)
{
	int i, n = 0;

	for (i = 0; i < fake_nlog; i++)
		n += strncmp(fake_log[i], prefix, strlen(prefix)) == 0;
	return n;
}

struct http *
http_new(uv_loop_t *loop, long connect_timeout, long low_speed_time)
{
	struct http *h = calloc(1, sizeof(*h));

	(void)connect_timeout;
	(void)low_speed_time;
	if (h != NULL)
		h->loop = loop;
	return h;
}

void
http_free(struct http *h)
{
	free(h);
}

struct http_req *
http_req_new(const char *method, const char *url)
{
	struct http_req *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->method = strdup(method)) == NULL ||
	    (r->url = strdup(url)) == NULL) {
		http_req_free(r);
		return NULL;
	}
	return r;
}

int
http_req_header(struct http_req *r, const char *line)
{
	struct curl_slist *l = curl_slist_append(r->headers, line);

	if (l == NULL)
		return -ENOMEM;
	r->headers = l;
	return 0;
}

void
http_req_basic_auth(struct http_req *r, const char *user, const char *pw)
{
	(void)r;
	(void)user;
	(void)pw;
}

void
http_req_sink(struct http_req *r, http_sink sink, void *arg)
{
	r->sink = sink;
	r->sink_arg = arg;
}

int
http_req_body(struct http_req *r, const void *buf, size_t len)
{
	free(r->body);
	if ((r->body = malloc(len + 1)) == NULL)
		return -ENOMEM;
	memcpy(r->body, buf, len);
	r->body_len = len;
	return 0;
}

void
http_req_body_file(struct http_req *r, int fd, off_t off, size_t len)
{
	(void)r;
	(void)fd;
	(void)off;
	(void)len;
}

void
http_req_timeout(struct http_req *r, long seconds)
{
	(void)r;
	(void)seconds;
}

const char *
http_req_url(const struct http_req *r)
{
	return r->url;
}

const char *
http_req_method(const struct http_req *r)
{
	return r->method;
}

const struct curl_slist *
http_req_headers(const struct http_req *r)
{
	return r->headers;
}

const char *
http_req_body_mem(const struct http_req *r, size_t *len)
{
	*len = r->body_len;
	return r->body;
}

void
http_req_wipe_free(struct http_req *r)
{
	http_req_free(r);
}

const struct http_resp *
http_req_resp(const struct http_req *r)
{
	return &r->resp;
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
timer_closed(uv_handle_t *h)
{
	free(h);
}

/* The body to the sink, as curl would: again after a pause. */
static void
feed(struct http_req *r)
{
	const char *b = r->ans.body ? r->ans.body : "";
	int rc;

	if ((rc = r->sink(b, strlen(b), r->sink_arg)) == HTTP_SINK_PAUSE) {
		r->paused = 1;
		return;
	}
	if (rc != 0) {
		r->resp.sink_error = rc;
		r->resp.result = CURLE_WRITE_ERROR;
		r->resp.error = "sink refused the body";
	}
	r->cb(r, r->cb_arg);
}

static void
deliver(uv_timer_t *t)
{
	struct http_req *r = t->data;
	const char *b = r->ans.body ? r->ans.body : "";

	uv_close((uv_handle_t *)t, timer_closed);
	r->timer = NULL;
	if (fake_ndone < FAKE_DELIVERED_MAX &&
	    (fake_done[fake_ndone] = strdup(r->url)) != NULL)
		fake_ndone++;
	if (r->ans.socket_errno != 0) {
		r->resp.result = CURLE_COULDNT_CONNECT;
		r->resp.error = "Couldn't connect to server";
		r->resp.socket_errno = r->ans.socket_errno;
		r->cb(r, r->cb_arg);
		return;
	}
	r->resp.result = CURLE_OK;
	r->resp.status = r->ans.status;
	r->resp.content_location = dup_or_null(r->ans.content_location);
	r->resp.x_progress = dup_or_null(r->ans.x_progress);
	r->resp.retry_after = dup_or_null(r->ans.retry_after);
	if (r->sink != NULL && r->ans.status == 200) {
		feed(r);
		return;
	}
	r->resp.body = strdup(b);
	r->resp.body_len = strlen(b);
	r->cb(r, r->cb_arg);
}

void
http_resume(struct http *h, struct http_req *r)
{
	(void)h;
	if (r->paused) {
		r->paused = 0;
		feed(r);
	}
}

int
http_start(struct http *h, struct http_req *r, http_done_cb cb, void *arg)
{
	if (fake_nlog < FAKE_LOG_MAX && asprintf(&fake_log[fake_nlog], "%s %s",
	    r->method, r->url) >= 0)
		fake_nlog++;
	r->cb = cb;
	r->cb_arg = arg;
	memset(&r->ans, 0, sizeof(r->ans));
	if (!fake_answer(r->method, r->url, &r->ans)) {
		r->held = 1;
		fake_held++;
		return 0;
	}
	if ((r->timer = malloc(sizeof(*r->timer))) == NULL)
		return -ENOMEM;
	uv_timer_init(h->loop, r->timer);
	r->timer->data = r;
	uv_timer_start(r->timer, deliver, 0, 0);
	return 0;
}

void
http_cancel(struct http *h, struct http_req *r)
{
	(void)h;
	r->paused = 0;
	if (r->held) {
		r->held = 0;
		fake_held--;
	}
	if (r->timer != NULL) {
		uv_timer_stop(r->timer);
		uv_close((uv_handle_t *)r->timer, timer_closed);
		r->timer = NULL;
	}
}

void
http_req_free(struct http_req *r)
{
	if (r == NULL)
		return;
	free(r->method);
	free(r->url);
	free(r->body);
	curl_slist_free_all(r->headers);
	free(r->resp.body);
	free(r->resp.content_location);
	free(r->resp.x_progress);
	free(r->resp.retry_after);
	free(r);
}

long
http_retry_after(const char *value, time_t now)
{
	(void)now;
	return value ? atol(value) : -1;
}
