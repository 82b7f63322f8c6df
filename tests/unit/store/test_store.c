/*
 * Tests of the state store (lib/store/store.c): migrations from every older
 * schema version, refusal of a newer one, rollback of a failed migration,
 * every function's round trip, transactions and savepoints, and what a
 * kill -9 leaves behind.  Each test works in its own mkdtemp directory and
 * checks the database with a separate, raw SQLite connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "t.h"
#include "store/job.h"
#include "util/log.h"
#include "store/store.h"

struct tdir {
	char	dir[64];
	char	db[128];
};

static void
tdir_new(struct tdir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/test_store.XXXXXX");
	if (mkdtemp(d->dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(d->db, sizeof(d->db), "%s/state.db", d->dir);
}

static void
tdir_free(struct tdir *d)
{
	static const char *const suffixes[] = { "", "-wal", "-shm",
	    "-journal" };
	char p[160];
	size_t i;

	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", d->db, suffixes[i]);
		unlink(p);
	}
	rmdir(d->dir);
}

static int
file_exists(const char *db, const char *suffix)
{
	char p[160];

	snprintf(p, sizeof(p), "%s%s", db, suffix);
	return access(p, F_OK) == 0;
}

/* Runs sql on a raw connection; returns the SQLite result code. */
static int
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	int rc;

	if (sqlite3_open(path, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return SQLITE_CANTOPEN;
	}
	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_exec: %s: %s\n", sql, msg);
	sqlite3_free(msg);
	sqlite3_close(db);
	return rc;
}

