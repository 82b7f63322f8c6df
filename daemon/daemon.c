/*
 * The daemon's life: set up, READY=1, loop, STOPPING=1, save, exit.
 * One housekeeping tick owns WATCHDOG=1 and STATUS=.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "bcdad.h"
#include "util/fs.h"
#include "util/log.h"

struct daemon {
	uv_loop_t	 loop;
	struct config	*cfg;
	struct engine	*engine;
	struct ctl	*ctl;
	uv_timer_t	 tick;
	uv_signal_t	 sigterm, sigint, sighup;
	uint64_t	 watchdog_usec;
	int		 debug;		/* -d: debug whatever log_level says */
	int		 stopping;
	unsigned	 ticks;
	int		 metrics_busy;	/* a metrics write is under way */
};

#define METRICS_EVERY	10	/* ticks (about seconds) between writes */

/* True when stderr is the journal's stream (systemd sets JOURNAL_STREAM). */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

/*
 * Secrets and tokens live in this process's memory: keep them out of
 * core files and away from ptrace by other users.
 */
static void
no_core_dumps(void)
{
	struct rlimit rl = { 0, 0 };

	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/*
 * Every transfer holds a socket and a file: the soft descriptor limit goes
 * up to the hard one (LimitNOFILE= in the unit), and the control socket
 * may use at most a quarter of it.  Returns that share.
 */
static int
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return CTL_MAX_CONNS;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	log_info("file descriptors: at most %llu (control clients: %llu)",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)
	    (rl.rlim_cur / 4 < CTL_MAX_CONNS ? rl.rlim_cur / 4 :
	    CTL_MAX_CONNS));
	return rl.rlim_cur / 4 < CTL_MAX_CONNS ? (int)(rl.rlim_cur / 4) :
	    CTL_MAX_CONNS;
}

/* The metrics file, written on the thread pool (fsync may block). */
struct metrics_write {
	uv_work_t	 work;
	struct daemon	*d;
	char		*path;
	char		*text;
	int		 rc;
};

static void
metrics_work(uv_work_t *w)
{
	struct metrics_write *mw = w->data;

	/* Counts only, no beneficiary data: readable by node_exporter. */
	mw->rc = fs_write_atomic(mw->path, mw->text, strlen(mw->text), 0644);
}

static void
metrics_done(uv_work_t *w, int status)
{
	struct metrics_write *mw = w->data;
	struct daemon *d = mw->d;

	if (status == 0 && mw->rc != 0)
		log_warnx("cannot write the metrics to %s: %s", mw->path,
		    strerror(-mw->rc));
	d->metrics_busy = 0;
	free(mw->text);
	free(mw);
}

/* Every METRICS_EVERY ticks (and at the first), when metrics_file is set. */
static void
write_metrics(struct daemon *d)
{
	struct metrics_write *mw;

	if (d->cfg->metrics_file == NULL || d->metrics_busy ||
	    d->ticks++ % METRICS_EVERY != 0)
		return;
	if ((mw = calloc(1, sizeof(*mw))) == NULL)
		return;
	mw->d = d;
	mw->path = d->cfg->metrics_file;
	if ((mw->text = status_metrics(d->engine)) == NULL) {
		log_warnx("cannot gather the metrics from the database");
		free(mw);
		return;
	}
	mw->work.data = mw;
	if (uv_queue_work(&d->loop, &mw->work, metrics_work,
	    metrics_done) != 0) {
		free(mw->text);
		free(mw);
		return;
	}
	d->metrics_busy = 1;
}

static void
tick_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;

	write_metrics(d);
	if (d->watchdog_usec)
		sd_notify(0, "WATCHDOG=1");
	sd_notifyf(0, "STATUS=%d active job%s, %d download%s in flight",
	    engine_active_jobs(d->engine),
	    engine_active_jobs(d->engine) == 1 ? "" : "s",
	    engine_active_downloads(d->engine),
	    engine_active_downloads(d->engine) == 1 ? "" : "s");
}

