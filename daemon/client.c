/*
 * The command-line client: bcdad status|run|cancel|doctor.  One request
 * line to the control socket, one reply line back.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bcdad.h"

/* One request line text to the socket at path; the reply or NULL. */
static json_t *
call_once(const char *path, char *text)
{
	struct sockaddr_un sun;
	struct pollfd pfd;
	struct msghdr msg;
	struct iovec iov[2];
	static char nl[] = "\n";
	char buf[4096], *all = NULL, *p;
	size_t len = 0;
	json_t *rep = NULL;
	ssize_t n;
	int fd = -1;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "bcdad: bad socket path %s\n", path);
		goto out;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "bcdad: cannot reach the daemon at %s: %s "
		    "(is bcdad running? see systemctl status bcdad)\n", path,
		    strerror(errno));
		goto out;
	}
	/*
	 * The line in one message, so the daemon wakes once for it.  EPIPE:
	 * the daemon answered (busy) and closed before reading the request;
	 * its answer is still there to read.
	 */
	iov[0].iov_base = text;
	iov[0].iov_len = strlen(text);
	iov[1].iov_base = nl;
	iov[1].iov_len = 1;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 && errno != EPIPE) {
		fprintf(stderr, "bcdad: writing to %s: %s\n", path,
		    strerror(errno));
		goto out;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		if (poll(&pfd, 1, CTL_TIMEOUT_MS) <= 0) {
			fprintf(stderr, "bcdad: no answer from the daemon\n");
			goto out;
		}
		if ((n = read(fd, buf, sizeof(buf))) <= 0)
			break;
		if (len + (size_t)n > CTL_MAX_MSG * 16 ||
		    (p = realloc(all, len + (size_t)n + 1)) == NULL)
			goto out;
		all = p;
		memcpy(all + len, buf, (size_t)n);
		len += (size_t)n;
		if (memchr(buf, '\n', (size_t)n) != NULL)
			break;
	}
	if (all == NULL ||
	    (rep = json_loadb(all, len, JSON_DISABLE_EOF_CHECK, NULL)) == NULL)
		fprintf(stderr, "bcdad: unreadable answer from the daemon\n");
out:
	if (fd >= 0)
		close(fd);
	free(all);
	return rep;
}

/*
 * Sends req (consumed) and returns the reply, or NULL with a message.  A
 * daemon with all its control connections in use answers "busy": asked
 * again with a growing pause, for up to CTL_TIMEOUT_MS.
 */
json_t *
client_call(const char *path, json_t *req)
{
	struct timespec pause = { 0, 0 };
	json_t *rep = NULL;
	char *text;
	long waited, ms;

	json_object_set_new(req, "version", json_integer(CTL_VERSION));
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (text == NULL)
		return NULL;
	for (waited = 0; ; waited += pause.tv_nsec / 1000000) {
		rep = call_once(path, text);
		if (!json_is_true(json_object_get(rep, "busy")) ||
		    waited >= CTL_TIMEOUT_MS)
			break;
		json_decref(rep);
		if (waited == 0)
			srandom((unsigned)getpid());
		ms = waited / 4 + 20 + random() % 50;
		pause.tv_nsec = (ms < 500 ? ms : 500) * 1000000L;
		nanosleep(&pause, NULL);
	}
	free(text);
	return rep;
}

static void
human_bytes(long long b, char *out, size_t len)
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void
human_age(long long secs, char *out, size_t len)
{
	if (secs < 120)
		snprintf(out, len, "%llds", secs);
	else if (secs < 7200)
		snprintf(out, len, "%lldm", secs / 60);
	else if (secs < 172800)
		snprintf(out, len, "%lldh", secs / 3600);
	else
		snprintf(out, len, "%lldd", secs / 86400);
}

