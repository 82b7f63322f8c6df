/*
 * The engine: export jobs on one libuv loop.  See engine.h.
 *
 * Each job has one step function per state, dispatched from one table.
 * A step never assigns the state itself: it calls enter(), which goes
 * through job_set_state() (compare-and-set, save, history, commit) and
 * only then schedules the next step.  Steps that wait (for a token, a
 * poll interval, a retry) set next_at; one wake-up timer runs every job
 * whose time has come.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "bcda.h"
#include "engine.h"
#include "fetch.h"
#include "http.h"
#include "log.h"

#define NEVER		INT64_MAX
#define MAX_KICKOFFS	3	/* BCDA jobs per bcdad job (expiry restarts) */
#define MAX_ATTEMPTS	40	/* transient failures in a row before FAILED */
#define FILE_ATTEMPTS	5	/* per file, for invalid or missing content */
#define FILE_EXPIRY	(24 * 3600)	/* BCDA deletes files 24 h after */
#define RETRY_AFTER_MAX	3600	/* seconds: a server's Retry-After, capped */

/* A profile's bearer token, shared by its jobs, refreshed before expiry. */
struct ptoken {
	struct engine	*e;
	const struct profile *prof;
	char		*token;
	unsigned	 gen;		/* bumped with every new token */
	uint64_t	 expires_at;	/* loop time, ms */
	struct http_req	*req;
	uint64_t	 retry_at;
	int		 failures;
	char		 error[256];	/* why the last request failed */
	int		 rejected;	/* credentials refused: no point retrying */
};

/* A download in flight. */
struct dl {
	struct ejob	*job;
	size_t		 idx;		/* into job->files */
	struct http_req	*req;
	struct fetch	*fetch;
	unsigned	 token_gen;	/* ptoken gen of the token sent */
	int		 committing;
};

/* Per-file scheduling, beside the persisted file rows. */
struct fsched {
	uint64_t	 next_at;
	int		 reauth;
	struct dl	*dl;
};

struct ejob {
	TAILQ_ENTRY(ejob) entry;
	struct engine	*e;
	struct job_row	 row;
	struct ptoken	*pt;
	uint64_t	 next_at;	/* loop time, ms; NEVER = waiting */
	int		 attempts;	/* transient failures in a row */
	int		 reauth;	/* a 401 was answered with a new token */
	int		 waiting_token;
	int		 polls;		/* status requests answered 202 */
	int		 list_checked;	/* looked for a job lost in a crash */
	struct http_req	*req;		/* the one control request in flight */
	unsigned	 req_gen;	/* ptoken gen of the token it carries */
	void		(*req_fn)(struct ejob *, const struct http_resp *);
	struct file_row	*files;
	struct fsched	*fs;
	size_t		 nfiles;
	int		 files_loaded;
	int		 ndl;
	int		 dead;
};

TAILQ_HEAD(ejob_list, ejob);

struct engine {
	uv_loop_t	*loop;
	const struct config *cfg;
	struct store	*st;
	struct http	*http;
	uv_timer_t	 wake;
	struct ejob_list jobs;
	struct ptoken	*tokens;	/* one per profile, cfg order */
	int		 ndl;		/* downloads in flight, all jobs */
	int		 stopping;
	int		 running_steps;
};

typedef void (*step_fn)(struct ejob *);

static void	step_new(struct ejob *);
static void	step_token(struct ejob *);
static void	step_kickoff(struct ejob *);
static void	step_poll(struct ejob *);
static void	step_download(struct ejob *);
static void	step_pass(struct ejob *);
static void	step_notify(struct ejob *);

static const step_fn steps[JOB_NSTATES] = {
	[JOB_NEW]	= step_new,
	[JOB_TOKEN]	= step_token,
	[JOB_KICKOFF]	= step_kickoff,
	[JOB_POLL]	= step_poll,
	[JOB_DOWNLOAD]	= step_download,
	[JOB_S3_PUT]	= step_pass,
	[JOB_IMPORT]	= step_pass,
	[JOB_NOTIFY]	= step_notify,
};

static void	engine_arm(struct engine *);
static void	cancel_transfers(struct ejob *);

#define JLOG(lvl, j, ...) log_job((lvl), (j)->row.id, (j)->row.profile, \
	job_state_name((j)->row.state), __VA_ARGS__)

static uint64_t
now_ms(const struct engine *e)
{
	return uv_now(e->loop);
}

/*
 * Capped exponential backoff with full jitter in its upper half: the
 * n-th retry waits between d/2 and d, d = min(max, min * 2^(n-1)).
 */
static uint64_t
backoff_ms(int min_s, int max_s, int n)
{
	uint64_t d = (uint64_t)min_s * 1000, cap = (uint64_t)max_s * 1000;

	while (--n > 0 && d < cap)
		d *= 2;
	if (d > cap)
		d = cap;
	return d / 2 + (uint64_t)random() % (d / 2 + 1);
}

static void
set_error(struct ejob *j, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(j->row.last_error);
	j->row.last_error = strdup(buf);
}

static void
due(struct ejob *j, uint64_t delay_ms)
{
	j->next_at = now_ms(j->e) + delay_ms;
	engine_arm(j->e);
}

static void
free_files(struct ejob *j)
{
	size_t i;

	for (i = 0; i < j->nfiles; i++)
		file_row_clear(&j->files[i]);
	free(j->files);
	free(j->fs);
	j->files = NULL;
	j->fs = NULL;
	j->nfiles = 0;
	j->files_loaded = 0;
}

/*
 * Moves the job to state to, through job_set_state().  On a store error
 * the job stays where it was and is retried later; the error is logged.
 */
