/*
 * The export steps at BCDA: NEW (scope and _since), TOKEN, KICKOFF (and
 * what its refusals mean: the duplicate-job 429, January's 404s) and
 * POLL (until the manifest, then the file rows).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "util/fs.h"
#include "util/iso8601.h"

/* Exports of one transactionTime one profile keeps apart (export_dir). */
#define EXPORT_DIRS	10000

/* ---- NEW, TOKEN -------------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The watermark scope of profile p exporting endpoint ep: API version,
 * endpoint, the sorted type set ("default" for BCDA's) and the type
 * filter, e.g. "v2 group-all Coverage,Patient".  Changing any of them
 * starts a new scope from full history.  NULL when out of memory.
 */
char *
ej_scope(const struct profile *p, enum bcda_endpoint ep)
{
	char *types[CONFIG_MAX_TYPES], list[512] = "default", *s;
	size_t off = 0;
	int i;

	for (i = 0; i < p->ntypes; i++)
		types[i] = p->types[i];
	qsort(types, (size_t)p->ntypes, sizeof(types[0]), cmp_str);
	for (i = 0; i < p->ntypes && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
		    i ? "," : "", types[i]);
	if (asprintf(&s, "v%d %s %s%s%s", p->api_version,
	    config_endpoint_name(ep), list, p->type_filter && p->api_version >= 3 ?
	    " filter=" : "", p->type_filter && p->api_version >= 3 ?
	    p->type_filter : "") < 0)
		return NULL;
	return s;
}

/*
 * Sets the job's scope, _since and kickoff URL for exporting endpoint ep:
 * _since is the one `bcdad run --since` gave, none for `--full`, else
 * the profile's policy (the scope's watermark for since = auto).
 * Returns 0, or -1 after failing or rescheduling the job.
 */
static int
prepare_kickoff(struct ejob *j, enum bcda_endpoint ep)
{
	const struct profile *p = j->pt->prof;
	char *since = NULL, *scope;
	time_t t;
	int rc;

	if ((scope = ej_scope(p, ep)) == NULL) {
		ej_retry(j, -1, "out of memory");
		return -1;
	}
	if (j->row.since_mode == SINCE_MODE_GIVEN && j->row.since != NULL) {
		since = strdup(j->row.since);
	} else if (j->row.since_mode == SINCE_MODE_FULL) {
		since = NULL;
	} else if (p->since == SINCE_AUTO) {
		if ((rc = ej_watermark(j->e, p->name, scope, &since)) != 0) {
			free(scope);
			ej_retry(j, -1, "cannot read the watermark of %s: %s",
			    p->name, strerror(-rc));
			return -1;
		}
	} else if (p->since == SINCE_FIXED) {
		since = strdup(p->since_value);
	}
	if (since != NULL && (bcda_parse_instant(since, &t) != 0 ||
	    t > time(NULL))) {
		ej_fail(j, "_since %s is not a past RFC 3339 instant", since);
		free(since);
		free(scope);
		return -1;
	}
	free(j->row.since);
	free(j->row.kickoff_url);
	free(j->row.scope);
	j->row.since = since;
	j->row.scope = scope;
	j->row.kickoff_url = bcda_kickoff_url(p, ep, since);
	if (j->row.kickoff_url == NULL) {
		ej_retry(j, -1, "out of memory building the kickoff URL");
		return -1;
	}
	return 0;
}

void
step_new(struct ejob *j)
{
	char warn[256];

	if (ej_secret_warning(j->pt, time(NULL), warn, sizeof(warn)))
		JLOG(LOG_LVL_WARN, j, "%s", warn);
	if (prepare_kickoff(j, j->row.runout ? EP_GROUP_RUNOUT :
	    j->pt->prof->endpoint) != 0)
		return;
	ej_enter(j, JOB_TOKEN, j->row.since ? "incremental export" :
	    "full-history export", 0);
}

void
step_token(struct ejob *j)
{
	if (ej_have_token(j))
		ej_enter(j, JOB_KICKOFF, "token obtained", 0);
}

/* ---- KICKOFF ----------------------------------------------------------- */