static void
print_table(json_t *jobs)
{
	char prog[24], files[48], bytes[32], age[32];
	const char *err;
	json_t *j;
	size_t i;
	long long pct;

	printf("%-6s %-12s %-10s %8s %11s %10s %6s  %s\n", "JOB", "PROFILE",
	    "STATE", "PROGRESS", "FILES", "BYTES", "AGE", "LAST ERROR");
	json_array_foreach(jobs, i, j) {
		pct = json_integer_value(json_object_get(j, "progress"));
		if (pct < 0)
			snprintf(prog, sizeof(prog), "-");
		else
			snprintf(prog, sizeof(prog), "%lld%%", pct);
		snprintf(files, sizeof(files), "%lld/%lld",
		    json_integer_value(json_object_get(j, "files_done")),
		    json_integer_value(json_object_get(j, "files_total")));
		human_bytes(json_integer_value(json_object_get(j, "bytes")),
		    bytes, sizeof(bytes));
		human_age((long long)time(NULL) - json_integer_value(
		    json_object_get(j, "created_at")), age, sizeof(age));
		err = json_string_value(json_object_get(j, "last_error"));
		printf("%-6lld %-12s %-10s %8s %11s %10s %6s  %s\n",
		    json_integer_value(json_object_get(j, "id")),
		    json_string_value(json_object_get(j, "profile")),
		    json_string_value(json_object_get(j, "state")), prog,
		    files, bytes, age, err ? err : "");
	}
	if (json_array_size(jobs) == 0)
		printf("(no jobs yet: start one with 'bcdad run PROFILE')\n");
}

/* Each profile's watermarks (the next _since) and credential warnings. */
static void
print_profiles(json_t *profiles)
{
	char age[32];
	const char *w;
	json_t *p, *m;
	size_t i, k;

	printf("\n%-12s %-32s %-32s %6s\n", "PROFILE", "SCOPE",
	    "WATERMARK (NEXT _since)", "MOVED");
	json_array_foreach(profiles, i, p) {
		const char *name = json_string_value(json_object_get(p,
		    "profile"));

		if (json_array_size(json_object_get(p, "watermarks")) == 0)
			printf("%-12s %-32s %-32s %6s\n", name, "-",
			    "(none: the next export is full history)", "-");
		json_array_foreach(json_object_get(p, "watermarks"), k, m) {
			human_age((long long)time(NULL) - json_integer_value(
			    json_object_get(m, "moved_at")), age, sizeof(age));
			printf("%-12s %-32s %-32s %6s\n", name,
			    json_string_value(json_object_get(m, "scope")),
			    json_string_value(json_object_get(m,
			    "transaction_time")), age);
		}
		if ((w = json_string_value(json_object_get(p, "warning"))))
			printf("%-12s warning: %s\n", name, w);
	}
}

/* Prints the daemon's error, if any; returns the exit status. */
static int
check_reply(json_t *rep)
{
	if (rep == NULL)
		return 1;
	if (!json_is_true(json_object_get(rep, "ok"))) {
		fprintf(stderr, "bcdad: %s\n", json_string_value(
		    json_object_get(rep, "error")));
		return 1;
	}
	return 0;
}

/* Keeps the array's elements whose key is value (a profile's jobs). */
static void
keep_only(json_t *arr, const char *key, const char *value)
{
	const char *v;
	size_t i = 0;

	while (i < json_array_size(arr)) {
		v = json_string_value(json_object_get(json_array_get(arr, i),
		    key));
		if (v != NULL && strcmp(v, value) == 0)
			i++;
		else
			json_array_remove(arr, i);
	}
}

/*
 * bcdad status [JOB|PROFILE] [--profiles] [--json] [--watch] [--limit N]
 * [--before ID]: a page of the newest jobs (or one job, or one profile's)
 * and the profiles' watermarks; --watch redraws every 2 s until
 * interrupted.
 */
