/*
 * The control socket: a Unix stream socket, mode 0660, one JSON request
 * line per connection and one JSON reply line.  Requests carry
 * "version": 1.  Garbage, oversized or silent clients get an error (or are
 * dropped) and the daemon carries on; at most maxconns (CTL_MAX_CONNS, or
 * a quarter of the descriptor limit) are open at once, the oldest dropped
 * for a new one.  Whoever reaches the socket (its
 * group is control_group, bcdad-ctl in the packaged units) may ask status
 * and history; changing commands (run, cancel, retry) are allowed to root
 * and to the daemon's own user and group.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bcdad.h"
#include "util/log.h"

struct ctl_conn;

struct ctl {
	uv_loop_t	*loop;
	struct engine	*engine;
	uv_pipe_t	 server;
	char		*path;		/* unlinked at close; NULL if activated */
	TAILQ_HEAD(, ctl_conn) conns;	/* open, not yet closing, oldest first */
	int		 nconns;
	int		 maxconns;	/* CTL_MAX_CONNS, or fewer */
};

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn) entry;
	uv_pipe_t	 pipe;
	uv_timer_t	 timer;
	struct ctl	*ctl;
	char		*buf;
	size_t		 len;
	uint64_t	 born;		/* loop ms at accept */
	struct ucred	 peer;		/* SO_PEERCRED, taken at accept */
	int		 peer_known;
	int		 replied;
	int		 closing;
	int		 nclosed;
};

static void
conn_free_cb(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;

	if (++c->nclosed == 2) {
		free(c->buf);
		free(c);
	}
}

static void
conn_close(struct ctl_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	TAILQ_REMOVE(&c->ctl->conns, c, entry);
	c->ctl->nconns--;
	uv_read_stop((uv_stream_t *)&c->pipe);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->pipe, conn_free_cb);
	uv_close((uv_handle_t *)&c->timer, conn_free_cb);
}

struct write_req {
	uv_write_t	 req;
	char		*text;
	struct ctl_conn	*conn;
};

static void
write_cb(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;

	(void)status;
	conn_close(wr->conn);
	free(wr->text);
	free(wr);
}

/* Sends reply (consumed) as one line, then closes the connection. */
static void
reply(struct ctl_conn *c, json_t *reply)
{
	struct write_req *wr;
	uv_buf_t b;
	char *text;

	c->replied = 1;
	uv_read_stop((uv_stream_t *)&c->pipe);
	json_object_set_new(reply, "version", json_integer(CTL_VERSION));
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (text == NULL || (wr = calloc(1, sizeof(*wr))) == NULL) {
		free(text);
		conn_close(c);
		return;
	}
	wr->conn = c;
	if (asprintf(&wr->text, "%s\n", text) < 0) {
		free(text);
		free(wr);
		conn_close(c);
		return;
	}
	free(text);
	b = uv_buf_init(wr->text, (unsigned)strlen(wr->text));
	if (uv_write(&wr->req, (uv_stream_t *)&c->pipe, &b, 1, write_cb) != 0) {
		free(wr->text);
		free(wr);
		conn_close(c);
	}
}

static void
reply_error(struct ctl_conn *c, const char *msg)
{
	reply(c, json_pack("{s:b, s:s}", "ok", 0, "error", msg));
}

/* True when user uid has gid among its supplementary groups. */
static int
in_group(uid_t uid, gid_t gid)
{
	struct passwd pw, *res = NULL;
	gid_t groups[256];
	char buf[4096];
	int n = (int)(sizeof(groups) / sizeof(groups[0])), i;

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL ||
	    getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return 0;
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/*
 * run, cancel and retry: root, the daemon's user, or a member of its
 * group, primary or supplementary (status needs only access to the
 * socket).  Asked only when one of them arrives: the supplementary groups
 * come from the user database, which may be sssd or LDAP and block the
 * loop, and status, asked far more often, must not wait on it.
 */
static int
peer_privileged(const struct ctl_conn *c)
{
	return c->peer_known && (c->peer.uid == 0 ||
	    c->peer.uid == geteuid() || c->peer.gid == getegid() ||
	    in_group(c->peer.uid, getegid()));
}

/* The peer's uid and gid, as they were when it connected. */
static void
peer_cred(struct ctl_conn *c)
{
	socklen_t len = sizeof(c->peer);
	uv_os_fd_t fd;

	c->peer_known = uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &len) == 0;
}

