/*
 * The engine: export jobs on one libuv loop.  See engine.h.
 *
 * Each job has one step function per state, dispatched from one table.
 * A step never assigns the state itself: it calls ej_enter(), which goes
 * through ej_record() (record.c: compare-and-set, save, history, commit)
 * and only then schedules the next step; a write that failed is written
 * again before the job's next step.  Steps that wait (for a token, a
 * poll interval, a retry) set next_at; one wake-up timer runs every job
 * whose time has come.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine_int.h"
#include "util/fs.h"

typedef void (*step_fn)(struct ejob *);

static struct ptoken	*tokens_new(struct engine *, const struct config *);


static const step_fn steps[JOB_NSTATES] = {
	[JOB_NEW]	= step_new,
	[JOB_TOKEN]	= step_token,
	[JOB_KICKOFF]	= step_kickoff,
	[JOB_POLL]	= step_poll,
	[JOB_DOWNLOAD]	= step_download,
	[JOB_S3_PUT]	= step_s3_put,
	[JOB_IMPORT]	= step_import,
	[JOB_NOTIFY]	= step_notify,
};

uint64_t
ej_now(const struct engine *e)
{
	return uv_now(e->loop);
}

/*
 * Capped exponential backoff with full jitter in its upper half: the
 * n-th retry waits between d/2 and d, d = min(max, min * 2^(n-1)).
 */
uint64_t
ej_backoff(int min_s, int max_s, int n)
{
	uint64_t d = (uint64_t)min_s * 1000, cap = (uint64_t)max_s * 1000;

	while (--n > 0 && d < cap)
		d *= 2;
	if (d > cap)
		d = cap;
	return d / 2 + (uint64_t)random() % (d / 2 + 1);
}

/*
 * BCDA's WAF allows bcda_request_limit requests per bcda_request_window
 * from one address, whatever the ACO.  Returns 0 and counts a request
 * when one may be sent now, else the ms until one may.  The WAF counts
 * arrivals, which come after the sends counted here (a slow connect, a
 * TLS handshake, a busy server taking requests late): the time is the
 * clock's, not the loop's cached one, and the window is taken
 * BUDGET_SLACK_MS longer than BCDA's.  With the loop free of the data
 * path, a budget's worth of requests leaves at once, and on a loaded
 * machine their arrivals were seen spread over most of a second.
 * Against BCDA's 5-minute window the slack costs a third of a percent.
 */
#define BUDGET_SLACK_MS	1000

uint64_t
ej_bcda_budget(struct engine *e)
{
	uint64_t now = uv_hrtime() / 1000000, window, oldest;

	window = (uint64_t)e->cfg->bcda_request_window * 1000 +
	    BUDGET_SLACK_MS;
	oldest = e->reqlog[e->reqlog_next];
	if (e->reqlog_len == e->cfg->bcda_request_limit &&
	    now < oldest + window)
		return oldest + window - now;
	e->reqlog[e->reqlog_next] = now;
	e->reqlog_next = (e->reqlog_next + 1) % e->cfg->bcda_request_limit;
	if (e->reqlog_len < e->cfg->bcda_request_limit)
		e->reqlog_len++;
	return 0;
}

/*
 * When the profile's BCDA secret was issued: client_secret_issued, else
 * the CreatedDate of the Secrets Manager version it was read from, else 0
 * (unknown).
 */
int64_t
ej_secret_issued(const struct ptoken *pt)
{
	return pt->prof->secret_issued != 0 ? pt->prof->secret_issued :
	    pt->sm_created;
}

/*
 * BCDA client secrets expire 90 days after they are issued.  From
 * SECRET_WARN_DAYS days before (counting a part of a day as a day),
 * writes a warning to buf and returns 1; otherwise returns 0.
 */