static int
status_cmd(const char *sock, int argc, char **argv)
{
	const char *what = NULL;
	json_t *req, *rep, *jobs, *profs, *next;
	int k, as_json = 0, profiles = 0, watch = 0, rc;
	long long id = 0, limit = 50, before = 0;
	char *end;

	for (k = 1; k < argc; k++) {
		if ((strcmp(argv[k], "--limit") == 0 ||
		    strcmp(argv[k], "--before") == 0) && k + 1 < argc) {
			errno = 0;
			*(argv[k][2] == 'l' ? &limit : &before) =
			    strtoll(argv[k + 1], &end, 10);
			if (*end != '\0' || errno != 0 || end == argv[k + 1] ||
			    (argv[k][2] == 'l' ? limit : before) < 1)
				return -1;
			k++;
		} else if (strcmp(argv[k], "--json") == 0)
			as_json = 1;
		else if (strcmp(argv[k], "--profiles") == 0)
			profiles = 1;
		else if (strcmp(argv[k], "--watch") == 0)
			watch = 1;
		else if (argv[k][0] != '-' && what == NULL)
			what = argv[k];
		else
			return -1;
	}
	if (what != NULL) {
		errno = 0;
		id = strtoll(what, &end, 10);
		if (*end != '\0' || errno != 0 || id <= 0)
			id = 0;		/* a profile name */
	}
	for (;;) {
		req = id ? json_pack("{s:s, s:I}", "cmd", "status", "job",
		    (json_int_t)id) : json_pack("{s:s, s:I, s:I, s:s?}", "cmd",
		    "status", "limit", (json_int_t)limit, "before",
		    (json_int_t)before, "profile", what);
		rep = client_call(sock, req);
		if ((rc = check_reply(rep)) != 0) {
			json_decref(rep);
			return rc;
		}
		jobs = json_object_get(rep, "jobs");
		profs = json_object_get(rep, "profiles");
		if (what != NULL && id == 0) {
			keep_only(profs, "profile", what);
		} else if (id != 0) {
			json_array_clear(profs);
		}
		if (watch && isatty(STDOUT_FILENO))
			fputs("\033[H\033[2J", stdout);
		if (as_json) {
			/* --json alone stays the jobs array. */
			json_dumpf(profiles ? profs : jobs, stdout,
			    JSON_INDENT(2));
			putchar('\n');
		} else {
			if (!profiles)
				print_table(jobs);
			if (!profiles && (next = json_object_get(rep,
			    "next")) != NULL)
				printf("older jobs: bcdad status%s%s --before "
				    "%lld\n", what ? " " : "", what ? what : "",
				    (long long)json_integer_value(next));
			if (json_array_size(profs) > 0)
				print_profiles(profs);
		}
		json_decref(rep);
		if (!watch)
			return 0;
		fflush(stdout);
		sleep(2);
	}
}

/* bcdad history JOB [--json]: every change of state, then the files. */
static int
history_cmd(const char *sock, int argc, char **argv)
{
	char when[32], *end;
	json_t *rep, *h, *f;
	long long id;
	size_t i;
	time_t t;
	int rc;

	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--json")))
		return -1;
	errno = 0;
	id = strtoll(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || errno != 0 || id <= 0)
		return -1;
	rep = client_call(sock, json_pack("{s:s, s:I}", "cmd", "history", "job",
	    (json_int_t)id));
	if ((rc = check_reply(rep)) != 0) {
		json_decref(rep);
		return rc;
	}
	if (argc == 3) {
		json_object_del(rep, "ok");
		json_object_del(rep, "version");
		json_dumpf(rep, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(rep);
		return 0;
	}
	printf("%-20s %-10s %-10s %s\n", "TIME (UTC)", "FROM", "TO", "WHY");
	json_array_foreach(json_object_get(rep, "history"), i, h) {
		t = (time_t)json_integer_value(json_object_get(h, "at"));
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime(&t));
		printf("%-20s %-10s %-10s %s\n", when,
		    json_string_value(json_object_get(h, "from")) ?
		    json_string_value(json_object_get(h, "from")) : "-",
		    json_string_value(json_object_get(h, "to")),
		    json_string_value(json_object_get(h, "reason")) ?
		    json_string_value(json_object_get(h, "reason")) : "");
	}
	printf("\n%-40s %-8s %-8s %8s %10s %s\n", "FILE", "STATE", "S3",
	    "LINES", "BYTES", "LAST ERROR");
	json_array_foreach(json_object_get(rep, "files"), i, f)
		printf("%-40s %-8s %-8s %8lld %10lld %s\n",
		    json_string_value(json_object_get(f, "name")),
		    json_string_value(json_object_get(f, "state")),
		    json_string_value(json_object_get(f, "s3")),
		    json_integer_value(json_object_get(f, "lines")),
		    json_integer_value(json_object_get(f, "bytes")),
		    json_string_value(json_object_get(f, "last_error")) ?
		    json_string_value(json_object_get(f, "last_error")) : "");
	json_decref(rep);
	return 0;
}

/* Exit statuses of `run --wait`, one per outcome (see bcdad(8)). */
#define EXIT_FAILED	3
#define EXIT_CANCELLED	4
#define EXIT_SKIPPED	5
#define WAIT_POLL_S	2	/* status requests while waiting */
#define WAIT_AWAY_S	900	/* the daemon may be away this long */

/*
 * Follows job id until it ends: prints how it ended and returns its exit
 * status.  A daemon that does not answer (restarting) is asked again for
 * up to WAIT_AWAY_S seconds.
 */