/* The first column of the first row of sql, as text ("" if no row). */
static void
raw_text(const char *path, const char *sql, char *buf, size_t len)
{
	sqlite3 *db;
	sqlite3_stmt *stmt;

	snprintf(buf, len, "%s", "");
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(db);
		snprintf(buf, len, "%s", "(cannot open)");
		return;
	}
	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		snprintf(buf, len, "(error: %s)", sqlite3_errmsg(db));
		sqlite3_close(db);
		return;
	}
	if (sqlite3_step(stmt) == SQLITE_ROW &&
	    sqlite3_column_text(stmt, 0) != NULL)
		snprintf(buf, len, "%s", sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

static long long
raw_int(const char *path, const char *sql)
{
	char buf[64];

	raw_text(path, sql, buf, sizeof(buf));
	return strtoll(buf, NULL, 10);
}

static void
check_integrity(const char *path)
{
	char buf[256];

	raw_text(path, "PRAGMA integrity_check", buf, sizeof(buf));
	T_EQ_STR(buf, "ok");
	raw_text(path, "PRAGMA foreign_key_check", buf, sizeof(buf));
	T_EQ_STR(buf, "");
}

static struct store *
open_ok(const char *path, int target)
{
	struct store *st = NULL;
	char err[512];
	int rc;

	rc = store_open(path, target, &st, err, sizeof(err));
	if (rc != 0)
		T_FAIL("store_open(%s, %d): %d: %s", path, target, rc, err);
	return st;
}

/* A job with every field set, strings included. */
static void
job_full(struct job_row *j, const char *profile)
{
	memset(j, 0, sizeof(*j));
	j->profile = strdup(profile);
	j->since = strdup("2024-01-02T03:04:05.678+00:00");
	j->kickoff_url = strdup("https://sandbox.bcda.cms.gov/api/v2/Group/"
	    "all/$export?_type=Patient,Coverage");
	j->kickoff_sent = 1;
	j->kickoffs = 2;
	j->status_url = strdup("https://sandbox.bcda.cms.gov/api/v2/jobs/42");
	j->progress = 57;
	j->transaction_time = strdup("2024-02-03T04:05:06.789Z");
	j->completed_at = 1700000500;
	j->out_dir = strdup("/var/lib/bcdad/exports/A9994/1");
	/* Quotes and SQL in text must go through bind, not formatting. */
	j->last_error = strdup("O'Brien \"x\"; DROP TABLE jobs; --");
	j->err_counts[0] = 1;
	j->err_counts[1] = 20;
	j->err_counts[2] = 300;
	j->err_counts[3] = 4000000000LL;
	j->cancel_requested = 1700000900;
}

/* A job with only what NOT NULL requires. */
static void
job_min(struct job_row *j, const char *profile)
{
	memset(j, 0, sizeof(*j));
	j->profile = strdup(profile);
	j->progress = -1;
}

static void
file_new(struct file_row *f, int64_t job, enum file_kind kind,
    const char *type, int seq)
{
	char buf[256];

	memset(f, 0, sizeof(*f));
	f->job_id = job;
	f->kind = kind;
	f->type = strdup(type);
	snprintf(buf, sizeof(buf), "https://bcda.example/data/%d/%s.ndjson",
	    seq, type);
	f->url = strdup(buf);
	f->seq = seq;
	snprintf(buf, sizeof(buf), "%s-%d.ndjson", type, seq);
	f->name = strdup(buf);
}

static void
eq_opt_str(const char *what, const char *a, const char *b)
{
	if (a == NULL && b == NULL)
		return;
	if (a == NULL || b == NULL || strcmp(a, b) != 0)
		T_FAIL("%s: \"%s\" != \"%s\"", what, a ? a : "(null)",
		    b ? b : "(null)");
}

static void
job_eq(const struct job_row *a, const struct job_row *b)
{
	int i;

	T_EQ_INT(a->id, b->id);
	eq_opt_str("profile", a->profile, b->profile);
	T_EQ_INT(a->state, b->state);
	T_EQ_INT(a->created_at, b->created_at);
	T_EQ_INT(a->updated_at, b->updated_at);
	eq_opt_str("since", a->since, b->since);
	eq_opt_str("kickoff_url", a->kickoff_url, b->kickoff_url);
	T_EQ_INT(a->kickoff_sent, b->kickoff_sent);
	T_EQ_INT(a->kickoffs, b->kickoffs);
	eq_opt_str("status_url", a->status_url, b->status_url);
	T_EQ_INT(a->progress, b->progress);
	eq_opt_str("transaction_time", a->transaction_time,
	    b->transaction_time);
	T_EQ_INT(a->completed_at, b->completed_at);
	eq_opt_str("out_dir", a->out_dir, b->out_dir);
	eq_opt_str("last_error", a->last_error, b->last_error);
	for (i = 0; i < 4; i++)
		T_EQ_INT(a->err_counts[i], b->err_counts[i]);
	T_EQ_INT(a->cancel_requested, b->cancel_requested);
}

static void
file_eq(const struct file_row *a, const struct file_row *b)
{
	T_EQ_INT(a->id, b->id);
	T_EQ_INT(a->job_id, b->job_id);
	T_EQ_INT(a->kind, b->kind);
	eq_opt_str("type", a->type, b->type);
	eq_opt_str("url", a->url, b->url);
	T_EQ_INT(a->seq, b->seq);
	eq_opt_str("name", a->name, b->name);
	T_EQ_INT(a->state, b->state);
	T_EQ_INT(a->attempts, b->attempts);
	T_EQ_INT(a->lines, b->lines);
	T_EQ_INT(a->bytes, b->bytes);
	eq_opt_str("sha256", a->sha256, b->sha256);
	eq_opt_str("last_error", a->last_error, b->last_error);
}

/* Collects the ids a job list passes to its callback. */
struct ids {
	int64_t	 id[32];
	int	 n;
	int	 stop_after;	/* return 7 after this many, if > 0 */
	char	*stolen;	/* a profile taken from the row */
};

static int
collect_job(struct job_row *j, void *arg)
{
	struct ids *ids = arg;

	if (ids->n < 32)
		ids->id[ids->n++] = j->id;
	if (ids->stolen == NULL) {
		ids->stolen = j->profile;
		j->profile = NULL;
	}
	if (ids->stop_after > 0 && ids->n == ids->stop_after)
		return 7;
	return 0;
}

/* A page of jobs into ids, emptied first. */
static int
page(struct store *st, const char *profile, int64_t before, int limit,
    struct ids *ids)
{
	struct job_page pg = { profile, before, limit };

	memset(ids, 0, sizeof(*ids));
	return store_jobs_page(st, &pg, collect_job, ids);
}

struct hist {
	int64_t	 at[16];
	int	 from[16];
	int	 to[16];
	char	 reason[16][64];
	int	 n;
};

static int
collect_hist(int64_t at, enum job_state from, enum job_state to,
    const char *reason, void *arg)
{
	struct hist *h = arg;

	if (h->n >= 16)
		return -E2BIG;
	h->at[h->n] = at;
	h->from[h->n] = (int)from;
	h->to[h->n] = (int)to;
	snprintf(h->reason[h->n], sizeof(h->reason[0]), "%s",
	    reason ? reason : "(null)");
	h->n++;
	return 0;
}

struct files {
	struct file_row	 f[16];
	int		 n;
};

static int
collect_file(struct file_row *f, void *arg)
{
	struct files *fs = arg;

	if (fs->n >= 16)
		return -E2BIG;
	/* Take the whole row: the store frees only what is left. */
	fs->f[fs->n++] = *f;
	memset(f, 0, sizeof(*f));
	return 0;
}

static void
files_clear(struct files *fs)
{
	int i;

	for (i = 0; i < fs->n; i++)
		file_row_clear(&fs->f[i]);
	fs->n = 0;
}

T_TEST(t_migration_table)
{
	int i;

	/* First test: the expected failures' warnings only if asked. */
	log_init(getenv("T_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERR, 0);
	T_ASSERT(store_nmigrations >= 2);
	T_EQ_INT(store_latest_version(), store_nmigrations);
	for (i = 0; i < store_nmigrations; i++) {
		const struct store_migration *m = &store_migrations[i];

		/* Contiguous, so "from every older version" is every v. */
		T_EQ_INT(m->version, i + 1);
		/* store.c owns the transaction and the version. */
		if (strcasestr(m->sql, "COMMIT") != NULL ||
		    strcasestr(m->sql, "ROLLBACK") != NULL ||
		    strcasestr(m->sql, "BEGIN TRANSACTION") != NULL ||
		    strcasestr(m->sql, "BEGIN IMMEDIATE") != NULL ||
		    strcasestr(m->sql, "BEGIN EXCLUSIVE") != NULL ||
		    strcasestr(m->sql, "BEGIN DEFERRED") != NULL ||
		    strcasestr(m->sql, "user_version") != NULL)
			T_FAIL("migration %s handles its own transaction or "
			    "version", m->name);
		T_ASSERT(sqlite3_complete(m->sql));
	}
}

/* The assumption migrations rest on, checked on this SQLite. */
T_TEST(t_user_version_is_transactional)
{
	struct tdir d;

	tdir_new(&d);
	T_EQ_INT(raw_exec(d.db, "PRAGMA journal_mode = WAL; "
	    "CREATE TABLE a (x); BEGIN IMMEDIATE; CREATE TABLE b (x); "
	    "PRAGMA user_version = 7; ROLLBACK;"), SQLITE_OK);
	T_EQ_INT(raw_int(d.db, "PRAGMA user_version"), 0);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM sqlite_master "
	    "WHERE name = 'b'"), 0);
	tdir_free(&d);
}

T_TEST(t_fresh_open)
{
	static const char *const tables[] = { "jobs", "files", "job_history",
	    "profile_cursor" };
	struct tdir d;
	struct store *st;
	struct job_row j;
	struct stat sb;
	char buf[160], sql[128];
	size_t i;
	mode_t old;

	old = umask(022);
	tdir_new(&d);
	T_ASSERT(!file_exists(d.db, ""));
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_version(st), store_latest_version());
	T_EQ_INT(raw_int(d.db, "PRAGMA user_version"),
	    store_latest_version());
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master "
		    "WHERE type = 'table' AND name = '%s'", tables[i]);
		T_EQ_INT(raw_int(d.db, sql), 1);
	}
	raw_text(d.db, "PRAGMA journal_mode", buf, sizeof(buf));
	T_EQ_STR(buf, "wal");

	/* A write, so the -wal file exists while the store is open. */
	job_min(&j, "A9994");
	T_EQ_INT(store_job_insert(st, &j, 100), 0);
	job_row_clear(&j);
	T_ASSERT(stat(d.db, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	snprintf(buf, sizeof(buf), "%s-wal", d.db);
	T_ASSERT(stat(buf, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	snprintf(buf, sizeof(buf), "%s-shm", d.db);
	T_ASSERT(stat(buf, &sb) == 0 && (sb.st_mode & 0777) == 0600);

	/* Reopening the newest version changes nothing. */
	store_close(st);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_version(st), store_latest_version());
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
	umask(old);
}

/* Data valid at version v, written without the store's code. */
static void
seed(const char *path, int v)
{
	if (v >= 1) {
		T_EQ_INT(raw_exec(path, "INSERT INTO jobs (id, profile, state, "
		    "created_at, updated_at, status_url, progress) VALUES "
		    "(5, 'A9990', 3, 1000, 1001, 'https://x/jobs/5', 40);"
		    "INSERT INTO job_history (job_id, at, from_state, "
		    "to_state, reason) VALUES (5, 1000, NULL, 0, 'created'), "
		    "(5, 1001, 0, 1, 'token');"
		    "INSERT INTO files (job_id, kind, type, url, seq, name) "
		    "VALUES (5, 0, 'Patient', 'https://x/1', 1, "
		    "'Patient-1.ndjson');"), SQLITE_OK);
	}
	if (v >= 2) {
		T_EQ_INT(raw_exec(path, "INSERT INTO profile_cursor VALUES "
		    "('A9990', '2024-01-01T00:00:00Z', 999);"), SQLITE_OK);
	}
}

static void
seed_check(struct store *st, int v)
{
	struct job_row j;
	struct hist h;
	struct files fs;
	char *cur = NULL;

	if (v >= 1) {
		T_EQ_INT(store_job_get(st, 5, &j), 0);
		eq_opt_str("profile", j.profile, "A9990");
		T_EQ_INT(j.state, JOB_POLL);
		T_EQ_INT(j.progress, 40);
		eq_opt_str("status_url", j.status_url, "https://x/jobs/5");
		T_ASSERT(j.since == NULL && j.out_dir == NULL);
		job_row_clear(&j);
		memset(&h, 0, sizeof(h));
		T_EQ_INT(store_history(st, 5, collect_hist, &h), 0);
		T_EQ_INT(h.n, 2);
		T_EQ_INT(h.from[0], -1);
		T_EQ_INT(h.to[1], JOB_TOKEN);
		memset(&fs, 0, sizeof(fs));
		T_EQ_INT(store_files(st, 5, collect_file, &fs), 0);
		T_EQ_INT(fs.n, 1);
		if (fs.n == 1)
			eq_opt_str("name", fs.f[0].name, "Patient-1.ndjson");
		files_clear(&fs);
	}
	/* A cursor from before version 5 serves any scope of its profile. */
	T_EQ_INT(store_watermark_get(st, "A9990", "v2 group-all", &cur), 0);
	if (v >= 2)
		eq_opt_str("cursor", cur, "2024-01-01T00:00:00Z");
	else
		T_ASSERT(cur == NULL);
	free(cur);
}

T_TEST(t_migrate_from_every_version)
{
	struct tdir d;
	struct store *st;
	int v, fd;

	for (v = 0; v < store_latest_version(); v++) {
		tdir_new(&d);
		if (v == 0) {
			/* An empty file is a database at version 0. */
			fd = open(d.db, O_CREAT | O_WRONLY, 0600);
			T_ASSERT(fd != -1);
			close(fd);
		} else {
			if ((st = open_ok(d.db, v)) == NULL)
				goto next;
			T_EQ_INT(store_version(st), v);
			store_close(st);
		}
		T_EQ_INT(raw_int(d.db, "PRAGMA user_version"), v);
		seed(d.db, v);
		if ((st = open_ok(d.db, 0)) == NULL)
			goto next;
		T_EQ_INT(store_version(st), store_latest_version());
		seed_check(st, v);
		store_close(st);
		T_EQ_INT(raw_int(d.db, "PRAGMA user_version"),
		    store_latest_version());
		check_integrity(d.db);
next:
		tdir_free(&d);
	}
}

static int
read_file(const char *path, char *buf, size_t len, size_t *n)
{
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		return -1;
	*n = fread(buf, 1, len, f);
	fclose(f);
	return 0;
}

T_TEST(t_refuse_newer)
{
	static char before[65536], after[65536];
	struct tdir d;
	struct store *st = (struct store *)&st;
	char sql[128], err[512], want[64];
	size_t nb = 0, na = 0;
	int rc;

	tdir_new(&d);
	snprintf(sql, sizeof(sql), "CREATE TABLE future (x); "
	    "PRAGMA user_version = %d;", store_latest_version() + 1);
	T_EQ_INT(raw_exec(d.db, sql), SQLITE_OK);
	T_ASSERT(read_file(d.db, before, sizeof(before), &nb) == 0);

	rc = store_open(d.db, 0, &st, err, sizeof(err));
	T_EQ_INT(rc, -EPROTO);
	T_ASSERT(st == NULL);
	snprintf(want, sizeof(want), "schema version %d, newer than this "
	    "bcdad (%d)", store_latest_version() + 1, store_latest_version());
	if (strstr(err, want) == NULL || strstr(err, d.db) == NULL ||
	    strstr(err, "upgrade bcdad") == NULL)
		T_FAIL("unclear refusal: %s", err);

	T_ASSERT(read_file(d.db, after, sizeof(after), &na) == 0);
	T_EQ_INT(na, nb);
	T_ASSERT(memcmp(before, after, nb) == 0);
	T_ASSERT(!file_exists(d.db, "-wal"));
	T_EQ_INT(raw_int(d.db, "PRAGMA user_version"),
	    store_latest_version() + 1);
	tdir_free(&d);
}

T_TEST(t_refuse_bad_target)
{
	struct tdir d;
	struct store *st;
	char err[512];

	tdir_new(&d);
	T_EQ_INT(store_open(d.db, store_latest_version() + 1, &st, err,
	    sizeof(err)), -EINVAL);
	T_EQ_INT(store_open(d.db, -1, &st, err, sizeof(err)), -EINVAL);
	if ((st = open_ok(d.db, 0)) != NULL)
		store_close(st);
	/* Never downgraded. */
	T_EQ_INT(store_open(d.db, 1, &st, err, sizeof(err)), -EPROTO);
	T_ASSERT(st == NULL);
	T_ASSERT(strstr(err, "never downgraded") != NULL);
	T_EQ_INT(raw_int(d.db, "PRAGMA user_version"),
	    store_latest_version());
	tdir_free(&d);
}

T_TEST(t_not_a_database)
{
	struct tdir d;
	struct store *st;
	char err[512];
	FILE *f;

	tdir_new(&d);
	f = fopen(d.db, "w");
	T_ASSERT(f != NULL);
	if (f != NULL) {
		fputs("this is not an SQLite database, but it is long enough "
		    "to have a header that SQLite reads and rejects......\n",
		    f);
		fclose(f);
	}
	T_EQ_INT(store_open(d.db, 0, &st, err, sizeof(err)), -EIO);
	T_ASSERT(st == NULL);
	T_ASSERT(strstr(err, d.db) != NULL);
	tdir_free(&d);
}

/*
 * Migration 2 creates an index, then a table.  With that table already
 * there, the second statement fails: the index, the version and the data
 * must all be as before, and the message must name the migration.
 */
T_TEST(t_failed_migration_rolls_back)
{
	struct tdir d;
	struct store *st;
	char err[512];
	int rc;

	tdir_new(&d);
	if ((st = open_ok(d.db, 1)) == NULL)
		goto out;
	store_close(st);
	seed(d.db, 1);
	T_EQ_INT(raw_exec(d.db, "CREATE TABLE profile_cursor (x);"),
	    SQLITE_OK);

	rc = store_open(d.db, 0, &st, err, sizeof(err));
	T_ASSERT(rc < 0);
	T_ASSERT(st == NULL);
	if (strstr(err, "migration 002-cursor failed") == NULL ||
	    strstr(err, "already exists") == NULL ||
	    strstr(err, "left at schema version 1") == NULL)
		T_FAIL("unclear migration failure: %s", err);
	T_EQ_INT(raw_int(d.db, "PRAGMA user_version"), 1);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM sqlite_master "
	    "WHERE name = 'job_history_job'"), 0);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs"), 1);
	check_integrity(d.db);

	/* Once the obstacle is gone the same migration applies. */
	T_EQ_INT(raw_exec(d.db, "DROP TABLE profile_cursor;"), SQLITE_OK);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_version(st), store_latest_version());
	seed_check(st, 1);
	store_close(st);