int
ej_secret_warning(const struct ptoken *pt, time_t now, char *buf, size_t len)
{
	const struct profile *p = pt->prof;
	int64_t issued = ej_secret_issued(pt);
	time_t expires;
	long long left;
	char day[16];
	struct tm tm;

	if (issued == 0)
		return 0;
	expires = (time_t)(issued + SECRET_LIFETIME);
	left = ((long long)expires - (long long)now + 86399) / 86400;
	if (left > SECRET_WARN_DAYS)
		return 0;
	gmtime_r(&expires, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	if (left <= 0)
		snprintf(buf, len, "the BCDA client secret of profile %s "
		    "expired on %s (90 days after it was issued): create a new "
		    "one in the BCDA portal%s", p->name, day,
		    p->bcda_secret_arn ? " and store it in Secrets Manager" :
		    " and set client_secret_issued");
	else
		snprintf(buf, len, "the BCDA client secret of profile %s "
		    "expires on %s, in %lld day%s: create a new one in the BCDA "
		    "portal%s", p->name, day, left, left == 1 ? "" : "s",
		    p->bcda_secret_arn ? " and store it in Secrets Manager" :
		    " and set client_secret_issued");
	return 1;
}

/* A step got the answer it wanted: the run of transient failures ends. */
void
ej_ok(struct ejob *j)
{
	j->attempts = 0;
	j->trouble_since = 0;
}

/*
 * vsnprintf, but a text cut to fit buf is not cut inside a UTF-8
 * character, which would leave the row bytes that are not UTF-8.
 */
static void	vformat(char *, size_t, const char *, va_list)
		    __attribute__((format(printf, 3, 0)));

static void
vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
	size_t len, i;
	unsigned char lead;
	int n;

	if ((n = vsnprintf(buf, size, fmt, ap)) < 0 || (size_t)n < size)
		return;
	len = strlen(buf);
	/* Back to the last character's first byte (at most 3 behind). */
	for (i = len; i > 0 && len - i < 3 &&
	    ((unsigned char)buf[i - 1] & 0xc0) == 0x80; i--)
		;
	if (i == 0 || ((lead = (unsigned char)buf[i - 1]) & 0xc0) != 0xc0)
		return;
	if (len - (i - 1) < (size_t)(lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2))
		buf[i - 1] = '\0';
}

void
ej_set_error(struct ejob *j, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_strip_controls(buf);	/* it may quote a server */
	free(j->row.last_error);
	j->row.last_error = strdup(buf);
}

void
ej_due(struct ejob *j, uint64_t delay_ms)
{
	j->next_at = ej_now(j->e) + delay_ms;
	engine_arm(j->e);
}

void
ej_free_files(struct ejob *j)
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

/* Appends a file row to the job, taking its strings (f is cleared). */
int
ej_add_file(struct ejob *j, struct file_row *f)
{
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
	j->files[j->nfiles] = *f;
	memset(f, 0, sizeof(*f));
	memset(&j->fs[j->nfiles], 0, sizeof(j->fs[0]));
	j->nfiles++;
	return 0;
}

/*
 * Moves the job to state to (its own state: a checkpoint, a change of
 * plan within the state, such as the January fallback to /Group/runout)
 * with a history row saying why, then schedules the next step.  what
 * (REC_*) names what else is written in the same transaction.  A write
 * that fails is held and tried again before anything else of the job
 * runs (see record.c).
 */