/*
 * BCDA has no current attribution for the ACO: every January until the
 * new performance year's is loaded (requests.go bulkRequest, about a
 * month).  With runout_fallback the job exports /Group/runout instead;
 * otherwise it ends SKIPPED, saying so, and nothing is exported.
 */
static void
no_attribution(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char why[400];

	if (p->runout_fallback && !j->row.runout &&
	    p->endpoint != EP_GROUP_RUNOUT) {
		j->row.runout = 1;
		if (prepare_kickoff(j, EP_GROUP_RUNOUT) != 0)
			return;
		j->row.kickoff_sent = 0;
		j->list_checked = 0;
		ej_enter(j, j->row.state, "BCDA has no current attribution "
		    "for this ACO (January, until the new performance year is "
		    "loaded); exporting /Group/runout instead "
		    "(runout_fallback)", 0);
		return;
	}
	snprintf(why, sizeof(why), "BCDA has no current attribution for this "
	    "ACO yet (every January until the new performance year is "
	    "loaded, about a month): nothing was exported; the next "
	    "scheduled run tries again%s", p->runout_fallback ||
	    p->endpoint == EP_GROUP_RUNOUT ? "" : "; set runout_fallback = "
	    "yes to export last year's /Group/runout meanwhile");
	ej_set_error(j, "%s", why);
	ej_enter(j, JOB_SKIPPED, why, 0);
}

/* The kickoff answered 404: one of BCDA's three refusals, or a URL error. */
static void
kickoff_404(struct ejob *j, const struct http_resp *resp, const char *what)
{
	const struct profile *p = j->pt->prof;
	struct bcda_outcome oo;

	bcda_parse_outcome(resp->body, resp->body_len, &oo);
	switch (bcda_kickoff_404(&oo)) {
	case BCDA_404_ATTRIBUTION:
		no_attribution(j);
		return;
	case BCDA_404_RUNOUT_EXPIRED:
		ej_fail(j, "BCDA's runout data for this ACO is no longer "
		    "available (it expires 180 days after ingestion): "
		    "/Group/runout has nothing to export");
		return;
	case BCDA_404_SINCE:
		ej_fail(j, "BCDA has no attribution data as old as _since %s "
		    "for this ACO, and says so every night until the "
		    "watermark moves: run `bcdad run %s --full` once to "
		    "export full history", j->row.since ? j->row.since : "",
		    p->name);
		return;
	case BCDA_404_OTHER:
		break;
	}
	ej_fail(j, "BCDA refused the export request (%s)", what);
}

static void
on_kickoff(struct ejob *j, const struct http_resp *resp)
{
	char what[300];
	long ra = http_retry_after(resp->retry_after, time(NULL));

	/* No answer: BCDA may still be working on it (see on_jobs_list). */
	j->kickoff_unknown = resp->result != CURLE_OK;
	if (resp->result == CURLE_OK && resp->status == 202) {
		const char *cl = resp->content_location;

		if (cl == NULL || !bcda_url_trusted(j->pt->prof->base_url, cl)) {
			ej_fail(j, "BCDA accepted the export but gave no status "
			    "URL on %s", j->pt->prof->base_url);
			return;
		}
		free(j->row.status_url);
		j->row.status_url = strdup(cl);
		j->row.kickoffs++;
		j->row.progress = -1;
		j->row.progress_stalled = 0;
		j->polled_at = 0;
		j->dup429 = 0;
		ej_enter(j, JOB_POLL, "BCDA accepted the export", 0);
		return;
	}
	ej_describe(resp, what, sizeof(what));
	if (resp->result == CURLE_OK && resp->status == 429) {
		/*
		 * ratelimit.go: another export of this ACO and API version is
		 * pending or running (maybe our own, started just before a
		 * crash).  The job list says which, and until when it blocks.
		 */
		j->list_checked = 0;
		j->dup429 = 1;
		j->dup_retry_after = ra;
		ej_due(j, 0);
	} else if (resp->result == CURLE_OK && resp->status == 404) {
		kickoff_404(j, resp, what);
	} else if (ej_transient(resp)) {
		ej_retry(j, ra, "kickoff failed: %s", what);
	} else {
		ej_fail(j, "BCDA refused the export request (%s)", what);
	}
}

