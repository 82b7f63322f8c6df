/*
 * The engine's last stages: IMPORT (one HealthLake StartFHIRImportJob per
 * export, idempotent through a ClientToken written before the call, then
 * DescribeFHIRImportJob until the import ends) and NOTIFY (one SNS Publish
 * per outcome, recorded once acknowledged; a failed publish never changes
 * the job's outcome and is retried in the background).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "healthlake.h"
#include "sns.h"

#define NOTIFY_TRIES	3	/* quick attempts before publishing later */

/* ---- one AWS call of a job ---------------------------------------------- */

static void
aws_done(struct http_req *r, void *arg)
{
	struct ejob *j = arg;
	aws_done_fn fn = j->aws_fn;

	j->req = NULL;
	j->aws_fn = NULL;
	fn(j, http_req_resp(r));
	http_req_free(r);
}

static void
with_creds(void *arg, const struct aws_creds *c, const char *error)
{
	struct ejob *j = arg;
	struct http_req *r;

	j->aws_wait = 0;
	if (j->e->stopping)
		return;
	/* Cancelled or ended while the credentials were on their way. */
	if ((j->dead && !ej_notify_owed(j)) ||
	    (!j->dead && j->row.cancel_requested)) {
		j->aws_fn = NULL;
		j->next_at = ej_now(j->e);
		engine_arm(j->e);
		return;
	}
	if (c == NULL) {
		j->aws_fn = NULL;
		if (j->dead)
			j->next_at = ej_now(j->e) + 60000;
		else
			ej_retry(j, -1, "no AWS credentials: %s", error);
		engine_arm(j->e);
		return;
	}
	if ((r = j->aws_build(j, c, time(NULL))) == NULL ||
	    http_start(j->e->http, r, aws_done, j) != 0) {
		http_req_free(r);
		j->aws_fn = NULL;
		if (!j->dead) {
			ej_retry(j, -1, "cannot build an AWS request");
		} else {
			j->next_at = ej_now(j->e) + 60000;
			engine_arm(j->e);
		}
		return;
	}
	j->req = r;
}

/*
 * Gets credentials, builds the request with build and sends it; done gets
 * the answer.  The job waits (next_at NEVER) meanwhile.
 */
void
ej_aws_call(struct ejob *j, aws_build_fn build, aws_done_fn done)
{
	j->aws_build = build;
	j->aws_fn = done;
	j->next_at = NEVER;
	j->aws_wait = 1;
	awscreds_get(j->e->creds, with_creds, j);
}

/* ---- IMPORT ------------------------------------------------------------ */

static char *
import_input_uri(const struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char *key, *uri, *slash;

	/* The data files' directory: where upload_key() puts them. */
	if ((key = upload_key(p->s3_prefix, p->name, j->row.transaction_time,
	    "x")) == NULL)
		return NULL;
	if ((slash = strrchr(key, '/')) != NULL)
		slash[1] = '\0';
	if (asprintf(&uri, "s3://%s/%s", p->s3_bucket, key) < 0)
		uri = NULL;
	free(key);
	return uri;
}

static struct http_req *
build_datastore(struct ejob *j, const struct aws_creds *c, time_t now)
{
	return hl_describe_datastore(j->e->cfg->healthlake_endpoint,
	    j->e->region, j->pt->prof->healthlake_datastore_id, c, now);
}

static struct http_req *
build_start(struct ejob *j, const struct aws_creds *c, time_t now)
{
	const struct profile *p = j->pt->prof;
	struct hl_import im;
	struct http_req *r;
	char name[65], *in;

	if ((in = import_input_uri(j)) == NULL)
		return NULL;
	/* JobName: letters, digits and _.:/=+-%@ only. */
	snprintf(name, sizeof(name), "bcdad-%s-%.40s", p->name,
	    j->row.transaction_time);
	memset(&im, 0, sizeof(im));
	im.job_name = name;
	im.input_s3_uri = in;
	im.output_s3_uri = p->healthlake_output_uri;
	im.kms_key_id = p->kms_key_id;
	im.datastore_id = p->healthlake_datastore_id;
	im.role_arn = p->healthlake_role_arn;
	im.client_token = j->row.import_token;
	r = hl_start_import(j->e->cfg->healthlake_endpoint, j->e->region, &im,
	    c, now);
	free(in);
	return r;
}

static struct http_req *
build_describe(struct ejob *j, const struct aws_creds *c, time_t now)
{
	return hl_describe_import(j->e->cfg->healthlake_endpoint, j->e->region,
	    j->pt->prof->healthlake_datastore_id, j->row.import_job_id, c, now);
}