int
ej_enter(struct ejob *j, enum job_state to, const char *why, unsigned what)
{
	const struct config *c = j->e->cfg;
	enum job_state from = j->row.state;
	int notify = j->row.notify_state;
	int rc;

	if (to != JOB_FAILED && to != JOB_CANCELLED && to != JOB_SKIPPED &&
	    j->row.last_error) {
		free(j->row.last_error);
		j->row.last_error = NULL;
	}
	/* A failure is owed to SNS, recorded with the failure itself. */
	if ((to == JOB_FAILED || to == JOB_SKIPPED) && j->pt != NULL &&
	    j->pt->prof->sns_topic_arn != NULL)
		j->row.notify_state = 1;
	if ((rc = ej_record(j, to, why, what)) != 0) {
		j->row.notify_state = notify;
		if (rc == -ESTALE)
			return rc;
		JLOG(LOG_LVL_ERR, j, "cannot record %s -> %s: %s; trying the "
		    "write again", job_state_name(from), job_state_name(to),
		    strerror(-rc));
		free(j->held_why);
		if ((j->held_why = strdup(why)) != NULL) {
			j->held_to = to;
			j->held_what = what;
		}
		ej_due(j, ej_backoff(c->retry_min, c->retry_max,
		    j->write_failures));
		return rc;
	}
	if (to == from)
		JLOG(LOG_LVL_INFO, j, "%s", why);
	else
		log_job(to == JOB_FAILED ? LOG_LVL_WARN : LOG_LVL_INFO,
		    j->row.id, j->row.profile, job_state_name(to),
		    "%s -> %s: %s", job_state_name(from), job_state_name(to),
		    why);
	if (what & REC_FILES)
		j->files_loaded = 1;
	ej_ok(j);
	j->reauth = 0;
	if (job_state_terminal(to)) {
		ej_cancel_transfers(j);
		if (to != JOB_DONE)
			ej_s3_abandon(j);
		j->dead = 1;
		j->next_at = ej_notify_owed(j) ? ej_now(j->e) : NEVER;
		engine_arm(j->e);
	} else {
		ej_due(j, 0);
	}
	return 0;
}

void
ej_fail(struct ejob *j, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (j->row.state == JOB_NOTIFY) {
		/*
		 * The export is complete: a notification that cannot be sent
		 * does not make it fail.  It is owed and retried later.
		 */
		JLOG(LOG_LVL_WARN, j, "%s; the outcome is kept and announced "
		    "later", buf);
		j->row.notify_state = 1;
		ej_enter(j, JOB_DONE, "export complete; notification pending",
		    0);
		return;
	}
	ej_set_error(j, "%s", buf);
	ej_enter(j, JOB_FAILED, buf, 0);
}

/*
 * A transient failure: remember why, wait, and run the same step again.
 * Retry-After, when the server sent one, wins over our own backoff.  A
 * stage that has failed for retry_budget seconds in a row fails the job.
 */
void
ej_retry(struct ejob *j, long retry_after, const char *fmt, ...)
{
	const struct config *c = j->e->cfg;
	char buf[512];
	uint64_t delay;
	va_list ap;

	va_start(ap, fmt);
	vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (j->trouble_since == 0)
		j->trouble_since = ej_now(j->e);
	if (ej_now(j->e) - j->trouble_since >= (uint64_t)c->retry_budget *
	    1000) {
		ej_fail(j, "%s (gave up after retrying for %d s, the "
		    "retry_budget)", buf, c->retry_budget);
		return;
	}
	j->attempts++;
	if (j->pt != NULL)
		j->pt->retries++;
	delay = ej_backoff(c->retry_min, c->retry_max, j->attempts);
	if (retry_after > RETRY_AFTER_MAX)
		retry_after = RETRY_AFTER_MAX;
	if (retry_after > 0)
		delay = (uint64_t)retry_after * 1000;
	ej_set_error(j, "%s", buf);
	ej_save(j);
	JLOG(LOG_LVL_WARN, j, "%s; retry %d in %llu s", buf, j->attempts,
	    (unsigned long long)(delay + 999) / 1000);
	ej_due(j, delay);
}

/* ---- scheduling -------------------------------------------------------- */

static void
job_free(struct ejob *j)
{
	ej_free_files(j);
	free(j->held_why);
	job_row_clear(&j->row);
	free(j);
}

/* An ended job with nothing in flight and nothing owed: free it. */
static int
reapable(const struct ejob *j)
{
	return j->ndl == 0 && j->nup == 0 && j->req == NULL && !j->aws_wait &&
	    !ej_notify_owed(j) && !j->unsaved && j->held_why == NULL &&
	    !j->stale;
}