out:
	tdir_free(&d);
}

T_TEST(t_job_roundtrip)
{
	struct tdir d;
	struct store *st;
	struct job_row j, got, m;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	job_full(&j, "A9994");
	j.state = JOB_DOWNLOAD;		/* ignored: a job starts NEW */
	T_EQ_INT(store_job_insert(st, &j, 1700000000), 0);
	T_ASSERT(j.id > 0);
	T_EQ_INT(j.state, JOB_NEW);
	T_EQ_INT(j.created_at, 1700000000);
	T_EQ_INT(j.updated_at, 1700000000);
	T_EQ_INT(store_job_get(st, j.id, &got), 0);
	job_eq(&got, &j);
	job_row_clear(&got);

	/* Every nullable string stays NULL. */
	job_min(&m, "A9995");
	T_EQ_INT(store_job_insert(st, &m, 5), 0);
	T_ASSERT(m.id > j.id);
	T_EQ_INT(store_job_get(st, m.id, &got), 0);
	job_eq(&got, &m);
	T_ASSERT(got.since == NULL && got.kickoff_url == NULL &&
	    got.status_url == NULL && got.transaction_time == NULL &&
	    got.out_dir == NULL && got.last_error == NULL);
	job_row_clear(&got);
	job_row_clear(&m);

	T_EQ_INT(store_job_get(st, 999, &got), -ENOENT);
	T_ASSERT(got.profile == NULL);

	/* A job needs a profile. */
	memset(&m, 0, sizeof(m));
	T_EQ_INT(store_job_insert(st, &m, 5), -EINVAL);
	T_EQ_INT(m.id, 0);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs"), 2);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM job_history"), 2);

	job_row_clear(&j);
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

