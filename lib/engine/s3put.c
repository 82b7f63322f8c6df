/*
 * The engine's S3 side.  Each file goes to S3 as soon as it is downloaded
 * (overlapping with the other downloads); S3_PUT waits for the last of
 * them, then uploads manifest.json, whose presence in S3 means the export
 * is complete.  A file's S3 state is recorded once S3 acknowledged it, and
 * the local copy is removed then unless keep_local is set: a file stays on
 * disk until S3 has it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"

#define UPLOAD_ATTEMPTS	8	/* per request, transient failures */

static int
uses_s3(const struct ejob *j)
{
	return j->pt != NULL && j->pt->prof->s3_bucket != NULL;
}

/*
 * A region lookup's answer, for the jobs that waited for it.  A failure
 * that may heal (IMDS not answering yet at boot) is not kept for good:
 * those jobs back off, and the next step that needs the region asks
 * again (ej_region).
 */
static void
region_cb(void *arg, const char *region, const char *error, int transient)
{
	struct engine *e = arg;
	struct ejob *j;

	e->region_asking = 0;
	if (region != NULL) {
		free(e->region);
		e->region = strdup(region);
		log_info("AWS region %s", region);
	} else if (transient) {
		snprintf(e->region_why, sizeof(e->region_why), "%s",
		    error ? error : "unknown error");
	} else {
		snprintf(e->region_error, sizeof(e->region_error), "%s",
		    error ? error : "unknown error");
		log_warnx("no AWS region: %s", e->region_error);
	}
	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (!j->region_wait)
			continue;
		/* Secrets Manager needed the region for the BCDA token. */
		j->waiting_token = 0;
		j->region_wait = 0;
		j->region_failed = region == NULL && transient;
		j->next_at = ej_now(e);
	}
	engine_arm(e);
}

/*
 * The AWS region, for a step of j that needs it: 1 when it is known; 0
 * when j is parked until a lookup answers (region_cb wakes it); -1 when
 * there is none (e->region_error says why); -2 when the lookup failed in
 * a way that may heal (e->region_why): the caller backs off, and j's next
 * call asks again, so that a region from IMDS is found once IMDS answers.
 */
int
ej_region(struct ejob *j)
{
	struct engine *e = j->e;

	if (e->region == NULL && e->region_error[0] == '\0' &&
	    !e->region_asking && !j->region_failed) {
		e->region_asking = 1;
		awscreds_region(e->creds, region_cb, e);
	}
	if (e->region != NULL)
		return 1;
	if (e->region_error[0] != '\0')
		return -1;
	if (j->region_failed || !e->region_asking) {
		/* The lookup j waited for failed, or this one at once. */
		j->region_failed = 0;
		return -2;
	}
	j->region_wait = 1;
	return 0;
}

/* The argument of a file's upload: its done callback and its journal. */
struct file_up {
	struct ejob	*job;
	size_t		 idx;
};

static int
up_record(void *arg, struct file_row *f, int part, const char *etag)
{
	struct file_up *fu = arg;

	if (part == 0)
		return ej_file_save(fu->job, f, f->s3_upload_id == NULL);
	return ej_part_save(fu->job, f, part, etag);
}

static int
up_parts(void *arg, const struct file_row *f, part_row_fn add, void *add_arg)
{
	struct file_up *fu = arg;

	return ej_parts(fu->job, f, add, add_arg);
}

/*
 * Sets up AWS credentials (the standard chain) and the region when a
 * profile uses AWS (S3, SNS, Secrets Manager).  Credentials are fetched
 * when first needed.
 */
