/*
 * The engine (lib/engine/) on a real uv loop and a real SQLite store, with
 * tests/unit/engine/fake_http.c linked in place of the HTTP module: whole
 * jobs through their stages, a cancel while the kickoff is unanswered, and
 * a shutdown with a download in flight, without a socket; and the store
 * failing under it (SQLite triggers that refuse a write while the test
 * says so): the write is retried, never the step that led to it.  The
 * wall clock is this file's time(), which the engine's calls resolve to:
 * a test can make it jump.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fake_http.c"

#include "config/config.h"
#include "engine/engine.h"
#include "store/job.h"
#include "store/store.h"
#include "util/fs.h"
#include "t.h"

/* How far the wall clock has jumped, in seconds. */
static time_t clock_jump;

time_t
time(time_t *out)
{
	struct timespec ts;
	time_t t;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = ts.tv_sec + clock_jump;
	if (out != NULL)
		*out = t;
	return t;
}

#define BASE	"http://127.0.0.1:9"
#define STATUS	BASE "/api/v2/jobs/42"
#define DATA	BASE "/data/42/a.ndjson"
#define LINES	"{\"resourceType\":\"Patient\",\"id\":\"1\"}\n" \
		"{\"resourceType\":\"Patient\",\"id\":\"2\"}\n"
#define MANIFEST "{\"transactionTime\":\"2026-01-02T03:04:05.678-04:00\"," \
	"\"request\":\"" BASE "/api/v2/Group/all/$export\"," \
	"\"requiresAccessToken\":true,\"output\":[{\"type\":\"Patient\"," \
	"\"url\":\"" DATA "\"}],\"error\":[],\"JobID\":42}"

/* What the scripted BCDA does, per test. */
static int hold_kickoff, hold_data;
static int list_empty;		/* so many job lists come back empty */
static int early_404;		/* BCDA expired the job before its time */
static int no_socket;		/* so many data requests find no descriptor */
static int hold_imds;		/* the instance metadata service hangs */
static const char *progress;	/* the job is not done: its X-Progress */
static const char *world_extra;	/* more configuration, after the profile */
static const char *world_daemon; /* more of [daemon] */

static int
bcda(const char *method, const char *url, struct fake_answer *a)
{
	if (strncmp(url, "http://169.254.169.254/", 23) == 0 && hold_imds) {
		return 0;
	} else if (strcmp(url, BASE "/auth/token") == 0) {
		a->status = 200;
		a->body = "{\"access_token\": \"tok\", \"expires_in\": \"1200\", "
		    "\"token_type\":\"bearer\"}";
	} else if (strstr(url, "/$export") != NULL) {
		if (hold_kickoff)
			return 0;
		a->status = 202;
		a->content_location = STATUS;
	} else if (strstr(url, "/jobs?") != NULL && list_empty > 0) {
		/* BCDA still works on the kickoff: no job yet (none: 404). */
		list_empty--;
		a->status = 404;
	} else if (strstr(url, "/jobs?") != NULL) {
		/* The kickoff reached BCDA: its job is listed. */
		a->status = 200;
		a->body = "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":"
		    "{\"resourceType\":\"Task\",\"identifier\":[{\"system\":\""
		    BASE "/api/v2/jobs\",\"value\":\"42\"}],\"status\":"
		    "\"accepted\",\"input\":[{\"valueString\":\"GET " BASE
		    "/api/v2/Group/all/$export\"}],\"executionPeriod\":"
		    "{\"start\":\"2026-01-01T00:00:00Z\"}}}]}";
	} else if (strcmp(url, STATUS) == 0 && strcmp(method, "DELETE") == 0) {
		a->status = 202;
	} else if (strcmp(url, STATUS) == 0 && early_404 == 2) {
		early_404 = 0;
		a->status = 404;
		a->body = "{\"resourceType\":\"OperationOutcome\",\"issue\":"
		    "[{\"severity\":\"error\",\"code\":\"not-found\","
		    "\"diagnostics\":\"Job Expired\"}]}";
	} else if (strcmp(url, STATUS) == 0 && progress != NULL) {
		a->status = 202;
		a->x_progress = progress;
	} else if (strcmp(url, STATUS) == 0) {
		a->status = 200;
		a->body = MANIFEST;
	} else if (strcmp(url, DATA) == 0 && early_404 == 1) {
		early_404 = 2;
		a->status = 404;
	} else if (strcmp(url, DATA) == 0 && no_socket > 0) {
		no_socket--;
		a->socket_errno = EMFILE;
	} else if (strcmp(url, DATA) == 0) {
		if (hold_data)
			return 0;
		a->status = 200;
		a->body = LINES;
	} else {
		a->status = 404;
	}
	return 1;
}

struct world {
	char		 dir[64];
	uv_loop_t	 loop;
	uv_timer_t	 tick;
	struct config	*cfg;
	struct store	*st;
	struct engine	*e;
};