T_TEST(t_job_save)
{
	struct tdir d;
	struct store *st;
	struct job_row j, got;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	job_min(&j, "A9994");
	T_EQ_INT(store_job_insert(st, &j, 10), 0);
	job_row_clear(&j);
	job_full(&got, "ignored");
	got.id = 1;
	got.state = JOB_DONE;		/* not written by save */
	got.created_at = 77;		/* nor this */
	got.updated_at = 20;
	T_EQ_INT(store_job_save(st, &got), 0);
	T_EQ_INT(store_job_get(st, 1, &j), 0);
	got.state = JOB_NEW;
	got.created_at = 10;
	free(got.profile);
	got.profile = strdup("A9994");
	job_eq(&j, &got);
	job_row_clear(&j);

	/* Back to NULLs and zeros. */
	free(got.since);
	free(got.status_url);
	free(got.last_error);
	got.since = got.status_url = got.last_error = NULL;
	got.kickoff_sent = 0;
	got.err_counts[3] = 0;
	T_EQ_INT(store_job_save(st, &got), 0);
	T_EQ_INT(store_job_get(st, 1, &j), 0);
	job_eq(&j, &got);
	job_row_clear(&j);

	got.id = 42;
	T_EQ_INT(store_job_save(st, &got), -ENOENT);
	job_row_clear(&got);
	store_close(st);
out:
	tdir_free(&d);
}

