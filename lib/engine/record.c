/*
 * The engine's one door to the store.  Every durable write of a job, its
 * files and its upload parts is one call to ej_record(): a transition
 * (job_set_state) or a same-state checkpoint (job_checkpoint), which
 * writes the job row, the rows of the job's files that changed since the
 * last write, and what the caller names, in one transaction.  The steps
 * report what happened by changing the rows in memory; nothing else in
 * lib/engine/ writes the store.
 *
 * A write that fails is retried, not the step that led to it: changed
 * file rows stay marked unsaved, a transition is held (ej_enter), and the
 * scheduler writes them again before it runs the job's next step.  A lost
 * compare-and-set (the stored state is not the job's: someone else wrote
 * the database) marks the job stale, and the scheduler reloads it.
 *
 * The reads the engine and the daemon need are here too, below.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "store/store.h"

struct rec {
	struct ejob	*j;
	unsigned	 what;
	const struct file_row *part_file;
	int		 part;
	const char	*etag;
};

/* Inside the job's transaction, after its row: files, parts, watermark. */
static int
rec_extra(struct store *st, struct job_row *job, void *arg)
{
	struct rec *r = arg;
	struct ejob *j = r->j;
	size_t i;
	int rc;

	if (r->what & REC_FILES) {
		/* The manifest's files replace whatever an older one left. */
		if ((rc = store_files_delete(st, job->id)) != 0)
			return rc;
		for (i = 0; i < j->nfiles; i++)
			if ((rc = store_file_insert(st, &j->files[i])) != 0)
				return rc;
	}
	for (i = 0; i < j->nfiles && !(r->what & REC_FILES); i++) {
		if ((j->fs[i].unsaved & FS_DROP_PARTS) &&
		    (rc = store_parts_delete(st, j->files[i].id)) != 0)
			return rc;
		if (j->fs[i].unsaved &&
		    (rc = store_file_save(st, &j->files[i])) != 0)
			return rc;
	}
	if (r->part_file != NULL && (rc = store_part_add(st,
	    r->part_file->id, r->part, r->etag)) != 0)
		return rc;
	if ((r->what & REC_WATERMARK) && job->transaction_time != NULL &&
	    job->scope != NULL && (rc = store_watermark_set(st, job->profile,
	    job->scope, job->transaction_time, job->id,
	    (int64_t)time(NULL))) != 0)
		return rc;
	return 0;
}

static int
record(struct ejob *j, enum job_state to, const char *why, struct rec *r)
{
	struct store *st = j->e->st;
	uint64_t delay;
	size_t i;
	int rc;

	if (j->stale)
		return -ESTALE;
	r->j = j;
	j->row.updated_at = (int64_t)time(NULL);
	rc = to == j->row.state ? job_checkpoint(st, &j->row, why, rec_extra,
	    r) : job_set_state(st, &j->row, j->row.state, to, why, rec_extra,
	    r);
	if (rc == 0) {
		j->unsaved = 0;
		for (i = 0; i < j->nfiles; i++)
			j->fs[i].unsaved = 0;
		j->write_failures = 0;
		ej_sum_job(j);
		return 0;
	}
	if (rc == -ESTALE) {
		JLOG(LOG_LVL_ERR, j, "the database no longer holds this job in "
		    "%s; reloading it", job_state_name(j->row.state));
		j->stale = 1;
		ej_due(j, 0);
		return rc;
	}
	j->unsaved = 1;
	delay = ej_backoff(j->e->cfg->retry_min, j->e->cfg->retry_max,
	    ++j->write_failures);
	if (j->next_at > ej_now(j->e) + delay)
		ej_due(j, delay);
	return rc;
}

/*
 * The one function through which the engine writes the store: moves the
 * job to state to (its own state: a checkpoint) with the history row why
 * (NULL: none, only without a change of state), saving the job row, its
 * unsaved files and what (REC_*) in one transaction.  On failure the
 * job row is marked unsaved and written again before its next step.
 */
int
ej_record(struct ejob *j, enum job_state to, const char *why, unsigned what)
{
	struct rec r = { NULL, what, NULL, 0, NULL };

	return record(j, to, why, &r);
}

/* Saves the job row as it is (no change of state); logs a failure. */
int
ej_save(struct ejob *j)
{
	int rc;

	if ((rc = ej_record(j, j->row.state, NULL, 0)) != 0 && rc != -ESTALE)
		JLOG(LOG_LVL_ERR, j, "cannot save the job: %s; it is written "
		    "again before the next step", strerror(-rc));
	return rc;
}

/*
 * Saves file f of the job (with the job row).  drop_parts: its multipart
 * upload is over, its part rows go too.  Unsaved, the file stays marked
 * and is written with the job's next write.
 */
int
ej_file_save(struct ejob *j, struct file_row *f, int drop_parts)
{
	size_t i = (size_t)(f - j->files);
	int rc;

	j->fs[i].unsaved |= FS_DIRTY | (drop_parts ? FS_DROP_PARTS : 0);
	if ((rc = ej_record(j, j->row.state, NULL, 0)) != 0 && rc != -ESTALE)
		JLOG(LOG_LVL_ERR, j, "cannot record file %s: %s; it is written "
		    "again before the next step", f->name, strerror(-rc));
	return rc;
}

/* Part number of f's multipart upload, acknowledged by S3 with etag. */
int
ej_part_save(struct ejob *j, const struct file_row *f, int part,
    const char *etag)
{
	struct rec r = { NULL, 0, f, part, etag };

	return record(j, j->row.state, NULL, &r);
}