static void
world_new(struct world *w)
{
	char path[128], conf[1024], err[1024];
	int fd;

	memset(w, 0, sizeof(*w));
	snprintf(w->dir, sizeof(w->dir), "/tmp/test_engine.XXXXXX");
	if (mkdtemp(w->dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	/* AWS credentials come from nowhere but the instance's role. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	unsetenv("AWS_EC2_METADATA_DISABLED");
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	setenv("HOME", w->dir, 1);
	snprintf(path, sizeof(path), "%s/secret", w->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "s3cret\n", 7) != 7)
		exit(1);
	close(fd);
	snprintf(conf, sizeof(conf), "[daemon]\nstate_dir = %s\n"
	    "runtime_dir = %s\nstorage_dir = %s/out\npoll_min = 1\n"
	    "poll_max = 1\nretry_min = 1\nretry_max = 1\n%s"
	    "[profile A9994]\nbase_url = " BASE "\napi_version = v2\n"
	    "client_id = A9994\nclient_secret_file = %s\n%s", w->dir, w->dir,
	    w->dir, world_daemon ? world_daemon : "", path,
	    world_extra ? world_extra : "");
	snprintf(path, sizeof(path), "%s/bcdad.conf", w->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, conf, strlen(conf)) != (ssize_t)strlen(conf))
		exit(1);
	close(fd);
	if ((w->cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/bcdad.db", w->dir);
	uv_loop_init(&w->loop);
	/* The engine's connection, and the test's own to watch it. */
	if ((w->e = engine_new(&w->loop, w->cfg, path, err,
	    sizeof(err))) == NULL || store_open(path, 0, &w->st, err,
	    sizeof(err)) != 0 || engine_start(w->e) != 0) {
		fprintf(stderr, "setup: %s\n", err);
		exit(1);
	}
	fake_answer = bcda;
	fake_log_clear();
	hold_kickoff = hold_data = list_empty = early_404 = no_socket = 0;
	hold_imds = 0;
	progress = NULL;
	clock_jump = 0;
	world_extra = NULL;
}

/* A crash and a restart: a new engine on the same database. */
static void
world_restart(struct world *w)
{
	char path[128], err[256];

	engine_stop(w->e);
	T_EQ_INT(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
	engine_free(w->e);
	snprintf(path, sizeof(path), "%s/bcdad.db", w->dir);
	if ((w->e = engine_new(&w->loop, w->cfg, path, err,
	    sizeof(err))) == NULL || engine_start(w->e) != 0) {
		fprintf(stderr, "restart: %s\n", err);
		exit(1);
	}
}

static void
on_tick(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until job id is in state want or ms of loop time pass. */
static enum job_state
run_for(struct world *w, int64_t id, enum job_state want, uint64_t ms)
{
	struct job_row row;
	enum job_state s = JOB_NSTATES;
	uint64_t end;

	uv_timer_init(&w->loop, &w->tick);
	uv_timer_start(&w->tick, on_tick, 10, 10);
	end = uv_now(&w->loop) + ms;
	while (uv_now(&w->loop) < end) {
		uv_run(&w->loop, UV_RUN_ONCE);
		if (store_job_get(w->st, id, &row) == 0) {
			s = row.state;
			job_row_clear(&row);
			if (s == want)
				break;
		}
	}
	uv_timer_stop(&w->tick);
	uv_close((uv_handle_t *)&w->tick, NULL);
	uv_run(&w->loop, UV_RUN_NOWAIT);
	return s;
}

static enum job_state
run_until(struct world *w, int64_t id, enum job_state want)
{
	return run_for(w, id, want, 10000);
}

/* engine_stop, the loop run dry (nothing may be left open), free all. */
static void
world_free(struct world *w)
{
	char cmd[128];

	engine_stop(w->e);
	T_EQ_INT(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
	engine_free(w->e);
	T_EQ_INT(uv_loop_close(&w->loop), 0);
	store_close(w->st);
	config_free(w->cfg);
	fake_log_clear();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
	if (system(cmd) != 0)
		T_FAIL("cannot remove %s", w->dir);
}

static int64_t
run(struct world *w, const char *since, int full)
{
	char err[256];
	int64_t id = 0;

	T_EQ_INT(engine_run(w->e, "A9994", since, full, &id, err,
	    sizeof(err)), 0);
	return id;
}

T_TEST(t_whole_job)
{
	struct world w;
	char path[256], *mark = NULL, buf[256];
	int64_t id;
	FILE *f;
	size_t n;

	world_new(&w);
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("POST " BASE "/auth/token"), 1);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 1);
	T_EQ_INT(fake_count("GET " DATA), 1);
	/* The file, under the transactionTime in UTC. */
	snprintf(path, sizeof(path), "%s/out/A9994/2026-01-02T07:04:05.678Z/"
	    "Patient-1.ndjson", w.dir);
	if ((f = fopen(path, "r")) == NULL) {
		T_FAIL("no %s", path);
	} else {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		T_EQ_STR(buf, LINES);
		fclose(f);
	}
	/* The watermark moved, verbatim, for the profile's scope. */
	T_EQ_INT(store_watermark_get(w.st, "A9994", "v2 group-all default",
	    &mark), 0);
	T_EQ_STR(mark, "2026-01-02T03:04:05.678-04:00");
	free(mark);
	/* The next job starts from it. */
	fake_log_clear();
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export?_since="
	    "2026-01-02T03%3A04%3A05.678-04%3A00"), 1);
	world_free(&w);
}

T_TEST(t_cancel_unanswered_kickoff)
{
	struct world w;
	char err[256];
	int64_t id;

	world_new(&w);
	hold_kickoff = 1;
	id = run(&w, NULL, 0);
	run_for(&w, id, JOB_POLL, 500);		/* never: the kickoff hangs */
	T_EQ_INT(fake_held, 1);
	T_EQ_INT(engine_cancel(w.e, id, err, sizeof(err)), 0);
	T_EQ_INT(fake_held, 0);			/* the kickoff was cancelled */
	T_EQ_INT(run_until(&w, id, JOB_CANCELLED), JOB_CANCELLED);
	/* BCDA had started the job: found in /jobs and deleted. */
	T_EQ_INT(fake_count("GET " BASE "/api/v2/jobs?"), 1);
	T_EQ_INT(fake_count("DELETE " STATUS), 1);
	world_free(&w);
}

T_TEST(t_shutdown_with_download_in_flight)
{
	struct world w;
	int64_t id;

	world_new(&w);
	hold_data = 1;
	id = run(&w, NULL, 0);
	run_for(&w, id, JOB_S3_PUT, 500);	/* never: the download hangs */
	T_EQ_INT(fake_held, 1);
	T_EQ_INT(engine_active_downloads(w.e), 1);
	/* world_free: engine_stop cancels it and the loop runs dry. */
	world_free(&w);
	T_EQ_INT(fake_held, 0);
}

T_TEST(t_since_override_and_full)
{
	struct world w;
	int64_t id;

	world_new(&w);
	id = run(&w, "2025-05-05T05:05:05Z", 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export?_since="
	    "2025-05-05T05%3A05%3A05Z"), 1);
	id = run(&w, NULL, 1);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	/* Two kickoffs, only the first with a _since. */
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 2);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export?"), 1);
	world_free(&w);
}