/*
 * After a duplicate-job 429 with no job of ours in BCDA's list: wait for
 * the blocking job to end, trying again on the poll schedule, but never
 * past the moment BCDA stops counting it (bcda_job_timeout after it
 * started).  Without a blocker in the list the 429 is a plain retry.
 */
static void
wait_for_blocker(struct ejob *j, const struct http_resp *resp)
{
	const struct config *c = j->e->cfg;
	char id[32], at[32];
	time_t start = 0, now = time(NULL), until;
	uint64_t delay;
	struct tm tm;

	if (bcda_find_blocker(resp->body, resp->body_len,
	    j->pt->prof->api_version, &start, id, sizeof(id)) != 0 ||
	    (until = start + c->bcda_job_timeout) <= now) {
		ej_retry(j, j->dup_retry_after, "BCDA refused the kickoff (429): "
		    "an export of this ACO is already running");
		return;
	}
	delay = ej_backoff(c->poll_min, c->poll_max, ++j->dup_waits);
	if (j->dup_retry_after > 0 &&
	    delay < (uint64_t)j->dup_retry_after * 1000)
		delay = (uint64_t)j->dup_retry_after * 1000;
	if (delay > (uint64_t)(until - now) * 1000)
		delay = (uint64_t)(until - now) * 1000;
	gmtime_r(&until, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ej_set_error(j, "waiting: BCDA job %s of this ACO blocks a new export "
	    "(duplicate-job 429) until it ends or, at the latest, %s",
	    id, at);
	ej_save(j);
	JLOG(LOG_LVL_INFO, j, "%s; next try in %llu s", j->row.last_error,
	    (unsigned long long)(delay + 999) / 1000);
	/* Not a failure: the retry budget does not run while we wait. */
	ej_ok(j);
	ej_due(j, delay);
}

/*
 * In an answer to the jobs-list request: the status URL of the BCDA job
 * our last kickoff started, malloc'd, or NULL.
 */
char *
ej_own_job(struct ejob *j, const struct http_resp *resp)
{
	time_t now = time(NULL);
	char *url;

	/*
	 * A kickoff "sent" in the future: this host's clock went back since.
	 * Count from now, or the grace would last as long as the jump and
	 * BCDA's job, started before, would not be recognised.
	 */
	if (j->row.kickoff_sent > (int64_t)now)
		j->row.kickoff_sent = (int64_t)now;
	if (resp->result != CURLE_OK || resp->status != 200)
		return NULL;
	/* Five minutes of slack for clocks that disagree. */
	url = bcda_find_job(resp->body, resp->body_len, j->row.kickoff_url,
	    (time_t)j->row.kickoff_sent - 300);
	if (url != NULL && !bcda_url_trusted(j->pt->prof->base_url, url)) {
		free(url);
		url = NULL;
	}
	return url;
}

static void
on_jobs_list(struct ejob *j, const struct http_resp *resp)
{
	char *url, what[300];
	long long wait;

	if ((url = ej_own_job(j, resp)) != NULL) {
		free(j->row.status_url);
		j->row.status_url = url;
		j->row.kickoffs++;
		j->row.progress = -1;
		j->row.progress_stalled = 0;
		j->polled_at = 0;
		j->dup429 = 0;
		ej_enter(j, JOB_POLL, "found the BCDA job of the kickoff "
		    "whose answer was lost", 0);
		return;
	}
	if (resp->result == CURLE_OK && resp->status < 500 &&
	    j->kickoff_unknown && (wait = j->row.kickoff_sent +
	    KICKOFF_GRACE - time(NULL)) > 0) {
		/*
		 * Not (yet) there.  A kickoff whose answer never came (a
		 * crash, a timeout, a reset) may still be running in BCDA,
		 * whose job appears when that request ends: look again until
		 * KICKOFF_GRACE after it was sent before starting another, so
		 * that no BCDA job is left behind.
		 */
		ej_set_error(j, "waiting: the BCDA job of the kickoff sent "
		    "%lld s ago may still appear; a new kickoff in %lld s at "
		    "the latest", (long long)(KICKOFF_GRACE - wait),
		    (long long)wait);
		ej_save(j);
		JLOG(LOG_LVL_INFO, j, "%s", j->row.last_error);
		ej_ok(j);
		if (wait > j->e->cfg->poll_min)
			wait = j->e->cfg->poll_min;
		ej_due(j, (uint64_t)wait * 1000);
		return;
	}
	if (resp->result == CURLE_OK && resp->status < 500) {
		/* No such job (404 means none at all): kick off anew. */
		j->list_checked = 1;
		if (j->dup429) {
			j->dup429 = 0;
			wait_for_blocker(j, resp);
		} else {
			ej_due(j, 0);
		}
		return;
	}
	ej_describe(resp, what, sizeof(what));
	ej_retry(j, -1, "listing BCDA jobs failed: %s", what);
}

void
step_kickoff(struct ejob *j)
{
	char *url;

	if (!ej_have_token(j))
		return;
	if (j->row.kickoffs >= MAX_KICKOFFS) {
		ej_fail(j, "BCDA expired this export %d times; giving up",
		    j->row.kickoffs);
		return;
	}
	/*
	 * A kickoff sent before a crash may have started a BCDA job whose
	 * status URL we never saw.  Look for it before starting another.
	 */
	if (j->row.kickoff_sent != 0 && !j->list_checked) {
		if ((url = bcda_jobs_url(j->pt->prof)) == NULL) {
			ej_retry(j, -1, "out of memory");
			return;
		}
		ej_api_request(j, "GET", url, 1, on_jobs_list);
		free(url);
		return;
	}
	j->row.kickoff_sent = (int64_t)time(NULL);
	if (ej_save(j) != 0) {
		ej_retry(j, -1, "cannot record the kickoff in the database");
		return;
	}
	j->list_checked = 0;
	ej_api_request(j, "GET", j->row.kickoff_url, 1, on_kickoff);
}

/* ---- POLL -------------------------------------------------------------- */

/*
 * The job's files, one per manifest entry, in memory: the POLL ->
 * DOWNLOAD transition writes them (REC_FILES), in place of any list an
 * older BCDA job left.
 */
static int
manifest_files(struct ejob *j, const struct bcda_manifest *m)
{
	struct file_row f;
	char name[128];
	size_t i, k;
	int seq;

	ej_free_files(j);
	for (i = 0; i < m->nfiles; i++) {
		/* n counts files of the same kind and type, in manifest order. */
		for (seq = 1, k = 0; k < i; k++)
			if (m->files[k].kind == m->files[i].kind &&
			    strcmp(m->files[k].type, m->files[i].type) == 0)
				seq++;
		if (m->files[i].kind == FILE_ERROR)
			snprintf(name, sizeof(name), "errors/%s-%d.ndjson",
			    m->files[i].type, seq);
		else
			snprintf(name, sizeof(name), "%s-%d.ndjson",
			    m->files[i].type, seq);
		memset(&f, 0, sizeof(f));
		f.job_id = j->row.id;
		f.kind = m->files[i].kind;
		f.seq = seq;
		f.state = FILE_PENDING;
		if ((f.type = strdup(m->files[i].type)) == NULL ||
		    (f.url = strdup(m->files[i].url)) == NULL ||
		    (f.name = strdup(name)) == NULL || ej_add_file(j, &f) != 0) {
			file_row_clear(&f);
			ej_free_files(j);
			return -ENOMEM;
		}
	}
	return 0;
}

/* True for a type name we can put in a file name. */
static int
type_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > 64)
		return 0;
	for (; *t; t++)
		if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z')))
			return 0;
	return 1;
}

