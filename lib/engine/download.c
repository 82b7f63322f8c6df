/*
 * The engine's DOWNLOAD step: every file of the manifest fetched with
 * bounded parallelism through fetch.c, recorded DONE only once it is
 * durable, retried with backoff, and the export's manifest.json written
 * once every file is in.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "util/fs.h"

/* ---- DOWNLOAD ---------------------------------------------------------- */

/* Wakes every downloading job: a slot may have come free. */
void
ej_wake_downloads(struct engine *e)
{
	struct ejob *j;

	TAILQ_FOREACH(j, &e->jobs, entry)
		if (!j->dead && (j->row.state == JOB_DOWNLOAD ||
		    j->row.state == JOB_S3_PUT) &&
		    !j->waiting_token && j->req == NULL)
			j->next_at = ej_now(e);
	engine_arm(e);
}

void
ej_dl_free(struct dl *d)
{
	struct ejob *j = d->job;

	j->fs[d->idx].dl = NULL;
	j->ndl--;
	j->e->ndl--;
	http_req_free(d->req);
	fetch_free(d->fetch);
	free(d);
	ej_wake_downloads(j->e);
}

/*
 * The disk is full (ENOSPC, EDQUOT) or the process is out of file
 * descriptors (EMFILE, ENFILE): not the file's fault.  Its attempts are
 * not counted; the file waits and is tried again, and the job says why in
 * last_error.  Only a shortage lasting retry_budget seconds in a row fails
 * the job, saying so.
 */
static void
starved(struct ejob *j, size_t i, int err, const char *why)
{
	const struct config *c = j->e->cfg;
	struct file_row *f = &j->files[i];
	uint64_t delay, now = ej_now(j->e);
	int disk = err == ENOSPC || err == EDQUOT;

	if (j->starved_since == 0)
		j->starved_since = now;
	if (now - j->starved_since >= (uint64_t)c->retry_budget * 1000) {
		ej_fail(j, "%s (%s for %d s, the retry_budget)", why, disk ?
		    "the disk stayed full" : "out of file descriptors",
		    c->retry_budget);
		return;
	}
	delay = ej_backoff(c->retry_min, c->retry_max, ++j->starved_waits);
	j->fs[i].next_at = now + delay;
	free(f->last_error);
	f->last_error = strdup(why);
	if (disk)
		ej_set_error(j, "waiting for disk space in %s: %s",
		    j->row.out_dir, why);
	else
		ej_set_error(j, "waiting for file descriptors (%d open; raise "
		    "LimitNOFILE= or lower max_downloads): %s", fs_open_fds(),
		    why);
	JLOG(LOG_LVL_WARN, j, "%s; file %s tried again in %llu s",
	    j->row.last_error, f->name,
	    (unsigned long long)(delay + 999) / 1000);
	ej_file_save(j, f, 0);
}

/* The errno of a shortage that starved() waits out, or 0. */
static int
shortage(int rc)
{
	return rc == -ENOSPC || rc == -EDQUOT || rc == -EMFILE ||
	    rc == -ENFILE ? -rc : 0;
}

/*
 * A file failed.  Content errors (bad gzip, bad NDJSON, a URL we will not
 * send the token to) give up after FILE_ATTEMPTS; transport errors after
 * FILE_NET_ATTEMPTS.  The file is redone from its first byte each time.
 */
static void
ej_file_failed(struct ejob *j, size_t i, int content, long retry_after,
    const char *why)
{
	const struct config *c = j->e->cfg;
	struct file_row *f = &j->files[i];
	uint64_t delay;

	f->attempts++;
	free(f->last_error);
	f->last_error = strdup(why);
	if (f->attempts >= (content ? FILE_ATTEMPTS :
	    FILE_NET_ATTEMPTS)) {
		f->state = FILE_FAILED;
		JLOG(LOG_LVL_WARN, j, "file %s failed for good: %s", f->name,
		    why);
	} else {
		if (retry_after > RETRY_AFTER_MAX)
			retry_after = RETRY_AFTER_MAX;
		delay = retry_after > 0 ? (uint64_t)retry_after * 1000 :
		    ej_backoff(c->retry_min, c->retry_max, f->attempts);
		j->fs[i].next_at = ej_now(j->e) + delay;
		JLOG(LOG_LVL_WARN, j, "file %s: %s; retry %d in %llu s",
		    f->name, why, f->attempts,
		    (unsigned long long)(delay + 999) / 1000);
	}
	ej_file_save(j, f, 0);
}