/* Runs SQL on the engine's database through a connection of our own. */
static void
sql(struct world *w, const char *fmt, ...)
{
	char path[128], *q, *err = NULL;
	sqlite3 *db;
	va_list ap;

	va_start(ap, fmt);
	q = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/bcdad.db", w->dir);
	if (sqlite3_open(path, &db) != SQLITE_OK || q == NULL ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
		T_FAIL("%s: %s", q ? q : "?", err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	sqlite3_free(q);
	sqlite3_close(db);
}

/*
 * Makes the store refuse updates of table on WHEN when, until the test
 * empties the inject table; then runs a new job for ms, in which it must
 * not get past state stays.  Returns the job's id.
 */
static int64_t
run_refused(struct world *w, const char *on, const char *when,
    enum job_state stays, uint64_t ms)
{
	int64_t id;

	sql(w, "CREATE TABLE inject (x); INSERT INTO inject VALUES (1); "
	    "CREATE TRIGGER refuse BEFORE UPDATE ON %s WHEN (%s) AND EXISTS "
	    "(SELECT 1 FROM inject) BEGIN SELECT RAISE(ABORT, 'injected'); "
	    "END", on, when);
	id = run(w, NULL, 0);
	T_EQ_INT(run_for(w, id, (enum job_state)(stays + 1), ms), stays);
	return id;
}

/* The first integer of the first row of query sql on the test's database. */
static int64_t
query_int(struct world *w, const char *sql)
{
	char path[128];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	snprintf(path, sizeof(path), "%s/bcdad.db", w->dir);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		T_FAIL("%s: %s", sql, sqlite3_errmsg(db));
	else if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* How many history rows of job id enter state to. */
static int
history_count(struct world *w, int64_t id, enum job_state to)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM job_history WHERE "
	    "job_id = %lld AND to_state = %d", (long long)id, (int)to);
	return (int)query_int(w, sql);
}

/*
 * The KICKOFF -> POLL write fails: the transition is held and written
 * again, and the kickoff is not sent a second time.
 */
T_TEST(t_failed_transition_is_written_again_not_redone)
{
	struct world w;
	int64_t id;

	world_new(&w);
	T_EQ_INT(JOB_POLL, 3);
	/* Two seconds: retried at least once (retry_min 1 s), in vain. */
	id = run_refused(&w, "jobs", "NEW.state = 3 AND OLD.state <> 3",
	    JOB_KICKOFF, 2000);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 1);
	sql(&w, "DELETE FROM inject");
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 1);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/jobs?"), 0);
	T_EQ_INT(history_count(&w, id, JOB_POLL), 1);
	world_free(&w);
}

/*
 * The write of a downloaded file fails, and with it the DOWNLOAD -> S3_PUT
 * transition that must include it: nothing moves until the store takes
 * the writes, and the file is fetched once.
 */
T_TEST(t_failed_file_write_is_written_again_not_refetched)
{
	struct world w;
	int64_t id;

	world_new(&w);
	id = run_refused(&w, "files", "NEW.state <> OLD.state", JOB_DOWNLOAD,
	    2500);
	T_EQ_INT(fake_count("GET " DATA), 1);
	sql(&w, "DELETE FROM inject");
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 1);
	T_EQ_INT(history_count(&w, id, JOB_S3_PUT), 1);
	world_free(&w);
}