static int
enter(struct ejob *j, enum job_state to, const char *why, job_extra_fn extra,
    void *arg)
{
	enum job_state from = j->row.state;
	int rc;

	if (to != JOB_FAILED && to != JOB_CANCELLED && j->row.last_error) {
		free(j->row.last_error);
		j->row.last_error = NULL;
	}
	rc = job_set_state(j->e->st, &j->row, from, to, why, extra, arg);
	if (rc != 0) {
		JLOG(LOG_LVL_ERR, j, "cannot record %s -> %s: %s",
		    job_state_name(from), job_state_name(to), strerror(-rc));
		due(j, 5000);
		return rc;
	}
	log_job(to == JOB_FAILED ? LOG_LVL_WARN : LOG_LVL_INFO, j->row.id,
	    j->row.profile, job_state_name(to), "%s -> %s: %s",
	    job_state_name(from), job_state_name(to), why);
	j->attempts = 0;
	j->reauth = 0;
	if (job_state_terminal(to)) {
		cancel_transfers(j);
		j->dead = 1;
		j->next_at = NEVER;
	} else {
		due(j, 0);
	}
	return 0;
}

static void
fail(struct ejob *j, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	set_error(j, "%s", buf);
	enter(j, JOB_FAILED, buf, NULL, NULL);
}

/*
 * A transient failure: remember why, wait, and run the same step again.
 * Retry-After, when the server sent one, wins over our own backoff.
 */
static void
retry(struct ejob *j, long retry_after, const char *fmt, ...)
{
	const struct config *c = j->e->cfg;
	char buf[512];
	uint64_t delay;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (++j->attempts > MAX_ATTEMPTS) {
		fail(j, "%s (gave up after %d attempts)", buf, MAX_ATTEMPTS);
		return;
	}
	delay = backoff_ms(c->retry_min, c->retry_max, j->attempts);
	if (retry_after > RETRY_AFTER_MAX)
		retry_after = RETRY_AFTER_MAX;
	if (retry_after > 0)
		delay = (uint64_t)retry_after * 1000;
	set_error(j, "%s", buf);
	store_job_save(j->e->st, &j->row);
	JLOG(LOG_LVL_WARN, j, "%s; retry %d in %llu s", buf, j->attempts,
	    (unsigned long long)(delay + 999) / 1000);
	due(j, delay);
}

/* ---- tokens ------------------------------------------------------------ */

static struct ptoken *
token_for(struct engine *e, const char *profile)
{
	int i;

	for (i = 0; i < e->cfg->nprofiles; i++)
		if (strcmp(e->cfg->profiles[i]->name, profile) == 0)
			return &e->tokens[i];
	return NULL;
}

static int
token_valid(struct engine *e, const struct ptoken *pt)
{
	return pt->token != NULL && now_ms(e) < pt->expires_at;
}

static void
token_drop(struct ptoken *pt)
{
	if (pt->token != NULL) {
		explicit_bzero(pt->token, strlen(pt->token));
		free(pt->token);
		pt->token = NULL;
	}
}

/* Wakes every job of the profile that waits for its token. */
static void
token_wake(struct engine *e, struct ptoken *pt, uint64_t at)
{
	struct ejob *j;

	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (j->pt == pt && j->waiting_token) {
			j->waiting_token = 0;
			j->next_at = at;
		}
	}
	engine_arm(e);
}

static void
token_done(struct http_req *r, void *arg)
{
	struct ptoken *pt = arg;
	struct engine *e = pt->e;
	const struct http_resp *resp = http_req_resp(r);
	const struct profile *p = pt->prof;
	struct bcda_token tok;
	uint64_t margin, ttl;
	long ra;

	pt->req = NULL;
	if (resp->result == CURLE_OK && resp->status == 200 &&
	    bcda_parse_token(resp->body, resp->body_len, &tok) == 0) {
		token_drop(pt);
		pt->token = tok.access_token;
		pt->gen++;
		tok.access_token = NULL;
		/* Refresh a minute early, or at 3/4 of a short lifetime. */
		ttl = (uint64_t)tok.expires_in * 1000;
		margin = ttl / 4 < 60000 ? ttl / 4 : 60000;
		pt->expires_at = now_ms(e) + ttl - margin;
		pt->failures = 0;
		pt->rejected = 0;
		pt->error[0] = '\0';
		log_info("profile %s: new BCDA token, valid %lld s", p->name,
		    (long long)tok.expires_in);
		bcda_token_clear(&tok);
		http_req_free(r);
		token_wake(e, pt, now_ms(e));
		return;
	}
	pt->failures++;
	ra = http_retry_after(resp->retry_after, time(NULL));
	if (resp->result != CURLE_OK) {
		snprintf(pt->error, sizeof(pt->error),
		    "cannot reach BCDA at %s for a token: %s (a connect timeout "
		    "in production usually means this host's IP is not on the "
		    "BCDA allow-list)", p->base_url, resp->error);
	} else if (resp->status == 401 || resp->status == 400 ||
	    resp->status == 403) {
		snprintf(pt->error, sizeof(pt->error),
		    "BCDA rejected the credentials for profile %s (%ld): check "
		    "client_id and the client secret; they expire every 90 days",
		    p->name, resp->status);
		pt->rejected = 1;
	} else if (resp->status == 200) {
		snprintf(pt->error, sizeof(pt->error),
		    "BCDA's token response for profile %s could not be read",
		    p->name);
	} else {
		snprintf(pt->error, sizeof(pt->error),
		    "BCDA's token endpoint answered %ld for profile %s",
		    resp->status, p->name);
	}
	log_warnx("%s", pt->error);
	http_req_free(r);
	if (ra > RETRY_AFTER_MAX)
		ra = RETRY_AFTER_MAX;
	pt->retry_at = now_ms(e) + (ra > 0 ? (uint64_t)ra * 1000 :
	    backoff_ms(e->cfg->retry_min, e->cfg->retry_max, pt->failures));
	/* Waiting jobs run again and see pt->error or the backoff. */
	token_wake(e, pt, now_ms(e));
}