static void
wake_cb(uv_timer_t *t)
{
	struct engine *e = t->data;
	struct ejob *j, *next;
	uint64_t now = ej_now(e);

	for (j = TAILQ_FIRST(&e->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (e->stopping)
			break;
		if (j->req != NULL || j->aws_wait || j->next_at > now)
			continue;
		if (j->stale) {
			ej_reload(j);
			continue;
		}
		if (j->held_why != NULL || j->unsaved) {
			/* A write failed: write it before anything else. */
			j->next_at = NEVER;
			if (ej_flush(j) != 0 || j->dead)
				continue;
		}
		if (j->dead) {
			if (ej_notify_owed(j)) {
				j->next_at = NEVER;
				ej_notify_retry(j);
			}
			continue;
		}
		j->next_at = NEVER;
		if (j->row.cancel_requested)
			step_cancel(j);
		else if (steps[j->row.state] != NULL)
			steps[j->row.state](j);
	}
	/* Reap finished jobs once nothing of theirs is in flight. */
	for (j = TAILQ_FIRST(&e->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (j->dead && reapable(j)) {
			TAILQ_REMOVE(&e->jobs, j, entry);
			job_free(j);
		}
	}
	engine_arm(e);
}

/* Arms the wake-up timer for the earliest job that is due. */
void
engine_arm(struct engine *e)
{
	struct ejob *j;
	uint64_t first = NEVER, now = ej_now(e);

	if (e->stopping)
		return;
	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (j->dead && reapable(j))
			first = now;
		else if (j->next_at < first)
			first = j->next_at;
	}
	if (first == NEVER) {
		uv_timer_stop(&e->wake);
		return;
	}
	/*
	 * At least 1 ms: libuv runs a timer re-armed at 0 again in the same
	 * pass, before any I/O, so a job that kept asking to run now would
	 * starve the sockets.
	 */
	uv_timer_start(&e->wake, wake_cb, first > now ? first - now : 1, 0);
}

/* ---- public ------------------------------------------------------------ */

struct engine *
engine_new(uv_loop_t *loop, const struct config *cfg, const char *db,
    char *err, size_t errlen)
{
	struct engine *e;

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->max_transfers = INT_MAX;	/* until engine_reserve_fds */
	if (ej_store_open(e, db, err, errlen) != 0) {
		free(e);
		return NULL;
	}
	e->loop = loop;
	e->cfg = cfg;
	TAILQ_INIT(&e->jobs);
	e->tokens = tokens_new(e, cfg);
	e->http = http_new(loop, cfg->connect_timeout, cfg->low_speed_time);
	e->reqlog = calloc((size_t)cfg->bcda_request_limit,
	    sizeof(*e->reqlog));
	if (e->tokens == NULL || e->http == NULL || e->reqlog == NULL) {
		snprintf(err, errlen, "cannot set up the engine");
		free(e->reqlog);
		free(e->tokens);
		http_free(e->http);
		ej_store_close(e);
		free(e);
		return NULL;
	}
	uv_timer_init(loop, &e->wake);
	e->wake.data = e;
	if (ej_s3_init(e) != 0) {
		/* The timer is closed by engine_stop; the caller stops us. */
		log_errx("cannot set up AWS credentials");
	}
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
	j->pt = pt_for(e, j->row.profile);
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
		ej_fail(j, "profile %s is no longer in the configuration",
		    j->row.profile);
		return 0;
	}
	/* A job from before watermarks had scopes exports the profile's. */
	if (j->row.scope == NULL && j->row.state != JOB_NEW &&
	    (j->row.scope = ej_scope(j->pt->prof, j->row.runout ?
	    EP_GROUP_RUNOUT : j->pt->prof->endpoint)) == NULL)
		return -ENOMEM;
	/* A kickoff was sent before the restart: its fate is unknown. */
	j->kickoff_unknown = j->row.state == JOB_KICKOFF &&
	    j->row.kickoff_sent != 0;
	JLOG(LOG_LVL_INFO, j, "resuming");
	ej_due(j, 0);
	return 0;
}

