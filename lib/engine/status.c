/*
 * What `bcdad status` shows: the newest jobs with their file tallies, and
 * each profile's watermarks and credential warnings, as JSON.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"

struct status_ctx {
	struct engine	*e;
	json_t		*arr;
};

struct file_tally {
	json_int_t	 total, done, failed, bytes, lines, error_lines;
};

static int
tally_file(struct file_row *f, void *arg)
{
	struct file_tally *t = arg;

	t->total++;
	if (f->state == FILE_DONE) {
		t->done++;
		t->bytes += f->bytes;
		/* Resources only: error-file lines are counted apart. */
		if (f->kind == FILE_OUTPUT)
			t->lines += f->lines;
		else
			t->error_lines += f->lines;
	} else if (f->state == FILE_FAILED) {
		t->failed++;
	}
	return 0;
}

static int
status_job(struct job_row *r, void *arg)
{
	struct status_ctx *c = arg;
	struct file_tally t = { 0 };
	json_t *o;

	store_files(c->e->st, r->id, tally_file, &t);
	o = json_pack("{s:I, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:s?, s:b}",
	    "id", (json_int_t)r->id, "profile", r->profile,
	    "state", job_state_name(r->state), "progress", r->progress,
	    "files_total", t.total, "files_done", t.done,
	    "files_failed", t.failed, "bytes", t.bytes, "resources", t.lines,
	    "created_at", (json_int_t)r->created_at,
	    "updated_at", (json_int_t)r->updated_at,
	    "transaction_time", r->transaction_time,
	    "dir", r->out_dir, "last_error", r->last_error,
	    "errors", (json_int_t)(r->err_counts[0] + r->err_counts[1]),
	    "warnings", (json_int_t)r->err_counts[2],
	    "error_lines", t.error_lines, "scope", r->scope,
	    "runout", r->runout);
	if (o != NULL)
		json_array_append_new(c->arr, o);
	return 0;
}

json_t *
engine_status(struct engine *e, int limit)
{
	struct status_ctx c = { e, json_array() };

	if (c.arr == NULL)
		return NULL;
	if (store_jobs_recent(e->st, limit, status_job, &c) != 0) {
		json_decref(c.arr);
		return NULL;
	}
	return c.arr;
}

/* One job, as engine_status shows it, in an array (empty if none). */
json_t *
engine_job_status(struct engine *e, int64_t id)
{
	struct status_ctx c = { e, json_array() };
	struct job_row row;
	int rc;

	if (c.arr == NULL)
		return NULL;
	if ((rc = store_job_get(e->st, id, &row)) == 0) {
		status_job(&row, &c);
		job_row_clear(&row);
	} else if (rc != -ENOENT) {
		json_decref(c.arr);
		return NULL;
	}
	return c.arr;
}

static int
status_mark(const struct store_mark *m, void *arg)
{
	json_t *by = arg, *p;

	if ((p = json_object_get(by, m->profile)) == NULL)
		return 0;	/* no longer configured */
	json_array_append_new(json_object_get(p, "watermarks"), json_pack(
	    "{s:s, s:s, s:I, s:I}", "scope", m->scope, "transaction_time",
	    m->transaction_time, "moved_at", (json_int_t)m->updated_at,
	    "job", (json_int_t)m->job_id));
	return 0;
}

json_t *
engine_profiles(struct engine *e)
{
	json_t *arr = json_array(), *by = json_object(), *p;
	char warn[256];
	int i;

	if (arr == NULL || by == NULL)
		goto fail;
	for (i = 0; i < e->cfg->nprofiles; i++) {
		const struct profile *pr = e->cfg->profiles[i];

		p = json_pack("{s:s, s:o}", "profile", pr->name, "watermarks",
		    json_array());
		if (p == NULL)
			goto fail;
		if (ej_secret_issued(&e->tokens[i]) != 0)
			json_object_set_new(p, "secret_expires", json_integer(
			    ej_secret_issued(&e->tokens[i]) + SECRET_LIFETIME));
		if (ej_secret_warning(&e->tokens[i], time(NULL), warn,
		    sizeof(warn)))
			json_object_set_new(p, "warning", json_string(warn));
		json_object_set_new(by, pr->name, json_incref(p));
		json_array_append_new(arr, p);
	}
	if (store_watermarks(e->st, status_mark, by) != 0)
		goto fail;
	json_decref(by);
	return arr;
fail:
	json_decref(by);
	json_decref(arr);
	return NULL;
}