/*
 * Returns 1 when the profile has a valid token.  Otherwise starts (or
 * joins) a token request, parks the job until it ends, and returns 0;
 * returns -1 when the token cannot be had now (pt->error says why).
 */
static int
need_token(struct ejob *j)
{
	struct engine *e = j->e;
	struct ptoken *pt = j->pt;
	char err[256], *secret = NULL, *url = NULL;
	int rc;

	if (token_valid(e, pt))
		return 1;
	if (pt->req == NULL) {
		if (pt->error[0] != '\0' && now_ms(e) < pt->retry_at) {
			if (pt->rejected)
				return -1;
			j->next_at = pt->retry_at;
			engine_arm(e);
			return 0;
		}
		if ((secret = config_read_secret(pt->prof, err,
		    sizeof(err))) == NULL) {
			snprintf(pt->error, sizeof(pt->error), "%s", err);
			pt->rejected = 1;
			pt->retry_at = now_ms(e) + 60000;
			return -1;
		}
		url = bcda_token_url(pt->prof);
		pt->req = url ? http_req_new("POST", url) : NULL;
		free(url);
		if (pt->req == NULL) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
			return -1;
		}
		http_req_header(pt->req, "Accept: application/json");
		http_req_basic_auth(pt->req, pt->prof->client_id, secret);
		explicit_bzero(secret, strlen(secret));
		free(secret);
		if ((rc = http_start(e->http, pt->req, token_done, pt)) != 0) {
			http_req_free(pt->req);
			pt->req = NULL;
			snprintf(pt->error, sizeof(pt->error),
			    "cannot start a token request: %s", strerror(-rc));
			return -1;
		}
	}
	j->waiting_token = 1;
	j->next_at = NEVER;
	return 0;
}

/*
 * For steps: 1 when the token is there; 0 when the job was parked until it
 * is, or was failed or rescheduled because it cannot be had.
 */
static int
have_token(struct ejob *j)
{
	int rc = need_token(j);

	if (rc >= 0)
		return rc;
	if (j->pt->rejected)
		fail(j, "%s", j->pt->error);
	else
		retry(j, -1, "%s", j->pt->error);
	return 0;
}

/* ---- requests to the BCDA API ----------------------------------------- */

typedef void (*api_done_fn)(struct ejob *, const struct http_resp *);

/*
 * Every API answer comes here first.  A 401 is answered once with a fresh
 * token and the step run again; a second 401 in a row is a retry.
 */
static void
api_done(struct http_req *r, void *arg)
{
	struct ejob *j = arg;
	const struct http_resp *resp = http_req_resp(r);
	api_done_fn fn = j->req_fn;

	j->req = NULL;
	j->req_fn = NULL;
	if (resp->result == CURLE_OK && resp->status == 401) {
		if (!j->reauth) {
			j->reauth = 1;
			/* Only the token refused: a newer one may be in use. */
			if (j->req_gen == j->pt->gen)
				token_drop(j->pt);
			JLOG(LOG_LVL_INFO, j, "BCDA answered 401; getting a "
			    "new token");
			due(j, 0);
		} else {
			retry(j, -1, "BCDA answered 401 to %s even with a "
			    "fresh token", http_req_url(r));
		}
		http_req_free(r);
		return;
	}
	if (resp->result == CURLE_OK && resp->status >= 200 &&
	    resp->status < 300)
		j->reauth = 0;
	fn(j, resp);
	http_req_free(r);
}

/*
 * Sends one request of the job to BCDA with its bearer token.  The token
 * goes only to URLs on the profile's origin (bcda_url_trusted).
 */
static void
api_request(struct ejob *j, const char *method, const char *url,
    int export_headers, api_done_fn fn)
{
	char *auth = NULL;
	int rc;

	if (!bcda_url_trusted(j->pt->prof->base_url, url)) {
		fail(j, "BCDA gave a URL outside %s; refusing to send the "
		    "token there", j->pt->prof->base_url);
		return;
	}
	if ((j->req = http_req_new(method, url)) == NULL ||
	    asprintf(&auth, "Authorization: Bearer %s", j->pt->token) < 0) {
		auth = NULL;
		goto fail;
	}
	http_req_header(j->req, auth);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	j->req_gen = j->pt->gen;
	if (export_headers) {
		http_req_header(j->req, "Accept: application/fhir+json");
		http_req_header(j->req, "Prefer: respond-async");
	} else {
		http_req_header(j->req, "Accept: application/json");
	}
	j->req_fn = fn;
	j->next_at = NEVER;
	if ((rc = http_start(j->e->http, j->req, api_done, j)) != 0)
		goto fail;
	return;
fail:
	http_req_free(j->req);
	j->req = NULL;
	retry(j, -1, "cannot start a request to %s", url);
}

/* Says what an unexpected answer was, for errors and retries. */
static void
describe(const struct http_resp *resp, char *buf, size_t len)
{
	struct bcda_outcome oo;

	if (resp->result != CURLE_OK) {
		snprintf(buf, len, "%s", resp->error);
		return;
	}
	bcda_parse_outcome(resp->body, resp->body_len, &oo);
	if (oo.present)
		snprintf(buf, len, "HTTP %ld, %s: %s", resp->status, oo.code,
		    oo.text);
	else
		snprintf(buf, len, "HTTP %ld", resp->status);
}

static int
transient(const struct http_resp *resp)
{
	struct bcda_outcome oo;

	if (resp->result != CURLE_OK)
		return 1;
	if (resp->status == 429 || resp->status == 408)
		return 1;
	if (resp->status < 500)
		return 0;
	bcda_parse_outcome(resp->body, resp->body_len, &oo);
	/* 500 with an OperationOutcome is BCDA's terminal "job failed". */
	return !oo.present || strcmp(oo.code, "transient") == 0 ||
	    resp->status != 500;
}

/* ---- NEW, TOKEN -------------------------------------------------------- */

