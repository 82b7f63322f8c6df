/*
 * What the control socket answers to status and history, and the metrics
 * file: the newest jobs with their file tallies, each profile's
 * watermarks and credential warnings, a job's history and files, as JSON
 * (see bcdad(8)); the metrics in Prometheus text format.  All read
 * through the engine.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bcdad.h"

/*
 * A row's string as JSON, null for NULL.  json_pack refuses bytes that are
 * not UTF-8, and one such string would fail the whole status page; rows
 * can hold them (a Latin-1 type_filter or storage_dir from before the
 * configuration refused them, an error message cut inside a character),
 * so each byte that does not fit becomes U+FFFD.
 */
static json_t *
jstr(const char *s)
{
	size_t len, ok;
	json_t *v;
	char *fixed, *p;

	if (s == NULL)
		return json_null();
	len = strlen(s);
	if ((ok = config_utf8_valid(s, len)) == len)
		return json_stringn(s, len);
	if ((fixed = malloc(len * 3 + 1)) == NULL)
		return NULL;
	for (p = fixed; ; ) {
		memcpy(p, s, ok);
		p += ok;
		s += ok;
		len -= ok;
		if (len == 0)
			break;
		memcpy(p, "\xef\xbf\xbd", 3);
		p += 3;
		s++;
		len--;
		ok = config_utf8_valid(s, len);
	}
	v = json_stringn(fixed, (size_t)(p - fixed));
	free(fixed);
	return v;
}

/*
 * The jobs' objects, and the same by id, for the file tallies: one query
 * for the jobs and one for the tallies of them all, however many.
 */
struct status_ctx {
	json_t		*arr;
	json_t		*by_id;
	int64_t		 min_id, max_id;
	int		 n;
};

static int
status_job(struct job_row *r, void *arg)
{
	struct status_ctx *c = arg;
	char id[24];
	json_t *o;

	o = json_pack("{s:I, s:o, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:I, "
	    "s:I, s:o, s:o, s:o, s:I, s:I, s:i, s:o, s:b}",
	    "id", (json_int_t)r->id, "profile", jstr(r->profile),
	    "state", job_state_name(r->state), "progress", r->progress,
	    "files_total", 0, "files_done", 0, "files_failed", 0, "bytes", 0,
	    "resources", 0, "created_at", (json_int_t)r->created_at,
	    "updated_at", (json_int_t)r->updated_at,
	    "transaction_time", jstr(r->transaction_time),
	    "dir", jstr(r->out_dir), "last_error", jstr(r->last_error),
	    "errors", (json_int_t)(r->err_counts[0] + r->err_counts[1]),
	    "warnings", (json_int_t)r->err_counts[2],
	    "error_lines", 0, "scope", jstr(r->scope), "runout", r->runout);
	if (o == NULL)
		return -ENOMEM;
	snprintf(id, sizeof(id), "%lld", (long long)r->id);
	json_object_set(c->by_id, id, o);
	json_array_append_new(c->arr, o);
	if (c->min_id == 0 || r->id < c->min_id)
		c->min_id = r->id;
	if (r->id > c->max_id)
		c->max_id = r->id;
	c->n++;
	return 0;
}

static int
status_tally(const struct tally_row *t, void *arg)
{
	struct status_ctx *c = arg;
	char id[24];
	json_t *o;

	snprintf(id, sizeof(id), "%lld", (long long)t->job_id);
	if ((o = json_object_get(c->by_id, id)) == NULL)
		return 0;
	json_object_set_new(o, "files_total", json_integer(t->total));
	json_object_set_new(o, "files_done", json_integer(t->done));
	json_object_set_new(o, "files_failed", json_integer(t->failed));
	json_object_set_new(o, "bytes", json_integer(t->bytes));
	json_object_set_new(o, "resources", json_integer(t->lines));
	json_object_set_new(o, "error_lines", json_integer(t->error_lines));
	return 0;
}

/* The tallies in, and the array out; NULL if the store failed. */
static json_t *
status_done(struct engine *e, struct status_ctx *c, int rc)
{
	if (rc == 0 && c->min_id != 0)
		rc = engine_tallies(e, c->min_id, c->max_id, status_tally, c);
	json_decref(c->by_id);
	if (rc != 0) {
		json_decref(c->arr);
		return NULL;
	}
	return c->arr;
}