/*
 * The export's own directory, made: <storage_dir>/<profile>/<utc>, or
 * <utc>.2, <utc>.3... when another export's files are there.  BCDA's
 * v1/v2 transactionTime is BFD's last data load, the same for every
 * export until the next one, and a file found in the directory after a
 * crash is read back as this export's own: never one of another export.
 * A directory holding no file is taken (a crash came before the job
 * recorded it).
 */
static int
export_dir(const struct profile *p, const char *utc, char **out)
{
	char *base, *dir;
	int n, rc;

	*out = NULL;
	if (asprintf(&base, "%s/%s", p->storage_dir, p->name) < 0)
		return -ENOMEM;
	if ((rc = fs_mkdir_p(base, 0700)) != 0) {
		free(base);
		return rc;
	}
	for (n = 1, rc = -EEXIST; rc == -EEXIST && n <= EXPORT_DIRS; n++) {
		if ((n == 1 ? asprintf(&dir, "%s/%s", base, utc) :
		    asprintf(&dir, "%s/%s.%d", base, utc, n)) < 0) {
			rc = -ENOMEM;
			break;
		}
		if ((rc = fs_mkdir_unused(dir, 0700)) >= 0) {
			*out = dir;
			rc = 0;
		} else
			free(dir);
	}
	free(base);
	return rc;
}

