/*
 * The export job state machine: names, the table of legal transitions and
 * the one function through which every state change is made.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job.h"
#include "store.h"

static const char *const state_names[] = {
	[JOB_NEW]	= "NEW",
	[JOB_TOKEN]	= "TOKEN",
	[JOB_KICKOFF]	= "KICKOFF",
	[JOB_POLL]	= "POLL",
	[JOB_DOWNLOAD]	= "DOWNLOAD",
	[JOB_S3_PUT]	= "S3_PUT",
	[JOB_IMPORT]	= "IMPORT",
	[JOB_NOTIFY]	= "NOTIFY",
	[JOB_DONE]	= "DONE",
	[JOB_FAILED]	= "FAILED",
	[JOB_CANCELLED]	= "CANCELLED",
	[JOB_SKIPPED]	= "SKIPPED",
};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == JOB_NSTATES,
    "every state needs a name");

#define T(s)	(1u << (s))
/*
 * The legal transitions, and the only place they are listed.  Every live
 * state may fail or be cancelled.  POLL and DOWNLOAD go back to KICKOFF
 * when BCDA expired the job or its files (a new BCDA job for the same
 * bcdad job).  NOTIFY ends in DONE whatever the notification's fate.
 * KICKOFF ends in SKIPPED when BCDA has nothing to export yet (no
 * current attribution in January): not a failure, and no data.
 */
static const unsigned transitions[JOB_NSTATES] = {
	[JOB_NEW]	= T(JOB_TOKEN) | T(JOB_FAILED) | T(JOB_CANCELLED),
	[JOB_TOKEN]	= T(JOB_KICKOFF) | T(JOB_FAILED) | T(JOB_CANCELLED),
	[JOB_KICKOFF]	= T(JOB_POLL) | T(JOB_SKIPPED) | T(JOB_FAILED) |
			  T(JOB_CANCELLED),
	[JOB_POLL]	= T(JOB_DOWNLOAD) | T(JOB_KICKOFF) | T(JOB_FAILED) |
			  T(JOB_CANCELLED),
	[JOB_DOWNLOAD]	= T(JOB_S3_PUT) | T(JOB_KICKOFF) | T(JOB_FAILED) |
			  T(JOB_CANCELLED),
	[JOB_S3_PUT]	= T(JOB_IMPORT) | T(JOB_FAILED) | T(JOB_CANCELLED),
	[JOB_IMPORT]	= T(JOB_NOTIFY) | T(JOB_FAILED) | T(JOB_CANCELLED),
	[JOB_NOTIFY]	= T(JOB_DONE),
	[JOB_DONE]	= 0,
	/* bcdad retry: back to the state it failed in. */
	[JOB_FAILED]	= T(JOB_TOKEN) | T(JOB_KICKOFF) | T(JOB_POLL) |
			  T(JOB_DOWNLOAD) | T(JOB_S3_PUT) | T(JOB_IMPORT) |
			  T(JOB_NOTIFY),
	[JOB_CANCELLED]	= 0,
	[JOB_SKIPPED]	= 0,
};
#undef T

const char *
job_state_name(enum job_state s)
{
	if ((unsigned)s >= JOB_NSTATES)
		return "UNKNOWN";
	return state_names[s];
}

