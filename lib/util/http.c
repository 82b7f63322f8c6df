/*
 * HTTP over curl multi driven by libuv.  See http.h.
 *
 * The glue follows curl's docs/examples/multi-uv.c: curl tells us which
 * sockets to watch (sock_cb) and when to time out (timer_cb); libuv tells
 * curl when a socket is ready (poll_cb) or the timer fired (timeout_cb).
 * Finished transfers are drained from curl_multi_info_read() after every
 * socket action and reported to their owners from there.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

struct http {
	uv_loop_t	*loop;
	CURLM		*multi;
	uv_timer_t	 timer;
	long		 connect_timeout;
	long		 low_speed_time;
	int		 closing;
};

struct http_sock {
	uv_poll_t	 poll;
	curl_socket_t	 fd;
	struct http	*h;
};

struct http_req {
	CURL		*easy;
	struct curl_slist *headers;
	char		*method;
	char		*url;
	char		*user, *password;
	long		 timeout;
	http_sink	 sink;
	void		*sink_arg;
	size_t		 body_cap;
	http_done_cb	 done;
	void		*arg;
	int		 active;
	/* Request body: from memory (body) or from a file range (fd). */
	char		*body;
	int		 body_fd;
	off_t		 body_off;
	size_t		 body_len;
	size_t		 body_sent;
	int		 has_body;
	char		 errbuf[CURL_ERROR_SIZE];
	struct http_resp resp;
};

static void	check_multi_info(struct http *);

static void
sock_close_cb(uv_handle_t *handle)
{
	free(handle->data);
}

static void
poll_cb(uv_poll_t *poll, int status, int events)
{
	struct http_sock *s = poll->data;
	struct http *h = s->h;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, s->fd, flags, &running);
	check_multi_info(h);
}

static void
timeout_cb(uv_timer_t *timer)
{
	struct http *h = timer->data;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(h);
}

/* curl asks for a timer: never call back into curl from here. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct http *h = arg;

	(void)multi;
	/*
	 * 0 becomes 1 ms, as in curl's multi-uv.c: libuv runs a timer re-armed
	 * at 0 from its own callback again before any I/O.
	 */
	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, timeout_cb, timeout_ms > 0 ?
		    (uint64_t)timeout_ms : 1, 0);
	return 0;
}

/* curl asks to watch (or stop watching) a socket. */
static int
sock_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct http *h = arg;
	struct http_sock *s = sockp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, sock_close_cb);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return -1;
		s->fd = fd;
		s->h = h;
		if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->poll.data = s;
		curl_multi_assign(h->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, poll_cb);
	return 0;
}

/*
 * Drains finished transfers.  Each is removed from the multi handle before
 * its owner hears of it, so the owner may free or restart it at once.
 */
static void
check_multi_info(struct http *h)
{
	struct http_req *r;
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&r);
		r->resp.result = msg->data.result;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE,
		    &r->resp.status);
		if (r->resp.result != CURLE_OK)
			r->resp.error = r->errbuf[0] ? r->errbuf :
			    curl_easy_strerror(r->resp.result);
		curl_multi_remove_handle(h->multi, r->easy);
		r->active = 0;
		r->done(r, r->arg);
	}
}

struct http *
http_new(uv_loop_t *loop, long connect_timeout, long low_speed_time)
{
	struct http *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->loop = loop;
	h->connect_timeout = connect_timeout;
	h->low_speed_time = low_speed_time;
	if ((h->multi = curl_multi_init()) == NULL) {
		free(h);
		return NULL;
	}
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

static void
http_timer_closed(uv_handle_t *handle)
{
	free(handle->data);
}

/*
 * Every request must have been cancelled or finished before this runs.
 * The struct is freed once libuv has closed the timer.
 */
void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	curl_multi_cleanup(h->multi);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, http_timer_closed);
}

static void
resp_clear(struct http_resp *r)
{
	free(r->body);
	free(r->content_location);
	free(r->content_type);
	free(r->content_encoding);
	free(r->retry_after);
	free(r->x_progress);
	free(r->expires);
	free(r->etag);
	memset(r, 0, sizeof(*r));
}

