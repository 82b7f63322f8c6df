/*
 * The store's small tables and summaries: per-scope watermarks (the next
 * export's _since), the file tallies of `bcdad status` and what the
 * metrics file reports.  See store.h; the
 * statement helpers are store.c's, through store_int.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

/*
 * The watermark of a profile's scope: the transactionTime of its last
 * complete export.  A profile with no watermark in any scope falls back
 * to its cursor from before version 5.  *out is NULL when there is none.
 */
int
store_watermark_get(struct store *st, const char *profile, const char *scope,
    char **out)
{
	static const char sql[] = "SELECT transaction_time FROM watermark "
	    "WHERE profile = ?1 AND scope = ?2 UNION ALL "
	    "SELECT transaction_time FROM profile_cursor WHERE profile = ?1 "
	    "AND NOT EXISTS (SELECT 1 FROM watermark WHERE profile = ?1) "
	    "LIMIT 1";
	struct binder b;
	struct reader r;
	sqlite3_stmt *stmt;
	int rc;

	*out = NULL;
	if ((rc = sq_prep(st, sql, &stmt, "get watermark")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	sq_b_text(&b, profile);
	sq_b_text(&b, scope);
	if ((rc = sq_b_done(st, &b, "get watermark")) != 0)
		goto done;
	switch (sqlite3_step(stmt)) {
	case SQLITE_ROW:
		r = (struct reader){ stmt, 0, 0 };
		*out = sq_r_text(&r);
		if (r.nomem)
			rc = -ENOMEM;
		break;
	case SQLITE_DONE:
		break;
	default:
		rc = sq_db_fail(st, "get watermark");
		break;
	}
done:
	sqlite3_finalize(stmt);
	return rc;
}

int
store_watermark_set(struct store *st, const char *profile, const char *scope,
    const char *transaction_time, int64_t job_id, int64_t now)
{
	static const char sql[] = "INSERT INTO watermark "
	    "(profile, scope, transaction_time, updated_at, job_id) "
	    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (profile, scope) DO UPDATE SET "
	    "transaction_time = excluded.transaction_time, "
	    "updated_at = excluded.updated_at, job_id = excluded.job_id";
	struct binder b;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, "set watermark")) != 0)
		return rc;
	b = (struct binder){ stmt, 0, SQLITE_OK };
	sq_b_text(&b, profile);
	sq_b_text(&b, scope);
	sq_b_text(&b, transaction_time);
	sq_b_int(&b, now);
	sq_b_int(&b, job_id);
	if ((rc = sq_b_done(st, &b, "set watermark")) != 0) {
		sqlite3_finalize(stmt);
		return rc;
	}
	return sq_step_done(st, stmt, "set watermark");
}

static int
mark_read(sqlite3_stmt *stmt, void *row)
{
	struct mark_row *m = row;
	struct reader r = { stmt, 0, 0 };

	m->profile = sq_r_text(&r);
	m->scope = sq_r_text(&r);
	m->transaction_time = sq_r_text(&r);
	m->updated_at = sq_r_int(&r);
	m->job_id = sq_r_int(&r);
	if (!r.nomem)
		return 0;
	free(m->profile);
	free(m->scope);
	free(m->transaction_time);
	return -ENOMEM;
}

/* Every watermark, by profile and then newest first; rows read first. */
int
store_watermarks(struct store *st, mark_row_fn cb, void *arg)
{
	static const char sql[] = "SELECT profile, scope, transaction_time, "
	    "updated_at, job_id FROM watermark ORDER BY profile, updated_at "
	    "DESC";
	struct mark_row *rows;
	sqlite3_stmt *stmt;
	size_t n, i;
	int rc;

	if ((rc = sq_prep(st, sql, &stmt, "list watermarks")) != 0)
		return rc;
	rc = sq_rows_collect(st, stmt, mark_read, sizeof(*rows), (void **)&rows,
	    &n, "list watermarks");
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		free(rows[i].profile);
		free(rows[i].scope);
		free(rows[i].transaction_time);
	}
	free(rows);
	return rc;
}

int
store_state_counts(struct store *st, int64_t counts[JOB_NSTATES])
{
	static const char sql[] = "SELECT state, count(*) FROM jobs "
	    "GROUP BY state";
	sqlite3_stmt *stmt;
	int rc, step, s;

	memset(counts, 0, sizeof(int64_t) * JOB_NSTATES);
	if ((rc = sq_prep(st, sql, &stmt, "count jobs")) != 0)
		return rc;
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		s = sqlite3_column_int(stmt, 0);
		if (s >= 0 && s < JOB_NSTATES)
			counts[s] = sqlite3_column_int64(stmt, 1);
	}
	if (step != SQLITE_DONE)
		rc = sq_db_fail(st, "count jobs");
	sqlite3_finalize(stmt);
	return rc;
}

