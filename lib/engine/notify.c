/*
 * NOTIFY: one SNS Publish per outcome, recorded once acknowledged; a
 * failed publish never changes the job's outcome and is retried in the
 * background.  The message holds counts and names only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "aws/sns.h"

#define NOTIFY_TRIES	3	/* quick attempts before publishing later */

/* ---- NOTIFY ------------------------------------------------------------ */

static const char *
outcome(const struct ejob *j)
{
	if (j->row.state == JOB_FAILED)
		return "FAILED";
	if (j->row.state == JOB_CANCELLED)
		return "CANCELLED";
	if (j->row.state == JOB_SKIPPED)
		return "SKIPPED";
	if (j->row.import_status != NULL &&
	    strcmp(j->row.import_status, "COMPLETED_WITH_ERRORS") == 0)
		return "COMPLETED_WITH_ERRORS";
	return "DONE";
}

static int
add_state(int64_t at, enum job_state from, enum job_state to,
    const char *reason, void *arg)
{
	json_t *states = arg;

	(void)from;
	json_array_append_new(states, json_pack("{s:s, s:I, s:s?}", "state",
	    job_state_name(to), "at", (json_int_t)at, "reason", reason));
	return 0;
}

static int
add_file(struct file_row *f, void *arg)
{
	json_t *types = arg, *t;

	if (f->kind != FILE_OUTPUT)
		return 0;
	if ((t = json_object_get(types, f->type)) == NULL) {
		t = json_pack("{s:I, s:I, s:I}", "files", (json_int_t)0,
		    "resources", (json_int_t)0, "bytes", (json_int_t)0);
		json_object_set_new(types, f->type, t);
	}
	json_object_set_new(t, "files", json_integer(json_integer_value(
	    json_object_get(t, "files")) + 1));
	json_object_set_new(t, "resources", json_integer(json_integer_value(
	    json_object_get(t, "resources")) + f->lines));
	json_object_set_new(t, "bytes", json_integer(json_integer_value(
	    json_object_get(t, "bytes")) + f->bytes));
	return 0;
}

/*
 * The notification: counts and names only.  Nothing from the data or
 * error files (which identify beneficiaries) goes in.
 */
static char *
notify_message(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	json_t *m, *states = json_array(), *types = json_object(), *imp;
	json_int_t bytes = 0, resources = 0;
	const char *k;
	json_t *v;
	char *text, *uri = NULL, warn[256];

	engine_history(j->e, j->row.id, add_state, states);
	engine_files(j->e, j->row.id, add_file, types);
	json_object_foreach(types, k, v) {
		bytes += json_integer_value(json_object_get(v, "bytes"));
		resources += json_integer_value(json_object_get(v,
		    "resources"));
	}
	if (p->s3_bucket != NULL && j->row.transaction_time != NULL)
		uri = ej_import_uri(j);
	imp = json_pack("{s:s?, s:s?, s:s?}", "job_id", j->row.import_job_id,
	    "status", j->row.import_status, "message", j->row.import_message);
	if (j->row.import_report != NULL)
		json_object_set_new(imp, "report",
		    json_loads(j->row.import_report, 0, NULL));
	m = json_pack("{s:i, s:s, s:I, s:s, s:s?, s:o, s:o, s:I, s:I, s:s?, "
	    "s:o, s:{s:I, s:I, s:I, s:I}, s:s?}",
	    "version", 1, "profile", j->row.profile, "job", (json_int_t)j->row.id,
	    "outcome", outcome(j), "transactionTime", j->row.transaction_time,
	    "states", states, "types", types, "resources", resources,
	    "bytes", bytes, "s3", uri, "import", imp,
	    "errors", "fatal", (json_int_t)j->row.err_counts[0],
	    "error", (json_int_t)j->row.err_counts[1],
	    "warning", (json_int_t)j->row.err_counts[2],
	    "information", (json_int_t)j->row.err_counts[3],
	    "error_message", j->row.state == JOB_FAILED ||
	    j->row.state == JOB_SKIPPED ? j->row.last_error : NULL);
	free(uri);
	if (m != NULL && ej_secret_warning(j->pt, time(NULL), warn, sizeof(warn)))
		json_object_set_new(m, "warning", json_string(warn));
	text = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	return text;
}

static struct http_req *
build_publish(struct ejob *j, const struct aws_creds *c, time_t now)
{
	const struct profile *p = j->pt->prof;
	char subject[100], key[128], *msg;
	struct sns_attr attrs[3] = {
		{ "profile", p->name },
		{ "outcome", outcome(j) },
		{ "dedup_key", key },
	};
	struct sns_fifo fifo = { key, p->name };
	struct http_req *r;

	snprintf(subject, sizeof(subject), "bcdad %s job %lld: %s", p->name,
	    (long long)j->row.id, outcome(j));
	/*
	 * The same for every publish of this outcome, so that one repeated
	 * after a crash (SNS acknowledged it, the record was lost) is
	 * dropped by a FIFO topic or by any subscriber.  The job's creation
	 * time tells apart jobs of a database made anew.
	 */
	snprintf(key, sizeof(key), "%s-%lld-%lld-%s", p->name,
	    (long long)j->row.id, (long long)j->row.created_at, outcome(j));
	if ((msg = notify_message(j)) == NULL)
		return NULL;
	r = sns_publish(j->e->cfg->sns_endpoint, j->e->region,
	    p->sns_topic_arn, subject, msg, attrs, 3,
	    sns_topic_fifo(p->sns_topic_arn) ? &fifo : NULL, c, now);
	free(msg);
	return r;
}