/*
 * Someone else moved the job in the database while its transition was
 * held: the compare-and-set fails, and the engine reloads the job and
 * follows the stored state instead of overwriting it.
 */
T_TEST(t_stale_job_is_reloaded)
{
	struct world w;
	int64_t id;

	world_new(&w);
	id = run_refused(&w, "jobs", "NEW.state = 3 AND OLD.state <> 3",
	    JOB_KICKOFF, 1200);
	sql(&w, "UPDATE jobs SET state = %d WHERE id = %lld; DELETE FROM "
	    "inject", (int)JOB_FAILED, (long long)id);
	run_for(&w, id, JOB_POLL, 3000);
	T_EQ_INT(engine_active_jobs(w.e), 0);
	T_EQ_INT(run_for(&w, id, JOB_FAILED, 100), JOB_FAILED);
	T_EQ_INT(fake_count("GET " STATUS), 0);
	world_free(&w);
}

/*
 * BCDA's v1/v2 transactionTime is BFD's last data load, the same for
 * every export until the next: each export still gets a directory of its
 * own, and fetches its own files instead of reading back another's.  A
 * directory holding no file (a crash before its job recorded it) is
 * taken; one holding any file is not.
 */
T_TEST(t_exports_of_one_transaction_time_keep_apart)
{
	struct world w;
	char path[256];
	FILE *f;
	int64_t id;

	world_new(&w);
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	id = run(&w, NULL, 1);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 2);
	T_EQ_INT(query_int(&w, "SELECT count(DISTINCT out_dir) FROM jobs"), 2);
	T_EQ_INT(query_int(&w, "SELECT out_dir LIKE '%/2026-01-02T07:04:05"
	    ".678Z.2' FROM jobs WHERE id = 2"), 1);
	snprintf(path, sizeof(path), "%s/out/A9994/2026-01-02T07:04:05.678Z.3"
	    "/errors", w.dir);
	T_EQ_INT(fs_mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/out/A9994/2026-01-02T07:04:05.678Z.4"
	    "/errors", w.dir);
	T_EQ_INT(fs_mkdir_p(path, 0700), 0);
	strcat(path, "/OperationOutcome-1.ndjson");
	T_ASSERT((f = fopen(path, "w")) != NULL);
	T_EQ_INT(fclose(f), 0);
	id = run(&w, NULL, 1);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	id = run(&w, NULL, 1);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 4);
	T_EQ_INT(query_int(&w, "SELECT out_dir LIKE '%.3' FROM jobs WHERE "
	    "id = 3"), 1);
	T_EQ_INT(query_int(&w, "SELECT out_dir LIKE '%.5' FROM jobs WHERE "
	    "id = 4"), 1);
	world_free(&w);
}

/*
 * The kickoff was sent, and bcdad went down before its answer.  BCDA was
 * still working on it: its job is not listed at first.  Within the grace
 * after the kickoff, bcdad looks again instead of kicking off again; past
 * it, it kicks off anew.
 */
/* A new world whose job's kickoff was sent and never answered. */
static int64_t
kickoff_unanswered(struct world *w)
{
	int64_t id;

	world_new(w);
	hold_kickoff = 1;
	id = run(w, NULL, 0);
	run_for(w, id, JOB_POLL, 300);
	T_EQ_INT(fake_held, 1);
	hold_kickoff = 0;
	return id;
}

static void
lost_kickoff(long sent_ago, int kickoffs, int lists)
{
	struct world w;
	int64_t id;

	id = kickoff_unanswered(&w);
	list_empty = 2;
	sql(&w, "UPDATE jobs SET kickoff_sent = %lld WHERE id = %lld",
	    (long long)time(NULL) - sent_ago, (long long)id);
	world_restart(&w);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"),
	    kickoffs);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/jobs?"), lists);
	world_free(&w);
}

/* Sent 10 s before: looked for twice more, found, never sent again. */
T_TEST(t_lost_kickoff_is_looked_for_not_repeated)
{
	lost_kickoff(10, 1, 3);
}

/* Sent 1000 s before, past the grace: one look, then a new kickoff. */
T_TEST(t_lost_kickoff_past_its_grace_is_sent_again)
{
	lost_kickoff(1000, 2, 1);
}

/*
 * A file answers 404 long before the export's expiry: the job's status is
 * asked, says BCDA expired the job, and a new export starts at once
 * instead of the file being tried 40 times.
 */
T_TEST(t_file_404_rechecks_the_job)
{
	struct world w;
	int64_t id;

	world_new(&w);
	early_404 = 1;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 2);
	T_EQ_INT(fake_count("GET " DATA), 2);
	T_EQ_INT(history_count(&w, id, JOB_KICKOFF), 2);
	world_free(&w);
}

/*
 * A download that finds no descriptor for its socket (EMFILE: curl says
 * only "Couldn't connect") waits and says so, spending none of the
 * file's attempts, and the job completes once descriptors are back.
 */