struct http_req *
http_req_new(const char *method, const char *url)
{
	struct http_req *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->method = strdup(method);
	r->url = strdup(url);
	r->body_cap = HTTP_BODY_MAX;
	r->timeout = 120;
	r->body_fd = -1;
	if (r->method == NULL || r->url == NULL) {
		http_req_free(r);
		return NULL;
	}
	return r;
}

int
http_req_header(struct http_req *r, const char *line)
{
	struct curl_slist *l;

	if ((l = curl_slist_append(r->headers, line)) == NULL)
		return -ENOMEM;
	r->headers = l;
	return 0;
}

void
http_req_basic_auth(struct http_req *r, const char *user, const char *password)
{
	r->user = strdup(user);
	r->password = strdup(password);
}

void
http_req_sink(struct http_req *r, http_sink sink, void *arg)
{
	r->sink = sink;
	r->sink_arg = arg;
}

void
http_req_timeout(struct http_req *r, long seconds)
{
	r->timeout = seconds;
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

const struct http_resp *
http_req_resp(const struct http_req *r)
{
	return &r->resp;
}

static void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void
http_req_wipe_free(struct http_req *r)
{
	if (r != NULL && r->resp.body != NULL)
		explicit_bzero(r->resp.body, r->resp.body_len);
	http_req_free(r);
}

void
http_req_free(struct http_req *r)
{
	struct curl_slist *l;

	if (r == NULL)
		return;
	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	/* Header lines may hold a bearer token: wipe before freeing. */
	for (l = r->headers; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(r->headers);
	wipe_free(r->user);
	wipe_free(r->password);
	free(r->method);
	free(r->url);
	/* A request body may hold a token (STS web identity): wipe it. */
	if (r->body != NULL)
		explicit_bzero(r->body, r->body_len);
	free(r->body);
	resp_clear(&r->resp);
	free(r);
}

int
http_req_body(struct http_req *r, const void *buf, size_t len)
{
	free(r->body);
	if ((r->body = malloc(len ? len : 1)) == NULL)
		return -ENOMEM;
	memcpy(r->body, buf, len);
	r->body_fd = -1;
	r->body_len = len;
	r->has_body = 1;
	return 0;
}

void
http_req_body_file(struct http_req *r, int fd, off_t off, size_t len)
{
	free(r->body);
	r->body = NULL;
	r->body_fd = fd;
	r->body_off = off;
	r->body_len = len;
	r->has_body = 1;
}

/* Feeds the request body to curl, from memory or from the file range. */
static size_t
read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t want = size * n, left = r->body_len - r->body_sent;
	ssize_t got;

	if (want > left)
		want = left;
	if (want == 0)
		return 0;
	if (r->body_fd < 0) {
		memcpy(buf, r->body + r->body_sent, want);
		got = (ssize_t)want;
	} else {
		got = pread(r->body_fd, buf, want,
		    r->body_off + (off_t)r->body_sent);
		if (got <= 0)
			return CURL_READFUNC_ABORT;
	}
	r->body_sent += (size_t)got;
	return (size_t)got;
}

/* curl rewinds the body when it must resend it (e.g. after a redirect). */
static int
seek_cb(void *arg, curl_off_t off, int origin)
{
	struct http_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (size_t)off > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->body_sent = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* Keeps the response headers bcdad reads; a new response resets them. */
static size_t
header_cb(char *buf, size_t size, size_t n, void *arg)
{
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{ "content-location", offsetof(struct http_resp, content_location) },
		{ "content-type", offsetof(struct http_resp, content_type) },
		{ "content-encoding", offsetof(struct http_resp, content_encoding) },
		{ "retry-after", offsetof(struct http_resp, retry_after) },
		{ "x-progress", offsetof(struct http_resp, x_progress) },
		{ "expires", offsetof(struct http_resp, expires) },
		{ "etag", offsetof(struct http_resp, etag) },
	};
	struct http_req *r = arg;
	size_t len = size * n, i, nlen, vlen;
	const char *colon, *v;
	char **slot;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* The status line of a (possibly interim) response. */
		for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
			slot = (char **)((char *)&r->resp + wanted[i].off);
			free(*slot);
			*slot = NULL;
		}
		return len;
	}
	if ((colon = memchr(buf, ':', len)) == NULL)
		return len;
	nlen = (size_t)(colon - buf);
	for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		if (strlen(wanted[i].name) != nlen ||
		    strncasecmp(buf, wanted[i].name, nlen) != 0)
			continue;
		v = colon + 1;
		vlen = len - nlen - 1;
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
			vlen--;
		slot = (char **)((char *)&r->resp + wanted[i].off);
		free(*slot);
		*slot = strndup(v, vlen);
		break;
	}
	return len;
}