/* A failed HealthLake call: retry what heals, fail the job otherwise. */
static void
hl_failed(struct ejob *j, const char *what, const struct http_resp *resp)
{
	struct aws_error e;

	aws_parse_error(resp, &e);
	if (resp->result != CURLE_OK) {
		ej_retry(j, -1, "HealthLake %s: %s", what, resp->error);
		return;
	}
	if (e.code[0] == '\0')
		snprintf(e.code, sizeof(e.code), "HTTP %ld", resp->status);
	if (strcmp(e.code, "ExpiredTokenException") == 0 ||
	    strcmp(e.code, "UnrecognizedClientException") == 0)
		awscreds_invalidate(j->e->creds);
	if (aws_retryable(resp, &e))
		ej_retry(j, -1, "HealthLake %s: %s%s%s", what, e.code,
		    e.message[0] ? ": " : "", e.message);
	else
		ej_fail(j, "HealthLake refused %s (%s)%s%s%s", what, e.code,
		    e.message[0] ? ": " : "", e.message,
		    strcmp(e.code, "AccessDeniedException") == 0 ? "; the IAM "
		    "policy must allow it, and iam:PassRole on the data "
		    "access role" : "");
}

static void
on_datastore(struct ejob *j, const struct http_resp *resp)
{
	char status[32];

	if (resp->result != CURLE_OK || resp->status != 200 ||
	    hl_parse_datastore(resp, status) != 0) {
		hl_failed(j, "DescribeFHIRDatastore", resp);
		return;
	}
	if (strcmp(status, "ACTIVE") != 0) {
		ej_fail(j, "HealthLake datastore %s is %s, not ACTIVE",
		    j->pt->prof->healthlake_datastore_id, status);
		return;
	}
	j->ds_checked = 1;
	ej_due(j, 0);
}

static void
on_start(struct ejob *j, const struct http_resp *resp)
{
	char status[32], *id = NULL;

	if (resp->result != CURLE_OK || resp->status != 200 ||
	    hl_parse_start(resp, &id, status) != 0) {
		free(id);
		hl_failed(j, "StartFHIRImportJob", resp);
		return;
	}
	free(j->row.import_job_id);
	free(j->row.import_status);
	j->row.import_job_id = id;
	j->row.import_status = strdup(status);
	if (store_job_save(j->e->st, &j->row) != 0)
		JLOG(LOG_LVL_ERR, j, "cannot record import %s; the ClientToken "
		    "finds it again", id);
	JLOG(LOG_LVL_INFO, j, "HealthLake import %s %s", id, status);
	j->polls = 0;
	ej_due(j, ej_backoff(j->e->cfg->poll_min, j->e->cfg->poll_max, 1));
}

static char *
report_json(const struct hl_job_status *s)
{
	json_t *o;
	char *text;

	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
	    "files_scanned", (json_int_t)s->scanned_files,
	    "files_imported", (json_int_t)s->imported_files,
	    "resources_scanned", (json_int_t)s->resources_scanned,
	    "resources_imported", (json_int_t)s->resources_imported,
	    "resources_with_customer_error",
	    (json_int_t)s->resources_customer_error,
	    "files_with_customer_error", (json_int_t)s->files_customer_error);
	text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	return text;
}

/*
 * Inside the IMPORT -> NOTIFY transaction, once every stage that moves
 * data has succeeded: the scope's watermark, the next export's _since.
 * A failed or cancelled job never gets here.
 */
static int
save_cursor(struct store *st, struct job_row *job, void *arg)
{
	(void)arg;
	if (job->transaction_time == NULL || job->scope == NULL)
		return 0;
	return store_watermark_set(st, job->profile, job->scope,
	    job->transaction_time, job->id, (int64_t)time(NULL));
}

static int
count_output(struct file_row *f, void *arg)
{
	int64_t *n = arg;

	if (f->kind == FILE_OUTPUT)
		*n += f->lines;
	return 0;
}

static void
on_describe(struct ejob *j, const struct http_resp *resp)
{
	const struct config *c = j->e->cfg;
	struct hl_job_status s;
	char why[300];

	if (resp->result != CURLE_OK || resp->status != 200 ||
	    hl_parse_describe(resp, &s) != 0) {
		hl_failed(j, "DescribeFHIRImportJob", resp);
		return;
	}
	if (j->row.import_status == NULL ||
	    strcmp(j->row.import_status, s.status) != 0) {
		free(j->row.import_status);
		j->row.import_status = strdup(s.status);
		JLOG(LOG_LVL_INFO, j, "HealthLake import %s is %s",
		    j->row.import_job_id, s.status);
	}
	free(j->row.import_message);
	j->row.import_message = s.message[0] ? strdup(s.message) : NULL;
	free(j->row.import_report);
	j->row.import_report = report_json(&s);
	store_job_save(j->e->st, &j->row);
	if (!s.terminal) {
		if (strcmp(s.status, "SUBMITTED") != 0 &&
		    strcmp(s.status, "IN_PROGRESS") != 0 &&
		    strcmp(s.status, "QUEUED") != 0)
			JLOG(LOG_LVL_WARN, j, "HealthLake reports an unknown "
			    "import status %s; polling on", s.status);
		ej_due(j, ej_backoff(c->poll_min, c->poll_max, ++j->polls));
		return;
	}
	if (s.failed) {
		ej_fail(j, "HealthLake import %s ended %s: %s",
		    j->row.import_job_id, s.status,
		    s.message[0] ? s.message : "no message");
		return;
	}
	snprintf(why, sizeof(why), "HealthLake import %s %s: %lld resources "
	    "imported", j->row.import_job_id, s.status,
	    (long long)s.resources_imported);
	ej_enter(j, JOB_NOTIFY, why, save_cursor, NULL);
}