/* An ended job whose outcome SNS has not acknowledged yet. */
static int
load_owed(struct job_row *row, void *arg)
{
	struct engine *e = arg;
	struct ejob *j;

	if ((j = job_add(e, row)) == NULL)
		return -ENOMEM;
	j->dead = 1;
	if (ej_notify_owed(j))
		JLOG(LOG_LVL_INFO, j, "outcome still to be announced");
	ej_due(j, 0);
	return 0;
}

/*
 * What one transfer may hold at once: its socket, its file, the socket
 * pair of curl's threaded resolver, and one idle connection cached.
 */
#define FDS_PER_TRANSFER	4
#define FDS_SLACK		16	/* SQLite, the metrics file, logs */

int
engine_reserve_fds(struct engine *e, int reserved)
{
	struct rlimit rl;
	long left;
	int open = fs_open_fds();

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || open < 0 ||
	    rl.rlim_cur == RLIM_INFINITY)
		return e->max_transfers;
	left = (long)rl.rlim_cur - open - reserved - FDS_SLACK;
	e->max_transfers = left / FDS_PER_TRANSFER > 1 ?
	    (int)(left / FDS_PER_TRANSFER) : 1;
	if (e->max_transfers < e->cfg->max_downloads)
		log_warnx("file descriptors: a limit of %llu (%d open, %d "
		    "kept for control clients) allows %d transfer%s at once, "
		    "not max_downloads %d: raise LimitNOFILE=",
		    (unsigned long long)rl.rlim_cur, open, reserved,
		    e->max_transfers, e->max_transfers == 1 ? "" : "s",
		    e->cfg->max_downloads);
	return e->max_transfers;
}

int
engine_start(struct engine *e)
{
	ej_sum_load(e);
	return ej_load_jobs(e, load_job, load_owed);
}

/* Cancels the token and Secrets Manager requests of n profiles' tokens. */
static void
tokens_stop(struct engine *e, struct ptoken *t, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (t[i].req != NULL) {
			http_cancel(e->http, t[i].req);
			http_req_free(t[i].req);
			t[i].req = NULL;
		}
		if (t[i].sm_req != NULL) {
			http_cancel(e->http, t[i].sm_req);
			http_req_free(t[i].sm_req);
			t[i].sm_req = NULL;
		}
	}
}

/* Wipes and frees n profiles' tokens. */
static void
tokens_free(struct ptoken *t, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		pt_drop(&t[i]);
		sm_forget(&t[i]);
	}
	free(t);
}