static void
shutdown_daemon(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("%s: stopping", why);
	sd_notify(0, "STOPPING=1");
	engine_stop(d->engine);
	ctl_close(d->ctl);
	uv_timer_stop(&d->tick);
	uv_close((uv_handle_t *)&d->tick, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* Logs each line of text (modified) at level, after prefix. */
static void
log_each(enum log_level level, const char *prefix, char *text)
{
	char *line, *save = NULL;

	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		log_emit(level, 0, "%s%s", prefix, line);
}

/*
 * The keys of [daemon] read once at start-up, outside the engine's own
 * list (engine_reload): the transfers' timeouts, given to curl's handle
 * when the engine is made, and the socket's group.  Writes those that
 * differ between old and new to err; returns their number.
 */
static int
restart_keys(const struct config *old, const struct config *new, char *err,
    size_t errlen)
{
	const char *names[3];
	int n = 0;

	if (new->connect_timeout != old->connect_timeout)
		names[n++] = "connect_timeout";
	if (new->low_speed_time != old->low_speed_time)
		names[n++] = "low_speed_time";
	if (new->control_gid != old->control_gid)
		names[n++] = "control_group";
	snprintf(err, errlen, "%s%s%s%s%s take%s effect only at a restart",
	    n > 0 ? names[0] : "", n > 2 ? ", " : n > 1 ? " and " : "",
	    n > 1 ? names[1] : "", n > 2 ? " and " : "", n > 2 ? names[2] : "",
	    n == 1 ? "s" : "");
	return n;
}

/*
 * SIGHUP (systemctl reload bcdad): reads the configuration again.  A file
 * with errors is refused with every error logged, and the old
 * configuration stays; so is a change to a key that needs a restart.  The
 * engine applies profile changes to new jobs; log_level applies at once,
 * unless -d asked for debug.
 */
static void
reload(struct daemon *d)
{
	char errs[8192], err[256];
	enum log_level level;
	struct config *c;

	sd_notify(0, "RELOADING=1");
	if ((c = config_load(d->cfg->path, errs, sizeof(errs))) == NULL ||
	    daemon_check_dirs(c, errs, sizeof(errs)) != 0) {
		config_free(c);
		log_warnx("SIGHUP: %s has errors; keeping the configuration "
		    "in use", d->cfg->path);
		log_each(LOG_LVL_WARN, "SIGHUP: ", errs);
	} else if (restart_keys(d->cfg, c, err, sizeof(err)) != 0 ||
	    engine_reload(d->engine, c, err, sizeof(err)) != 0) {
		log_warnx("SIGHUP: not reloaded, keeping the configuration in "
		    "use: %s", err);
		config_free(c);
	} else {
		d->cfg = c;
		level = d->debug ? LOG_LVL_DEBUG : c->log_level;
		/*
		 * The line shows under the old level or the new, whichever
		 * says more.
		 */
		if (level > log_level_max)
			log_set_level(level);
		log_info("SIGHUP: configuration reloaded from %s: %d "
		    "profile%s, log level %s", c->path, c->nprofiles,
		    c->nprofiles == 1 ? "" : "s", log_level_name(level));
		log_set_level(level);
	}
	sd_notify(0, "READY=1");
}

static void
signal_cb(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;

	if (signum == SIGHUP) {
		reload(d);
		return;
	}
	shutdown_daemon(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/*
 * The runtime directory and the directories above it that do not exist
 * yet, each mode 0750 with the control socket's group: umask 077 would
 * make them 0700, and then neither control_group nor the daemon's group
 * could reach the socket.  0750 lets through exactly the group the
 * socket's 0660 lets in (control_group, else the daemon's own, as a new
 * directory has), and lets no one else even look up the name.  A
 * directory that exists is left as it is: the unit's RuntimeDirectory=
 * made it, or it is shared, such as /run itself.
 */
static int
make_runtime_dir(const char *dir, long gid)
{
	char *s, *p, c;
	int rc = 0;

	if ((s = strdup(dir)) == NULL)
		return -ENOMEM;
	for (p = s + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		c = *p;
		*p = '\0';
		if (mkdir(s, 0750) == 0) {
			if ((gid >= 0 && chown(s, (uid_t)-1, (gid_t)gid) != 0) ||
			    chmod(s, 0750) != 0) {
				rc = -errno;
				log_errx("cannot give %s mode 0750 and the control "
				    "socket's group: %s", s, strerror(errno));
				break;
			}
		} else if (errno != EEXIST) {
			rc = -errno;
			log_errx("cannot create %s: %s", s, strerror(errno));
			break;
		}
		if ((*p = c) == '\0')
			break;
	}
	free(s);
	return rc;
}

static int
make_dirs(const struct config *c)
{
	/* Data and state are the daemon user's alone. */
	const char *dirs[] = { c->state_dir, c->storage_dir };
	size_t i;
	int rc;

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if ((rc = fs_mkdir_p(dirs[i], 0700)) != 0) {
			log_errx("cannot create %s: %s", dirs[i],
			    strerror(-rc));
			return rc;
		}
	}
	return make_runtime_dir(c->runtime_dir, c->control_gid);
}

/*
 * Every directory the daemon writes (state, runtime, each profile's
 * storage) must be writable from here, or creatable: run by `bcdad -n` as
 * the unit's ExecStartPre=, inside its sandbox, this finds a storage_dir
 * that ProtectSystem= made read-only before BCDA builds an export for it.
 * Each problem is one line in errs; returns their number.
 */
int
daemon_check_dirs(const struct config *c, char *errs, size_t errlen)
{
	const char *dir, *names[] = { "state_dir", "runtime_dir",
	    "storage_dir" };
	const char *dirs[] = { c->state_dir, c->runtime_dir, c->storage_dir };
	size_t used = 0, i, n = sizeof(dirs) / sizeof(dirs[0]);
	int bad = 0, rc;

	errs[0] = '\0';
	for (i = 0; i < n + (size_t)c->nprofiles; i++) {
		dir = i < n ? dirs[i] : c->profiles[i - n]->storage_dir;
		if ((rc = fs_writable(dir)) == 0)
			continue;
		bad++;
		if (used < errlen)
			used += (size_t)snprintf(errs + used, errlen - used,
			    "%s%s%s%s is not writable here: %s: %s%s\n",
			    i < n ? "" : "profile ", i < n ? "" :
			    c->profiles[i - n]->name, i < n ? "" : " ",
			    i < n ? names[i] : "storage_dir", dir, strerror(-rc),
			    rc == -EROFS ? " (under systemd, grant it with "
			    "ReadWritePaths= in a drop-in: systemctl edit "
			    "bcdad)" : "");
	}
	return bad;
}

/* The socket systemd passed us (bcdad.socket), or -1. */
static int
activated_socket(void)
{
	int n = sd_listen_fds(1);

	if (n == 1 && sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1,
	    NULL, 0) > 0) {
		log_info("control socket passed in by systemd (socket "
		    "activation)");
		return SD_LISTEN_FDS_START;
	}
	if (n > 1)
		log_warnx("systemd passed %d sockets; expected one", n);
	return -1;
}

/*
 * One daemon per state directory: an exclusive lock on its bcdad.lock,
 * taken before the database is opened and held until exit (the kernel
 * drops it when the process dies, kill -9 included).  The file holds the
 * pid of the daemon that has it, to name it to a second one.  Returns the
 * descriptor, or -1 after logging why.
 */
static int
lock_state_dir(const struct config *c)
{
	char path[4096], pid[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/bcdad.lock", c->state_dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		log_errx("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			n = pread(fd, pid, sizeof(pid) - 1, 0);
			pid[n > 0 ? n : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			log_errx("another bcdad (pid %s) is running on the state "
			    "directory %s; stop it first (systemctl stop bcdad)",
			    pid[0] ? pid : "unknown", c->state_dir);
		} else {
			log_errx("cannot lock %s: %s", path, strerror(errno));
		}
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warnx("cannot write the pid to %s: %s", path,
		    strerror(errno));
	return fd;
}

int
daemon_run(struct config *c, int debug)
{
	struct daemon d;
	char err[512], errs[4096], *db = NULL, *sock = NULL;
	int rc = 1, lockfd, maxconns;

	memset(&d, 0, sizeof(d));
	d.cfg = c;
	d.debug = debug;
	log_init(debug ? LOG_LVL_DEBUG : c->log_level, stderr_is_journal());
	no_core_dumps();
	maxconns = raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	umask(077);
	if (make_dirs(c) != 0 || (lockfd = lock_state_dir(c)) < 0)
		return 1;
	if (daemon_check_dirs(c, errs, sizeof(errs)) != 0) {
		log_each(LOG_LVL_ERR, "", errs);
		goto out;
	}
	if (asprintf(&db, "%s/bcdad.db", c->state_dir) < 0 ||
	    (sock = socket_path(c)) == NULL) {
		log_errx("out of memory");
		goto out;
	}
	uv_loop_init(&d.loop);
	if ((d.engine = engine_new(&d.loop, c, db, err, sizeof(err))) ==
	    NULL) {
		log_errx("%s", err);
		goto out_loop;
	}
	if ((d.ctl = ctl_listen(&d.loop, d.engine, sock, c->control_gid,
	    maxconns, activated_socket())) == NULL) {
		engine_stop(d.engine);
		uv_run(&d.loop, UV_RUN_DEFAULT);
		goto out_engine;
	}
	uv_timer_init(&d.loop, &d.tick);
	d.tick.data = &d;
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sighup);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&d.sigint, signal_cb, SIGINT);
	uv_signal_start(&d.sighup, signal_cb, SIGHUP);
	engine_reserve_fds(d.engine, maxconns);
	if (engine_start(d.engine) != 0) {
		log_errx("cannot load jobs from %s", db);
		shutdown_daemon(&d, "start-up failed");
		uv_run(&d.loop, UV_RUN_DEFAULT);
		goto out_engine;
	}
	if (sd_watchdog_enabled(0, &d.watchdog_usec) <= 0)
		d.watchdog_usec = 0;
	/* Tick at least twice per watchdog period, at most every second. */
	uv_timer_start(&d.tick, tick_cb, 0, d.watchdog_usec &&
	    d.watchdog_usec / 2000 < 1000 ? d.watchdog_usec / 2000 : 1000);
	log_info("bcdad %s ready: %d profile%s, database %s, socket %s",
	    BCDAD_VERSION, c->nprofiles, c->nprofiles == 1 ? "" : "s", db,
	    sock);
	sd_notify(0, "READY=1");
	uv_run(&d.loop, UV_RUN_DEFAULT);
	rc = 0;
	log_info("stopped");
out_engine:
	engine_free(d.engine);
out_loop:
	uv_loop_close(&d.loop);
out:
	close(lockfd);
	free(db);
	free(sock);
	return rc;
}
