/*
 * The export job state machine.
 *
 * States are stored in SQLite as integers: never renumber them, only
 * append.  Every change of state goes through job_set_state(), which
 * checks the transition against the one table of legal transitions and
 * writes the new state, the fields the next step needs and a history row
 * in one transaction, before the next step does any network I/O.
 */
#ifndef BCDAD_JOB_H
#define BCDAD_JOB_H

#include <stdint.h>

enum job_state {
	JOB_NEW		= 0,
	JOB_TOKEN	= 1,
	JOB_KICKOFF	= 2,
	JOB_POLL	= 3,
	JOB_DOWNLOAD	= 4,
	JOB_S3_PUT	= 5,
	JOB_IMPORT	= 6,
	JOB_NOTIFY	= 7,
	JOB_DONE	= 8,
	JOB_FAILED	= 9,
	JOB_CANCELLED	= 10,
	JOB_SKIPPED	= 11,	/* nothing BCDA can export yet (January) */
	JOB_NSTATES
};

enum file_state {
	FILE_PENDING	= 0,	/* not yet downloaded (or to be redone) */
	FILE_DONE	= 1,	/* complete, validated, renamed into place */
	FILE_FAILED	= 2,	/* gave up: recorded in last_error */
	FILE_NSTATES
};

/* Where a file stands with S3 (files.s3_state); append only. */
enum file_s3 {
	S3_PENDING	= 0,	/* not uploaded (or no bucket configured) */
	S3_DONE		= 1,	/* S3 has it, verified by its payload hash */
	S3_FAILED	= 2,	/* gave up: recorded in last_error */
};

enum file_kind {
	FILE_OUTPUT	= 0,	/* manifest output[] */
	FILE_ERROR	= 1,	/* manifest error[] (OperationOutcome) */
};

/* Where a job's _since comes from (jobs.since_mode); append only. */
enum since_mode {
	SINCE_MODE_PROFILE	= 0,	/* the profile's since policy */
	SINCE_MODE_GIVEN	= 1,	/* jobs.since, from `run --since` */
	SINCE_MODE_FULL		= 2,	/* full history, from `run --full` */
};

/* The persisted part of a job: one row of the jobs table. */
struct job_row {
	int64_t		 id;
	char		*profile;
	enum job_state	 state;
	int64_t		 created_at;	/* unix seconds */
	int64_t		 updated_at;
	char		*since;		/* _since sent at kickoff, or NULL */
	char		*kickoff_url;	/* the exact URL of the kickoff */
	int64_t		 kickoff_sent;	/* when a kickoff was last sent, 0 never */
	int		 kickoffs;	/* BCDA jobs started for this job */
	char		*status_url;	/* Content-Location of the kickoff */
	int		 progress;	/* percent, -1 unknown */
	int64_t		 progress_stalled; /* s at the same progress, polled */
	char		*transaction_time; /* from the manifest, verbatim */
	int64_t		 completed_at;	/* when the manifest was first seen */
	char		*out_dir;	/* local directory of this export */
	char		*last_error;	/* our words, never server data */
	int64_t		 err_counts[4];	/* fatal, error, warning, info */
	int64_t		 cancel_requested;
	char		*import_token;	/* HealthLake ClientToken */
	char		*import_job_id;
	char		*import_status;
	char		*import_message;
	char		*import_report;	/* JSON of the progress report */
	int		 notify_state;	/* see schema/004-import-notify.sql */
	char		*notify_message_id;
	char		*scope;		/* watermark scope (engine_scope) */
	int		 since_mode;	/* see schema/005-watermark.sql */
	int		 runout;	/* January fallback to /Group/runout */
};

/* One row of the files table. */
struct file_row {
	int64_t		 id;
	int64_t		 job_id;
	enum file_kind	 kind;
	char		*type;		/* resourceType of the lines */
	char		*url;
	int		 seq;		/* n in <Type>-<n>.ndjson, from 1 */
	char		*name;		/* file name under out_dir */
	enum file_state	 state;
	int		 attempts;
	int64_t		 lines;
	int64_t		 bytes;
	char		*sha256;	/* hex, once DONE */
	char		*last_error;
	enum file_s3	 s3_state;
	char		*s3_upload_id;	/* multipart upload in progress */
	int64_t		 s3_part_size;
};

/*
 * A watermark: the transactionTime of a profile's last complete export of
 * one scope (API version, endpoint, types, type filter), the next _since.
 */
struct mark_row {
	char		*profile;
	char		*scope;
	char		*transaction_time;
	int64_t		 updated_at;
	int64_t		 job_id;
};

/*
 * For metrics, per profile with an ended job: its newest ended job (state,
 * when), when it last ended DONE (0 never), and the resources and bytes
 * of that DONE export.
 */
struct outcome_row {
	char		*profile;
	int		 last_state;
	int64_t		 last_at;
	int64_t		 done_at;
	int64_t		 resources;
	int64_t		 bytes;
};

/*
 * A page of jobs for status, newest first: those of profile (NULL: every
 * profile) with an id below before (0: the newest), at most limit.
 */
struct job_page {
	const char	*profile;
	int64_t		 before;
	int		 limit;
};

/* A job's files counted: all, done, failed; bytes and lines when done. */
struct tally_row {
	int64_t		 job_id;
	int64_t		 total, done, failed;
	int64_t		 bytes;
	int64_t		 lines;		/* resources (output files) */
	int64_t		 error_lines;	/* OperationOutcomes (error files) */
};

/*
 * Walks over rows: see store_jobs_active() for what a callback may do.
 * A history row's from is -1 for the job's creation.
 */
typedef int (*job_row_fn)(struct job_row *job, void *arg);
typedef int (*file_row_fn)(struct file_row *file, void *arg);
typedef int (*hist_row_fn)(int64_t at, enum job_state from,
	    enum job_state to, const char *reason, void *arg);
typedef int (*mark_row_fn)(const struct mark_row *, void *arg);
typedef int (*outcome_row_fn)(const struct outcome_row *, void *arg);
typedef int (*tally_row_fn)(const struct tally_row *, void *arg);
/* A multipart upload part S3 acknowledged (its ETag verbatim). */
typedef int (*part_row_fn)(int number, const char *etag, void *arg);

struct store;

const char	*job_state_name(enum job_state);
int		 job_state_parse(const char *, enum job_state *);
int		 job_state_terminal(enum job_state);
int		 job_transition_ok(enum job_state from, enum job_state to);

/*
 * Called inside job_set_state's transaction, after the state was written:
 * saves what the next step needs beyond the job row (e.g. the file list).
 */
typedef int (*job_extra_fn)(struct store *, struct job_row *, void *arg);

/*
 * Compare-and-set: moves job from expected to to, saving every field of
 * *job, running extra (may be NULL), and adding a history row with why,
 * all in one transaction.  Returns 0; -EINVAL for an illegal transition;
 * -ESTALE if the stored state is not expected; or a store error.  On
 * failure nothing is written and job->state is unchanged.
 */
int	job_set_state(struct store *, struct job_row *job,
	    enum job_state expected, enum job_state to, const char *why,
	    job_extra_fn extra, void *arg);
/*
 * The same without a change of state: checks that the stored state is
 * still job->state (-ESTALE if not), saves every field, runs extra, and
 * adds a history row when why is not NULL.  Every other durable write of
 * a job, its files and its upload parts goes through here.
 */
int	job_checkpoint(struct store *, struct job_row *job, const char *why,
	    job_extra_fn extra, void *arg);

void	job_row_clear(struct job_row *);
int	job_row_copy(struct job_row *dst, const struct job_row *src);
void	file_row_clear(struct file_row *);

#endif