static void
step_new(struct ejob *j)
{
	const struct profile *p = j->pt->prof;
	char *since = NULL;
	time_t t;

	if (p->since == SINCE_AUTO)
		store_cursor_get(j->e->st, p->name, &since);
	else if (p->since == SINCE_FIXED)
		since = strdup(p->since_value);
	if (since != NULL && (bcda_parse_instant(since, &t) != 0 ||
	    t > time(NULL))) {
		fail(j, "_since %s is not a past RFC 3339 instant", since);
		free(since);
		return;
	}
	free(j->row.since);
	free(j->row.kickoff_url);
	j->row.since = since;
	j->row.kickoff_url = bcda_kickoff_url(p, since);
	if (j->row.kickoff_url == NULL) {
		retry(j, -1, "out of memory building the kickoff URL");
		return;
	}
	enter(j, JOB_TOKEN, since ? "incremental export" :
	    "full-history export", NULL, NULL);
}

static void
step_token(struct ejob *j)
{
	if (have_token(j))
		enter(j, JOB_KICKOFF, "token obtained", NULL, NULL);
}

/* ---- KICKOFF ----------------------------------------------------------- */

static void
on_kickoff(struct ejob *j, const struct http_resp *resp)
{
	char what[300];
	long ra = http_retry_after(resp->retry_after, time(NULL));

	if (resp->result == CURLE_OK && resp->status == 202) {
		const char *cl = resp->content_location;

		if (cl == NULL || !bcda_url_trusted(j->pt->prof->base_url, cl)) {
			fail(j, "BCDA accepted the export but gave no status "
			    "URL on %s", j->pt->prof->base_url);
			return;
		}
		free(j->row.status_url);
		j->row.status_url = strdup(cl);
		j->row.kickoffs++;
		j->row.progress = -1;
		enter(j, JOB_POLL, "BCDA accepted the export", NULL, NULL);
		return;
	}
	describe(resp, what, sizeof(what));
	if (resp->result == CURLE_OK && resp->status == 429) {
		/* Maybe our own job, started just before a crash: look. */
		j->list_checked = 0;
		retry(j, ra, "BCDA refused the kickoff (429): an export of "
		    "this ACO is already running");
	} else if (transient(resp)) {
		retry(j, ra, "kickoff failed: %s", what);
	} else {
		fail(j, "BCDA refused the export request (%s)", what);
	}
}

static void
on_jobs_list(struct ejob *j, const struct http_resp *resp)
{
	char *url = NULL, what[300];

	if (resp->result == CURLE_OK && resp->status == 200)
		url = bcda_find_job(resp->body, resp->body_len,
		    j->row.kickoff_url);
	if (url != NULL && bcda_url_trusted(j->pt->prof->base_url, url)) {
		free(j->row.status_url);
		j->row.status_url = url;
		j->row.kickoffs++;
		j->row.progress = -1;
		enter(j, JOB_POLL, "found the BCDA job started before a "
		    "restart", NULL, NULL);
		return;
	}
	free(url);
	if (resp->result == CURLE_OK && resp->status < 500) {
		/* No such job (404 means none at all): kick off anew. */
		j->list_checked = 1;
		due(j, 0);
		return;
	}
	describe(resp, what, sizeof(what));
	retry(j, -1, "listing BCDA jobs failed: %s", what);
}

static void
step_kickoff(struct ejob *j)
{
	char *url;

	if (!have_token(j))
		return;
	if (j->row.kickoffs >= MAX_KICKOFFS) {
		fail(j, "BCDA expired this export %d times; giving up",
		    j->row.kickoffs);
		return;
	}
	/*
	 * A kickoff sent before a crash may have started a BCDA job whose
	 * status URL we never saw.  Look for it before starting another.
	 */
	if (j->row.kickoff_sent != 0 && !j->list_checked) {
		if ((url = bcda_jobs_url(j->pt->prof)) == NULL) {
			retry(j, -1, "out of memory");
			return;
		}
		api_request(j, "GET", url, 1, on_jobs_list);
		free(url);
		return;
	}
	j->row.kickoff_sent = (int64_t)time(NULL);
	if (store_job_save(j->e->st, &j->row) != 0) {
		retry(j, -1, "cannot record the kickoff in the database");
		return;
	}
	j->list_checked = 0;
	api_request(j, "GET", j->row.kickoff_url, 1, on_kickoff);
}

/* ---- POLL -------------------------------------------------------------- */

