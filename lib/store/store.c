/*
 * The state store: jobs, their files, their history and the per-profile
 * cursors, in one SQLite database in WAL mode with synchronous=FULL, so
 * that a committed state change survives kill -9 and power loss.
 *
 * Schema.  The migrations are the table store_migrations[], generated from
 * schema/NNN-name.sql.  Each is applied in its own transaction, which also
 * sets PRAGMA user_version = NNN (the pragma is transactional: a failed
 * migration leaves both the schema and the version as they were).  A
 * database newer than this binary is refused before anything is written.
 *
 * Errors.  Every function returns 0 or a negative errno, and logs what
 * SQLite said:
 *	-EPROTO		the database's schema version is newer than this
 *			binary (or than the target asked of store_open)
 *	-ENOENT		no such job or file (including a file or history
 *			row added for a job that does not exist)
 *	-ESTALE		store_job_cas_state: the stored state was not the
 *			expected one
 *	-EEXIST		a UNIQUE constraint (e.g. the same file twice)
 *	-EINVAL		another constraint (NOT NULL, CHECK), or a bad
 *			argument
 *	-EBUSY		another process held the database past busy_timeout
 *	-ENOSPC		the disk is full
 *	-ENOMEM		out of memory
 *	-EIO		any other SQLite error
 *
 * Transactions.  store_begin() opens a transaction, or a savepoint when one
 * is already open, so that job_set_state() may run inside a larger unit of
 * work and still roll back only its own writes.  A failed store_commit()
 * leaves its level open: the caller must store_rollback().  If SQLite
 * itself abandons the transaction (it does so on I/O errors, a full disk
 * or out-of-memory), every call fails with -EIO until the caller has
 * rolled back every level, so that no write can slip out in autocommit
 * mode half-way through a unit of work.
 *
 * Statements are prepared on each call: the daemon makes a few writes per
 * job per second at most, and no cached statement can then be found busy
 * by a re-entrant call.  Text is always bound, never formatted into SQL.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "job.h"
#include "util/log.h"
#include "store_int.h"

#define STORE_BUSY_MS	5000	/* at open, while migrating */
/*
 * Once open: how long a statement may wait for another process's lock on
 * the event loop.  Short, because the engine writes again later what a
 * busy database refused (lib/engine/record.c), and the loop must keep
 * the watchdog fed.
 */
#define STORE_BUSY_RUN_MS 200


/*
 * Each table's columns, declared once: the SELECT lists below, the row
 * readers, the INSERT and UPDATE statements and their binds all follow
 * from these lists.  id comes first and is never written.  FIXED columns
 * are written when the row is inserted; SAVED ones by every save too.
 * (jobs.state is FIXED: after the insert only store_job_cas_state
 * changes it.)
 */
#define JOB_COLUMNS(X) \
	X(profile,		TEXT,	FIXED,	profile) \
	X(state,		INT,	FIXED,	state) \
	X(created_at,		I64,	FIXED,	created_at) \
	X(updated_at,		I64,	SAVED,	updated_at) \
	X(since,		TEXT,	SAVED,	since) \
	X(kickoff_url,		TEXT,	SAVED,	kickoff_url) \
	X(kickoff_sent,		I64,	SAVED,	kickoff_sent) \
	X(kickoffs,		INT,	SAVED,	kickoffs) \
	X(status_url,		TEXT,	SAVED,	status_url) \
	X(progress,		INT,	SAVED,	progress) \
	X(transaction_time,	TEXT,	SAVED,	transaction_time) \
	X(completed_at,		I64,	SAVED,	completed_at) \
	X(out_dir,		TEXT,	SAVED,	out_dir) \
	X(last_error,		TEXT,	SAVED,	last_error) \
	X(err_fatal,		I64,	SAVED,	err_counts[0]) \
	X(err_error,		I64,	SAVED,	err_counts[1]) \
	X(err_warning,		I64,	SAVED,	err_counts[2]) \
	X(err_info,		I64,	SAVED,	err_counts[3]) \
	X(cancel_requested,	I64,	SAVED,	cancel_requested) \
	X(import_token,		TEXT,	SAVED,	import_token) \
	X(import_job_id,	TEXT,	SAVED,	import_job_id) \
	X(import_status,	TEXT,	SAVED,	import_status) \
	X(import_message,	TEXT,	SAVED,	import_message) \
	X(import_report,	TEXT,	SAVED,	import_report) \
	X(notify_state,		INT,	SAVED,	notify_state) \
	X(notify_message_id,	TEXT,	SAVED,	notify_message_id) \
	X(scope,		TEXT,	SAVED,	scope) \
	X(since_mode,		INT,	SAVED,	since_mode) \
	X(runout,		INT,	SAVED,	runout) \
	X(progress_stalled,	I64,	SAVED,	progress_stalled)