static int
wait_job(const char *sock, long long id)
{
	const char *state, *err;
	time_t away = 0;
	json_t *rep, *j;
	int rc;

	for (;;) {
		sleep(WAIT_POLL_S);
		rep = client_call(sock, json_pack("{s:s, s:I}", "cmd", "status", "job",
		    (json_int_t)id));
		if (rep == NULL || !json_is_true(json_object_get(rep, "ok"))) {
			json_decref(rep);
			if (away == 0)
				away = time(NULL);
			if (time(NULL) - away > WAIT_AWAY_S) {
				fprintf(stderr, "bcdad: gave up waiting for job "
				    "%lld: the daemon has not answered for %d "
				    "s\n", id, WAIT_AWAY_S);
				return 1;
			}
			continue;
		}
		away = 0;
		j = json_array_get(json_object_get(rep, "jobs"), 0);
		state = json_string_value(json_object_get(j, "state"));
		if (state == NULL) {
			fprintf(stderr, "bcdad: job %lld is gone\n", id);
			json_decref(rep);
			return 1;
		}
		err = json_string_value(json_object_get(j, "last_error"));
		rc = strcmp(state, "DONE") == 0 ? 0 :
		    strcmp(state, "FAILED") == 0 ? EXIT_FAILED :
		    strcmp(state, "CANCELLED") == 0 ? EXIT_CANCELLED :
		    strcmp(state, "SKIPPED") == 0 ? EXIT_SKIPPED : -1;
		if (rc >= 0) {
			printf("job %lld ended %s%s%s\n", id, state,
			    err ? ": " : "", err ? err : "");
			json_decref(rep);
			return rc;
		}
		json_decref(rep);
	}
}

/* bcdad run PROFILE [--since TIME | --full] [--wait] */
static int
run_cmd(const char *sock, int argc, char **argv)
{
	json_t *req, *rep;
	long long id;
	int k, wait = 0, rc;

	if (argc < 2 || argv[1][0] == '-')
		return -1;
	req = json_pack("{s:s, s:s}", "cmd", "run", "profile", argv[1]);
	for (k = 2; k < argc; k++) {
		if (strcmp(argv[k], "--wait") == 0)
			wait = 1;
		else if (strcmp(argv[k], "--full") == 0)
			json_object_set_new(req, "full", json_true());
		else if (strcmp(argv[k], "--since") == 0 && k + 1 < argc)
			json_object_set_new(req, "since",
			    json_string(argv[++k]));
		else {
			json_decref(req);
			return -1;
		}
	}
	rep = client_call(sock, req);
	if ((rc = check_reply(rep)) == 0) {
		id = json_integer_value(json_object_get(rep, "job"));
		printf("started job %lld for profile %s\n", id, argv[1]);
		fflush(stdout);
		if (wait)
			rc = wait_job(sock, id);
	}
	json_decref(rep);
	return rc;
}


int
client_main(const char *sock, int argc, char **argv)
{
	const char *cmd = argv[0];
	json_t *rep = NULL;
	char *end;
	long long id;
	int rc;

	if (strcmp(cmd, "status") == 0) {
		if ((rc = status_cmd(sock, argc, argv)) < 0)
			goto usage;
	} else if (strcmp(cmd, "run") == 0) {
		if ((rc = run_cmd(sock, argc, argv)) < 0)
			goto usage;
	} else if (strcmp(cmd, "history") == 0) {
		if ((rc = history_cmd(sock, argc, argv)) < 0)
			goto usage;
	} else if ((strcmp(cmd, "cancel") == 0 && argc == 2) ||
	    (strcmp(cmd, "retry") == 0 && (argc == 2 || (argc == 3 &&
	    strcmp(argv[2], "--wait") == 0)))) {
		errno = 0;
		id = strtoll(argv[1], &end, 10);
		if (*argv[1] == '\0' || *end != '\0' || errno != 0 || id <= 0) {
			fprintf(stderr, "bcdad: %s needs a job number, not "
			    "\"%s\"\n", cmd, argv[1]);
			return 2;
		}
		rep = client_call(sock, json_pack("{s:s, s:I}", "cmd", cmd,
		    "job", (json_int_t)id));
		if ((rc = check_reply(rep)) == 0) {
			printf("%s job %lld\n", *cmd == 'c' ? "cancelling" :
			    "retrying", id);
			fflush(stdout);
			if (argc == 3)
				rc = wait_job(sock, id);
		}
	} else {
		goto usage;
	}
	json_decref(rep);
	return rc;
usage:
	fprintf(stderr, "bcdad: unknown command or wrong arguments; see "
	    "bcdad -h\n");
	return 2;
}