int
ej_s3_init(struct engine *e)
{
	struct awscreds_opts o;
	int i, any = 0;

	if (e->creds != NULL)
		return 0;
	for (i = 0; i < e->cfg->nprofiles; i++)
		any |= e->cfg->profiles[i]->s3_bucket != NULL ||
		    e->cfg->profiles[i]->sns_topic_arn != NULL ||
		    e->cfg->profiles[i]->bcda_secret_arn != NULL;
	if (!any)
		return 0;
	memset(&o, 0, sizeof(o));
	o.region = e->cfg->aws_region;
	o.sts_endpoint = e->cfg->sts_endpoint;
	if ((e->creds = awscreds_new(e->loop, e->http, &o)) == NULL)
		return -ENOMEM;
	e->uenv.loop = e->loop;
	e->uenv.http = e->http;
	e->uenv.journal.record = up_record;
	e->uenv.journal.parts = up_parts;
	e->uenv.creds = e->creds;
	e->uenv.retry_min = e->cfg->retry_min;
	e->uenv.retry_max = e->cfg->retry_max;
	e->uenv.max_attempts = UPLOAD_ATTEMPTS;
	e->region_asking = 1;
	awscreds_region(e->creds, region_cb, e);
	return 0;
}

void
ej_s3_free(struct engine *e)
{
	awscreds_free(e->creds);
	e->creds = NULL;
	free(e->region);
	e->region = NULL;
}

/*
 * The S3 key of the export's file name, in a folder named as the
 * export's directory (its transactionTime, with .2 when another export of
 * that time has the name): exports never share the prefix HealthLake
 * imports whole.
 */
char *
ej_s3_key(const struct ejob *j, const char *name)
{
	const struct profile *p = j->pt->prof;
	const char *dir;

	dir = j->row.out_dir != NULL ? strrchr(j->row.out_dir, '/') : NULL;
	return upload_key(p->s3_prefix, p->name, dir != NULL ? dir + 1 :
	    j->row.transaction_time, name);
}

static char *
local_path(const struct ejob *j, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", j->row.out_dir, name) < 0)
		return NULL;
	return p;
}

static void
loc_of(const struct ejob *j, struct s3_loc *l)
{
	const struct profile *p = j->pt->prof;

	l->endpoint = j->e->cfg->s3_endpoint;
	l->region = j->e->region;
	l->bucket = p->s3_bucket;
	l->kms_key_id = p->kms_key_id;
}

static void
up_finished(struct ejob *j)
{
	j->nup--;
	j->e->nup--;
	ej_wake_downloads(j->e);
}

static void
file_uploaded(struct upload *u, int rc, const char *why, void *arg)
{
	struct file_up *fu = arg;
	struct ejob *j = fu->job;
	struct fsched *s = &j->fs[fu->idx];
	struct file_row *f = &j->files[fu->idx];
	char *path;

	(void)u;
	s->up = NULL;
	s->up_arg = NULL;
	free(fu);
	if (rc != 0) {
		f->s3_state = S3_FAILED;
		free(f->last_error);
		f->last_error = strdup(why);
		JLOG(LOG_LVL_WARN, j, "file %s not stored in S3: %s", f->name,
		    why);
		ej_file_save(j, f, 0);
		up_finished(j);
		return;
	}
	f->s3_state = S3_DONE;
	free(f->s3_upload_id);
	f->s3_upload_id = NULL;
	JLOG(LOG_LVL_DEBUG, j, "file %s stored in S3", f->name);
	/* Unrecorded, the local copy stays until the write is retried. */
	if (ej_file_save(j, f, 1) != 0)
		j->s3_swept = 0;
	else if (!j->pt->prof->keep_local && (path = local_path(j, f->name))) {
		unlink(path);
		free(path);
	}
	up_finished(j);
}