static void
handle(struct ctl_conn *c, const char *line, size_t len)
{
	struct engine *e = c->ctl->engine;
	struct ctl_req r;
	json_t *jobs, *profs, *rep;
	const char *why;
	char err[512];
	int64_t id, next = 0;
	int rc;

	if (ctl_req_parse(line, len, &r, &why) != 0) {
		reply_error(c, why);
		return;
	}
	switch (r.cmd) {
	case CTL_STATUS:
		jobs = r.job > 0 ? status_job_one(e, r.job) :
		    status_jobs(e, &r.page, &next);
		profs = status_profiles(e);
		if (jobs == NULL || profs == NULL) {
			json_decref(jobs);
			json_decref(profs);
			reply_error(c, "cannot read jobs from the database");
			break;
		}
		rep = json_pack("{s:b, s:o, s:o, s:s}", "ok", 1, "jobs", jobs,
		    "profiles", profs, "daemon", BCDAD_VERSION);
		if (rep != NULL && next != 0)
			json_object_set_new(rep, "next", json_integer(next));
		reply(c, rep);
		break;
	case CTL_HISTORY:
		if ((rep = status_job_detail(e, r.job)) == NULL) {
			reply_error(c, "no such job");
			break;
		}
		json_object_set_new(rep, "ok", json_true());
		reply(c, rep);
		break;
	case CTL_RUN:
	case CTL_CANCEL:
	case CTL_RETRY:
		if (!peer_privileged(c)) {
			reply_error(c, "permission denied: run, cancel and "
			    "retry need root or the bcdad user or group");
			break;
		}
		id = r.job;
		rc = r.cmd == CTL_RUN ? engine_run(e, r.profile, r.since,
		    r.full, &id, err, sizeof(err)) : r.cmd == CTL_CANCEL ?
		    engine_cancel(e, r.job, err, sizeof(err)) :
		    engine_retry(e, r.job, err, sizeof(err));
		if (rc != 0)
			reply_error(c, err);
		else
			reply(c, json_pack("{s:b, s:I}", "ok", 1, "job",
			    (json_int_t)id));
		break;
	}
	ctl_req_free(&r);
}

static void
alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char buf[4096];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(buf, sizeof(buf));
}

static void
read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct ctl_conn *c = s->data;
	char *nl, *p;

	if (c->replied || c->closing)
		return;
	if (n < 0) {
		/*
		 * A request may end with the client's half-close instead of
		 * a newline (shutdown(SHUT_WR), as `nc -N` does): it is
		 * whole, and the reply can still go out.
		 */
		if (n == UV_EOF && c->len > 0)
			handle(c, c->buf, c->len);
		else
			conn_close(c);
		return;
	}
	if (c->len + (size_t)n > CTL_MAX_MSG) {
		reply_error(c, "request too long");
		return;
	}
	if ((p = realloc(c->buf, c->len + (size_t)n + 1)) == NULL) {
		conn_close(c);
		return;
	}
	c->buf = p;
	memcpy(c->buf + c->len, b->base, (size_t)n);
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if ((nl = memchr(c->buf, '\n', c->len)) != NULL)
		handle(c, c->buf, (size_t)(nl - c->buf));
}

static void
idle_cb(uv_timer_t *t)
{
	conn_close(t->data);
}