T_TEST(t_out_of_descriptors)
{
	struct world w;
	struct job_row row;
	int64_t id;

	world_new(&w);
	no_socket = 2;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	while (no_socket > 0 && run_for(&w, id, JOB_DONE, 50) != JOB_DONE)
		;
	T_EQ_INT(store_job_get(w.st, id, &row), 0);
	T_ASSERT(row.last_error != NULL &&
	    strstr(row.last_error, "waiting for file descriptors") != NULL);
	job_row_clear(&row);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 3);
	T_EQ_INT(query_int(&w, "SELECT max(attempts) FROM files"), 0);
	world_free(&w);
}

/*
 * The clock goes back a day after a kickoff whose answer was lost: the
 * grace for finding BCDA's job counts from now, not from a send time in
 * the future, so the job neither waits a day nor misses its BCDA job.
 */
T_TEST(t_clock_back_during_the_kickoff_grace)
{
	struct world w;
	struct job_row row;
	long long ago = -1, in = -1;
	int64_t id;

	id = kickoff_unanswered(&w);
	list_empty = 1000;		/* BCDA never got it */
	clock_jump = -86400;
	world_restart(&w);
	run_for(&w, id, JOB_POLL, 300);
	T_EQ_INT(store_job_get(w.st, id, &row), 0);
	T_ASSERT(row.last_error != NULL && sscanf(row.last_error,
	    "waiting: the BCDA job of the kickoff sent %lld s ago may still "
	    "appear; a new kickoff in %lld s", &ago, &in) == 2);
	T_ASSERT(ago >= 0 && in > 0 && in <= 150);
	job_row_clear(&row);
	/* BCDA lists the job at last, started before the jump: it is ours. */
	list_empty = 0;
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 1);
	world_free(&w);
}

/*
 * The clock jumps two days ahead, then a day back, mid-export: no expiry
 * is imagined, no second kickoff is sent, and the job completes.
 */
T_TEST(t_clock_jumps_mid_export)
{
	struct world w;
	int64_t id;

	world_new(&w);
	hold_data = 1;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	clock_jump = 2 * 86400;
	run_for(&w, id, JOB_DONE, 300);
	clock_jump = -86400;
	hold_data = 0;
	world_restart(&w);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " BASE "/api/v2/Group/all/$export"), 1);
	world_free(&w);
}

/* Writes text under the job's final name for the data file. */
static void
put_final(struct world *w, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/out/A9994/2026-01-02T07:04:05.678Z/"
	    "Patient-1.ndjson", w->dir);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) != 0)
		T_FAIL("cannot write %s", path);
}

static int
tally_copy(const struct tally_row *t, void *arg)
{
	*(struct tally_row *)arg = *t;
	return 0;
}

static int
count_row(struct job_row *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
	return 0;
}

/*
 * Status reads memory, not the store: a row changed behind the engine's
 * back does not show, while what the engine wrote does, tallies included;
 * a restart loads memory from the store.
 */
T_TEST(t_status_is_read_from_memory)
{
	struct world w;
	struct job_row row;
	struct tally_row t = { 0 };
	struct job_page pg = { NULL, 0, 50 };
	int64_t id;
	int n = 0;

	world_new(&w);
	hold_data = 1;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	/* The manifest's file counts at once, before it is fetched. */
	T_EQ_INT(engine_tallies(w.e, id, id, tally_copy, &t), 0);
	T_EQ_INT(t.total, 1);
	T_EQ_INT(t.done, 0);
	world_restart(&w);
	hold_data = 0;
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	sql(&w, "UPDATE jobs SET last_error = 'written elsewhere'");
	T_EQ_INT(engine_job(w.e, id, &row), 0);
	T_EQ_INT(row.state, JOB_DONE);
	T_ASSERT(row.last_error == NULL);
	job_row_clear(&row);
	T_EQ_INT(engine_tallies(w.e, id, id, tally_copy, &t), 0);
	T_EQ_INT(t.total, 1);
	T_EQ_INT(t.done, 1);
	T_EQ_INT(t.bytes, strlen(LINES));
	T_EQ_INT(t.lines, 2);
	T_EQ_INT(engine_jobs(w.e, &pg, count_row, &n), 0);
	T_EQ_INT(n, 1);
	T_EQ_INT(engine_job(w.e, id + 1, &row), -ENOENT);
	/* A new job shows at once, before its first step. */
	id = run(&w, NULL, 0);
	T_EQ_INT(engine_job(w.e, id, &row), 0);
	T_EQ_INT(row.state, JOB_NEW);
	job_row_clear(&row);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	world_restart(&w);
	T_EQ_INT(engine_job(w.e, id - 1, &row), 0);
	T_EQ_STR(row.last_error, "written elsewhere");
	job_row_clear(&row);
	world_free(&w);
}

/* The job's row as the store holds it. */
static struct job_row
stored(struct world *w, int64_t id)
{
	struct job_row row;

	T_EQ_INT(store_job_get(w->st, id, &row), 0);
	return row;
}

/*
 * BCDA's status handler has no timeout: a BCDA job that answers 202 at the
 * same progress for bcda_job_timeout is given up, and the job fails saying
 * so.  The time counts between polls, each gap for at most twice poll_max:
 * a day's jump of the clock gives nothing up.  Progress that moves starts
 * the count again; the count is saved, so a restart keeps it; a retry
 * starts it again.
 */