static void
start_upload(struct ejob *j, size_t i)
{
	const struct profile *p = j->pt->prof;
	struct file_row *f = &j->files[i];
	struct file_up *fu;
	struct s3_loc l;
	char *path = NULL, *key = NULL, why[256];
	int rc;

	if ((fu = calloc(1, sizeof(*fu))) == NULL ||
	    (path = local_path(j, f->name)) == NULL ||
	    (key = ej_s3_key(j, f->name)) == NULL) {
		free(fu);
		free(path);
		return;
	}
	fu->job = j;
	fu->idx = i;
	j->fs[i].up_arg = fu;
	loc_of(j, &l);
	rc = upload_start(&j->e->uenv, &l, f, path, key,
	    (unsigned long long)p->multipart_threshold, file_uploaded, fu,
	    &j->fs[i].up);
	if (rc != 0) {
		j->fs[i].up_arg = NULL;
		free(fu);
		snprintf(why, sizeof(why), "cannot upload %s: %s", path,
		    strerror(-rc));
		f->s3_state = S3_FAILED;
		free(f->last_error);
		f->last_error = strdup(why);
		ej_file_save(j, f, 0);
	} else {
		j->nup++;
		j->e->nup++;
	}
	free(path);
	free(key);
}

/*
 * Starts uploads for the job's downloaded files that S3 does not have
 * yet, within the overall limit.  Returns having started what it could.
 */
void
ej_s3_kick(struct ejob *j)
{
	struct engine *e = j->e;
	uint64_t now = ej_now(e);
	size_t i;

	if (!uses_s3(j) || e->region == NULL || e->stopping)
		return;
	for (i = 0; i < j->nfiles; i++) {
		struct fsched *s = &j->fs[i];

		if (j->files[i].state != FILE_DONE ||
		    j->files[i].s3_state != S3_PENDING || s->up != NULL ||
		    s->up_next_at > now)
			continue;
		if (e->nup >= e->cfg->max_downloads ||
		    e->ndl + e->nup >= e->max_transfers)
			break;
		start_upload(j, i);
	}
}

static void
file_abandoned(struct upload *u, int rc, const char *why, void *arg)
{
	struct file_up *fu = arg;
	struct ejob *j = fu->job;
	struct fsched *s = &j->fs[fu->idx];

	(void)u;
	s->up = NULL;
	s->up_arg = NULL;
	if (rc != 0)
		JLOG(LOG_LVL_WARN, j, "multipart upload of %s left in S3: %s",
		    j->files[fu->idx].name, why);
	else
		JLOG(LOG_LVL_INFO, j, "multipart upload of %s aborted",
		    j->files[fu->idx].name);
	free(fu);
	up_finished(j);
}

/*
 * The job was cancelled or failed: abort its open multipart uploads, so
 * that no parts linger in S3 (and cost money) for an export given up.
 */
void
ej_s3_abandon(struct ejob *j)
{
	struct file_up *fu;
	struct s3_loc l;
	char *key;
	size_t i;

	if (!uses_s3(j) || j->e->region == NULL || j->e->stopping)
		return;
	loc_of(j, &l);
	for (i = 0; i < j->nfiles; i++) {
		struct file_row *f = &j->files[i];

		if (f->s3_upload_id == NULL || j->fs[i].up != NULL ||
		    (fu = calloc(1, sizeof(*fu))) == NULL)
			continue;
		fu->job = j;
		fu->idx = i;
		key = ej_s3_key(j, f->name);
		if (key == NULL || upload_abort(&j->e->uenv, &l, f, key,
		    file_abandoned, fu, &j->fs[i].up) != 0) {
			free(fu);
			free(key);
			continue;
		}
		free(key);
		/* The abort may have ended already (credentials at hand). */
		if (j->fs[i].up != NULL)
			j->fs[i].up_arg = fu;
		j->nup++;
		j->e->nup++;
	}
}

void
ej_s3_cancel(struct ejob *j)
{
	size_t i;

	for (i = 0; i < j->nfiles; i++) {
		if (j->fs[i].up != NULL) {
			upload_cancel(j->fs[i].up);
			j->fs[i].up = NULL;
			free(j->fs[i].up_arg);
			j->fs[i].up_arg = NULL;
			j->nup--;
			j->e->nup--;
		}
	}
	if (j->manifest_up != NULL) {
		upload_cancel(j->manifest_up);
		j->manifest_up = NULL;
		j->nup--;
		j->e->nup--;
	}
}