static void
dl_committed(struct fetch *fe, int rc, void *arg)
{
	struct dl *d = arg;
	struct ejob *j = d->job;
	struct file_row *f = &j->files[d->idx];
	const uint64_t *sev;
	int k;

	if (shortage(rc)) {
		starved(j, d->idx, shortage(rc), fetch_error(fe));
		ej_dl_free(d);
		return;
	}
	if (rc != 0) {
		ej_file_failed(j, d->idx, fetch_bad_data(fe), -1,
		    fetch_error(fe));
		ej_dl_free(d);
		return;
	}
	if (j->starved_since != 0) {
		/* Space and descriptors again: the wait is over. */
		j->starved_since = 0;
		j->starved_waits = 0;
		free(j->row.last_error);
		j->row.last_error = NULL;
	}
	f->state = FILE_DONE;
	f->lines = (int64_t)fetch_lines(fe);
	f->bytes = (int64_t)fetch_bytes(fe);
	free(f->sha256);
	f->sha256 = strdup(fetch_sha256(fe));
	free(f->last_error);
	f->last_error = NULL;
	sev = fetch_severity(fe);
	if (f->kind == FILE_ERROR)
		for (k = 0; k < 4; k++)
			j->row.err_counts[k] += (int64_t)sev[k];
	/*
	 * The file and the job's error counts, in one write.  Should it fail,
	 * both stay in memory, marked unsaved, and are written again before
	 * the job's next step: the file is not fetched again.
	 */
	ej_file_save(j, f, 0);
	JLOG(LOG_LVL_DEBUG, j, "file %s done: %lld lines, %lld bytes",
	    f->name, (long long)f->lines, (long long)f->bytes);
	ej_dl_free(d);
}

static void
on_recheck(struct ejob *j, const struct http_resp *resp)
{
	char what[300];

	ej_describe(resp, what, sizeof(what));
	if (ej_job_gone(j, resp, what))
		return;
	JLOG(LOG_LVL_INFO, j, "BCDA still has the job (%s); the file is "
	    "tried again", what);
	ej_due(j, 0);
}

/*
 * A file answered 404 before the export's expiry: ask the job's status
 * whether BCDA expired or cancelled it early, at most once a minute.
 */
static void
recheck(struct ejob *j)
{
	if (j->req != NULL || ej_now(j->e) < j->recheck_at ||
	    !pt_valid(j->e, j->pt))
		return;
	j->recheck_at = ej_now(j->e) + 60000;
	ej_api_request(j, "GET", j->row.status_url, 0, on_recheck);
}