static size_t
write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;
	char *p;
	int rc;

	if (r->sink != NULL) {
		/* Only a 2xx body is data; error bodies are kept for reading. */
		long code = 0;

		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200 && code < 300) {
			if ((rc = r->sink(buf, len, r->sink_arg)) ==
			    HTTP_SINK_PAUSE)
				return CURL_WRITEFUNC_PAUSE;
			if (rc != 0) {
				r->resp.sink_error = rc;
				return 0;
			}
			return len;
		}
	}
	if (r->resp.body_len + len > r->body_cap)
		return 0;
	if ((p = realloc(r->resp.body, r->resp.body_len + len + 1)) == NULL)
		return 0;
	memcpy(p + r->resp.body_len, buf, len);
	r->resp.body = p;
	r->resp.body_len += len;
	p[r->resp.body_len] = '\0';
	return len;
}

/*
 * Opens curl's sockets, so that a socket() refused for want of
 * descriptors (EMFILE, ENFILE) is told apart from a refused connection:
 * curl reports both as "Couldn't connect".
 */
static curl_socket_t
opensocket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct http_req *r = arg;
	int fd;

	(void)purpose;
	if ((fd = socket(a->family, a->socktype | SOCK_CLOEXEC,
	    a->protocol)) < 0)
		r->resp.socket_errno = errno;
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/*
 * Starts r.  Returns 0, or a negative errno when curl refused it (done is
 * then not called).
 */
int
http_start(struct http *h, struct http_req *r, http_done_cb done, void *arg)
{
	CURL *e;

	resp_clear(&r->resp);
	r->errbuf[0] = '\0';
	if (r->easy == NULL && (r->easy = curl_easy_init()) == NULL)
		return -ENOMEM;
	e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "bcdad/" BCDAD_VERSION);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, h->connect_timeout);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, h->low_speed_time);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, r->timeout);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	r->body_sent = 0;
	if (r->has_body) {
		/* UPLOAD sends a PUT; CUSTOMREQUEST renames it (POST). */
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
		    (curl_off_t)r->body_len);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
		if (strcmp(r->method, "PUT") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		/* An empty PUT (the IMDSv2 token request). */
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (r->user != NULL) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(e, CURLOPT_PASSWORD, r->password);
	}
	r->done = done;
	r->arg = arg;
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
		return -EIO;
	r->active = 1;
	return 0;
}

void
http_resume(struct http *h, struct http_req *r)
{
	(void)h;
	if (r != NULL && r->active)
		curl_easy_pause(r->easy, CURLPAUSE_CONT);
}

void
http_cancel(struct http *h, struct http_req *r)
{
	if (r != NULL && r->active) {
		curl_multi_remove_handle(h->multi, r->easy);
		r->active = 0;
	}
}

long
http_retry_after(const char *value, time_t now)
{
	char *end;
	long v;
	time_t t;

	if (value == NULL || *value == '\0')
		return -1;
	errno = 0;
	v = strtol(value, &end, 10);
	if (end != value && *end == '\0' && errno == 0)
		return v < 0 ? -1 : v;
	if ((t = curl_getdate(value, NULL)) < 0)
		return -1;
	return t > now ? (long)(t - now) : 0;
}