T_TEST(t_a_bcda_job_that_never_moves_is_given_up)
{
	struct world w;
	struct job_row row;
	char err[256];
	int64_t id, stall;
	int i;

	world_daemon = "bcda_job_timeout = 8\n";
	world_new(&w);
	world_daemon = NULL;
	progress = "In Progress (10%)";
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_POLL), JOB_POLL);
	T_EQ_INT(run_for(&w, id, JOB_FAILED, 1500), JOB_POLL);
	T_ASSERT(fake_count("GET " STATUS) >= 1);
	clock_jump = 86400;	/* counts for 2 s at most (poll_max = 1) */
	T_EQ_INT(run_for(&w, id, JOB_FAILED, 1500), JOB_POLL);
	progress = "In Progress (20%)";
	for (i = 0; i < 50; i++) {
		row = stored(&w, id);
		stall = row.progress == 20 ? row.progress_stalled : -1;
		job_row_clear(&row);
		if (stall >= 0)
			break;
		T_EQ_INT(run_for(&w, id, JOB_FAILED, 100), JOB_POLL);
	}
	T_EQ_INT(stall, 0);
	T_EQ_INT(run_for(&w, id, JOB_FAILED, 2500), JOB_POLL);
	row = stored(&w, id);
	stall = row.progress_stalled;
	job_row_clear(&row);
	T_ASSERT(stall >= 1 && stall < 8);
	world_restart(&w);
	T_EQ_INT(engine_job(w.e, id, &row), 0);
	T_EQ_INT(row.progress_stalled, stall);
	job_row_clear(&row);
	T_EQ_INT(run_until(&w, id, JOB_FAILED), JOB_FAILED);
	row = stored(&w, id);
	T_ASSERT(row.last_error != NULL && strstr(row.last_error,
	    "has not moved (at 20%) for 1 min") != NULL);
	T_ASSERT(row.progress_stalled >= 8);
	job_row_clear(&row);
	/* Retried, it polls the same BCDA job for a whole timeout again. */
	T_EQ_INT(engine_retry(w.e, id, err, sizeof(err)), 0);
	T_EQ_INT(run_for(&w, id, JOB_FAILED, 1500), JOB_POLL);
	progress = NULL;
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	world_free(&w);
}

/* Job id's last_error as engine_job reads it ("" when none), or "ENOENT". */
static const char *
job_error(struct world *w, int64_t id)
{
	static char buf[128];
	struct job_row row;
	int rc;

	if ((rc = engine_job(w->e, id, &row)) == -ENOENT)
		return "ENOENT";
	T_EQ_INT(rc, 0);
	snprintf(buf, sizeof(buf), "%s", row.last_error ? row.last_error : "");
	job_row_clear(&row);
	return buf;
}

/* Collects a page's ids and whether each came with the store's error. */
struct page_seen {
	int64_t	 ids[64];
	int	 n, from_store;
};

static int
page_row(struct job_row *r, void *arg)
{
	struct page_seen *ps = arg;

	if (ps->n < 64)
		ps->ids[ps->n] = r->id;
	ps->n++;
	ps->from_store += r->last_error != NULL;
	return 0;
}

/*
 * Memory holds the newest 10,000 jobs; past them the store answers: a job
 * older than any held, a page reaching past the oldest held, the tallies
 * of old jobs.  A new job pushes the oldest out.  Every row is changed
 * behind the engine's back after it loads, so where each answer came from
 * shows.
 */
T_TEST(t_status_past_the_jobs_held_reads_the_store)
{
	struct world w;
	struct tally_row t = { 0 };
	struct job_page pg = { NULL, 0, 50 };
	struct page_seen ps = { { 0 }, 0, 0 };
	int64_t id;
	int i;

	world_new(&w);
	sql(&w, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
	    "FROM n WHERE i < 10005) INSERT INTO jobs (id, profile, state, "
	    "created_at, updated_at) SELECT i, 'A9994', %d, i, i FROM n; "
	    "INSERT INTO files (job_id, kind, type, url, seq, name, state, "
	    "lines, bytes) VALUES (1, %d, 'Patient', 'u', 1, 'n', %d, 3, 30), "
	    "(10005, %d, 'Patient', 'u', 1, 'n', %d, 4, 40)", JOB_DONE,
	    FILE_OUTPUT, FILE_DONE, FILE_OUTPUT, FILE_DONE);
	world_restart(&w);
	sql(&w, "UPDATE jobs SET last_error = 'from the store'");
	/* Held: jobs 6 to 10005. */
	T_EQ_STR(job_error(&w, 10005), "");
	T_EQ_STR(job_error(&w, 6), "");
	T_EQ_STR(job_error(&w, 5), "from the store");
	T_EQ_STR(job_error(&w, 10006), "ENOENT");
	T_EQ_INT(engine_jobs(w.e, &pg, page_row, &ps), 0);
	T_EQ_INT(ps.n, 50);
	T_EQ_INT(ps.ids[0], 10005);
	T_EQ_INT(ps.ids[49], 9956);
	T_EQ_INT(ps.from_store, 0);
	/* Before job 10, ten rows: only 4 are held, so the store answers all. */
	memset(&ps, 0, sizeof(ps));
	pg.before = 10;
	pg.limit = 10;
	T_EQ_INT(engine_jobs(w.e, &pg, page_row, &ps), 0);
	T_EQ_INT(ps.n, 9);
	for (i = 0; i < ps.n; i++)
		T_EQ_INT(ps.ids[i], 9 - i);
	T_EQ_INT(ps.from_store, 9);
	T_EQ_INT(engine_tallies(w.e, 1, 1, tally_copy, &t), 0);
	T_EQ_INT(t.job_id, 1);
	T_EQ_INT(t.done, 1);
	T_EQ_INT(t.bytes, 30);
	memset(&t, 0, sizeof(t));
	T_EQ_INT(engine_tallies(w.e, 10005, 10005, tally_copy, &t), 0);
	T_EQ_INT(t.lines, 4);
	/* A new job: job 6 leaves memory, job 7 stays. */
	id = run(&w, NULL, 0);
	T_EQ_INT(id, 10006);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_STR(job_error(&w, 10006), "");
	T_EQ_STR(job_error(&w, 7), "");
	T_EQ_STR(job_error(&w, 6), "from the store");
	world_free(&w);
}