static void
dl_done(struct http_req *r, void *arg)
{
	struct dl *d = arg;
	struct ejob *j = d->job;
	const struct http_resp *resp = http_req_resp(r);
	char what[300];
	size_t idx;
	int rc, err;

	if (resp->result == CURLE_OK && resp->status == 200) {
		d->committing = 1;
		if ((rc = fetch_commit(d->fetch, dl_committed, d)) == 0)
			return;
		d->committing = 0;
		snprintf(what, sizeof(what), "%s", fetch_error(d->fetch));
		fetch_abort(d->fetch);
		/* The pool's last batch may have met a full disk already. */
		idx = d->idx;
		err = fetch_bad_data(d->fetch);
		ej_dl_free(d);
		if (shortage(rc))
			starved(j, idx, shortage(rc), what);
		else
			ej_file_failed(j, idx, err, -1, what);
		return;
	}
	fetch_abort(d->fetch);
	if ((err = shortage(resp->sink_error)) != 0 ||
	    (err = shortage(-resp->socket_errno)) != 0) {
		if (resp->sink_error != 0)
			snprintf(what, sizeof(what), "%s",
			    fetch_error(d->fetch));
		else
			snprintf(what, sizeof(what), "cannot open a socket: "
			    "%s", strerror(err));
		/*
		 * Freed first: past retry_budget starved() fails the job,
		 * which cancels the transfers it still holds.
		 */
		idx = d->idx;
		ej_dl_free(d);
		starved(j, idx, err, what);
		return;
	} else if (resp->sink_error != 0) {
		/* Ours: the body failed to decode or validate, or disk. */
		snprintf(what, sizeof(what), "%s", fetch_error(d->fetch));
		ej_file_failed(j, d->idx, fetch_bad_data(d->fetch), -1, what);
	} else if (resp->result == CURLE_OK && resp->status == 401 &&
	    !j->fs[d->idx].reauth) {
		j->fs[d->idx].reauth = 1;
		/*
		 * Parallel downloads all see the 401 of an expired token; only
		 * the first answer may drop it, not the next token as well.
		 */
		if (d->token_gen == j->pt->gen)
			pt_drop(j->pt);
	} else if (resp->result == CURLE_OK && (resp->status == 404 ||
	    resp->status == 410) && time(NULL) > j->row.completed_at +
	    FILE_EXPIRY) {
		ej_dl_free(d);
		ej_cancel_transfers(j);
		/* Files being saved still point into j->files: wait for them. */
		if (j->ndl == 0)
			ej_rekickoff(j, "BCDA deleted the files (past their "
			    "expiry); starting a new export");
		return;
	} else {
		ej_describe(resp, what, sizeof(what));
		ej_file_failed(j, d->idx, 0, http_retry_after(resp->retry_after,
		    time(NULL)), what);
		if (resp->result == CURLE_OK && (resp->status == 404 ||
		    resp->status == 410))
			recheck(j);
	}
	ej_dl_free(d);
}

/* The file's buffer has room again: the paused transfer goes on. */
static void
dl_resume(void *arg)
{
	struct dl *d = arg;

	http_resume(d->job->e->http, d->req);
}