/* Inside the POLL -> DOWNLOAD transaction: one row per manifest file. */
static int
insert_files(struct store *st, struct job_row *job, void *arg)
{
	struct bcda_manifest *m = arg;
	struct file_row f;
	char name[128];
	size_t i, k;
	int rc, seq;

	if ((rc = store_files_delete(st, job->id)) != 0)
		return rc;
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
		f.job_id = job->id;
		f.kind = m->files[i].kind;
		f.type = m->files[i].type;
		f.url = m->files[i].url;
		f.seq = seq;
		f.name = name;
		f.state = FILE_PENDING;
		if ((rc = store_file_insert(st, &f)) != 0)
			return rc;
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

static void
on_manifest(struct ejob *j, const struct http_resp *resp)
{
	const struct profile *p = j->pt->prof;
	struct bcda_manifest m;
	char *dir = NULL, *edir = NULL, why[128];
	time_t expires;
	size_t i;
	int rc;

	if (bcda_parse_manifest(resp->body, resp->body_len, &m) != 0) {
		retry(j, -1, "BCDA's manifest could not be read");
		return;
	}
	for (i = 0; i < m.nfiles; i++) {
		if (!type_ok(m.files[i].type) || strchr(
		    m.transaction_time, '/') != NULL) {
			bcda_manifest_clear(&m);
			fail(j, "BCDA's manifest names an unusable type or time");
			return;
		}
	}
	if (asprintf(&dir, "%s/%s/%s", p->storage_dir, p->name,
	    m.transaction_time) < 0 || asprintf(&edir, "%s/errors", dir) < 0) {
		edir = NULL;
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = mkdir_p(edir)) != 0) {
		retry(j, -1, "cannot create %s: %s", edir, strerror(-rc));
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
	free_files(j);
	snprintf(why, sizeof(why), "export complete: %zu files", m.nfiles);
	enter(j, JOB_DOWNLOAD, why, insert_files, &m);
	rc = 0;
out:
	if (rc == -ENOMEM)
		retry(j, -1, "out of memory");
	free(dir);
	free(edir);
	bcda_manifest_clear(&m);
}

/* BCDA dropped the job or its files: start a new BCDA job, same bcdad job. */
static void
rekickoff(struct ejob *j, const char *why)
{
	free(j->row.status_url);
	j->row.status_url = NULL;
	j->row.kickoff_sent = 0;
	j->row.progress = -1;
	j->list_checked = 0;
	free_files(j);
	enter(j, JOB_KICKOFF, why, NULL, NULL);
}

static void
on_poll(struct ejob *j, const struct http_resp *resp)
{
	const struct config *c = j->e->cfg;
	struct bcda_outcome oo;
	char what[300];
	int pct;

	if (resp->result == CURLE_OK && resp->status == 202) {
		pct = bcda_parse_progress(resp->x_progress);
		if (pct != j->row.progress) {
			j->row.progress = pct;
			store_job_save(j->e->st, &j->row);
		}
		j->attempts = 0;
		/* BCDA never sends Retry-After here: our own schedule. */
		due(j, backoff_ms(c->poll_min, c->poll_max, ++j->polls));
		return;
	}
	if (resp->result == CURLE_OK && resp->status == 200) {
		on_manifest(j, resp);
		return;
	}
	describe(resp, what, sizeof(what));
	if (resp->result == CURLE_OK &&
	    (resp->status == 404 || resp->status == 410)) {
		bcda_parse_outcome(resp->body, resp->body_len, &oo);
		if (strstr(oo.text, "cancel") != NULL) {
			fail(j, "the BCDA job was cancelled outside bcdad (%s)",
			    what);
			return;
		}
		rekickoff(j, resp->status == 410 ? "BCDA job expired (410); "
		    "starting a new one" : "BCDA job gone (404); starting a "
		    "new one");
		return;
	}
	if (transient(resp))
		retry(j, -1, "polling failed: %s", what);
	else
		fail(j, "BCDA reports the export failed (%s)", what);
}

static void
step_poll(struct ejob *j)
{
	if (have_token(j))
		api_request(j, "GET", j->row.status_url, 0, on_poll);
}

/* ---- DOWNLOAD ---------------------------------------------------------- */

static int
collect_file(struct file_row *f, void *arg)
{
	struct ejob *j = arg;
	struct file_row *nf;
	struct fsched *ns;

	nf = realloc(j->files, (j->nfiles + 1) * sizeof(*nf));
	if (nf == NULL)
		return -ENOMEM;
	j->files = nf;
	ns = realloc(j->fs, (j->nfiles + 1) * sizeof(*ns));
	if (ns == NULL)
		return -ENOMEM;
	j->fs = ns;
	/* Take ownership of the row's strings; the store frees nothing. */
	j->files[j->nfiles] = *f;
	memset(f, 0, sizeof(*f));
	memset(&j->fs[j->nfiles], 0, sizeof(j->fs[0]));
	j->nfiles++;
	return 0;
}

static void
file_save(struct ejob *j, struct file_row *f)
{
	if (store_file_save(j->e->st, f) != 0)
		JLOG(LOG_LVL_ERR, j, "cannot record file %s", f->name);
}

/* Wakes every downloading job: a slot may have come free. */
static void
wake_downloads(struct engine *e)
{
	struct ejob *j;

	TAILQ_FOREACH(j, &e->jobs, entry)
		if (!j->dead && j->row.state == JOB_DOWNLOAD &&
		    !j->waiting_token && j->req == NULL)
			j->next_at = now_ms(e);
	engine_arm(e);
}

static void
dl_free(struct dl *d)
{
	struct ejob *j = d->job;

	j->fs[d->idx].dl = NULL;
	j->ndl--;
	j->e->ndl--;
	http_req_free(d->req);
	fetch_free(d->fetch);
	free(d);
	wake_downloads(j->e);
}

/*
 * A file failed.  Content errors (bad gzip, bad NDJSON, a URL we will not
 * send the token to) give up after FILE_ATTEMPTS; transport errors after
 * MAX_ATTEMPTS.  The file is redone from its first byte each time.
 */
static void
file_failed(struct ejob *j, size_t i, int content, long retry_after,
    const char *why)
{
	const struct config *c = j->e->cfg;
	struct file_row *f = &j->files[i];
	uint64_t delay;

	f->attempts++;
	free(f->last_error);
	f->last_error = strdup(why);
	if (f->attempts >= (content ? FILE_ATTEMPTS : MAX_ATTEMPTS)) {
		f->state = FILE_FAILED;
		JLOG(LOG_LVL_WARN, j, "file %s failed for good: %s", f->name,
		    why);
	} else {
		if (retry_after > RETRY_AFTER_MAX)
			retry_after = RETRY_AFTER_MAX;
		delay = retry_after > 0 ? (uint64_t)retry_after * 1000 :
		    backoff_ms(c->retry_min, c->retry_max, f->attempts);
		j->fs[i].next_at = now_ms(j->e) + delay;
		JLOG(LOG_LVL_WARN, j, "file %s: %s; retry %d in %llu s",
		    f->name, why, f->attempts,
		    (unsigned long long)(delay + 999) / 1000);
	}
	file_save(j, f);
}

static void
dl_committed(struct fetch *fe, int rc, void *arg)
{
	struct dl *d = arg;
	struct ejob *j = d->job;
	struct file_row *f = &j->files[d->idx];
	const uint64_t *sev;
	int k;

	if (rc != 0) {
		file_failed(j, d->idx, 0, -1, fetch_error(fe));
		dl_free(d);
		return;
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
	/* The file and the job's error counts, together or not at all. */
	if (store_begin(j->e->st) != 0 || store_file_save(j->e->st, f) != 0 ||
	    store_job_save(j->e->st, &j->row) != 0 ||
	    store_commit(j->e->st) != 0) {
		store_rollback(j->e->st);
		for (k = 0; k < 4 && f->kind == FILE_ERROR; k++)
			j->row.err_counts[k] -= (int64_t)sev[k];
		f->state = FILE_PENDING;
		file_failed(j, d->idx, 0, -1, "cannot record the file in the "
		    "database");
	} else {
		JLOG(LOG_LVL_DEBUG, j, "file %s done: %lld lines, %lld bytes",
		    f->name, (long long)f->lines, (long long)f->bytes);
	}
	dl_free(d);
}

static void
dl_done(struct http_req *r, void *arg)
{
	struct dl *d = arg;
	struct ejob *j = d->job;
	const struct http_resp *resp = http_req_resp(r);
	char what[300];
	int rc;

	if (resp->result == CURLE_OK && resp->status == 200) {
		d->committing = 1;
		if ((rc = fetch_commit(j->e->loop, d->fetch, dl_committed,
		    d)) == 0)
			return;
		d->committing = 0;
		snprintf(what, sizeof(what), "%s", fetch_error(d->fetch));
		fetch_abort(d->fetch);
		file_failed(j, d->idx, 1, -1, what);
		dl_free(d);
		return;
	}
	fetch_abort(d->fetch);
	if (resp->sink_error != 0) {
		/* Ours: the body failed to decode or validate, or disk. */
		snprintf(what, sizeof(what), "%s", fetch_error(d->fetch));
		file_failed(j, d->idx, resp->sink_error != -ENOSPC &&
		    resp->sink_error != -EIO, -1, what);
	} else if (resp->result == CURLE_OK && resp->status == 401 &&
	    !j->fs[d->idx].reauth) {
		j->fs[d->idx].reauth = 1;
		/*
		 * Parallel downloads all see the 401 of an expired token; only
		 * the first answer may drop it, not the next token as well.
		 */
		if (d->token_gen == j->pt->gen)
			token_drop(j->pt);
	} else if (resp->result == CURLE_OK && (resp->status == 404 ||
	    resp->status == 410) && time(NULL) > j->row.completed_at +
	    FILE_EXPIRY) {
		dl_free(d);
		cancel_transfers(j);
		/* Files being saved still point into j->files: wait for them. */
		if (j->ndl == 0)
			rekickoff(j, "BCDA deleted the files (past their "
			    "expiry); starting a new export");
		return;
	} else {
		describe(resp, what, sizeof(what));
		file_failed(j, d->idx, 0, http_retry_after(resp->retry_after,
		    time(NULL)), what);
	}
	dl_free(d);
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
		file_failed(j, i, 1, -1, why);
		return;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return;
	d->job = j;
	d->idx = i;
	/* Error files live in a subdirectory: errors/OperationOutcome-n. */
	slash = strrchr(f->name, '/');
	if (asprintf(&dir, "%s%s%.*s", j->row.out_dir, slash ? "/" : "",
	    slash ? (int)(slash - f->name) : 0, f->name) < 0) {
		free(d);
		return;
	}
	rc = fetch_open(dir, slash ? slash + 1 : f->name,
	    f->kind == FILE_ERROR ? "OperationOutcome" : f->type,
	    f->kind == FILE_ERROR, &d->fetch);
	free(dir);
	if (rc != 0) {
		snprintf(why, sizeof(why), "cannot create %s.part: %s",
		    f->name, strerror(-rc));
		free(d);
		file_failed(j, i, 0, -1, why);
		return;
	}
	if ((d->req = http_req_new("GET", f->url)) == NULL ||
	    asprintf(&auth, "Authorization: Bearer %s", j->pt->token) < 0) {
		fetch_abort(d->fetch);
		fetch_free(d->fetch);
		http_req_free(d->req);
		free(d);
		return;
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
		dl_free(d);
		file_failed(j, i, 0, -1, "cannot start the download");
	}
}

static json_t *
manifest_json(struct ejob *j)
{
	json_t *root, *files, *o;
	size_t i;

	root = json_pack("{s:i, s:s, s:s?, s:s?, s:s?, s:{s:I, s:I, s:I, s:I}}",
	    "version", 1, "profile", j->row.profile,
	    "transactionTime", j->row.transaction_time,
	    "request", j->row.kickoff_url, "since", j->row.since,
	    "errors", "fatal", (json_int_t)j->row.err_counts[0],
	    "error", (json_int_t)j->row.err_counts[1],
	    "warning", (json_int_t)j->row.err_counts[2],
	    "information", (json_int_t)j->row.err_counts[3]);
	if (root == NULL)
		return NULL;
	files = json_array();
	json_object_set_new(root, "job", json_integer(j->row.id));
	json_object_set_new(root, "files", files);
	for (i = 0; i < j->nfiles; i++) {
		struct file_row *f = &j->files[i];

		o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s?}",
		    "kind", f->kind == FILE_ERROR ? "error" : "output",
		    "type", f->type, "name", f->name,
		    "lines", (json_int_t)f->lines,
		    "bytes", (json_int_t)f->bytes, "sha256", f->sha256);
		json_array_append_new(files, o);
	}
	return root;
}