static int
outcome_read(sqlite3_stmt *stmt, void *row)
{
	struct outcome_row *o = row;
	struct reader r = { stmt, 0, 0 };

	o->profile = sq_r_text(&r);
	o->last_state = (int)sq_r_int(&r);
	o->last_at = sq_r_int(&r);
	o->done_at = sq_r_int(&r);
	o->resources = sq_r_int(&r);
	o->bytes = sq_r_int(&r);
	return r.nomem ? -ENOMEM : 0;
}

int
store_outcomes(struct store *st, outcome_row_fn cb, void *arg)
{
	/* Ended: DONE, FAILED, CANCELLED, SKIPPED (job.h). */
	static const char sql[] =
	    "WITH ended AS (SELECT * FROM jobs WHERE state IN (8, 9, 10, 11)), "
	    "last AS (SELECT profile, max(id) AS id FROM ended GROUP BY "
	    "profile), done AS (SELECT profile, max(id) AS id FROM ended "
	    "WHERE state = 8 GROUP BY profile) "
	    "SELECT l.profile, j.state, j.updated_at, "
	    "coalesce(d.updated_at, 0), "
	    "coalesce((SELECT sum(lines) FROM files WHERE job_id = d.id AND "
	    "kind = 0), 0), "
	    "coalesce((SELECT sum(bytes) FROM files WHERE job_id = d.id AND "
	    "kind = 0), 0) "
	    "FROM last l JOIN jobs j ON j.id = l.id "
	    "LEFT JOIN done dn ON dn.profile = l.profile "
	    "LEFT JOIN jobs d ON d.id = dn.id ORDER BY l.profile";
	struct outcome_row *rows;
	sqlite3_stmt *stmt;
	size_t n, i;
	int rc;

	_Static_assert(JOB_DONE == 8 && JOB_FAILED == 9 &&
	    JOB_CANCELLED == 10 && JOB_SKIPPED == 11, "states in the SQL");
	if ((rc = sq_prep(st, sql, &stmt, "list outcomes")) != 0)
		return rc;
	rc = sq_rows_collect(st, stmt, outcome_read, sizeof(*rows),
	    (void **)&rows, &n, "list outcomes");
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		free(rows[i].profile);
	}
	free(rows);
	return rc;
}

static int
tally_read(sqlite3_stmt *stmt, void *row)
{
	struct tally_row *t = row;
	struct reader r = { stmt, 0, 0 };

	t->job_id = sq_r_int(&r);
	t->total = sq_r_int(&r);
	t->done = sq_r_int(&r);
	t->failed = sq_r_int(&r);
	t->bytes = sq_r_int(&r);
	t->lines = sq_r_int(&r);
	t->error_lines = sq_r_int(&r);
	return 0;
}

int
store_tallies(struct store *st, int64_t min_job_id, int64_t max_job_id,
    tally_row_fn cb, void *arg)
{
	/* FILE_DONE 1, FILE_FAILED 2, FILE_OUTPUT 0 (job.h). */
	static const char sql[] = "SELECT job_id, count(*), "
	    "total(state = 1), total(state = 2), "
	    "total(CASE WHEN state = 1 THEN bytes END), "
	    "total(CASE WHEN state = 1 AND kind = 0 THEN lines END), "
	    "total(CASE WHEN state = 1 AND kind <> 0 THEN lines END) "
	    "FROM files WHERE job_id BETWEEN ? AND ? GROUP BY job_id";
	struct tally_row *rows;
	sqlite3_stmt *stmt;
	size_t n, i;
	int rc;

	_Static_assert(FILE_DONE == 1 && FILE_FAILED == 2 && FILE_OUTPUT == 0,
	    "file states and kinds in the SQL");
	if ((rc = sq_prep(st, sql, &stmt, "tally files")) != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, min_job_id);
	sqlite3_bind_int64(stmt, 2, max_job_id);
	rc = sq_rows_collect(st, stmt, tally_read, sizeof(*rows),
	    (void **)&rows, &n, "tally files");
	for (i = 0; i < n && rc == 0; i++)
		rc = cb(&rows[i], arg);
	free(rows);
	return rc;
}