static void
start_download(struct ejob *j, size_t i)
{
	struct engine *e = j->e;
	struct file_row *f = &j->files[i];
	struct dl *d;
	char *auth = NULL, why[300];
	const char *slash;
	char *dir = NULL;
	int rc;

	if (!bcda_url_trusted(j->pt->prof->base_url, f->url)) {
		f->attempts = FILE_ATTEMPTS - 1;
		snprintf(why, sizeof(why), "its URL is not on the BCDA origin "
		    "%s; the bearer token is not sent elsewhere",
		    j->pt->prof->base_url);
		ej_file_failed(j, i, 1, -1, why);
		return;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		goto nomem;
	d->job = j;
	d->idx = i;
	/* Error files live in a subdirectory: errors/OperationOutcome-n. */
	slash = strrchr(f->name, '/');
	if (asprintf(&dir, "%s%s%.*s", j->row.out_dir, slash ? "/" : "",
	    slash ? (int)(slash - f->name) : 0, f->name) < 0) {
		free(d);
		goto nomem;
	}
	/*
	 * Already under its final name: the daemon stopped after the rename
	 * and before the record.  Read back, not fetched again.
	 */
	rc = fetch_verify(e->loop, dir, slash ? slash + 1 : f->name,
	    f->kind == FILE_ERROR ? "OperationOutcome" : f->type,
	    f->kind == FILE_ERROR, dl_committed, d, &d->fetch);
	if (rc == 0) {
		free(dir);
		JLOG(LOG_LVL_INFO, j, "file %s is on disk already; read back "
		    "instead of fetched", f->name);
		d->committing = 1;
		j->fs[i].dl = d;
		j->ndl++;
		e->ndl++;
		return;
	}
	rc = fetch_open(e->loop, dir, slash ? slash + 1 : f->name,
	    f->kind == FILE_ERROR ? "OperationOutcome" : f->type,
	    f->kind == FILE_ERROR, dl_resume, d, &d->fetch);
	free(dir);
	if (rc != 0) {
		snprintf(why, sizeof(why), "cannot create %s.part: %s",
		    f->name, strerror(-rc));
		free(d);
		if (shortage(rc))
			starved(j, i, shortage(rc), why);
		else
			ej_file_failed(j, i, 0, -1, why);
		return;
	}
	if ((d->req = http_req_new("GET", f->url)) == NULL ||
	    asprintf(&auth, "Authorization: Bearer %s", j->pt->token) < 0) {
		fetch_abort(d->fetch);
		fetch_free(d->fetch);
		http_req_free(d->req);
		free(d);
		goto nomem;
	}
	http_req_header(d->req, auth);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	d->token_gen = j->pt->gen;
	/* A plain header: curl's own decoder rejects BCDA's extra member. */
	http_req_header(d->req, "Accept-Encoding: gzip");
	http_req_sink(d->req, fetch_sink, d->fetch);
	http_req_timeout(d->req, 0);
	j->fs[i].dl = d;
	j->ndl++;
	e->ndl++;
	if (http_start(e->http, d->req, dl_done, d) != 0) {
		fetch_abort(d->fetch);
		ej_dl_free(d);
		ej_file_failed(j, i, 0, -1, "cannot start the download");
	}
	return;
nomem:
	/* Tried again later, so the job does not wait on nothing. */
	ej_file_failed(j, i, 0, -1, "out of memory");
}

/*
 * manifest.json's text: the export's fields, then its files, each an
 * object on a line of its own.  Made one file at a time, so that an
 * export of many thousand files needs no tree of them all beside the
 * text (that tree took a kilobyte a file).
 */
static char *
manifest_text(struct ejob *j)
{
	json_t *o;
	char *head, *line, *text = NULL;
	size_t len, i;
	FILE *out;
	int ok;

	o = json_pack("{s:i, s:s, s:s?, s:s?, s:s?, s:I, s:{s:I, s:I, s:I, "
	    "s:I}}", "version", 1, "profile", j->row.profile,
	    "transactionTime", j->row.transaction_time,
	    "request", j->row.kickoff_url, "since", j->row.since,
	    "job", (json_int_t)j->row.id,
	    "errors", "fatal", (json_int_t)j->row.err_counts[0],
	    "error", (json_int_t)j->row.err_counts[1],
	    "warning", (json_int_t)j->row.err_counts[2],
	    "information", (json_int_t)j->row.err_counts[3]);
	head = o != NULL ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) :
	    NULL;
	json_decref(o);
	if (head == NULL || (out = open_memstream(&text, &len)) == NULL) {
		free(head);
		return NULL;
	}
	/* The head without its closing "\n}", then "files" last. */
	ok = fprintf(out, "%.*s,\n  \"files\": [", (int)strlen(head) - 2,
	    head) > 0;
	free(head);
	for (i = 0; ok && i < j->nfiles; i++) {
		struct file_row *f = &j->files[i];

		o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s?}",
		    "kind", f->kind == FILE_ERROR ? "error" : "output",
		    "type", f->type, "name", f->name,
		    "lines", (json_int_t)f->lines,
		    "bytes", (json_int_t)f->bytes, "sha256", f->sha256);
		line = o != NULL ? json_dumps(o, JSON_SORT_KEYS) : NULL;
		json_decref(o);
		ok = line != NULL && fprintf(out, "%s\n    %s", i > 0 ? "," : "",
		    line) > 0;
		free(line);
	}
	ok = ok && fprintf(out, "%s]\n}\n", j->nfiles > 0 ? "\n  " : "") > 0;
	if (fclose(out) != 0 || !ok) {
		free(text);
		return NULL;
	}
	return text;
}

/* manifest.json, written durably on the thread pool. */
struct manifest_write {
	uv_work_t	 work;
	struct ejob	*job;
	char		*path;
	char		*text;
	int		 rc;
	char		 why[256];
};

static void
manifest_work(uv_work_t *w)
{
	struct manifest_write *mw = w->data;

	mw->rc = fs_write_atomic(mw->path, mw->text, strlen(mw->text),
	    0600);
}

static void
manifest_written(uv_work_t *w, int status)
{
	struct manifest_write *mw = w->data;
	struct ejob *j = mw->job;

	/* The write held the job like a download: reaping waited for it. */
	j->ndl--;
	if (status != 0 && mw->rc == 0)
		mw->rc = status;
	if (j->e->stopping || j->dead || j->row.state != JOB_DOWNLOAD)
		;	/* stopped or cancelled meanwhile: DOWNLOAD redoes it */
	else if (mw->rc != 0)
		ej_retry(j, -1, "cannot write %s: %s", mw->path,
		    strerror(-mw->rc));
	else
		ej_enter(j, JOB_S3_PUT, mw->why, 0);
	if (j->dead)
		engine_arm(j->e);
	free(mw->path);
	free(mw->text);
	free(mw);
}