/* Every file is DONE or FAILED and nothing is in flight. */
static void
finish_download(struct ejob *j)
{
	char *path = NULL, *text = NULL, why[256];
	int64_t lines = 0, bytes = 0;
	size_t i, failed = 0, first = 0;
	json_t *m;
	int rc;

	for (i = 0; i < j->nfiles; i++) {
		if (j->files[i].state == FILE_FAILED && failed++ == 0)
			first = i;
		if (j->files[i].kind == FILE_OUTPUT) {
			lines += j->files[i].lines;
			bytes += j->files[i].bytes;
		}
	}
	if (failed > 0) {
		fail(j, "%zu of %zu files failed; first %s: %s", failed,
		    j->nfiles, j->files[first].name,
		    j->files[first].last_error ? j->files[first].last_error :
		    "unknown error");
		return;
	}
	if ((m = manifest_json(j)) == NULL ||
	    (text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS)) == NULL ||
	    asprintf(&path, "%s/manifest.json", j->row.out_dir) < 0) {
		path = NULL;
		retry(j, -1, "out of memory writing manifest.json");
		goto out;
	}
	if ((rc = write_file_atomic(path, text, strlen(text))) != 0) {
		retry(j, -1, "cannot write %s: %s", path, strerror(-rc));
		goto out;
	}
	snprintf(why, sizeof(why), "%zu files, %lld resources, %lld bytes",
	    j->nfiles, (long long)lines, (long long)bytes);
	enter(j, JOB_S3_PUT, why, NULL, NULL);