static void
on_manifest(struct ejob *j, const struct http_resp *resp)
{
	const struct profile *p = j->pt->prof;
	struct bcda_manifest m;
	char *dir = NULL, *edir = NULL, why[128], utc[64];
	time_t expires;
	size_t i;
	int rc;

	if (bcda_parse_manifest(resp->body, resp->body_len, &m) != 0) {
		ej_retry(j, -1, "BCDA's manifest could not be read");
		return;
	}
	for (i = 0; i < m.nfiles; i++) {
		if (!type_ok(m.files[i].type) || strchr(
		    m.transaction_time, '/') != NULL) {
			bcda_manifest_clear(&m);
			ej_fail(j, "BCDA's manifest names an unusable type or time");
			return;
		}
	}
	/* Named in UTC: the same instant, with no offset or '+'. */
	if (iso8601_utc(m.transaction_time, utc, sizeof(utc)) != 0) {
		bcda_manifest_clear(&m);
		ej_fail(j, "BCDA's manifest has an unreadable transactionTime");
		return;
	}
	if ((rc = export_dir(p, utc, &dir)) != 0) {
		if (rc != -ENOMEM)
			ej_retry(j, -1, "cannot create the export's directory in "
			    "%s/%s: %s", p->storage_dir, p->name, strerror(-rc));
		goto out;
	}
	if (asprintf(&edir, "%s/errors", dir) < 0) {
		edir = NULL;
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = fs_mkdir_p(edir, 0700)) != 0) {
		ej_retry(j, -1, "cannot create %s: %s", edir, strerror(-rc));
		goto out;
	}
	free(j->row.transaction_time);
	free(j->row.out_dir);
	j->row.transaction_time = strdup(m.transaction_time);
	j->row.out_dir = dir;
	dir = NULL;
	j->row.completed_at = (int64_t)time(NULL);
	/*
	 * BCDA deletes the files FILE_EXPIRY after the job completed, which
	 * may be well before we saw the manifest (bcdad was down while the
	 * job ran).  Its Expires header says when, so that a 404 past it
	 * starts a new export instead of 40 retries of every file.
	 */
	if (resp->expires != NULL && bcda_parse_expires(resp->expires,
	    &expires) == 0 && expires - FILE_EXPIRY < j->row.completed_at)
		j->row.completed_at = (int64_t)(expires - FILE_EXPIRY);
	j->row.progress = 100;
	if ((rc = manifest_files(j, &m)) != 0)
		goto out;
	snprintf(why, sizeof(why), "export complete: %zu files", m.nfiles);
	ej_enter(j, JOB_DOWNLOAD, why, REC_FILES);
out:
	if (rc == -ENOMEM)
		ej_retry(j, -1, "out of memory");
	free(dir);
	free(edir);
	bcda_manifest_clear(&m);
}

/* BCDA dropped the job or its files: start a new BCDA job, same bcdad job. */
void
ej_rekickoff(struct ejob *j, const char *why)
{
	free(j->row.status_url);
	j->row.status_url = NULL;
	j->row.kickoff_sent = 0;
	j->row.progress = -1;
	j->list_checked = 0;
	ej_free_files(j);
	ej_enter(j, JOB_KICKOFF, why, 0);
}

/*
 * When resp, an answer to the job's status URL, says BCDA's job is gone,
 * deals with it and returns 1: cancelled outside bcdad fails the job;
 * expired (410, or 404 once BCDA's cleanup ran) starts a new BCDA job.
 * Downloads still being saved are waited for first (the next 404 of a
 * file comes back here).
 */