T_TEST(t_cas_state_and_history)
{
	struct tdir d;
	struct store *st;
	struct job_row j;
	struct hist h;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	job_min(&j, "A9994");
	T_EQ_INT(store_job_insert(st, &j, 100), 0);

	T_EQ_INT(store_job_cas_state(st, j.id, JOB_NEW, JOB_TOKEN, 101), 0);
	T_EQ_INT(store_history_add(st, j.id, 101, JOB_NEW, JOB_TOKEN,
	    "started"), 0);
	T_EQ_INT(store_job_cas_state(st, j.id, JOB_NEW, JOB_KICKOFF, 102),
	    -ESTALE);
	T_EQ_INT(store_job_cas_state(st, 999, JOB_NEW, JOB_TOKEN, 102),
	    -ENOENT);
	T_EQ_INT(store_job_cas_state(st, j.id, JOB_TOKEN, JOB_NSTATES, 102),
	    -EINVAL);
	T_EQ_INT(store_job_cas_state(st, j.id, JOB_TOKEN, JOB_KICKOFF, 103),
	    0);
	T_EQ_INT(store_history_add(st, j.id, 103, JOB_TOKEN, JOB_KICKOFF,
	    NULL), 0);
	T_EQ_INT(store_history_add(st, 999, 103, JOB_TOKEN, JOB_KICKOFF,
	    "no such job"), -ENOENT);
	job_row_clear(&j);

	T_EQ_INT(store_job_get(st, 1, &j), 0);
	T_EQ_INT(j.state, JOB_KICKOFF);
	T_EQ_INT(j.updated_at, 103);
	T_EQ_INT(j.created_at, 100);
	job_row_clear(&j);

	memset(&h, 0, sizeof(h));
	T_EQ_INT(store_history(st, 1, collect_hist, &h), 0);
	T_EQ_INT(h.n, 3);
	T_EQ_INT(h.from[0], -1);
	T_EQ_INT(h.to[0], JOB_NEW);
	T_EQ_STR(h.reason[0], "created");
	T_EQ_INT(h.at[0], 100);
	T_EQ_INT(h.from[1], JOB_NEW);
	T_EQ_INT(h.to[1], JOB_TOKEN);
	T_EQ_STR(h.reason[1], "started");
	T_EQ_INT(h.from[2], JOB_TOKEN);
	T_EQ_INT(h.to[2], JOB_KICKOFF);
	T_EQ_STR(h.reason[2], "(null)");
	memset(&h, 0, sizeof(h));
	T_EQ_INT(store_history(st, 999, collect_hist, &h), 0);
	T_EQ_INT(h.n, 0);
	store_close(st);
out:
	tdir_free(&d);
}

/* Moves a job along a legal path, as job_set_state would. */
static void
move(struct store *st, int64_t id, enum job_state from, enum job_state to)
{
	T_EQ_INT(store_job_cas_state(st, id, from, to, 200), 0);
}