static void
connection_cb(uv_stream_t *server, int status)
{
	struct ctl *ctl = server->data;
	struct ctl_conn *c, *old;
	int busy;

	if (status < 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	/*
	 * At the cap, the oldest connection goes if it has been silent for
	 * CTL_EVICT_MS: a client sends its one request as soon as it
	 * connects, so the oldest is the idlest, and a flood of silent
	 * clients can hold neither descriptors nor the socket from the next
	 * `bcdad run`.  When even the oldest is that young, the new client is
	 * refused instead, with "busy" (bcdad's client tries again), so that
	 * a burst of connections never drops one whose request is on its way.
	 */
	old = TAILQ_FIRST(&ctl->conns);
	if (ctl->nconns >= ctl->maxconns &&
	    uv_now(ctl->loop) - old->born >= CTL_EVICT_MS)
		conn_close(old);
	busy = ctl->nconns >= ctl->maxconns;
	c->ctl = ctl;
	c->born = uv_now(ctl->loop);
	uv_pipe_init(ctl->loop, &c->pipe, 0);
	uv_timer_init(ctl->loop, &c->timer);
	c->pipe.data = c->timer.data = c;
	TAILQ_INSERT_TAIL(&ctl->conns, c, entry);
	ctl->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
		conn_close(c);
		return;
	}
	if (busy) {
		reply(c, json_pack("{s:b, s:b, s:s}", "ok", 0, "busy", 1,
		    "error", "the daemon has too many control connections "
		    "open; try again"));
		return;
	}
	peer_cred(c);
	uv_timer_start(&c->timer, idle_cb, CTL_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
}

/* The server handle is embedded in ctl: free ctl only once it is closed. */
static void
server_free_cb(uv_handle_t *h)
{
	struct ctl *ctl = h->data;

	free(ctl->path);
	free(ctl);
}

/* True when something accepts connections on the socket at path. */
static int
socket_in_use(const char *path)
{
	struct sockaddr_un sun;
	int fd, in_use;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path) ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	strcpy(sun.sun_path, path);
	in_use = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return in_use;
}

/*
 * Listens on fd (from socket activation) or binds path, replacing a stale
 * socket file, but never one that another process still listens on; a
 * bound socket gets group gid (control_group) unless gid is -1.  Returns
 * NULL with the reason logged.
 */
struct ctl *
ctl_listen(uv_loop_t *loop, struct engine *e, const char *path, long gid,
    int maxconns, int fd)
{
	struct ctl *ctl;
	mode_t old;
	int rc;

	if ((ctl = calloc(1, sizeof(*ctl))) == NULL)
		return NULL;
	ctl->loop = loop;
	ctl->engine = e;
	ctl->maxconns = maxconns > 0 ? maxconns : 1;
	TAILQ_INIT(&ctl->conns);
	uv_pipe_init(loop, &ctl->server, 0);
	ctl->server.data = ctl;
	if (fd >= 0) {
		if ((rc = uv_pipe_open(&ctl->server, fd)) != 0)
			goto fail;
	} else {
		/* uv_pipe_bind would bind a name cut short, silently. */
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			log_errx("control socket %s: the path is %zu bytes, a "
			    "Unix socket's may have at most %zu; use a shorter "
			    "runtime_dir", path, strlen(path),
			    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
			goto fail_quiet;
		}
		if (socket_in_use(path)) {
			log_errx("control socket %s is in use by another "
			    "process; not replacing it", path);
			goto fail_quiet;
		}
		unlink(path);
		old = umask(0117);
		rc = uv_pipe_bind(&ctl->server, path);
		umask(old);
		if (rc != 0)
			goto fail;
		ctl->path = strdup(path);
		if (chmod(path, 0660) != 0 || (gid >= 0 &&
		    chown(path, (uid_t)-1, (gid_t)gid) != 0)) {
			rc = -errno;
			goto fail;
		}
	}
	if ((rc = uv_listen((uv_stream_t *)&ctl->server, SOMAXCONN,
	    connection_cb)) != 0)
		goto fail;
	return ctl;
fail:
	log_errx("control socket %s: %s", fd >= 0 ? "(activated)" : path,
	    uv_strerror(rc));
fail_quiet:
	/* A socket bound here goes too, not left for the next start. */
	if (ctl->path != NULL)
		unlink(ctl->path);
	uv_close((uv_handle_t *)&ctl->server, server_free_cb);
	return NULL;
}

/*
 * Stops listening and drops every client connection, so that the loop
 * can run dry at shutdown instead of waiting for a silent client's idle
 * timeout.  The memory goes once libuv has closed the handles.
 */
void
ctl_close(struct ctl *ctl)
{
	struct ctl_conn *c;

	if (ctl == NULL)
		return;
	while ((c = TAILQ_FIRST(&ctl->conns)) != NULL)
		conn_close(c);
	if (ctl->path != NULL)
		unlink(ctl->path);
	uv_close((uv_handle_t *)&ctl->server, server_free_cb);
}