#define FILE_COLUMNS(X) \
	X(job_id,		I64,	FIXED,	job_id) \
	X(kind,			INT,	FIXED,	kind) \
	X(type,			TEXT,	FIXED,	type) \
	X(url,			TEXT,	FIXED,	url) \
	X(seq,			INT,	FIXED,	seq) \
	X(name,			TEXT,	FIXED,	name) \
	X(state,		INT,	SAVED,	state) \
	X(attempts,		INT,	SAVED,	attempts) \
	X(lines,		I64,	SAVED,	lines) \
	X(bytes,		I64,	SAVED,	bytes) \
	X(sha256,		TEXT,	SAVED,	sha256) \
	X(last_error,		TEXT,	SAVED,	last_error) \
	X(s3_state,		INT,	SAVED,	s3_state) \
	X(s3_upload_id,		TEXT,	SAVED,	s3_upload_id) \
	X(s3_part_size,		I64,	SAVED,	s3_part_size)

enum col_kind { COL_I64, COL_INT, COL_TEXT };
enum col_use { COL_FIXED, COL_SAVED };

struct col {
	const char	*name;
	enum col_kind	 kind;
	enum col_use	 use;
	size_t		 off;		/* of the field in the row struct */
};

/* A table: its columns and the statements made from them (made once). */
struct table {
	const char	*name;
	const struct col *cols;
	size_t		 ncols;
	char		 insert[1024];
	char		 update[1024];
};

#define COL_NAME(n, k, u, f)	", " #n
#define JOB_COLS	"id" JOB_COLUMNS(COL_NAME)
#define FILE_COLS	"id" FILE_COLUMNS(COL_NAME)
#define JOB_COL(n, k, u, f) \
	{ #n, COL_##k, COL_##u, offsetof(struct job_row, f) },
#define FILE_COL(n, k, u, f) \
	{ #n, COL_##k, COL_##u, offsetof(struct file_row, f) },

static const struct col job_cols[] = { JOB_COLUMNS(JOB_COL) };
static const struct col file_cols[] = { FILE_COLUMNS(FILE_COL) };
static struct table jobs_table = { "jobs", job_cols,
    sizeof(job_cols) / sizeof(job_cols[0]), "", "" };
static struct table files_table = { "files", file_cols,
    sizeof(file_cols) / sizeof(file_cols[0]), "", "" };

/* Field widths the row readers and binders assume. */
_Static_assert(sizeof(enum job_state) == sizeof(int) &&
    sizeof(enum file_state) == sizeof(int) &&
    sizeof(enum file_kind) == sizeof(int) &&
    sizeof(enum file_s3) == sizeof(int), "enums stored as int");

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Maps an (extended) SQLite result code to a negative errno. */
static int
sql_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		/* The only parent table is jobs. */
		return -ENOENT;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	}
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_TOOBIG:
		return -EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	}
	return -EIO;
}

/* Logs the connection's last error while doing what; returns its errno. */
int
sq_db_fail(struct store *st, const char *what)
{
	int rc = sqlite3_extended_errcode(st->db);

	log_warnx("state store %s: %s: %s", st->path, what,
	    sqlite3_errmsg(st->db));
	return sql_errno(rc);
}

/*
 * True when a transaction was open (depth > 0) and SQLite rolled it back
 * on its own.  Until the caller rolls back every level, writes would run
 * in autocommit mode, outside the unit of work the caller believes in.
 */
static int
tx_lost(struct store *st)
{
	return st->depth > 0 && sqlite3_get_autocommit(st->db);
}

static int
exec(struct store *st, const char *sql, const char *what)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq_db_fail(st, what);
	return 0;
}

int
sq_prep(struct store *st, const char *sql, sqlite3_stmt **stmt,
    const char *what)
{
	*stmt = NULL;
	if (tx_lost(st)) {
		log_warnx("state store %s: %s: the transaction was rolled "
		    "back by an earlier error", st->path, what);
		return -EIO;
	}
	if (sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL) != SQLITE_OK) {
		*stmt = NULL;
		return sq_db_fail(st, what);
	}
	return 0;
}

/* Runs a statement that returns no row, then finalizes it. */
int
sq_step_done(struct store *st, sqlite3_stmt *stmt, const char *what)
{
	int rc = 0;

	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = sq_db_fail(st, what);
	sqlite3_finalize(stmt);
	return rc;
}


void
sq_b_text(struct binder *b, const char *s)
{
	if (b->rc != SQLITE_OK)
		return;
	b->idx++;
	if (s == NULL)
		b->rc = sqlite3_bind_null(b->stmt, b->idx);
	else
		b->rc = sqlite3_bind_text(b->stmt, b->idx, s, -1,
		    SQLITE_STATIC);
}

void
sq_b_int(struct binder *b, int64_t v)
{
	if (b->rc != SQLITE_OK)
		return;
	b->idx++;
	b->rc = sqlite3_bind_int64(b->stmt, b->idx, v);
}