/* Calls add for every part of f's multipart upload recorded so far. */
int
ej_parts(struct ejob *j, const struct file_row *f, part_row_fn add, void *arg)
{
	return store_parts(j->e->st, f->id, add, arg);
}

/*
 * Writes what a failed write left: a held transition (ej_enter), else the
 * job row and its unsaved files.  Returns 0 when nothing is left; else the
 * job is due again after a backoff.
 */
int
ej_flush(struct ejob *j)
{
	char *why;
	int rc;

	if (j->held_why != NULL) {
		why = j->held_why;
		j->held_why = NULL;
		rc = ej_enter(j, j->held_to, why, j->held_what);
		free(why);
		return rc;
	}
	if (!j->unsaved)
		return 0;
	if ((rc = ej_record(j, j->row.state, NULL, 0)) == 0) {
		JLOG(LOG_LVL_INFO, j, "unsaved changes written");
		return 0;
	}
	if (rc != -ESTALE)
		JLOG(LOG_LVL_ERR, j, "cannot write the job: %s", strerror(-rc));
	return rc;
}

/*
 * Replaces the job's row with the stored one (see ej_record).  Downloads
 * being committed on the thread pool cannot be cancelled and still point
 * into the job's files: the reload waits for them (the last one's end
 * wakes the job), their records refused as stale meanwhile.
 */
int
ej_reload(struct ejob *j)
{
	struct job_row row;
	int rc;

	ej_cancel_transfers(j);
	if (j->ndl > 0) {
		j->next_at = NEVER;
		return 0;
	}
	if ((rc = store_job_get(j->e->st, j->row.id, &row)) != 0) {
		ej_due(j, 5000);
		return rc;
	}
	JLOG(LOG_LVL_WARN, j, "reloaded: the database holds it in %s",
	    job_state_name(row.state));
	ej_free_files(j);
	job_row_clear(&j->row);
	j->row = row;
	ej_sum_job(j);
	free(j->held_why);
	j->held_why = NULL;
	j->unsaved = 0;
	j->stale = 0;
	ej_ok(j);
	if (job_state_terminal(j->row.state))
		j->dead = 1;
	ej_due(j, 0);
	return 0;
}

/* ---- reads ------------------------------------------------------------- */

static int
collect_file(struct file_row *f, void *arg)
{
	struct ejob *j = arg;

	return ej_add_file(j, f);
}

/* Loads the job's file rows once; on failure the job is set to retry. */
int
ej_load_files(struct ejob *j)
{
	if (j->files_loaded)
		return 0;
	ej_free_files(j);
	if (store_files(j->e->st, j->row.id, collect_file, j) != 0) {
		ej_free_files(j);
		ej_retry(j, -1, "cannot read the file list");
		return -EIO;
	}
	j->files_loaded = 1;
	return 0;
}

int
ej_load_jobs(struct engine *e, job_row_fn active, job_row_fn owed)
{
	int rc;

	if ((rc = store_jobs_active(e->st, active, e)) != 0)
		return rc;
	return store_jobs_owed(e->st, owed, e);
}

int
ej_insert_job(struct engine *e, struct job_row *row)
{
	int rc;

	if ((rc = store_job_insert(e->st, row, (int64_t)time(NULL))) == 0)
		ej_sum_row(e, row);
	return rc;
}

int
ej_watermark(struct engine *e, const char *profile, const char *scope,
    char **out)
{
	return store_watermark_get(e->st, profile, scope, out);
}

int
ej_store_open(struct engine *e, const char *path, char *err, size_t errlen)
{
	return store_open(path, 0, &e->st, err, errlen);
}

void
ej_store_close(struct engine *e)
{
	store_close(e->st);
	e->st = NULL;
}

/* For the daemon's status and metrics: see engine.h. */
/* Jobs, a job and tallies: from memory (summary.c) when it holds them. */
int
engine_jobs(struct engine *e, const struct job_page *pg, job_row_fn fn,
    void *arg)
{
	int rc;

	if (ej_sum_page(e, pg, fn, arg, &rc))
		return rc;
	return store_jobs_page(e->st, pg, fn, arg);
}

int
engine_job(struct engine *e, int64_t id, struct job_row *out)
{
	int rc;

	if (ej_sum_get(e, id, out, &rc))
		return rc;
	return store_job_get(e->st, id, out);
}

int
engine_tallies(struct engine *e, int64_t min_job_id, int64_t max_job_id,
    tally_row_fn fn, void *arg)
{
	int rc;

	if (ej_sum_tallies(e, min_job_id, max_job_id, fn, arg, &rc))
		return rc;
	return store_tallies(e->st, min_job_id, max_job_id, fn, arg);
}

int
engine_files(struct engine *e, int64_t job_id, file_row_fn fn, void *arg)
{
	return store_files(e->st, job_id, fn, arg);
}

int
engine_history(struct engine *e, int64_t job_id, hist_row_fn fn, void *arg)
{
	return store_history(e->st, job_id, fn, arg);
}

int
engine_watermarks(struct engine *e, mark_row_fn fn, void *arg)
{
	return store_watermarks(e->st, fn, arg);
}

int
engine_state_counts(struct engine *e, int64_t counts[JOB_NSTATES])
{
	return store_state_counts(e->st, counts);
}

int
engine_outcomes(struct engine *e, outcome_row_fn fn, void *arg)
{
	return store_outcomes(e->st, fn, arg);
}