/*
 * A page of jobs (struct job_page); *next is the id to ask before for the
 * page after it, or 0 when this one was the last.
 */
json_t *
status_jobs(struct engine *e, const struct job_page *pg, int64_t *next)
{
	struct status_ctx c = { json_array(), json_object(), 0, 0, 0 };
	json_t *arr;

	if (c.arr == NULL || c.by_id == NULL)
		return status_done(e, &c, -ENOMEM);
	arr = status_done(e, &c, engine_jobs(e, pg, status_job, &c));
	*next = arr != NULL && c.n == pg->limit ? c.min_id : 0;
	return arr;
}

/* One job, as status_jobs shows it, in an array (empty if none). */
json_t *
status_job_one(struct engine *e, int64_t id)
{
	struct status_ctx c = { json_array(), json_object(), 0, 0, 0 };
	struct job_row row;
	int rc;

	if (c.arr == NULL || c.by_id == NULL)
		return status_done(e, &c, -ENOMEM);
	if ((rc = engine_job(e, id, &row)) == 0) {
		rc = status_job(&row, &c);
		job_row_clear(&row);
	} else if (rc == -ENOENT) {
		rc = 0;
	}
	return status_done(e, &c, rc);
}

static int
status_mark(const struct mark_row *m, void *arg)
{
	json_t *by = arg, *p;

	if ((p = json_object_get(by, m->profile)) == NULL)
		return 0;	/* no longer configured */
	json_array_append_new(json_object_get(p, "watermarks"), json_pack(
	    "{s:o, s:o, s:I, s:I}", "scope", jstr(m->scope),
	    "transaction_time", jstr(m->transaction_time), "moved_at", (json_int_t)m->updated_at,
	    "job", (json_int_t)m->job_id));
	return 0;
}

json_t *
status_profiles(struct engine *e)
{
	json_t *arr = json_array(), *by = json_object(), *p;
	struct engine_profile ep;
	int i;

	if (arr == NULL || by == NULL)
		goto fail;
	for (i = 0; engine_profile(e, i, &ep) == 0; i++) {
		p = json_pack("{s:s, s:o}", "profile", ep.name, "watermarks",
		    json_array());
		if (p == NULL)
			goto fail;
		if (ep.secret_expires != 0)
			json_object_set_new(p, "secret_expires",
			    json_integer(ep.secret_expires));
		if (ep.warning[0] != '\0')
			json_object_set_new(p, "warning",
			    json_string(ep.warning));
		json_object_set_new(by, ep.name, json_incref(p));
		json_array_append_new(arr, p);
	}
	if (engine_watermarks(e, status_mark, by) != 0)
		goto fail;
	json_decref(by);
	return arr;
fail:
	json_decref(by);
	json_decref(arr);
	return NULL;
}

static int
detail_history(int64_t at, enum job_state from, enum job_state to,
    const char *reason, void *arg)
{
	json_array_append_new(arg, json_pack("{s:I, s:s?, s:s, s:o}", "at",
	    (json_int_t)at, "from", (int)from < 0 ? NULL :
	    job_state_name(from), "to", job_state_name(to), "reason",
	    jstr(reason)));
	return 0;
}

static int
detail_file(struct file_row *f, void *arg)
{
	static const char *const s3[] = { "pending", "stored", "failed" };

	json_array_append_new(arg, json_pack("{s:o, s:s, s:s, s:I, s:I, s:i, "
	    "s:s, s:o}", "name", jstr(f->name), "kind", f->kind == FILE_OUTPUT ?
	    "output" : "error", "state", f->state == FILE_DONE ? "done" :
	    f->state == FILE_FAILED ? "failed" : "pending", "lines",
	    (json_int_t)f->lines, "bytes", (json_int_t)f->bytes, "attempts",
	    f->attempts, "s3", (unsigned)f->s3_state < 3 ? s3[f->s3_state] :
	    "?", "last_error", jstr(f->last_error)));
	return 0;
}

json_t *
status_job_detail(struct engine *e, int64_t id)
{
	json_t *o, *hist = json_array(), *files = json_array();
	struct job_row row;

	if (engine_job(e, id, &row) != 0 || hist == NULL ||
	    files == NULL) {
		json_decref(hist);
		json_decref(files);
		return NULL;
	}
	job_row_clear(&row);
	if (engine_history(e, id, detail_history, hist) != 0 ||
	    engine_files(e, id, detail_file, files) != 0) {
		json_decref(hist);
		json_decref(files);
		return NULL;
	}
	o = json_pack("{s:o, s:o}", "history", hist, "files", files);
	return o;
}