T_TEST(t_jobs_active_and_recent)
{
	struct tdir d;
	struct store *st;
	struct job_row j;
	struct job_page pg;
	struct ids ids;
	int i;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	for (i = 0; i < 6; i++) {
		job_min(&j, i % 2 ? "A9994" : "A9995");
		T_EQ_INT(store_job_insert(st, &j, 100 + i), 0);
		T_EQ_INT(j.id, i + 1);
		job_row_clear(&j);
	}
	move(st, 1, JOB_NEW, JOB_FAILED);
	move(st, 3, JOB_NEW, JOB_CANCELLED);
	move(st, 4, JOB_NEW, JOB_TOKEN);
	move(st, 4, JOB_TOKEN, JOB_KICKOFF);
	move(st, 4, JOB_KICKOFF, JOB_POLL);
	move(st, 4, JOB_POLL, JOB_DOWNLOAD);
	move(st, 4, JOB_DOWNLOAD, JOB_S3_PUT);
	move(st, 4, JOB_S3_PUT, JOB_IMPORT);
	move(st, 4, JOB_IMPORT, JOB_NOTIFY);
	move(st, 4, JOB_NOTIFY, JOB_DONE);
	move(st, 6, JOB_NEW, JOB_NOTIFY);

	memset(&ids, 0, sizeof(ids));
	T_EQ_INT(store_jobs_active(st, collect_job, &ids), 0);
	T_EQ_INT(ids.n, 3);
	T_EQ_INT(ids.id[0], 2);
	T_EQ_INT(ids.id[1], 5);
	T_EQ_INT(ids.id[2], 6);
	/* The callback took the first profile; the store freed the rest. */
	T_EQ_STR(ids.stolen, "A9994");
	free(ids.stolen);

	T_EQ_INT(page(st, NULL, 0, 4, &ids), 0);
	T_EQ_INT(ids.n, 4);
	T_EQ_INT(ids.id[0], 6);
	T_EQ_INT(ids.id[3], 3);
	free(ids.stolen);

	/* The next page starts below the last id seen. */
	T_EQ_INT(page(st, NULL, 3, 4, &ids), 0);
	T_EQ_INT(ids.n, 2);
	T_EQ_INT(ids.id[0], 2);
	T_EQ_INT(ids.id[1], 1);
	free(ids.stolen);

	/* One profile's, paged the same way. */
	T_EQ_INT(page(st, "A9994", 6, 100, &ids), 0);
	T_EQ_INT(ids.n, 2);
	T_EQ_INT(ids.id[0], 4);
	T_EQ_INT(ids.id[1], 2);
	T_EQ_STR(ids.stolen, "A9994");
	free(ids.stolen);

	T_EQ_INT(page(st, NULL, 0, 0, &ids), 0);
	T_EQ_INT(ids.n, 0);
	T_EQ_INT(page(st, NULL, 0, -1, &ids), -EINVAL);

	/* A non-zero return stops the walk and is returned. */
	memset(&ids, 0, sizeof(ids));
	ids.stop_after = 2;
	pg = (struct job_page){ NULL, 0, 100 };
	T_EQ_INT(store_jobs_page(st, &pg, collect_job, &ids), 7);
	T_EQ_INT(ids.n, 2);
	free(ids.stolen);
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

/* A callback that writes to the store while it is being listed. */
static int
cancel_job(struct job_row *j, void *arg)
{
	struct store *st = arg;

	return store_job_cas_state(st, j->id, j->state, JOB_CANCELLED, 300);
}

T_TEST(t_callback_may_write)
{
	struct tdir d;
	struct store *st;
	struct job_row j;
	struct ids ids;
	int i;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	for (i = 0; i < 3; i++) {
		job_min(&j, "A9994");
		T_EQ_INT(store_job_insert(st, &j, 100), 0);
		job_row_clear(&j);
	}
	T_EQ_INT(store_begin(st), 0);
	T_EQ_INT(store_jobs_active(st, cancel_job, st), 0);
	T_EQ_INT(store_commit(st), 0);
	memset(&ids, 0, sizeof(ids));
	T_EQ_INT(store_jobs_active(st, collect_job, &ids), 0);
	T_EQ_INT(ids.n, 0);
	store_close(st);
out:
	tdir_free(&d);
}

T_TEST(t_files)
{
	struct tdir d;
	struct store *st;
	struct job_row j;
	struct file_row f[4], dup;
	struct files fs;
	int i;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	job_min(&j, "A9994");
	T_EQ_INT(store_job_insert(st, &j, 100), 0);

	/* Inserted out of order; listed by kind, type, seq. */
	file_new(&f[0], j.id, FILE_ERROR, "OperationOutcome", 1);
	file_new(&f[1], j.id, FILE_OUTPUT, "Patient", 2);
	file_new(&f[2], j.id, FILE_OUTPUT, "Coverage", 1);
	file_new(&f[3], j.id, FILE_OUTPUT, "Patient", 1);
	f[1].state = FILE_DONE;		/* ignored: a file starts PENDING */
	for (i = 0; i < 4; i++) {
		T_EQ_INT(store_file_insert(st, &f[i]), 0);
		T_ASSERT(f[i].id > 0);
		T_EQ_INT(f[i].state, FILE_PENDING);
	}
	memset(&fs, 0, sizeof(fs));
	T_EQ_INT(store_files(st, j.id, collect_file, &fs), 0);
	T_EQ_INT(fs.n, 4);
	if (fs.n == 4) {
		file_eq(&fs.f[0], &f[2]);
		file_eq(&fs.f[1], &f[3]);
		file_eq(&fs.f[2], &f[1]);
		file_eq(&fs.f[3], &f[0]);
		T_ASSERT(fs.f[0].sha256 == NULL && fs.f[0].last_error == NULL);
	}
	files_clear(&fs);

	/* The same file twice, and a file of no job. */
	file_new(&dup, j.id, FILE_OUTPUT, "Patient", 2);
	T_EQ_INT(store_file_insert(st, &dup), -EEXIST);
	dup.job_id = 999;
	T_EQ_INT(store_file_insert(st, &dup), -ENOENT);
	file_row_clear(&dup);

	f[3].state = FILE_DONE;
	f[3].attempts = 3;
	f[3].lines = 12345;
	f[3].bytes = 5000000000LL;
	f[3].sha256 = strdup("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b9"
	    "34ca495991b7852b855");
	f[3].last_error = strdup("retried after a 503");
	T_EQ_INT(store_file_save(st, &f[3]), 0);
	T_EQ_INT(store_files(st, j.id, collect_file, &fs), 0);
	if (fs.n == 4)
		file_eq(&fs.f[1], &f[3]);
	files_clear(&fs);

	f[0].id = 999;
	T_EQ_INT(store_file_save(st, &f[0]), -ENOENT);

	T_EQ_INT(store_files_delete(st, j.id), 0);
	T_EQ_INT(store_files(st, j.id, collect_file, &fs), 0);
	T_EQ_INT(fs.n, 0);
	T_EQ_INT(store_files_delete(st, j.id), 0);

	for (i = 0; i < 4; i++)
		file_row_clear(&f[i]);
	job_row_clear(&j);
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

struct marks {
	int	 n;
	char	 scope[4][64];
	int64_t	 job[4];
};

static int
collect_mark(const struct mark_row *m, void *arg)
{
	struct marks *ms = arg;

	if (ms->n < 4) {
		snprintf(ms->scope[ms->n], sizeof(ms->scope[0]), "%s %s",
		    m->profile, m->scope);
		ms->job[ms->n] = m->job_id;
	}
	ms->n++;
	return 0;
}

T_TEST(t_watermark)
{
	struct tdir d;
	struct store *st;
	struct marks ms = { 0 };
	char *cur = (char *)"unset";

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_watermark_get(st, "A9994", "v2 a", &cur), 0);
	T_ASSERT(cur == NULL);
	T_EQ_INT(store_watermark_set(st, "A9994", "v2 a",
	    "2024-01-01T00:00:00.000Z", 1, 10), 0);
	T_EQ_INT(store_watermark_set(st, "A9995", "v2 a",
	    "2023-06-01T00:00:00Z", 2, 11), 0);
	T_EQ_INT(store_watermark_get(st, "A9994", "v2 a", &cur), 0);
	T_EQ_STR(cur, "2024-01-01T00:00:00.000Z");
	free(cur);
	/* Another scope of the same profile starts from full history. */
	T_EQ_INT(store_watermark_get(st, "A9994", "v2 b", &cur), 0);
	T_ASSERT(cur == NULL);
	T_EQ_INT(store_watermark_set(st, "A9994", "v2 a",
	    "2024-02-01T00:00:00.000Z", 3, 12), 0);
	T_EQ_INT(store_watermark_get(st, "A9994", "v2 a", &cur), 0);
	T_EQ_STR(cur, "2024-02-01T00:00:00.000Z");
	free(cur);
	T_EQ_INT(store_watermark_get(st, "A9995", "v2 a", &cur), 0);
	T_EQ_STR(cur, "2023-06-01T00:00:00Z");
	free(cur);
	T_EQ_INT(raw_int(d.db, "SELECT updated_at FROM watermark "
	    "WHERE profile = 'A9994'"), 12);
	T_EQ_INT(store_watermarks(st, collect_mark, &ms), 0);
	T_EQ_INT(ms.n, 2);
	T_EQ_STR(ms.scope[0], "A9994 v2 a");
	T_EQ_INT(ms.job[0], 3);
	T_EQ_INT(store_watermark_set(st, "A9996", "v2 a", NULL, 4, 13),
	    -EINVAL);
	/* An old cursor is used only while the profile has no watermark. */
	T_EQ_INT(raw_exec(d.db, "INSERT INTO profile_cursor VALUES "
	    "('A9994', '2020-01-01T00:00:00Z', 1), "
	    "('A9997', '2021-01-01T00:00:00Z', 1)"), SQLITE_OK);
	T_EQ_INT(store_watermark_get(st, "A9994", "v2 b", &cur), 0);
	T_ASSERT(cur == NULL);
	T_EQ_INT(store_watermark_get(st, "A9997", "v3 x", &cur), 0);
	T_EQ_STR(cur, "2021-01-01T00:00:00Z");
	free(cur);
	store_close(st);
out:
	tdir_free(&d);
}

static int64_t
insert(struct store *st, const char *profile)
{
	struct job_row j;
	int64_t id;

	job_min(&j, profile);
	T_EQ_INT(store_job_insert(st, &j, 100), 0);
	id = j.id;
	job_row_clear(&j);
	return id;
}

static int
has_job(struct store *st, int64_t id)
{
	struct job_row j;
	int rc = store_job_get(st, id, &j);

	job_row_clear(&j);
	return rc == 0;
}

T_TEST(t_transactions)
{
	struct tdir d;
	struct store *st;
	int64_t a, b, c;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_commit(st), -EINVAL);
	store_rollback(st);		/* a no-op outside a transaction */

	T_EQ_INT(store_begin(st), 0);
	a = insert(st, "A");
	T_ASSERT(has_job(st, a));
	store_rollback(st);
	T_ASSERT(!has_job(st, a));
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM job_history"), 0);

	/* An inner rollback undoes only the inner level. */
	T_EQ_INT(store_begin(st), 0);
	a = insert(st, "A");
	T_EQ_INT(store_begin(st), 0);
	b = insert(st, "B");
	store_rollback(st);
	T_EQ_INT(store_begin(st), 0);
	c = insert(st, "C");
	T_EQ_INT(store_commit(st), 0);
	/* Nothing is visible to another connection before the commit. */
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs"), 0);
	T_EQ_INT(store_commit(st), 0);
	T_ASSERT(has_job(st, a));
	T_ASSERT(has_job(st, c));
	if (b != c)
		T_ASSERT(!has_job(st, b));
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs "
	    "WHERE profile = 'B'"), 0);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs"), 2);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM job_history"), 2);

	/* Closing inside a transaction rolls it back. */
	T_EQ_INT(store_begin(st), 0);
	insert(st, "D");
	store_close(st);
	T_EQ_INT(raw_int(d.db, "SELECT count(*) FROM jobs"), 2);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