int
ej_job_gone(struct ejob *j, const struct http_resp *resp, const char *what)
{
	struct bcda_outcome oo;

	if (resp->result != CURLE_OK ||
	    (resp->status != 404 && resp->status != 410))
		return 0;
	bcda_parse_outcome(resp->body, resp->body_len, &oo);
	if (strstr(oo.text, "cancel") != NULL) {
		ej_fail(j, "the BCDA job was cancelled outside bcdad (%s)", what);
		return 1;
	}
	ej_cancel_transfers(j);
	if (j->ndl == 0)
		ej_rekickoff(j, resp->status == 410 ? "BCDA job expired (410); "
		    "starting a new one" : "BCDA job gone (404: expired and "
		    "its files deleted, or unknown); starting a new one");
	return 1;
}

/*
 * BCDA's job answered 202 again at the same progress: adds the time since
 * the last answer to how long it has stalled, each gap counting for at
 * most twice poll_max (a jump of the clock, or a stop of the daemon, adds
 * little; a clock gone back adds nothing).  Returns 1 when it has stalled
 * for bcda_job_timeout: BCDA's status handler has no timeout, so without
 * this the job would be polled forever and its profile would export
 * nothing more.  By then BCDA no longer counts it against a new export
 * (the duplicate-job check looks back that long): the next run starts one.
 */
static int
stalled(struct ejob *j, time_t now)
{
	const struct config *c = j->e->cfg;
	int64_t gap;

	if (j->polled_at == 0 || now <= j->polled_at)
		return 0;
	gap = (int64_t)(now - j->polled_at);
	if (gap > 2 * (int64_t)c->poll_max)
		gap = 2 * (int64_t)c->poll_max;
	j->row.progress_stalled += gap;
	if (j->row.progress_stalled < c->bcda_job_timeout) {
		ej_save(j);
		return 0;
	}
	if (j->row.progress < 0)
		ej_fail(j, "BCDA's job has not moved (no percentage) for %lld "
		    "min: given up (bcda_job_timeout); BCDA no longer counts it "
		    "against a new export, so the next run starts one",
		    (long long)(j->row.progress_stalled + 59) / 60);
	else
		ej_fail(j, "BCDA's job has not moved (at %d%%) for %lld min: "
		    "given up (bcda_job_timeout); BCDA no longer counts it "
		    "against a new export, so the next run starts one",
		    j->row.progress, (long long)(j->row.progress_stalled + 59) /
		    60);
	return 1;
}

static void
on_poll(struct ejob *j, const struct http_resp *resp)
{
	const struct config *c = j->e->cfg;
	struct bcda_outcome oo;
	time_t now = time(NULL);
	char what[300];
	int pct;

	if (resp->result == CURLE_OK && resp->status == 202) {
		pct = bcda_parse_progress(resp->x_progress);
		if (pct != j->row.progress) {
			j->row.progress = pct;
			j->row.progress_stalled = 0;
			ej_save(j);
		} else if (stalled(j, now)) {
			return;
		}
		j->polled_at = now;
		ej_ok(j);
		/* BCDA never sends Retry-After here: our own schedule. */
		ej_due(j, ej_backoff(c->poll_min, c->poll_max, ++j->polls));
		return;
	}
	if (resp->result == CURLE_OK && resp->status == 200) {
		on_manifest(j, resp);
		return;
	}
	ej_describe(resp, what, sizeof(what));
	if (ej_job_gone(j, resp, what))
		return;
	if (resp->result == CURLE_OK) {
		bcda_parse_outcome(resp->body, resp->body_len, &oo);
		if (bcda_job_failed(resp->status, &oo)) {
			ej_fail(j, "BCDA reports the export failed (%s)", what);
			return;
		}
	}
	if (ej_transient(resp))
		ej_retry(j, http_retry_after(resp->retry_after, time(NULL)),
		    "polling failed: %s", what);
	else
		ej_fail(j, "BCDA refused the status request (%s)", what);
}

void
step_poll(struct ejob *j)
{
	if (ej_have_token(j))
		ej_api_request(j, "GET", j->row.status_url, 0, on_poll);
}