/* ---- metrics --------------------------------------------------------- */

struct metrics {
	struct engine	*e;
	FILE		*f;
	int		 section;	/* which family outcome_line writes */
};

static int
configured(struct engine *e, const char *profile)
{
	struct engine_profile ep;
	int i;

	for (i = 0; engine_profile(e, i, &ep) == 0; i++)
		if (strcmp(ep.name, profile) == 0)
			return 1;
	return 0;
}

static int
outcome_line(const struct outcome_row *o, void *arg)
{
	struct metrics *m = arg;

	/* Profile names are [A-Za-z0-9_-]: nothing to escape in a label. */
	if (!configured(m->e, o->profile))
		return 0;
	switch (m->section) {
	case 0:
		if (o->done_at != 0)
			fprintf(m->f, "bcdad_last_success_timestamp_seconds"
			    "{profile=\"%s\"} %lld\n", o->profile,
			    (long long)o->done_at);
		break;
	case 1:
		fprintf(m->f, "bcdad_last_outcome{profile=\"%s\",outcome="
		    "\"%s\"} 1\n", o->profile, job_state_name(o->last_state));
		break;
	case 2:
		fprintf(m->f, "bcdad_last_export_resources{profile=\"%s\"} "
		    "%lld\n", o->profile, (long long)o->resources);
		break;
	case 3:
		fprintf(m->f, "bcdad_last_export_bytes{profile=\"%s\"} %lld\n",
		    o->profile, (long long)o->bytes);
		break;
	}
	return 0;
}

char *
status_metrics(struct engine *e)
{
	static const char *const family[][2] = {
		{ "bcdad_last_success_timestamp_seconds", "When the profile's "
		    "last export ended DONE (unix seconds)." },
		{ "bcdad_last_outcome", "The outcome of the profile's newest "
		    "ended job." },
		{ "bcdad_last_export_resources", "Resources in the profile's "
		    "last DONE export." },
		{ "bcdad_last_export_bytes", "NDJSON bytes in the profile's "
		    "last DONE export." },
	};
	struct metrics m = { e, NULL, 0 };
	struct engine_profile ep;
	int64_t counts[JOB_NSTATES];
	char *text = NULL;
	size_t len = 0;
	int i, rc = 0;

	if (engine_state_counts(e, counts) != 0 ||
	    (m.f = open_memstream(&text, &len)) == NULL)
		return NULL;
	for (m.section = 0; m.section < 4 && rc == 0; m.section++) {
		fprintf(m.f, "# HELP %s %s\n# TYPE %s gauge\n",
		    family[m.section][0], family[m.section][1],
		    family[m.section][0]);
		rc = engine_outcomes(e, outcome_line, &m);
	}
	fprintf(m.f, "# HELP bcdad_jobs Jobs in the database by state.\n"
	    "# TYPE bcdad_jobs gauge\n");
	for (i = 0; i < JOB_NSTATES; i++)
		fprintf(m.f, "bcdad_jobs{state=\"%s\"} %lld\n",
		    job_state_name((enum job_state)i), (long long)counts[i]);
	fprintf(m.f, "# HELP bcdad_retries_total Transient failures retried, "
	    "since the daemon started.\n# TYPE bcdad_retries_total counter\n");
	for (i = 0; engine_profile(e, i, &ep) == 0; i++)
		fprintf(m.f, "bcdad_retries_total{profile=\"%s\"} %llu\n",
		    ep.name, (unsigned long long)ep.retries);
	fprintf(m.f, "# HELP bcdad_secret_expiry_timestamp_seconds When the "
	    "profile's BCDA credentials expire, if known.\n"
	    "# TYPE bcdad_secret_expiry_timestamp_seconds gauge\n");
	for (i = 0; engine_profile(e, i, &ep) == 0; i++)
		if (ep.secret_expires != 0)
			fprintf(m.f, "bcdad_secret_expiry_timestamp_seconds"
			    "{profile=\"%s\"} %lld\n", ep.name,
			    (long long)ep.secret_expires);
	if (fclose(m.f) != 0 || rc != 0) {
		free(text);
		return NULL;
	}
	return text;
}
