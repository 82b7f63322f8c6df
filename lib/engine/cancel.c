/*
 * Cancellation, in one place.  What a job can have in flight, and how a
 * cancel ends each:
 *
 *	j->req			its one BCDA request (kickoff, poll, list,
 *				DELETE): cancelled with curl, freed
 *	fs[i].dl		downloads: cancelled, their .part removed;
 *				one whose commit runs on the thread pool is
 *				left to finish (it only renames a whole
 *				file), and the job ends once it is back
 *	fs[i].up, manifest_up	S3 uploads: cancelled (ej_s3_cancel); open
 *				multipart uploads aborted when the job ends
 *				(ej_s3_abandon)
 *	aws_wait		an AWS call waiting for credentials: the
 *				callback sees the cancel and does nothing
 *	the BCDA job		polled: DELETE on its status URL; kicked off
 *				but unanswered: found in /jobs, then DELETE
 *
 * A job in NOTIFY is complete: only its announcement is left, so a
 * cancel there is refused.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"

/* ---- cancel ------------------------------------------------------------ */

static void
on_delete(struct ejob *j, const struct http_resp *resp)
{
	char why[128];

	snprintf(why, sizeof(why), "cancelled on request (BCDA answered "
	    "%ld)", resp->status);
	ej_enter(j, JOB_CANCELLED, why, 0);
}

/*
 * A cancel with a kickoff sent and unanswered (in flight when the cancel
 * came, or lost in a crash): BCDA may have started the job all the same.
 * It is found in BCDA's job list and deleted, so that it neither runs for
 * nothing nor blocks the next night with the duplicate-job 429.
 */
static void
on_cancel_list(struct ejob *j, const struct http_resp *resp)
{
	char *url, what[300];

	if ((url = ej_own_job(j, resp)) != NULL) {
		free(j->row.status_url);
		j->row.status_url = url;
		ej_save(j);
		JLOG(LOG_LVL_INFO, j, "the cancelled kickoff started BCDA job "
		    "%s; deleting it", url);
		ej_due(j, 0);
		return;
	}
	if (resp->result == CURLE_OK && resp->status < 500) {
		j->row.kickoff_sent = 0;
		ej_enter(j, JOB_CANCELLED, "cancelled on request (no BCDA job "
		    "was started)", 0);
		return;
	}
	ej_describe(resp, what, sizeof(what));
	ej_retry(j, -1, "cancelling: listing BCDA jobs failed: %s", what);
}

void
step_cancel(struct ejob *j)
{
	char *url;

	if (j->row.state == JOB_NOTIFY) {
		/* Export and import are done: only the announcement is left. */
		j->row.cancel_requested = 0;
		ej_save(j);
		step_notify(j);
		return;
	}
	ej_cancel_transfers(j);
	if (j->ndl > 0)
		return;		/* a commit; its end wakes the job */
	if ((j->row.state == JOB_POLL || j->row.state == JOB_KICKOFF) &&
	    j->row.status_url != NULL) {
		/* Tell BCDA too, so it stops working and frees the ACO. */
		if (ej_have_token(j))
			ej_api_request(j, "DELETE", j->row.status_url, 0,
			    on_delete);
		return;
	}
	if (j->row.state == JOB_KICKOFF && j->row.kickoff_sent != 0) {
		if (!ej_have_token(j))
			return;
		if ((url = bcda_jobs_url(j->pt->prof)) == NULL) {
			ej_retry(j, -1, "out of memory");
			return;
		}
		ej_api_request(j, "GET", url, 1, on_cancel_list);
		free(url);
		return;
	}
	ej_enter(j, JOB_CANCELLED, "cancelled on request", 0);
}

void
ej_cancel_transfers(struct ejob *j)
{
	size_t i;
	struct dl *d;

	if (j->req != NULL) {
		http_cancel(j->e->http, j->req);
		http_req_free(j->req);
		j->req = NULL;
	}
	for (i = 0; i < j->nfiles; i++) {
		if ((d = j->fs[i].dl) == NULL || d->committing)
			continue;
		http_cancel(j->e->http, d->req);
		fetch_abort(d->fetch);
		ej_dl_free(d);
	}
	ej_s3_cancel(j);
}

int
engine_cancel(struct engine *e, int64_t id, char *err, size_t errlen)
{
	struct ejob *j;

	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (j->row.id != id || j->dead)
			continue;
		if (j->row.cancel_requested) {
			snprintf(err, errlen, "job %lld is already being "
			    "cancelled", (long long)id);
			return -EALREADY;
		}
		if (j->row.state == JOB_NOTIFY) {
			snprintf(err, errlen, "job %lld is complete and "
			    "announcing its outcome; nothing to cancel",
			    (long long)id);
			return -EBUSY;
		}
		j->row.cancel_requested = (int64_t)time(NULL);
		if (ej_save(j) != 0) {
			j->row.cancel_requested = 0;
			snprintf(err, errlen, "cannot record the cancel");
			return -EIO;
		}
		ej_cancel_transfers(j);
		j->waiting_token = 0;
		ej_due(j, 0);
		return 0;
	}
	snprintf(err, errlen, "no running job %lld", (long long)id);
	return -ENOENT;
}