static void
manifest_uploaded(struct upload *u, int rc, const char *why, void *arg)
{
	struct ejob *j = arg;

	(void)u;
	j->manifest_up = NULL;
	if (rc != 0) {
		ej_set_error(j, "%s", why);
		ej_s3_cancel(j);
		j->nup--;
		j->e->nup--;
		ej_fail(j, "manifest.json not stored in S3: %s", why);
		return;
	}
	j->manifest_done = 1;
	up_finished(j);
}

void
step_s3_put(struct ejob *j)
{
	const struct profile *p;
	struct s3_loc l;
	size_t i, pending = 0, failed = 0, first = 0;
	uint64_t next = NEVER, now = ej_now(j->e);
	char *path, *key, why[512];
	int rc;

	if (!uses_s3(j)) {
		ej_enter(j, JOB_IMPORT, "no S3 bucket configured; files stay "
		    "in the local directory", 0);
		return;
	}
	p = j->pt->prof;
	switch (ej_region(j)) {
	case 0:
		return;		/* region_cb wakes us */
	case -1:
		ej_fail(j, "no AWS region for s3://%s: %s (set region in "
		    "[aws], or AWS_REGION)", p->s3_bucket, j->e->region_error);
		return;
	case -2:
		ej_retry(j, -1, "waiting for the AWS region of s3://%s: %s",
		    p->s3_bucket, j->e->region_why);
		return;
	}
	if (ej_load_files(j) != 0)
		return;
	ej_s3_kick(j);
	for (i = 0; i < j->nfiles; i++) {
		struct file_row *f = &j->files[i];

		if (f->s3_state == S3_FAILED && failed++ == 0)
			first = i;
		/*
		 * Only a retry in the future sets a wake-up: a file that waits
		 * for a free upload slot is woken when one frees (up_finished),
		 * and waking now would spin the loop.
		 */
		if (f->s3_state == S3_PENDING) {
			pending++;
			if (j->fs[i].up == NULL && j->fs[i].up_next_at > now &&
			    j->fs[i].up_next_at < next)
				next = j->fs[i].up_next_at;
		}
		/* A restart may fall between recording and removing. */
		if (!j->s3_swept && f->s3_state == S3_DONE && !p->keep_local &&
		    (path = local_path(j, f->name)) != NULL) {
			unlink(path);
			free(path);
		}
	}
	j->s3_swept = 1;
	if (pending > 0 || j->manifest_up != NULL) {
		j->next_at = next;
		engine_arm(j->e);
		return;
	}
	if (failed > 0) {
		ej_fail(j, "%zu of %zu files could not be stored in S3; they "
		    "stay in %s; first %s: %s", failed, j->nfiles,
		    j->row.out_dir, j->files[first].name,
		    j->files[first].last_error ? j->files[first].last_error :
		    "unknown error");
		return;
	}
	if (j->manifest_done) {
		key = ej_s3_key(j, "");
		snprintf(why, sizeof(why), "%zu files and manifest.json in "
		    "s3://%s/%s", j->nfiles, p->s3_bucket, key ? key : "");
		free(key);
		j->manifest_done = 0;
		ej_enter(j, JOB_IMPORT, why, 0);
		return;
	}
	/* Last, so that its presence in S3 means the export is complete. */
	path = local_path(j, "manifest.json");
	key = ej_s3_key(j, "manifest.json");
	loc_of(j, &l);
	rc = path && key ? upload_start(&j->e->uenv, &l, NULL, path, key, 0,
	    manifest_uploaded, j, &j->manifest_up) : -ENOMEM;
	if (rc != 0)
		ej_retry(j, -1, "cannot upload %s: %s", path ? path :
		    "manifest.json", strerror(-rc));
	else {
		j->nup++;
		j->e->nup++;
	}
	free(path);
	free(key);
}