static void
published(struct ejob *j, const struct http_resp *resp, int owed)
{
	struct aws_error e;
	char id[128], why[300];

	if (resp->result == CURLE_OK && resp->status == 200 &&
	    sns_parse_publish(resp, id) == 0) {
		j->row.notify_state = 2;
		free(j->row.notify_message_id);
		j->row.notify_message_id = strdup(id);
		if (owed) {
			if (ej_save(j) != 0)
				JLOG(LOG_LVL_ERR, j, "cannot record the "
				    "notification; it may be sent again");
			JLOG(LOG_LVL_INFO, j, "outcome %s announced (SNS %s)",
			    outcome(j), id);
			j->next_at = NEVER;
			engine_arm(j->e);
			return;
		}
		snprintf(why, sizeof(why), "%s announced on SNS (message %s)",
		    outcome(j), id);
		/* notify_state 2 is saved with DONE, in one transaction. */
		ej_enter(j, JOB_DONE, why, 0);
		return;
	}
	aws_parse_error(resp, &e);
	snprintf(why, sizeof(why), "SNS Publish to %s failed: %s", j->pt->prof->
	    sns_topic_arn, resp->result != CURLE_OK ? resp->error : e.code[0] ?
	    e.code : "unreadable answer");
	if (owed) {
		j->attempts++;
		JLOG(LOG_LVL_WARN, j, "%s; will try again", why);
		j->next_at = ej_now(j->e) + ej_backoff(j->e->cfg->retry_min,
		    j->e->cfg->retry_max, j->attempts);
		engine_arm(j->e);
		return;
	}
	if (j->attempts + 1 < NOTIFY_TRIES && aws_retryable(resp, &e)) {
		ej_retry(j, -1, "%s", why);
		return;
	}
	/* The outcome stands; the announcement is owed and retried later. */
	JLOG(LOG_LVL_WARN, j, "%s; the outcome is kept and announced later",
	    why);
	j->row.notify_state = 1;
	ej_enter(j, JOB_DONE, "export complete; notification pending", 0);
	j->next_at = ej_now(j->e) + ej_backoff(j->e->cfg->retry_min,
	    j->e->cfg->retry_max, 1);
	engine_arm(j->e);
}

static void
on_publish(struct ejob *j, const struct http_resp *resp)
{
	published(j, resp, 0);
}

static void
on_publish_owed(struct ejob *j, const struct http_resp *resp)
{
	published(j, resp, 1);
}

void
step_notify(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char why[512];
	int rc;

	if (p->sns_topic_arn == NULL || j->e->creds == NULL) {
		/* No topic: the outcome goes to the journal only. */
		snprintf(why, sizeof(why), "export %s complete (%s; errors: "
		    "%lld error, %lld warning)", j->row.transaction_time,
		    j->row.out_dir, (long long)(j->row.err_counts[0] +
		    j->row.err_counts[1]), (long long)j->row.err_counts[2]);
		ej_enter(j, JOB_DONE, why, 0);
		return;
	}
	if ((rc = ej_region(j)) == 0)
		return;		/* region_cb wakes us */
	if (rc < 0) {
		/* The outcome stands; announced once there is a region. */
		j->row.notify_state = 1;
		ej_enter(j, JOB_DONE, "export complete; no AWS region to "
		    "notify", 0);
		if (rc == -2)
			ej_due(j, ej_backoff(j->e->cfg->retry_min,
			    j->e->cfg->retry_max, 1));
		return;
	}
	ej_aws_call(j, build_publish, on_publish);
}

/* True when j ended and SNS is still owed its outcome. */
int
ej_notify_owed(const struct ejob *j)
{
	return j->dead && j->row.notify_state == 1 && j->pt != NULL &&
	    j->pt->prof->sns_topic_arn != NULL && j->e->creds != NULL;
}

/* Publishes an ended job's owed outcome (from the wake-up loop). */
void
ej_notify_retry(struct ejob *j)
{
	if (j->aws_wait || j->req != NULL)
		return;
	switch (ej_region(j)) {
	case 1:
		ej_aws_call(j, build_publish, on_publish_owed);
		break;
	case -2:
		j->attempts++;
		ej_due(j, ej_backoff(j->e->cfg->retry_min,
		    j->e->cfg->retry_max, j->attempts));
		break;
	}
	/* 0: region_cb wakes us; -1: no region to announce it, ever. */
}