/* Binds NULL for a negative value (a history row's missing from_state). */
static void
b_int_or_null(struct binder *b, int64_t v)
{
	if (b->rc != SQLITE_OK)
		return;
	b->idx++;
	if (v < 0)
		b->rc = sqlite3_bind_null(b->stmt, b->idx);
	else
		b->rc = sqlite3_bind_int64(b->stmt, b->idx, v);
}

int
sq_b_done(struct store *st, struct binder *b, const char *what)
{
	if (b->rc == SQLITE_OK)
		return 0;
	log_warnx("state store %s: %s: binding parameter %d: %s", st->path,
	    what, b->idx, sqlite3_errstr(b->rc));
	return sql_errno(b->rc);
}


char *
sq_r_text(struct reader *r)
{
	const unsigned char *s;
	char *dup;

	s = sqlite3_column_text(r->stmt, r->idx);
	if (s == NULL) {
		if (sqlite3_column_type(r->stmt, r->idx) != SQLITE_NULL)
			r->nomem = 1;
		r->idx++;
		return NULL;
	}
	r->idx++;
	if ((dup = strdup((const char *)s)) == NULL)
		r->nomem = 1;
	return dup;
}

int64_t
sq_r_int(struct reader *r)
{
	return sqlite3_column_int64(r->stmt, r->idx++);
}

/* Reads id and then t's columns into row (a struct job_row or file_row). */
static int
row_read(sqlite3_stmt *stmt, const struct table *t, void *row, int64_t *id)
{
	struct reader r = { stmt, 0, 0 };
	char *base = row;
	size_t i;

	*id = sq_r_int(&r);
	for (i = 0; i < t->ncols; i++) {
		void *field = base + t->cols[i].off;

		switch (t->cols[i].kind) {
		case COL_I64:
			*(int64_t *)field = sq_r_int(&r);
			break;
		case COL_INT:
			*(int *)field = (int)sq_r_int(&r);
			break;
		case COL_TEXT:
			*(char **)field = sq_r_text(&r);
			break;
		}
	}
	return r.nomem ? -ENOMEM : 0;
}

/* Binds t's columns of row: every one, or only the SAVED ones. */
static void
row_bind(struct binder *b, const struct table *t, const void *row,
    int saved_only)
{
	const char *base = row;
	size_t i;

	for (i = 0; i < t->ncols; i++) {
		const void *field = base + t->cols[i].off;

		if (saved_only && t->cols[i].use != COL_SAVED)
			continue;
		switch (t->cols[i].kind) {
		case COL_I64:
			sq_b_int(b, *(const int64_t *)field);
			break;
		case COL_INT:
			sq_b_int(b, *(const int *)field);
			break;
		case COL_TEXT:
			sq_b_text(b, *(char *const *)field);
			break;
		}
	}
}

/* Makes t's INSERT (every column) and UPDATE (SAVED ones, by id) once. */
static const struct table *
table_sql(struct table *t)
{
	size_t i, n = 0, u = 0, q = 0;
	char qs[512] = "";
	const char *sep = "";

	if (t->insert[0] != '\0')
		return t;
	n = (size_t)snprintf(t->insert, sizeof(t->insert), "INSERT INTO %s (",
	    t->name);
	u = (size_t)snprintf(t->update, sizeof(t->update), "UPDATE %s SET ",
	    t->name);
	for (i = 0; i < t->ncols; i++) {
		n += (size_t)snprintf(t->insert + n, sizeof(t->insert) - n,
		    "%s%s", i ? ", " : "", t->cols[i].name);
		q += (size_t)snprintf(qs + q, sizeof(qs) - q, "%s?",
		    i ? ", " : "");
		if (t->cols[i].use == COL_SAVED) {
			u += (size_t)snprintf(t->update + u,
			    sizeof(t->update) - u, "%s%s = ?", sep,
			    t->cols[i].name);
			sep = ", ";
		}
	}
	snprintf(t->insert + n, sizeof(t->insert) - n, ") VALUES (%s)", qs);
	snprintf(t->update + u, sizeof(t->update) - u, " WHERE id = ?");
	return t;
}

static int
job_read(sqlite3_stmt *stmt, void *row)
{
	struct job_row *j = row;
	int rc;

	memset(j, 0, sizeof(*j));
	if ((rc = row_read(stmt, &jobs_table, j, &j->id)) != 0)
		job_row_clear(j);
	return rc;
}

static int
file_read(sqlite3_stmt *stmt, void *row)
{
	struct file_row *f = row;
	int rc;

	memset(f, 0, sizeof(*f));
	if ((rc = row_read(stmt, &files_table, f, &f->id)) != 0)
		file_row_clear(f);
	return rc;
}