/* Every file is DONE or FAILED and nothing is in flight. */
static void
finish_download(struct ejob *j)
{
	struct manifest_write *mw = NULL;
	char *path = NULL, *text = NULL;
	int64_t lines = 0, bytes = 0;
	size_t i, failed = 0, first = 0;

	for (i = 0; i < j->nfiles; i++) {
		if (j->files[i].state == FILE_FAILED && failed++ == 0)
			first = i;
		if (j->files[i].kind == FILE_OUTPUT) {
			lines += j->files[i].lines;
			bytes += j->files[i].bytes;
		}
	}
	if (failed > 0) {
		ej_fail(j, "%zu of %zu files failed; first %s: %s", failed,
		    j->nfiles, j->files[first].name,
		    j->files[first].last_error ? j->files[first].last_error :
		    "unknown error");
		return;
	}
	if ((text = manifest_text(j)) == NULL ||
	    asprintf(&path, "%s/manifest.json", j->row.out_dir) < 0) {
		path = NULL;
		ej_retry(j, -1, "out of memory writing manifest.json");
		goto out;
	}
	if ((mw = calloc(1, sizeof(*mw))) == NULL) {
		ej_retry(j, -1, "out of memory writing manifest.json");
		goto out;
	}
	mw->job = j;
	mw->path = path;
	mw->text = text;
	mw->work.data = mw;
	snprintf(mw->why, sizeof(mw->why), "%zu files, %lld resources, %lld "
	    "bytes", j->nfiles, (long long)lines, (long long)bytes);
	path = text = NULL;
	if (uv_queue_work(j->e->loop, &mw->work, manifest_work,
	    manifest_written) != 0) {
		free(mw->path);
		free(mw->text);
		free(mw);
		ej_retry(j, -1, "cannot queue the manifest.json write");
		goto out;
	}
	/* Held like a download, so the job is not reaped meanwhile. */
	j->ndl++;
	j->next_at = NEVER;
out:
	free(text);
	free(path);
}

/*
 * The download slots one job may hold: max_downloads shared evenly among
 * the jobs downloading now (at least one each), so that with many ACOs
 * no job waits while another holds several slots.
 */
static int
fair_share(const struct engine *e)
{
	const struct config *c = e->cfg;
	const struct ejob *o;
	int n = 0, share;

	TAILQ_FOREACH(o, &e->jobs, entry)
		n += !o->dead && o->row.state == JOB_DOWNLOAD;
	share = n > 0 ? c->max_downloads / n : c->max_downloads;
	if (share < 1)
		share = 1;
	return share < c->max_downloads_per_job ? share :
	    c->max_downloads_per_job;
}

void
step_download(struct ejob *j)
{
	struct engine *e = j->e;
	const struct config *c = e->cfg;
	uint64_t now = ej_now(e), next = NEVER, wait;
	size_t i, open = 0;
	int share;

	if (ej_load_files(j) != 0)
		return;
	share = fair_share(e);
	/* Files already here go to S3 while the others download. */
	ej_s3_kick(j);
	for (i = 0; i < j->nfiles; i++) {
		struct fsched *s = &j->fs[i];

		if (j->files[i].state != FILE_PENDING)
			continue;
		open++;
		if (s->dl != NULL)
			continue;
		if (s->next_at > now) {
			if (s->next_at < next)
				next = s->next_at;
			continue;
		}
		if (e->ndl >= c->max_downloads || j->ndl >= share ||
		    e->ndl + e->nup >= e->max_transfers)
			continue;
		if (!pt_valid(e, j->pt)) {
			if (!ej_have_token(j))
				return;
		}
		if ((wait = ej_bcda_budget(e)) > 0) {
			/* BCDA's request budget is spent: later. */
			if (now + wait < next)
				next = now + wait;
			continue;
		}
		start_download(j, i);
		if (j->dead)
			return;
	}
	if (open == 0 && j->ndl == 0) {
		finish_download(j);
		return;
	}
	j->next_at = next;
	engine_arm(e);
}