void
step_import(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char tok[HL_CLIENT_TOKEN_MAX + 1];

	int64_t resources = 0;
	int rc;

	if (p->healthlake_datastore_id == NULL) {
		ej_enter(j, JOB_NOTIFY, "no HealthLake datastore configured",
		    save_cursor, NULL);
		return;
	}
	if (j->row.import_job_id == NULL && j->row.import_token == NULL) {
		/*
		 * An incremental night with nothing new (output: []): there is
		 * nothing to import, and HealthLake would fail on an empty
		 * prefix.  The export still succeeded.
		 */
		if ((rc = store_files(j->e->st, j->row.id, count_output,
		    &resources)) != 0) {
			ej_retry(j, -1, "cannot read the file list: %s",
			    strerror(-rc));
			return;
		}
		if (resources == 0) {
			ej_enter(j, JOB_NOTIFY, "nothing new to import (0 "
			    "resources)", save_cursor, NULL);
			return;
		}
	}
	if (p->kms_key_id == NULL) {
		ej_fail(j, "HealthLake needs kms_key_id for its output; set "
		    "kms_key_id in [profile %s]", p->name);
		return;
	}
	if (j->e->region == NULL) {
		if (j->e->region_error[0] != '\0')
			ej_fail(j, "no AWS region for HealthLake: %s",
			    j->e->region_error);
		return;
	}
	if (j->row.import_job_id != NULL) {
		ej_aws_call(j, build_describe, on_describe);
		return;
	}
	if (!j->ds_checked) {
		ej_aws_call(j, build_datastore, on_datastore);
		return;
	}
	if (j->row.import_token == NULL) {
		/* Written before the call: a retry or restart reuses it. */
		if (hl_client_token(j->row.id, p->name, tok) != 0 ||
		    (j->row.import_token = strdup(tok)) == NULL ||
		    store_job_save(j->e->st, &j->row) != 0) {
			free(j->row.import_token);
			j->row.import_token = NULL;
			ej_retry(j, -1, "cannot record the import's ClientToken");
			return;
		}
	}
	ej_aws_call(j, build_start, on_start);
}

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

	store_history(j->e->st, j->row.id, add_state, states);
	store_files(j->e->st, j->row.id, add_file, types);
	json_object_foreach(types, k, v) {
		bytes += json_integer_value(json_object_get(v, "bytes"));
		resources += json_integer_value(json_object_get(v,
		    "resources"));
	}
	if (p->s3_bucket != NULL && j->row.transaction_time != NULL)
		uri = import_input_uri(j);
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
	if (m != NULL && ej_secret_warning(p, time(NULL), warn, sizeof(warn)))
		json_object_set_new(m, "warning", json_string(warn));
	text = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	return text;
}

static struct http_req *
build_publish(struct ejob *j, const struct aws_creds *c, time_t now)
{
	const struct profile *p = j->pt->prof;
	struct sns_attr attrs[2] = {
		{ "profile", p->name },
		{ "outcome", outcome(j) },
	};
	struct http_req *r;
	char subject[100], *msg;

	snprintf(subject, sizeof(subject), "bcdad %s job %lld: %s", p->name,
	    (long long)j->row.id, outcome(j));
	if ((msg = notify_message(j)) == NULL)
		return NULL;
	r = sns_publish(j->e->cfg->sns_endpoint, j->e->region,
	    p->sns_topic_arn, subject, msg, attrs, 2, c, now);
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
			if (store_job_save(j->e->st, &j->row) != 0)
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
		ej_enter(j, JOB_DONE, why, NULL, NULL);
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
	ej_enter(j, JOB_DONE, "export complete; notification pending", NULL,
	    NULL);
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

	if (p->sns_topic_arn == NULL || j->e->creds == NULL) {
		/* No topic: the outcome goes to the journal only. */
		snprintf(why, sizeof(why), "export %s complete (%s; errors: "
		    "%lld error, %lld warning)", j->row.transaction_time,
		    j->row.out_dir, (long long)(j->row.err_counts[0] +
		    j->row.err_counts[1]), (long long)j->row.err_counts[2]);
		ej_enter(j, JOB_DONE, why, NULL, NULL);
		return;
	}
	if (j->e->region == NULL) {
		if (j->e->region_error[0] != '\0') {
			j->row.notify_state = 1;
			ej_enter(j, JOB_DONE, "export complete; no AWS region "
			    "to notify", NULL, NULL);
		}
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
	if (j->e->region == NULL || j->aws_wait || j->req != NULL)
		return;
	ej_aws_call(j, build_publish, on_publish_owed);
}