/*
 * A job in DOWNLOAD whose one file request hangs; then text appears under
 * the file's final name, as if renamed there just before a crash, and the
 * engine restarts with data requests held (hold) or answered.
 */
static int64_t
crash_after_rename(struct world *w, const char *text, int hold)
{
	int64_t id;

	world_new(w);
	hold_data = 1;
	id = run(w, NULL, 0);
	T_EQ_INT(run_until(w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	run_for(w, id, JOB_DONE, 200);
	T_EQ_INT(fake_count("GET " DATA), 1);
	put_final(w, text);
	hold_data = hold;
	world_restart(w);
	return id;
}

/*
 * A crash after a file's rename and before its record: the restarted
 * engine reads the file back (lines, bytes, SHA-256) instead of fetching
 * it again.  One that does not pass is removed and fetched.
 */
T_TEST(t_renamed_file_is_read_back_not_refetched)
{
	struct world w;
	int64_t id;

	/* Data requests still hang: only reading back can finish the job. */
	id = crash_after_rename(&w, LINES, 1);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 1);
	T_EQ_INT(query_int(&w, "SELECT lines FROM files"), 2);
	T_EQ_INT(query_int(&w, "SELECT bytes FROM files"), strlen(LINES));
	T_EQ_INT(query_int(&w, "SELECT sha256 = '7f1637374955905f3808366ac414"
	    "811b251c8d8d6b83b82a18d9d853fe9110d3' FROM files"), 1);
	world_free(&w);

	/* Cut short: removed, and fetched. */
	id = crash_after_rename(&w, "{\"resourceType\":\"Patient\",\"id\":", 0);
	T_EQ_INT(run_until(&w, id, JOB_DONE), JOB_DONE);
	T_EQ_INT(fake_count("GET " DATA), 2);
	T_EQ_INT(query_int(&w, "SELECT lines FROM files"), 2);
	world_free(&w);
}

/* Two files of one type, the second held while the test says so. */
#define DATA2	BASE "/data/42/b.ndjson"
#define MANIFEST2 "{\"transactionTime\":\"2026-01-02T03:04:05.678-04:00\"," \
	"\"request\":\"" BASE "/api/v2/Group/all/$export\"," \
	"\"requiresAccessToken\":true,\"output\":[{\"type\":\"Patient\"," \
	"\"url\":\"" DATA "\"},{\"type\":\"Patient\",\"url\":\"" DATA2 \
	"\"}],\"error\":[],\"JobID\":42}"

static int
bcda_two_files(const char *method, const char *url, struct fake_answer *a)
{
	if (strcmp(url, STATUS) == 0 && strcmp(method, "GET") == 0) {
		a->status = 200;
		a->body = MANIFEST2;
		return 1;
	}
	if (strcmp(url, DATA2) == 0)
		return 0;
	return bcda(method, url, a);
}

/*
 * Someone else writes the job while two files are read back on the
 * thread pool (renamed before a crash, unrecorded): the small one's
 * record finds the job stale, and the reload waits for the large one's
 * read-back, which still points into the job's files, instead of
 * freeing them under it.
 */
T_TEST(t_stale_job_waits_for_its_commits)
{
	struct world w;
	char path[300];
	int64_t id;
	FILE *f;
	long i;

	world_new(&w);
	fake_answer = bcda_two_files;
	hold_data = 1;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	run_for(&w, id, JOB_DONE, 200);
	put_final(&w, LINES);
	snprintf(path, sizeof(path), "%s/out/A9994/2026-01-02T07:04:05.678Z/"
	    "Patient-2.ndjson", w.dir);
	T_ASSERT((f = fopen(path, "w")) != NULL);
	for (i = 0; i < 400000; i++)
		fprintf(f, "{\"resourceType\":\"Patient\",\"id\":\"%ld\"}\n", i);
	T_EQ_INT(fclose(f), 0);
	world_restart(&w);
	fake_answer = bcda_two_files;
	while (engine_active_downloads(w.e) < 2)
		uv_run(&w.loop, UV_RUN_ONCE);
	sql(&w, "UPDATE jobs SET state = %d WHERE id = %lld", (int)JOB_FAILED,
	    (long long)id);
	run_for(&w, id, JOB_NSTATES, 3000);
	T_EQ_INT(engine_active_downloads(w.e), 0);
	T_EQ_INT(engine_active_jobs(w.e), 0);
	T_EQ_INT(query_int(&w, "SELECT state FROM jobs"), JOB_FAILED);
	world_free(&w);
}

/*
 * A cancel while the download's commit (fsync and rename, on the thread
 * pool) is in flight: the job ends CANCELLED once the commit is back,
 * and nothing is left open on the loop.
 */
T_TEST(t_cancel_during_a_commit)
{
	struct world w;
	char err[256];
	int64_t id;

	world_new(&w);
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_DOWNLOAD), JOB_DOWNLOAD);
	while (fake_delivered(DATA) == 0)
		uv_run(&w.loop, UV_RUN_ONCE);
	/* The body is in; its commit was queued in the same callback. */
	T_EQ_INT(engine_active_downloads(w.e), 1);
	T_EQ_INT(engine_cancel(w.e, id, err, sizeof(err)), 0);
	T_EQ_INT(run_until(&w, id, JOB_CANCELLED), JOB_CANCELLED);
	T_EQ_INT(engine_active_downloads(w.e), 0);
	T_EQ_INT(query_int(&w, "SELECT count(*) FROM job_history WHERE "
	    "to_state = 5"), 0);		/* never S3_PUT */
	world_free(&w);
}