out:
	json_decref(m);
	free(text);
	free(path);
}

static void
step_download(struct ejob *j)
{
	struct engine *e = j->e;
	const struct config *c = e->cfg;
	uint64_t now = now_ms(e), next = NEVER;
	size_t i, open = 0;

	if (!j->files_loaded) {
		free_files(j);
		if (store_files(e->st, j->row.id, collect_file, j) != 0) {
			free_files(j);
			retry(j, -1, "cannot read the file list");
			return;
		}
		j->files_loaded = 1;
	}
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
		if (e->ndl >= c->max_downloads ||
		    j->ndl >= c->max_downloads_per_job)
			continue;
		if (!token_valid(e, j->pt)) {
			if (!have_token(j))
				return;
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

/* ---- S3_PUT, IMPORT, NOTIFY ------------------------------------------- */

/* Inside the IMPORT -> NOTIFY transaction: the next export's _since. */
static int
save_cursor(struct store *st, struct job_row *job, void *arg)
{
	(void)arg;
	if (job->transaction_time == NULL)
		return 0;
	return store_cursor_set(st, job->profile, job->transaction_time,
	    (int64_t)time(NULL));
}

/*
 * S3 and HealthLake stages are not configured in this build of the
 * profile: the export stays in its local directory.
 */
static void
step_pass(struct ejob *j)
{
	if (j->row.state == JOB_S3_PUT)
		enter(j, JOB_IMPORT, "no S3 bucket configured; files stay "
		    "in the local directory", NULL, NULL);
	else
		enter(j, JOB_NOTIFY, "no HealthLake datastore configured",
		    save_cursor, NULL);
}

static void
step_notify(struct ejob *j)
{
	char why[512];

	snprintf(why, sizeof(why), "export %s saved in %s (errors: %lld "
	    "error, %lld warning)", j->row.transaction_time, j->row.out_dir,
	    (long long)(j->row.err_counts[0] + j->row.err_counts[1]),
	    (long long)j->row.err_counts[2]);
	enter(j, JOB_DONE, why, NULL, NULL);
}

/* ---- cancel ------------------------------------------------------------ */

static void
on_delete(struct ejob *j, const struct http_resp *resp)
{
	char why[128];

	snprintf(why, sizeof(why), "cancelled on request (BCDA answered "
	    "%ld)", resp->status);
	enter(j, JOB_CANCELLED, why, NULL, NULL);
}

static void
step_cancel(struct ejob *j)
{
	cancel_transfers(j);
	if (j->row.state == JOB_POLL && j->row.status_url != NULL) {
		/* Tell BCDA too, so it stops working and frees the ACO. */
		if (have_token(j))
			api_request(j, "DELETE", j->row.status_url, 0,
			    on_delete);
		return;
	}
	enter(j, JOB_CANCELLED, "cancelled on request", NULL, NULL);
}

static void
cancel_transfers(struct ejob *j)
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
		dl_free(d);
	}
}

/* ---- scheduling -------------------------------------------------------- */

static void
job_free(struct ejob *j)
{
	free_files(j);
	job_row_clear(&j->row);
	free(j);
}