/* Reads a pragma or query that returns one integer. */
static int
query_int(struct store *st, const char *sql, int *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, sql)) != 0)
		return rc;
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		rc = sq_db_fail(st, sql);
		sqlite3_finalize(stmt);
		return rc;
	}
	*out = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	return 0;
}

int
store_latest_version(void)
{
	if (store_nmigrations == 0)
		return 0;
	return store_migrations[store_nmigrations - 1].version;
}

int
store_version(struct store *st)
{
	return st->version;
}

/*
 * The table must be in increasing order of version, or "every migration
 * newer than user_version" would not be well defined.  A build mistake
 * (e.g. two files numbered 003), caught before touching any database.
 */
static int
migrations_check(char *err, size_t errlen)
{
	int i;

	for (i = 0; i < store_nmigrations; i++) {
		if (store_migrations[i].version <= 0 || (i > 0 &&
		    store_migrations[i].version <=
		    store_migrations[i - 1].version)) {
			seterr(err, errlen, "bcdad was built with migration "
			    "%s out of order; rebuild from a clean tree",
			    store_migrations[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Applies one migration in a transaction of its own that also sets
 * user_version.  BEGIN IMMEDIATE takes the write lock before the version
 * is read again, so two processes starting together cannot both apply it.
 * On failure nothing of the migration remains.
 */
static int
migrate_one(struct store *st, const struct store_migration *m,
    char *err, size_t errlen)
{
	char sql[64], *msg = NULL;
	int rc, cur;

	if ((rc = exec(st, "BEGIN IMMEDIATE", "begin migration")) != 0) {
		seterr(err, errlen, "cannot lock %s to apply migration %s: "
		    "%s; is another bcdad running?", st->path, m->name,
		    sqlite3_errmsg(st->db));
		return rc;
	}
	if ((rc = query_int(st, "PRAGMA user_version", &cur)) != 0) {
		seterr(err, errlen, "cannot read the schema version of %s: "
		    "%s", st->path, sqlite3_errmsg(st->db));
		goto fail;
	}
	if (cur >= m->version) {
		/* Another process applied it while we waited for the lock. */
		st->version = cur;
		if ((rc = exec(st, "COMMIT", "commit migration")) != 0) {
			seterr(err, errlen, "cannot unlock %s after another "
			    "process migrated it: %s", st->path,
			    sqlite3_errmsg(st->db));
			goto fail;
		}
		return 0;
	}
	if (sqlite3_exec(st->db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
		rc = sql_errno(sqlite3_extended_errcode(st->db));
		seterr(err, errlen, "migration %s failed on %s: %s; the "
		    "database is left at schema version %d", m->name,
		    st->path, msg ? msg : sqlite3_errmsg(st->db), cur);
		sqlite3_free(msg);
		goto fail;
	}
	if (sqlite3_get_autocommit(st->db)) {
		/* The migration ended the transaction: a bug in schema/. */
		seterr(err, errlen, "migration %s ends its own transaction; "
		    "%s may be left half-migrated at schema version %d",
		    m->name, st->path, cur);
		return -EINVAL;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
	if ((rc = exec(st, sql, "set user_version")) != 0 ||
	    (rc = exec(st, "COMMIT", "commit migration")) != 0) {
		seterr(err, errlen, "cannot record migration %s in %s: %s; "
		    "the database is left at schema version %d", m->name,
		    st->path, sqlite3_errmsg(st->db), cur);
		goto fail;
	}
	st->version = m->version;
	log_info("state store %s: applied migration %s", st->path, m->name);
	return 0;
fail:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int
set_pragmas(struct store *st, char *err, size_t errlen)
{
	sqlite3_stmt *stmt;
	const unsigned char *mode;
	int wal, rc;

	if ((rc = sq_prep(st, "PRAGMA journal_mode = WAL", &stmt,
	    "journal_mode")) != 0)
		goto fail;
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		rc = sq_db_fail(st, "journal_mode");
		sqlite3_finalize(stmt);
		goto fail;
	}
	mode = sqlite3_column_text(stmt, 0);
	wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
	sqlite3_finalize(stmt);
	if (!wal) {
		seterr(err, errlen, "cannot put %s in WAL mode; keep the "
		    "state directory on a local file system", st->path);
		return -EIO;
	}
	/*
	 * FULL: in WAL mode NORMAL may lose the last commits on power loss,
	 * and a lost "kickoff sent" would start a second BCDA job.
	 * foreign_keys is a no-op inside a transaction: set it here, once.
	 */
	if ((rc = exec(st, "PRAGMA synchronous = FULL", "synchronous")) != 0 ||
	    (rc = exec(st, "PRAGMA foreign_keys = ON", "foreign_keys")) != 0)
		goto fail;
	return 0;
fail:
	seterr(err, errlen, "cannot configure %s: %s", st->path,
	    sqlite3_errmsg(st->db));
	return rc;
}

/*
 * Runs once at start-up (and in the tools that read the state).  The file
 * is created by open(2) with mode 0600 before SQLite sees it, so SQLite,
 * which gives the -wal and -shm files the mode of the database, never
 * creates anything group- or world-readable.  The schema version is read
 * before anything is written: a database from a newer bcdad is refused
 * with the file untouched.
 */
int
store_open(const char *path, int target, struct store **out, char *err,
    size_t errlen)
{
	struct store *st = NULL;
	int latest = store_latest_version();
	int fd, rc, i;

	*out = NULL;
	seterr(err, errlen, "%s", "");
	if ((rc = migrations_check(err, errlen)) != 0)
		return rc;
	if (target == 0)
		target = latest;
	if (target < 0 || target > latest) {
		seterr(err, errlen, "schema version %d requested of %s, but "
		    "this bcdad knows versions 1 to %d", target, path, latest);
		return -EINVAL;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		rc = -errno;
		seterr(err, errlen, "cannot open state database %s: %s", path,
		    strerror(errno));
		return rc;
	}
	close(fd);

	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->path = strdup(path)) == NULL) {
		seterr(err, errlen, "out of memory opening %s", path);
		rc = -ENOMEM;
		goto fail;
	}
	/* Not SQLITE_OPEN_CREATE: the file exists, with our mode. */
	rc = sqlite3_open_v2(path, &st->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "cannot open state database %s: %s", path,
		    st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		rc = sql_errno(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_MS);

	if ((rc = query_int(st, "PRAGMA user_version", &st->version)) != 0) {
		seterr(err, errlen, "cannot read state database %s: %s; is "
		    "it a bcdad database?", path, sqlite3_errmsg(st->db));
		goto fail;
	}
	if (st->version > latest) {
		seterr(err, errlen, "database %s has schema version %d, newer "
		    "than this bcdad (%d); upgrade bcdad or restore a backup",
		    path, st->version, latest);
		rc = -EPROTO;
		goto fail;
	}
	if (st->version > target) {
		seterr(err, errlen, "database %s has schema version %d, newer "
		    "than the %d requested; schema versions are never "
		    "downgraded", path, st->version, target);
		rc = -EPROTO;
		goto fail;
	}
	if ((rc = set_pragmas(st, err, errlen)) != 0)
		goto fail;

	for (i = 0; i < store_nmigrations; i++) {
		const struct store_migration *m = &store_migrations[i];

		if (m->version <= st->version || m->version > target)
			continue;
		if ((rc = migrate_one(st, m, err, errlen)) != 0)
			goto fail;
	}
	sqlite3_busy_timeout(st->db, STORE_BUSY_RUN_MS);
	*out = st;
	return 0;
fail:
	if (st != NULL) {
		if (st->db != NULL)
			sqlite3_close(st->db);
		free(st->path);
		free(st);
	}
	return rc;
}

/*
 * Runs at shutdown.  A transaction still open is a caller's bug: it is
 * rolled back, as a crash would have done.
 */
void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->depth > 0) {
		log_warnx("state store %s: closed inside a transaction; "
		    "rolling it back", st->path);
		if (!sqlite3_get_autocommit(st->db))
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (sqlite3_close(st->db) != SQLITE_OK)
		log_warnx("state store %s: close: %s", st->path,
		    sqlite3_errmsg(st->db));
	free(st->path);
	free(st);
}

/*
 * Opens a transaction (BEGIN IMMEDIATE, so the write lock is taken now and
 * not at the first write), or a savepoint inside an open one.
 */
int
store_begin(struct store *st)
{
	char sql[32];
	int rc;

	if (tx_lost(st)) {
		log_warnx("state store %s: begin: the transaction was rolled "
		    "back by an earlier error", st->path);
		return -EIO;
	}
	if (st->depth == 0)
		rc = exec(st, "BEGIN IMMEDIATE", "begin");
	else {
		snprintf(sql, sizeof(sql), "SAVEPOINT s%d", st->depth);
		rc = exec(st, sql, "savepoint");
	}
	if (rc == 0)
		st->depth++;
	return rc;
}

/*
 * Commits the innermost level: the transaction, which is durable once this
 * returns 0, or a savepoint, whose writes then belong to the level around
 * it.  On failure the level stays open and the caller must roll it back.
 */
int
store_commit(struct store *st)
{
	char sql[32];
	int rc;

	if (st->depth <= 0) {
		log_warnx("state store %s: commit without begin", st->path);
		return -EINVAL;
	}
	if (tx_lost(st)) {
		log_warnx("state store %s: commit: the transaction was rolled "
		    "back by an earlier error", st->path);
		return -EIO;
	}
	if (st->depth == 1)
		rc = exec(st, "COMMIT", "commit");
	else {
		snprintf(sql, sizeof(sql), "RELEASE s%d", st->depth - 1);
		rc = exec(st, sql, "release savepoint");
	}
	if (rc == 0)
		st->depth--;
	return rc;
}

/*
 * Undoes the innermost level's writes and closes it.  Safe to call after
 * a failed store_commit() and after SQLite abandoned the transaction; a
 * no-op outside any transaction.
 */
void
store_rollback(struct store *st)
{
	char sql[64];

	if (st->depth <= 0)
		return;
	st->depth--;
	if (sqlite3_get_autocommit(st->db))
		return;		/* SQLite already rolled everything back. */
	if (st->depth == 0)
		exec(st, "ROLLBACK", "rollback");
	else {
		snprintf(sql, sizeof(sql), "ROLLBACK TO s%d; RELEASE s%d",
		    st->depth, st->depth);
		exec(st, sql, "rollback to savepoint");
	}
}

int
store_history_add(struct store *st, int64_t job_id, int64_t at,
    enum job_state from, enum job_state to, const char *reason)
{
	static const char sql[] = "INSERT INTO job_history "
	    "(job_id, at, from_state, to_state, reason) "
	    "VALUES (?, ?, ?, ?, ?)";
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	if ((unsigned)to >= JOB_NSTATES)
		return -EINVAL;
	if ((rc = sq_prep(st, sql, &stmt, "add history")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	sq_b_int(&b, job_id);
	sq_b_int(&b, at);
	/* A from outside the enum (-1) marks the row of a job's creation. */
	b_int_or_null(&b, (unsigned)from < JOB_NSTATES ? (int64_t)from : -1);
	sq_b_int(&b, (int64_t)to);
	sq_b_text(&b, reason);
	if ((rc = sq_b_done(st, &b, "add history")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	return sq_step_done(st, stmt, "add history");
}

/*
 * Inserts every field of job but id and state; the job starts in JOB_NEW,
 * created and updated at now, and its first history row (from NULL, to
 * NEW, "created") is written in the same transaction.
 */
int
store_job_insert(struct store *st, struct job_row *job, int64_t now)
{
	const struct table *t = table_sql(&jobs_table);
	struct job_row row = *job;
	struct binder b;
	sqlite3_stmt *stmt;
	int64_t id;
	int rc;

	row.state = JOB_NEW;
	row.created_at = row.updated_at = now;
	if ((rc = store_begin(st)) != 0)
		return rc;
	if ((rc = sq_prep(st, t->insert, &stmt, "insert job")) != 0)
		goto fail;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	row_bind(&b, t, &row, 0);
	if ((rc = sq_b_done(st, &b, "insert job")) != 0) {
		sqlite3_finalize(stmt);
		goto fail;
	}
	if ((rc = sq_step_done(st, stmt, "insert job")) != 0)
		goto fail;
	id = sqlite3_last_insert_rowid(st->db);
	if ((rc = store_history_add(st, id, now, (enum job_state)-1, JOB_NEW,
	    "created")) != 0)
		goto fail;
	if ((rc = store_commit(st)) != 0)
		goto fail;
	job->id = id;
	job->state = JOB_NEW;
	job->created_at = now;
	job->updated_at = now;
	return 0;
fail:
	store_rollback(st);
	return rc;
}

/* Tells a job that is missing from one in another state. */
static int
job_exists(struct store *st, int64_t id)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, "SELECT 1 FROM jobs WHERE id = ?", &stmt,
	    "find job")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, id);
	switch (sqlite3_step(stmt)) {
	case SQLITE_ROW:
		rc = 1;
		break;
	case SQLITE_DONE:
		rc = 0;
		break;
	default:
		rc = sq_db_fail(st, "find job");
		break;
	}
	sqlite3_finalize(stmt);
	return rc;
}

int
store_job_cas_state(struct store *st, int64_t id, enum job_state expected,
    enum job_state to, int64_t now)
{
	static const char sql[] = "UPDATE jobs SET state = ?, updated_at = ? "
	    "WHERE id = ? AND state = ?";
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	if ((unsigned)to >= JOB_NSTATES || (unsigned)expected >= JOB_NSTATES)
		return -EINVAL;
	if ((rc = sq_prep(st, sql, &stmt, "set job state")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	sq_b_int(&b, to);
	sq_b_int(&b, now);
	sq_b_int(&b, id);
	sq_b_int(&b, expected);
	if ((rc = sq_b_done(st, &b, "set job state")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	if ((rc = sq_step_done(st, stmt, "set job state")) != 0)
		return rc;
	if (sqlite3_changes(st->db) == 1)
		return 0;
	if ((rc = job_exists(st, id)) < 0)
		return rc;
	return rc ? -ESTALE : -ENOENT;
}

/*
 * Writes every field that changes over a job's life: all but id, state
 * (store_job_cas_state's), profile and created_at.
 */
int
store_job_save(struct store *st, const struct job_row *job)
{
	const struct table *t = table_sql(&jobs_table);
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, t->update, &stmt, "save job")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	row_bind(&b, t, job, 1);
	sq_b_int(&b, job->id);
	if ((rc = sq_b_done(st, &b, "save job")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	if ((rc = sq_step_done(st, stmt, "save job")) != 0)
		return rc;
	return sqlite3_changes(st->db) == 1 ? 0 : -ENOENT;
}

/* Fills *out, which the caller frees with job_row_clear(). */
int
store_job_get(struct store *st, int64_t id, struct job_row *out)
{
	static const char sql[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
	sqlite3_stmt *stmt;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = sq_prep(st, sql, &stmt, "get job")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, id);
	switch (sqlite3_step(stmt)) {
	case SQLITE_ROW:
		rc = job_read(stmt, out);
		break;
	case SQLITE_DONE:
		rc = -ENOENT;
		break;
	default:
		rc = sq_db_fail(st, "get job");
		break;
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* Makes room for row n in a growing array of rows of size bytes each. */
static int
rows_room(void **rows, size_t *cap, size_t n, size_t size)
{
	void *tmp;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((tmp = reallocarray(*rows, ncap, size)) == NULL)
		return -ENOMEM;
	*rows = tmp;
	*cap = ncap;
	return 0;
}

/*
 * Steps stmt to its end, reading each row with read into a growing array
 * of rows of size bytes, and finalizes it: no callback of the caller runs
 * while the statement is live.  *rows and *n get what was read, also on
 * an error (the caller frees them).
 */
int
sq_rows_collect(struct store *st, sqlite3_stmt *stmt,
    int (*read)(sqlite3_stmt *, void *), size_t size, void **rows, size_t *n,
    const char *what)
{
	size_t cap = 0;
	int rc = 0, step;

	*rows = NULL;
	*n = 0;
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if ((rc = rows_room(rows, &cap, *n, size)) != 0 ||
		    (rc = read(stmt, (char *)*rows + *n * size)) != 0)
			goto done;
		(*n)++;
	}
	if (step != SQLITE_DONE)
		rc = sq_db_fail(st, what);
done:
	sqlite3_finalize(stmt);
	return rc;
}

/*
 * The list functions read every row first and call back only after the
 * statement is finalized, so a callback may write to the store, open or
 * roll back a transaction, or list again.  Each row passed to a callback
 * is freed when the callback returns; a callback that keeps a string sets
 * its pointer to NULL.  A callback returns 0 to go on; anything else stops
 * the walk and is returned.
 *
 * jobs_walk reads every row of the bound stmt, then calls cb on each.
 */
static int
jobs_walk(struct store *st, sqlite3_stmt *stmt, job_row_fn cb, void *arg,
    const char *what)
{
	struct job_row *rows;
	size_t n, i;
	int rc;

	rc = sq_rows_collect(st, stmt, job_read, sizeof(*rows), (void **)&rows,
	    &n, what);
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		job_row_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

static int
jobs_list(struct store *st, const char *sql, const int *params, int nparams,
    job_row_fn cb, void *arg, const char *what)
{
	sqlite3_stmt *stmt;
	int rc, p;

	if ((rc = sq_prep(st, sql, &stmt, what)) != 0)
		return rc;
	for (p = 0; p < nparams; p++)
		sqlite3_bind_int(stmt, p + 1, params[p]);
	return jobs_walk(st, stmt, cb, arg, what);
}

int
store_jobs_active(struct store *st, job_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT " JOB_COLS " FROM jobs "
	    "WHERE state NOT IN (?, ?, ?, ?) ORDER BY id";
	static const int terminal[] = { JOB_DONE, JOB_FAILED, JOB_CANCELLED,
	    JOB_SKIPPED };

	return jobs_list(st, sql, terminal, 4, cb, arg, "list active jobs");
}

/* Ended jobs whose outcome is still to be announced (notify_state 1). */
int
store_jobs_owed(struct store *st, job_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT " JOB_COLS " FROM jobs "
	    "WHERE notify_state = ? AND state IN (?, ?, ?, ?) ORDER BY id";
	static const int args[] = { 1, JOB_DONE, JOB_FAILED, JOB_CANCELLED,
	    JOB_SKIPPED };

	return jobs_list(st, sql, args, 5, cb, arg, "list owed jobs");
}

int
store_jobs_page(struct store *st, const struct job_page *pg, job_row_fn cb,
    void *arg)
{
	static const char sql[] = "SELECT " JOB_COLS " FROM jobs "
	    "WHERE id < ?1 AND (?2 IS NULL OR profile = ?2) "
	    "ORDER BY id DESC LIMIT ?3";
	sqlite3_stmt *stmt;
	int rc;

	if (pg->limit < 0)
		return -EINVAL;
	if ((rc = sq_prep(st, sql, &stmt, "list recent jobs")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, pg->before > 0 ? pg->before : INT64_MAX);
	if (pg->profile != NULL)
		sqlite3_bind_text(stmt, 2, pg->profile, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 3, pg->limit);
	return jobs_walk(st, stmt, cb, arg, "list recent jobs");
}

/*
 * A job's history, oldest first.  The creation row has from = -1 (NULL in
 * the table).
 */
struct hist {
	int64_t		 at;
	int		 from;
	int		 to;
	char		*reason;
};

static int
hist_read(sqlite3_stmt *stmt, void *row)
{
	struct hist *h = row;
	struct reader r = { stmt, 0, 0 };

	h->at = sq_r_int(&r);
	h->from = sqlite3_column_type(stmt, 1) == SQLITE_NULL ? -1 :
	    (int)sq_r_int(&r);
	r.idx = 2;
	h->to = (int)sq_r_int(&r);
	h->reason = sq_r_text(&r);
	return r.nomem ? -ENOMEM : 0;
}

int
store_history(struct store *st, int64_t job_id, hist_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT at, from_state, to_state, reason "
	    "FROM job_history WHERE job_id = ? ORDER BY id";
	struct hist *rows;
	sqlite3_stmt *stmt;
	size_t n, i;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, "list history")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, job_id);
	rc = sq_rows_collect(st, stmt, hist_read, sizeof(*rows), (void **)&rows,
	    &n, "list history");
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(rows[i].at, (enum job_state)rows[i].from,
			    (enum job_state)rows[i].to, rows[i].reason, arg);
		free(rows[i].reason);
	}
	free(rows);
	return rc;
}

/* Inserts every field of file but id; the row starts PENDING. */
int
store_file_insert(struct store *st, struct file_row *file)
{
	const struct table *t = table_sql(&files_table);
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	file->state = FILE_PENDING;
	if ((rc = sq_prep(st, t->insert, &stmt, "insert file")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	row_bind(&b, t, file, 0);
	if ((rc = sq_b_done(st, &b, "insert file")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	if ((rc = sq_step_done(st, stmt, "insert file")) != 0)
		return rc;
	file->id = sqlite3_last_insert_rowid(st->db);
	return 0;
}

int
store_file_save(struct store *st, const struct file_row *file)
{
	const struct table *t = table_sql(&files_table);
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, t->update, &stmt, "save file")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	row_bind(&b, t, file, 1);
	sq_b_int(&b, file->id);
	if ((rc = sq_b_done(st, &b, "save file")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	if ((rc = sq_step_done(st, stmt, "save file")) != 0)
		return rc;
	return sqlite3_changes(st->db) == 1 ? 0 : -ENOENT;
}

/* A job's files by kind, type and seq; see jobs_list() for callbacks. */
int
store_files(struct store *st, int64_t job_id, file_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT " FILE_COLS " FROM files "
	    "WHERE job_id = ? ORDER BY kind, type, seq";
	sqlite3_stmt *stmt;
	struct file_row *rows;
	size_t n, i;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, "list files")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, job_id);
	rc = sq_rows_collect(st, stmt, file_read, sizeof(*rows), (void **)&rows,
	    &n, "list files");
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		file_row_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

/* Runs sql, a statement with one integer parameter, for id. */
static int
exec_id(struct store *st, const char *sql, int64_t id, const char *what)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, what)) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, id);
	return sq_step_done(st, stmt, what);
}

int
store_files_delete(struct store *st, int64_t job_id)
{
	return exec_id(st, "DELETE FROM files WHERE job_id = ?", job_id,
	    "delete files");
}

int
store_part_add(struct store *st, int64_t file_id, int number, const char *etag)
{
	static const char sql[] = "INSERT OR REPLACE INTO parts (file_id, "
	    "number, etag) VALUES (?, ?, ?)";
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, "add part")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, file_id);
	sqlite3_bind_int(stmt, 2, number);
	sqlite3_bind_text(stmt, 3, etag, -1, SQLITE_TRANSIENT);
	return sq_step_done(st, stmt, "add part");
}

/* Every part S3 acknowledged for a file, by number. */
int
store_parts(struct store *st, int64_t file_id, part_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT number, etag FROM parts "
	    "WHERE file_id = ? ORDER BY number";
	sqlite3_stmt *stmt;
	int rc, step;

	if ((rc = sq_prep(st, sql, &stmt, "list parts")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, file_id);
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if ((rc = cb(sqlite3_column_int(stmt, 0), (const char *)
		    sqlite3_column_text(stmt, 1), arg)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sq_db_fail(st, "list parts");
	sqlite3_finalize(stmt);
	return rc;
}

int
store_parts_delete(struct store *st, int64_t file_id)
{
	return exec_id(st, "DELETE FROM parts WHERE file_id = ?", file_id,
	    "delete parts");
}


