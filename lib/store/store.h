/*
 * The state store: one SQLite database in WAL mode.
 *
 * Migrations live in schema/NNN-name.sql and are compiled in (see
 * tools/embed-schema.sh); each runs in its own transaction that also sets
 * PRAGMA user_version = NNN.  A database whose user_version is newer than
 * this binary knows is refused.  Every function returns 0 or a negative
 * errno-style code (-EIO for SQLite errors, with the message logged), and
 * may be called inside or outside store_begin()/store_commit().  Finer
 * codes: -EPROTO a newer schema, -ENOENT no such job or file, -ESTALE a
 * lost compare-and-set, -EEXIST a duplicate, -EINVAL a constraint or bad
 * argument, -EBUSY locked by another process, -ENOSPC disk full.
 *
 * store_begin() nests (savepoints inside a transaction).  After a failed
 * store_commit() the level is still open: call store_rollback().
 */
#ifndef BCDAD_STORE_H
#define BCDAD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct store_migration {
	int		 version;
	const char	*name;
	const char	*sql;
};

extern const struct store_migration store_migrations[];
extern const int store_nmigrations;

struct store;

/*
 * Opens (creating if needed, mode 0600) and migrates the database to
 * target (0 = newest).  On error returns a negative code and puts a
 * sentence in err.
 */
int	store_open(const char *path, int target, struct store **out,
	    char *err, size_t errlen);
void	store_close(struct store *);
int	store_version(struct store *);
/* The newest user_version this binary knows. */
int	store_latest_version(void);

int	store_begin(struct store *);
int	store_commit(struct store *);
void	store_rollback(struct store *);

/* Inserts a job in JOB_NEW with its first history row; sets job->id. */
int	store_job_insert(struct store *, struct job_row *job, int64_t now);
/* Writes state iff the stored state is expected, else -ESTALE. */
int	store_job_cas_state(struct store *, int64_t id,
	    enum job_state expected, enum job_state to, int64_t now);
/* Writes every mutable field of job (not state, not id). */
int	store_job_save(struct store *, const struct job_row *job);
/* from outside the enum (-1) marks creation; reason may be NULL. */
int	store_history_add(struct store *, int64_t job_id, int64_t at,
	    enum job_state from, enum job_state to, const char *reason);
int	store_job_get(struct store *, int64_t id, struct job_row *out);

/*
 * Non-terminal jobs, oldest first.  The callback owns nothing: copy (or
 * take a string and set its pointer to NULL).  Rows are read before the
 * first call, so a callback may write.  A non-zero return stops the walk
 * and is returned.  The same holds for store_history (whose creation row
 * has from == -1) and store_files.
 */
int	store_jobs_active(struct store *, job_row_fn, void *arg);
/* Ended jobs whose outcome is still owed to SNS (notify_state 1). */
int	store_jobs_owed(struct store *, job_row_fn, void *arg);
/* A page of jobs, newest first (struct job_page). */
int	store_jobs_page(struct store *, const struct job_page *, job_row_fn,
	    void *arg);
int	store_history(struct store *, int64_t job_id, hist_row_fn, void *);

/* Inserts a file row (state PENDING); sets file->id. */
int	store_file_insert(struct store *, struct file_row *file);
/* Writes state, attempts, lines, bytes, sha256, last_error and s3_*. */
int	store_file_save(struct store *, const struct file_row *file);
int	store_files(struct store *, int64_t job_id, file_row_fn, void *arg);
/* Deletes all file rows of a job (re-kickoff after expiry). */
int	store_files_delete(struct store *, int64_t job_id);

/* Multipart upload parts S3 acknowledged (ETags kept verbatim). */
int	store_part_add(struct store *, int64_t file_id, int number,
	    const char *etag);
int	store_parts(struct store *, int64_t file_id, part_row_fn, void *arg);
int	store_parts_delete(struct store *, int64_t file_id);

/* Watermarks (see struct mark_row); get sets *out NULL when none. */
int	store_watermark_get(struct store *, const char *profile,
	    const char *scope, char **out);
int	store_watermark_set(struct store *, const char *profile,
	    const char *scope, const char *transaction_time, int64_t job_id,
	    int64_t now);
int	store_watermarks(struct store *, mark_row_fn, void *arg);

/* File tallies of the jobs from min_job_id to max_job_id (tally_row). */
int	store_tallies(struct store *, int64_t min_job_id, int64_t max_job_id,
	    tally_row_fn, void *arg);

/* For metrics: how many jobs are in each state. */
int	store_state_counts(struct store *, int64_t counts[JOB_NSTATES]);

/* For metrics: see struct outcome_row. */
int	store_outcomes(struct store *, outcome_row_fn, void *arg);

#endif