static int
extra_files(struct store *st, struct job_row *j, void *arg)
{
	struct file_row f;
	int rc, *fail = arg;

	file_new(&f, j->id, FILE_OUTPUT, "Patient", 1);
	rc = store_file_insert(st, &f);
	file_row_clear(&f);
	if (rc == 0 && *fail)
		rc = -EIO;
	return rc;
}

/* job_set_state (lib/store/job.c) on top of the store, as the daemon uses it. */
T_TEST(t_job_set_state)
{
	struct tdir d;
	struct store *st;
	struct job_row j, got;
	struct files fs;
	struct hist h;
	int fail = 1;

	tdir_new(&d);
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	job_min(&j, "A9994");
	T_EQ_INT(store_job_insert(st, &j, 100), 0);
	T_EQ_INT(job_set_state(st, &j, JOB_NEW, JOB_TOKEN, "go", NULL, NULL),
	    0);
	T_EQ_INT(job_set_state(st, &j, JOB_TOKEN, JOB_KICKOFF, "token", NULL,
	    NULL), 0);
	j.status_url = strdup("https://x/jobs/1");
	T_EQ_INT(job_set_state(st, &j, JOB_KICKOFF, JOB_POLL, "accepted",
	    NULL, NULL), 0);

	/* A failing extra leaves no trace: no file, no state, no history. */
	j.progress = 100;
	T_EQ_INT(job_set_state(st, &j, JOB_POLL, JOB_DOWNLOAD, "manifest",
	    extra_files, &fail), -EIO);
	T_EQ_INT(j.state, JOB_POLL);
	memset(&fs, 0, sizeof(fs));
	T_EQ_INT(store_files(st, j.id, collect_file, &fs), 0);
	T_EQ_INT(fs.n, 0);
	T_EQ_INT(store_job_get(st, j.id, &got), 0);
	T_EQ_INT(got.state, JOB_POLL);
	T_EQ_INT(got.progress, -1);
	eq_opt_str("status_url", got.status_url, "https://x/jobs/1");
	job_row_clear(&got);

	fail = 0;
	T_EQ_INT(job_set_state(st, &j, JOB_POLL, JOB_DOWNLOAD, "manifest",
	    extra_files, &fail), 0);
	T_EQ_INT(store_files(st, j.id, collect_file, &fs), 0);
	T_EQ_INT(fs.n, 1);
	files_clear(&fs);

	memset(&h, 0, sizeof(h));
	T_EQ_INT(store_history(st, j.id, collect_hist, &h), 0);
	T_EQ_INT(h.n, 5);
	T_EQ_INT(h.to[4], JOB_DOWNLOAD);
	T_EQ_STR(h.reason[3], "accepted");
	job_row_clear(&j);
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

/*
 * kill -9 with a transaction open: what was committed is there, what was
 * not is not, and the database is sound.
 */
T_TEST(t_kill9)
{
	struct tdir d;
	struct store *st;
	struct job_row j;
	pid_t pid;
	int status;

	tdir_new(&d);
	fflush(NULL);
	if ((pid = fork()) == -1) {
		T_FAIL("fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		char err[512];

		if (store_open(d.db, 0, &st, err, sizeof(err)) != 0)
			_exit(2);
		job_min(&j, "A9994");
		if (store_job_insert(st, &j, 100) != 0 ||
		    store_job_cas_state(st, j.id, JOB_NEW, JOB_TOKEN, 101) != 0)
			_exit(3);
		if (store_begin(st) != 0 ||
		    store_job_cas_state(st, j.id, JOB_TOKEN, JOB_KICKOFF,
		    102) != 0 || store_job_insert(st, &j, 103) != 0)
			_exit(4);
		raise(SIGKILL);
		_exit(5);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	T_ASSERT(file_exists(d.db, "-wal"));
	if ((st = open_ok(d.db, 0)) == NULL)
		goto out;
	T_EQ_INT(store_job_get(st, 1, &j), 0);
	T_EQ_INT(j.state, JOB_TOKEN);
	job_row_clear(&j);
	T_EQ_INT(store_job_get(st, 2, &j), -ENOENT);
	store_close(st);
	check_integrity(d.db);
out:
	tdir_free(&d);
}

T_MAIN("store",
    T_CASE(t_migration_table),
    T_CASE(t_user_version_is_transactional),
    T_CASE(t_fresh_open),
    T_CASE(t_migrate_from_every_version),
    T_CASE(t_refuse_newer),
    T_CASE(t_refuse_bad_target),
    T_CASE(t_not_a_database),
    T_CASE(t_failed_migration_rolls_back),
    T_CASE(t_job_roundtrip),
    T_CASE(t_job_save),
    T_CASE(t_cas_state_and_history),
    T_CASE(t_jobs_active_and_recent),
    T_CASE(t_callback_may_write),
    T_CASE(t_files),
    T_CASE(t_watermark),
    T_CASE(t_transactions),
    T_CASE(t_job_set_state),
    T_CASE(t_kill9))
