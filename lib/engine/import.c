/*
 * IMPORT: one HealthLake StartFHIRImportJob per export, idempotent through
 * a ClientToken written before the call, then DescribeFHIRImportJob until
 * the import ends.  An export with no resources skips it.  Also the one
 * AWS call of a job (credentials, then the signed request), which NOTIFY
 * uses too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "aws/healthlake.h"

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

char *
ej_import_uri(const struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char *key, *uri, *slash;

	/* The data files' directory: where ej_s3_key() puts them. */
	if ((key = ej_s3_key(j, "x")) == NULL)
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

	if ((in = ej_import_uri(j)) == NULL)
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
	int expired;

	aws_parse_error(resp, &e);
	if (resp->result != CURLE_OK) {
		ej_retry(j, -1, "HealthLake %s: %s", what, resp->error);
		return;
	}
	if (e.code[0] == '\0')
		snprintf(e.code, sizeof(e.code), "HTTP %ld", resp->status);
	expired = strcmp(e.code, "ExpiredTokenException") == 0 ||
	    strcmp(e.code, "ExpiredToken") == 0;
	/* Fetched anew for the next call; only expired ones may then work. */
	if (expired || strcmp(e.code, "UnrecognizedClientException") == 0)
		awscreds_invalidate(j->e->creds);
	if (expired || aws_retryable(resp, &e))
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
	if (ej_save(j) != 0)
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
	ej_save(j);
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
	ej_enter(j, JOB_NOTIFY, why, REC_WATERMARK);
}

/*
 * A new ClientToken for the job's import, in row->import_token: of its id
 * and profile, and of its creation time, since an id repeats when the
 * database is made anew (healthlake.h) and HealthLake would answer the
 * new job's import with the old one's, or refuse it.  retried, when not
 * 0, is the time of a bcdad retry, which needs an import of its own.
 */
static int
new_client_token(struct job_row *row, time_t retried)
{
	char tok[HL_CLIENT_TOKEN_MAX + 1], *salted;
	int rc;

	if ((retried ? asprintf(&salted, "%s/%lld/retry-%lld", row->profile,
	    (long long)row->created_at, (long long)retried) :
	    asprintf(&salted, "%s/%lld", row->profile,
	    (long long)row->created_at)) < 0)
		return -ENOMEM;
	rc = hl_client_token(row->id, salted, tok);
	free(salted);
	if (rc != 0)
		return rc;
	free(row->import_token);
	return (row->import_token = strdup(tok)) != NULL ? 0 : -ENOMEM;
}

/*
 * bcdad retry of a job whose import failed: forget that import, and give
 * the next one a ClientToken of its own (HealthLake would answer the old
 * one with the failed import), salted with the time of the retry and
 * saved with the job before the call, as always.
 */
int
ej_import_reset(struct job_row *row, time_t now)
{
	int rc;

	if ((rc = new_client_token(row, now)) != 0)
		return rc;
	free(row->import_job_id);
	free(row->import_status);
	free(row->import_message);
	free(row->import_report);
	row->import_job_id = row->import_status = NULL;
	row->import_message = row->import_report = NULL;
	return 0;
}

void
step_import(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	int64_t resources = 0;
	size_t i;

	if (p->healthlake_datastore_id == NULL) {
		ej_enter(j, JOB_NOTIFY, "no HealthLake datastore configured",
		    REC_WATERMARK);
		return;
	}
	if (j->row.import_job_id == NULL && j->row.import_token == NULL) {
		/*
		 * An incremental night with nothing new (output: []): there is
		 * nothing to import, and HealthLake would fail on an empty
		 * prefix.  The export still succeeded.
		 */
		if (ej_load_files(j) != 0)
			return;
		for (i = 0; i < j->nfiles; i++)
			if (j->files[i].kind == FILE_OUTPUT)
				resources += j->files[i].lines;
		if (resources == 0) {
			ej_enter(j, JOB_NOTIFY, "nothing new to import (0 "
			    "resources)", REC_WATERMARK);
			return;
		}
	}
	if (p->kms_key_id == NULL) {
		ej_fail(j, "HealthLake needs kms_key_id for its output; set "
		    "kms_key_id in [profile %s]", p->name);
		return;
	}
	switch (ej_region(j)) {
	case 0:
		return;		/* region_cb wakes us */
	case -1:
		ej_fail(j, "no AWS region for HealthLake: %s",
		    j->e->region_error);
		return;
	case -2:
		ej_retry(j, -1, "waiting for the AWS region of HealthLake: "
		    "%s", j->e->region_why);
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
		/*
		 * Written before the call: a retry or restart reuses it, as
		 * it does a token recorded by an older bcdad.
		 */
		if (new_client_token(&j->row, 0) != 0 || ej_save(j) != 0) {
			free(j->row.import_token);
			j->row.import_token = NULL;
			ej_retry(j, -1, "cannot record the import's ClientToken");
			return;
		}
	}
	ej_aws_call(j, build_start, on_start);
}