/*
 * A cancel while the S3 uploads wait for AWS credentials (the instance
 * metadata service hangs): the job ends CANCELLED, the credential
 * request is dropped, and nothing is left open on the loop.
 */
T_TEST(t_cancel_during_a_credential_wait)
{
	struct world w;
	char err[256];
	int64_t id;

	world_extra = "s3_bucket = bcdad-test\n[aws]\nregion = us-east-1\n";
	world_new(&w);
	world_extra = NULL;
	hold_imds = 1;
	id = run(&w, NULL, 0);
	run_for(&w, id, JOB_IMPORT, 1500);	/* never: no credentials */
	T_ASSERT(fake_held >= 1);
	T_ASSERT(fake_count("PUT http://169.254.169.254/latest/api/token") >=
	    1);
	T_EQ_INT(engine_cancel(w.e, id, err, sizeof(err)), 0);
	T_EQ_INT(run_until(&w, id, JOB_CANCELLED), JOB_CANCELLED);
	T_EQ_INT(engine_active_jobs(w.e), 0);
	world_free(&w);
}

/*
 * No descriptor for longer than retry_budget: the job fails, saying so,
 * instead of waiting for ever.
 */
T_TEST(t_out_of_descriptors_past_the_budget)
{
	struct world w;
	struct job_row row;
	int64_t id;

	world_daemon = "retry_budget = 2\n";
	world_new(&w);
	world_daemon = NULL;
	no_socket = 1000;
	id = run(&w, NULL, 0);
	T_EQ_INT(run_until(&w, id, JOB_FAILED), JOB_FAILED);
	T_EQ_INT(store_job_get(w.st, id, &row), 0);
	T_ASSERT(row.last_error != NULL && strstr(row.last_error,
	    "out of file descriptors for 2 s, the retry_budget") != NULL);
	job_row_clear(&row);
	T_EQ_INT(query_int(&w, "SELECT max(attempts) FROM files"), 0);
	world_free(&w);
}

T_MAIN("engine",
    T_CASE(t_whole_job),
    T_CASE(t_cancel_unanswered_kickoff),
    T_CASE(t_shutdown_with_download_in_flight),
    T_CASE(t_since_override_and_full),
    T_CASE(t_exports_of_one_transaction_time_keep_apart),
    T_CASE(t_failed_transition_is_written_again_not_redone),
    T_CASE(t_failed_file_write_is_written_again_not_refetched),
    T_CASE(t_stale_job_is_reloaded),
    T_CASE(t_lost_kickoff_is_looked_for_not_repeated),
    T_CASE(t_lost_kickoff_past_its_grace_is_sent_again),
    T_CASE(t_file_404_rechecks_the_job),
    T_CASE(t_out_of_descriptors),
    T_CASE(t_out_of_descriptors_past_the_budget),
    T_CASE(t_clock_back_during_the_kickoff_grace),
    T_CASE(t_clock_jumps_mid_export),
    T_CASE(t_renamed_file_is_read_back_not_refetched),
    T_CASE(t_status_is_read_from_memory),
    T_CASE(t_status_past_the_jobs_held_reads_the_store),
    T_CASE(t_a_bcda_job_that_never_moves_is_given_up),
    T_CASE(t_cancel_during_a_commit),
    T_CASE(t_stale_job_waits_for_its_commits),
    T_CASE(t_cancel_during_a_credential_wait))