int
job_state_parse(const char *name, enum job_state *out)
{
	int i;

	for (i = 0; i < JOB_NSTATES; i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum job_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
job_state_terminal(enum job_state s)
{
	return s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED ||
	    s == JOB_SKIPPED;
}

int
job_transition_ok(enum job_state from, enum job_state to)
{
	if ((unsigned)from >= JOB_NSTATES || (unsigned)to >= JOB_NSTATES)
		return 0;
	return (transitions[from] & (1u << to)) != 0;
}

/*
 * The one write of a job: compare-and-set of its state (to itself for a
 * checkpoint), every field, extra, and a history row for a change of
 * state or a reason, in one transaction.  The order is the one Core
 * Lightning uses; only after the commit does memory change, so a failed
 * write leaves the job exactly as it was on disk and in memory.
 */
static int
job_write(struct store *st, struct job_row *job, enum job_state expected,
    enum job_state to, const char *why, job_extra_fn extra, void *arg)
{
	int64_t now = (int64_t)time(NULL);
	int64_t saved_updated = job->updated_at;
	int rc;

	if (job->state != expected)
		return -ESTALE;
	if ((rc = store_begin(st)) != 0)
		return rc;
	if ((rc = store_job_cas_state(st, job->id, expected, to, now)) != 0)
		goto fail;
	job->state = to;
	job->updated_at = now;
	if ((rc = store_job_save(st, job)) != 0)
		goto fail;
	if (extra != NULL && (rc = extra(st, job, arg)) != 0)
		goto fail;
	if ((expected != to || why != NULL) && (rc = store_history_add(st,
	    job->id, now, expected, to, why)) != 0)
		goto fail;
	if ((rc = store_commit(st)) != 0)
		goto fail;
	return 0;
fail:
	store_rollback(st);
	job->state = expected;
	job->updated_at = saved_updated;
	return rc;
}

int
job_set_state(struct store *st, struct job_row *job, enum job_state expected,
    enum job_state to, const char *why, job_extra_fn extra, void *arg)
{
	if (!job_transition_ok(expected, to))
		return -EINVAL;
	return job_write(st, job, expected, to, why, extra, arg);
}

int
job_checkpoint(struct store *st, struct job_row *job, const char *why,
    job_extra_fn extra, void *arg)
{
	return job_write(st, job, job->state, job->state, why, extra, arg);
}

void
job_row_clear(struct job_row *j)
{
	free(j->profile);
	free(j->since);
	free(j->kickoff_url);
	free(j->status_url);
	free(j->transaction_time);
	free(j->out_dir);
	free(j->last_error);
	free(j->import_token);
	free(j->import_job_id);
	free(j->import_status);
	free(j->import_message);
	free(j->import_report);
	free(j->notify_message_id);
	free(j->scope);
	memset(j, 0, sizeof(*j));
}

/* The string fields of a job row, for job_row_copy. */
static const size_t job_strings[] = {
	offsetof(struct job_row, profile), offsetof(struct job_row, since),
	offsetof(struct job_row, kickoff_url),
	offsetof(struct job_row, status_url),
	offsetof(struct job_row, transaction_time),
	offsetof(struct job_row, out_dir), offsetof(struct job_row, last_error),
	offsetof(struct job_row, import_token),
	offsetof(struct job_row, import_job_id),
	offsetof(struct job_row, import_status),
	offsetof(struct job_row, import_message),
	offsetof(struct job_row, import_report),
	offsetof(struct job_row, notify_message_id),
	offsetof(struct job_row, scope),
};
#define JOB_STRING(row, off)	(*(char **)((char *)(row) + (off)))

/* A deep copy: dst's strings are its own.  -ENOMEM leaves dst cleared. */
int
job_row_copy(struct job_row *dst, const struct job_row *src)
{
	const size_t n = sizeof(job_strings) / sizeof(job_strings[0]);
	const char *s;
	size_t i;

	*dst = *src;
	for (i = 0; i < n; i++)
		JOB_STRING(dst, job_strings[i]) = NULL;
	for (i = 0; i < n; i++) {
		s = JOB_STRING(src, job_strings[i]);
		if (s != NULL && (JOB_STRING(dst, job_strings[i]) =
		    strdup(s)) == NULL) {
			job_row_clear(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

void
file_row_clear(struct file_row *f)
{
	free(f->type);
	free(f->url);
	free(f->name);
	free(f->sha256);
	free(f->last_error);
	free(f->s3_upload_id);
	memset(f, 0, sizeof(*f));
}