static struct ptoken *
tokens_new(struct engine *e, const struct config *cfg)
{
	struct ptoken *t;
	int i;

	if ((t = calloc((size_t)(cfg->nprofiles ? cfg->nprofiles : 1),
	    sizeof(*t))) == NULL)
		return NULL;
	for (i = 0; i < cfg->nprofiles; i++) {
		t[i].e = e;
		t[i].prof = cfg->profiles[i];
	}
	return t;
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
engine_reload(struct engine *e, struct config *cfg, char *err, size_t errlen)
{
	const struct config *old = e->cfg;
	struct retired *r;
	struct ptoken *t;

	if (strcmp(cfg->state_dir, old->state_dir) != 0 ||
	    strcmp(cfg->runtime_dir, old->runtime_dir) != 0 ||
	    cfg->bcda_request_limit != old->bcda_request_limit ||
	    !same_str(cfg->aws_region, old->aws_region) ||
	    !same_str(cfg->sts_endpoint, old->sts_endpoint)) {
		snprintf(err, errlen, "state_dir, runtime_dir, "
		    "bcda_request_limit, region and sts_endpoint_url take "
		    "effect only at a restart");
		return -EINVAL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (t = tokens_new(e, cfg)) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Running jobs keep the profiles and tokens they started with. */
	r->cfg = e->cfg;
	r->owned = e->cfg_owned;
	r->tokens = e->tokens;
	r->next = e->retired;
	e->retired = r;
	e->cfg = cfg;
	e->cfg_owned = 1;
	e->tokens = t;
	/* A first profile with AWS stages sets up the credential chain. */
	if (e->creds == NULL && ej_s3_init(e) != 0)
		log_warnx("cannot set up AWS credentials");
	engine_arm(e);
	return 0;
}

void
engine_stop(struct engine *e)
{
	struct ejob *j;
	struct retired *r;

	e->stopping = 1;
	TAILQ_FOREACH(j, &e->jobs, entry) {
		ej_cancel_transfers(j);
		/* A last try; what stays unwritten is done again on restart. */
		if ((j->unsaved || j->held_why != NULL) && ej_flush(j) != 0)
			JLOG(LOG_LVL_WARN, j, "stopping with changes unwritten; "
			    "their steps run again on restart");
	}
	ej_s3_free(e);
	tokens_stop(e, e->tokens, e->cfg->nprofiles);
	for (r = e->retired; r != NULL; r = r->next)
		tokens_stop(e, r->tokens, r->cfg->nprofiles);
	uv_timer_stop(&e->wake);
	uv_close((uv_handle_t *)&e->wake, NULL);
	http_free(e->http);
	e->http = NULL;
}

int
engine_profile(struct engine *e, int i, struct engine_profile *out)
{
	const struct ptoken *pt;

	if (i < 0 || i >= e->cfg->nprofiles)
		return -ENOENT;
	pt = &e->tokens[i];
	memset(out, 0, sizeof(*out));
	out->name = pt->prof->name;
	if (ej_secret_issued(pt) != 0)
		out->secret_expires = ej_secret_issued(pt) + SECRET_LIFETIME;
	ej_secret_warning(pt, time(NULL), out->warning, sizeof(out->warning));
	out->retries = pt->retries;
	return 0;
}

/* After engine_stop and once the loop has run dry. */
void
engine_free(struct engine *e)
{
	struct ejob *j;
	struct retired *r;

	if (e == NULL)
		return;
	while ((j = TAILQ_FIRST(&e->jobs)) != NULL) {
		TAILQ_REMOVE(&e->jobs, j, entry);
		job_free(j);
	}
	tokens_free(e->tokens, e->cfg->nprofiles);
	if (e->cfg_owned)
		config_free((struct config *)e->cfg);
	while ((r = e->retired) != NULL) {
		e->retired = r->next;
		tokens_free(r->tokens, r->cfg->nprofiles);
		if (r->owned)
			config_free((struct config *)r->cfg);
		free(r);
	}
	free(e->reqlog);
	ej_sum_free(e);
	ej_store_close(e);
	free(e);
}

/* -EBUSY, saying which, when a job of profile is running. */
static int
profile_idle(struct engine *e, const char *profile, char *err, size_t errlen)
{
	struct ejob *j;

	TAILQ_FOREACH(j, &e->jobs, entry) {
		if (!j->dead && strcmp(j->row.profile, profile) == 0) {
			snprintf(err, errlen, "job %lld of profile %s is "
			    "still in %s", (long long)j->row.id, profile,
			    job_state_name(j->row.state));
			return -EBUSY;
		}
	}
	return 0;
}

/* The state of the history's last change to FAILED. */
static int
failed_from(int64_t at, enum job_state from, enum job_state to,
    const char *reason, void *arg)
{
	enum job_state *s = arg;

	(void)at;
	(void)reason;
	if (to == JOB_FAILED && (int)from >= 0)
		*s = from;
	return 0;
}

/* Files given up on, and S3 uploads, get their attempts back. */
static void
retry_files(struct ejob *j)
{
	struct file_row *f;
	size_t i;

	for (i = 0; i < j->nfiles; i++) {
		f = &j->files[i];
		if (f->state == FILE_FAILED) {
			f->state = FILE_PENDING;
			f->attempts = 0;
			j->fs[i].unsaved |= FS_DIRTY;
		}
		if (f->s3_state == S3_FAILED) {
			f->s3_state = S3_PENDING;
			j->fs[i].unsaved |= FS_DIRTY;
		}
	}
}

int
engine_retry(struct engine *e, int64_t id, char *err, size_t errlen)
{
	enum job_state from = JOB_NSTATES;
	struct job_row row;
	struct ejob *j, *next;
	int rc;

	for (j = TAILQ_FIRST(&e->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (j->row.id != id)
			continue;
		if (!j->dead || !reapable(j)) {
			snprintf(err, errlen, "job %lld is %s", (long long)id,
			    j->dead ? "announcing its outcome; try again in a "
			    "moment" : "still running");
			return -EBUSY;
		}
		TAILQ_REMOVE(&e->jobs, j, entry);
		job_free(j);
	}
	if ((rc = engine_job(e, id, &row)) != 0) {
		snprintf(err, errlen, rc == -ENOENT ? "no job %lld" :
		    "cannot read job %lld", (long long)id);
		return rc;
	}
	if (row.state != JOB_FAILED || pt_for(e, row.profile) == NULL ||
	    engine_history(e, id, failed_from, &from) != 0 ||
	    from == JOB_NSTATES) {
		snprintf(err, errlen, row.state != JOB_FAILED ? "job %lld "
		    "is %s: only a FAILED job can be retried" : pt_for(e,
		    row.profile) == NULL ? "job %lld: its profile is no longer "
		    "configured" : "job %lld: cannot tell where it failed",
		    (long long)id, job_state_name(row.state));
		job_row_clear(&row);
		return -EINVAL;
	}
	if ((rc = profile_idle(e, row.profile, err, errlen)) != 0) {
		job_row_clear(&row);
		return rc;
	}
	/*
	 * A new attempt: its outcome is announced anew, and a BCDA job given
	 * up as stuck gets a whole bcda_job_timeout again.
	 */
	row.notify_state = 0;
	row.progress_stalled = 0;
	if (from == JOB_NEW)
		from = JOB_TOKEN;
	if (from == JOB_KICKOFF)
		row.kickoffs = 0;
	if (from == JOB_IMPORT && ej_import_reset(&row, time(NULL)) != 0) {
		job_row_clear(&row);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((j = job_add(e, &row)) == NULL) {
		job_row_clear(&row);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (ej_load_files(j) != 0) {
		TAILQ_REMOVE(&e->jobs, j, entry);
		job_free(j);
		snprintf(err, errlen, "cannot read the files of job %lld",
		    (long long)id);
		return -EIO;
	}
	retry_files(j);
	/* Written now or, should the store refuse, before its next step. */
	ej_enter(j, from, "retry requested", 0);
	return 0;
}

int
engine_run(struct engine *e, const char *profile, const char *since, int full,
    int64_t *job_id, char *err, size_t errlen)
{
	struct job_row row;
	struct ejob *j;
	int rc;

	if (pt_for(e, profile) == NULL) {
		snprintf(err, errlen, "no profile named %s", profile);
		return -ENOENT;
	}
	if ((rc = profile_idle(e, profile, err, errlen)) != 0)
		return rc;
	if (since != NULL && (full || !config_valid_instant(since))) {
		snprintf(err, errlen, full ? "--since and --full exclude each "
		    "other" : "--since %s is not an RFC 3339 instant with a "
		    "zone, such as 2026-07-01T00:00:00Z", since);
		return -EINVAL;
	}
	memset(&row, 0, sizeof(row));
	row.profile = strdup(profile);
	row.progress = -1;
	row.since_mode = since ? SINCE_MODE_GIVEN : full ? SINCE_MODE_FULL :
	    SINCE_MODE_PROFILE;
	if (since != NULL && (row.since = strdup(since)) == NULL) {
		job_row_clear(&row);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (row.profile == NULL ||
	    (rc = ej_insert_job(e, &row)) != 0) {
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
	ej_due(j, 0);
	return 0;
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