static void
wake_cb(uv_timer_t *t)
{
	struct engine *e = t->data;
	struct ejob *j, *next;
	uint64_t now = now_ms(e);

	for (j = TAILQ_FIRST(&e->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (e->stopping)
			break;
		if (j->dead || j->req != NULL || j->next_at > now)
			continue;
		j->next_at = NEVER;
		if (j->row.cancel_requested)
			step_cancel(j);
		else if (steps[j->row.state] != NULL)
			steps[j->row.state](j);
	}
	/* Reap finished jobs once nothing of theirs is in flight. */
	for (j = TAILQ_FIRST(&e->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (j->dead && j->ndl == 0 && j->req == NULL) {
			TAILQ_REMOVE(&e->jobs, j, entry);
			job_free(j);
		}
	}
	engine_arm(e);
}

/* Arms the wake-up timer for the earliest job that is due. */
static void
engine_arm(struct engine *e)
{
	struct ejob *j;
	uint64_t first = NEVER, now = now_ms(e);

	if (e->stopping)
		return;
	TAILQ_FOREACH(j, &e->jobs, entry)
		if (!j->dead && j->next_at < first)
			first = j->next_at;
	TAILQ_FOREACH(j, &e->jobs, entry)
		if (j->dead) {
			first = now;
			break;
		}
	if (first == NEVER) {
		uv_timer_stop(&e->wake);
		return;
	}
	uv_timer_start(&e->wake, wake_cb, first > now ? first - now : 0, 0);
}

/* ---- public ------------------------------------------------------------ */

struct engine *
engine_new(uv_loop_t *loop, const struct config *cfg, struct store *st)
{
	struct engine *e;
	int i;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->loop = loop;
	e->cfg = cfg;
	e->st = st;
	TAILQ_INIT(&e->jobs);
	e->tokens = calloc((size_t)(cfg->nprofiles ? cfg->nprofiles : 1),
	    sizeof(*e->tokens));
	e->http = http_new(loop, cfg->connect_timeout, cfg->low_speed_time);
	if (e->tokens == NULL || e->http == NULL) {
		free(e->tokens);
		http_free(e->http);
		free(e);
		return NULL;
	}
	for (i = 0; i < cfg->nprofiles; i++) {
		e->tokens[i].e = e;
		e->tokens[i].prof = cfg->profiles[i];
	}
	uv_timer_init(loop, &e->wake);
	e->wake.data = e;
	return e;
}

static struct ejob *
job_add(struct engine *e, struct job_row *row)
{
	struct ejob *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return NULL;
	j->e = e;
	j->row = *row;
	memset(row, 0, sizeof(*row));
	j->pt = token_for(e, j->row.profile);
	TAILQ_INSERT_TAIL(&e->jobs, j, entry);
	return j;
}

static int
load_job(struct job_row *row, void *arg)
{
	struct engine *e = arg;
	struct ejob *j;

	if ((j = job_add(e, row)) == NULL)
		return -ENOMEM;
	if (j->pt == NULL) {
		fail(j, "profile %s is no longer in the configuration",
		    j->row.profile);
		return 0;
	}
	JLOG(LOG_LVL_INFO, j, "resuming");
	due(j, 0);
	return 0;
}

int
engine_start(struct engine *e)
{
	return store_jobs_active(e->st, load_job, e);
}

void
engine_stop(struct engine *e)
{
	struct ejob *j;
	int i;

	TAILQ_FOREACH(j, &e->jobs, entry)
		cancel_transfers(j);
	for (i = 0; i < e->cfg->nprofiles; i++) {
		if (e->tokens[i].req != NULL) {
			http_cancel(e->http, e->tokens[i].req);
			http_req_free(e->tokens[i].req);
			e->tokens[i].req = NULL;
		}
	}
	e->stopping = 1;
	uv_timer_stop(&e->wake);
	uv_close((uv_handle_t *)&e->wake, NULL);
	http_free(e->http);
	e->http = NULL;
}

/* After engine_stop and once the loop has run dry. */
void
engine_free(struct engine *e)
{
	struct ejob *j;
	int i;

	if (e == NULL)
		return;
	while ((j = TAILQ_FIRST(&e->jobs)) != NULL) {
		TAILQ_REMOVE(&e->jobs, j, entry);
		job_free(j);
	}
	for (i = 0; i < e->cfg->nprofiles; i++)
		token_drop(&e->tokens[i]);
	free(e->tokens);
	free(e);
}

int
engine_run(struct engine *e, const char *profile, int64_t *job_id, char *err,
    size_t errlen)
{
	struct job_row row;
	struct ejob *j;
	int rc;

	if (token_for(e, profile) == NULL) {
		snprintf(err, errlen, "no profile named %s", profile);
		return -ENOENT;
	}
	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (!j->dead && strcmp(j->row.profile, profile) == 0) {
			snprintf(err, errlen, "job %lld of profile %s is "
			    "still in %s", (long long)j->row.id, profile,
			    job_state_name(j->row.state));
			return -EBUSY;
		}
	}
	memset(&row, 0, sizeof(row));
	row.profile = strdup(profile);
	row.progress = -1;
	if (row.profile == NULL ||
	    (rc = store_job_insert(e->st, &row, (int64_t)time(NULL))) != 0) {
		job_row_clear(&row);
		snprintf(err, errlen, "cannot record the job in the database");
		return -EIO;
	}
	if ((j = job_add(e, &row)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*job_id = j->row.id;
	JLOG(LOG_LVL_INFO, j, "created");
	due(j, 0);
	return 0;
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
		j->row.cancel_requested = (int64_t)time(NULL);
		if (store_job_save(e->st, &j->row) != 0) {
			j->row.cancel_requested = 0;
			snprintf(err, errlen, "cannot record the cancel");
			return -EIO;
		}
		cancel_transfers(j);
		j->waiting_token = 0;
		due(j, 0);
		return 0;
	}
	snprintf(err, errlen, "no running job %lld", (long long)id);
	return -ENOENT;
}

struct status_ctx {
	struct engine	*e;
	json_t		*arr;
};

struct file_tally {
	json_int_t	 total, done, failed, bytes, lines;
};

static int
tally_file(struct file_row *f, void *arg)
{
	struct file_tally *t = arg;

	t->total++;
	if (f->state == FILE_DONE) {
		t->done++;
		t->bytes += f->bytes;
		t->lines += f->lines;
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
	    "s:I, s:s?, s:s?, s:s?, s:I, s:I}",
	    "id", (json_int_t)r->id, "profile", r->profile,
	    "state", job_state_name(r->state), "progress", r->progress,
	    "files_total", t.total, "files_done", t.done,
	    "files_failed", t.failed, "bytes", t.bytes, "resources", t.lines,
	    "created_at", (json_int_t)r->created_at,
	    "updated_at", (json_int_t)r->updated_at,
	    "transaction_time", r->transaction_time,
	    "dir", r->out_dir, "last_error", r->last_error,
	    "errors", (json_int_t)(r->err_counts[0] + r->err_counts[1]),
	    "warnings", (json_int_t)r->err_counts[2]);
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

int
engine_active_jobs(const struct engine *e)
{
	const struct ejob *j;
	int n = 0;

	TAILQ_FOREACH(j, &e->jobs, entry)
		n += !j->dead;
	return n;
}

int
engine_active_downloads(const struct engine *e)
{
	return e->ndl;
}
