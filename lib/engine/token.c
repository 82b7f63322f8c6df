/*
 * The engine's BCDA access: per-profile bearer tokens (shared by the
 * profile's jobs, refreshed before expiry, fetched again once on a 401),
 * the BCDA credentials (a secret file, or Secrets Manager), and every
 * request of a job to the BCDA API, which sends the token only to the
 * profile's origin and counts against the shared request budget.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "aws/secretsmanager.h"

/* ---- tokens ------------------------------------------------------------ */

struct ptoken *
pt_for(struct engine *e, const char *profile)
{
	int i;

	for (i = 0; i < e->cfg->nprofiles; i++)
		if (strcmp(e->cfg->profiles[i]->name, profile) == 0)
			return &e->tokens[i];
	return NULL;
}

int
pt_valid(struct engine *e, const struct ptoken *pt)
{
	return pt->token != NULL && ej_now(e) < pt->expires_at;
}

void
pt_drop(struct ptoken *pt)
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
		pt_drop(pt);
		pt->token = tok.access_token;
		pt->gen++;
		tok.access_token = NULL;
		/* Refresh a minute early, or at 3/4 of a short lifetime. */
		ttl = (uint64_t)tok.expires_in * 1000;
		margin = ttl / 4 < 60000 ? ttl / 4 : 60000;
		pt->expires_at = ej_now(e) + ttl - margin;
		pt->failures = 0;
		pt->trouble_since = 0;
		pt->rejected = 0;
		pt->sm_refetched = 0;
		pt->error[0] = '\0';
		log_info("profile %s: new BCDA token, valid %lld s", p->name,
		    (long long)tok.expires_in);
		bcda_token_clear(&tok);
		http_req_free(r);
		token_wake(e, pt, ej_now(e));
		return;
	}
	pt->failures++;
	if (pt->trouble_since == 0)
		pt->trouble_since = ej_now(e);
	ra = http_retry_after(resp->retry_after, time(NULL));
	if (resp->result != CURLE_OK) {
		snprintf(pt->error, sizeof(pt->error),
		    "cannot reach BCDA at %s for a token: %s (a connect timeout "
		    "in production usually means this host's IP is not on the "
		    "BCDA allow-list)", p->base_url, resp->error);
	} else if (resp->status == 401 && pt->sm_secret != NULL &&
	    !pt->sm_refetched) {
		/* The secret may have been rotated: read it again, once. */
		snprintf(pt->error, sizeof(pt->error), "BCDA rejected the "
		    "credentials from %s; reading the secret again",
		    p->bcda_secret_arn);
		sm_forget(pt);
		pt->sm_refetched = 1;
		log_warnx("%s", pt->error);
		http_req_free(r);
		pt->error[0] = '\0';
		token_wake(e, pt, ej_now(e));
		return;
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
	pt->retry_at = ej_now(e) + (ra > 0 ? (uint64_t)ra * 1000 :
	    ej_backoff(e->cfg->retry_min, e->cfg->retry_max, pt->failures));
	/* Waiting jobs run again and see pt->error or the backoff. */
	token_wake(e, pt, ej_now(e));
}

/* Forgets the BCDA credentials read from Secrets Manager. */
void
sm_forget(struct ptoken *pt)
{
	if (pt->sm_secret != NULL) {
		explicit_bzero(pt->sm_secret, strlen(pt->sm_secret));
		free(pt->sm_secret);
	}
	free(pt->sm_id);
	pt->sm_id = pt->sm_secret = NULL;
}

static void
sm_done(struct http_req *r, void *arg)
{
	struct ptoken *pt = arg;
	struct engine *e = pt->e;
	const struct http_resp *resp = http_req_resp(r);
	struct aws_error ae;
	char *id = NULL, *secret = NULL;

	pt->sm_req = NULL;
	if (resp->result == CURLE_OK && resp->status == 200 &&
	    sm_parse_bcda_secret(resp, &id, &secret) == 0) {
		sm_forget(pt);
		pt->sm_id = id;
		pt->sm_secret = secret;
		pt->sm_created = sm_parse_created(resp);
		pt->error[0] = '\0';
		log_info("profile %s: BCDA credentials read from Secrets "
		    "Manager", pt->prof->name);
	} else {
		aws_parse_error(resp, &ae);
		pt->failures++;
		snprintf(pt->error, sizeof(pt->error), "cannot read the BCDA "
		    "credentials of profile %s from Secrets Manager (%.60s): "
		    "%.60s%s%.60s",
		    pt->prof->name, pt->prof->bcda_secret_arn,
		    resp->result != CURLE_OK ? resp->error : ae.code[0] ?
		    ae.code : "the secret is not {\"client_id\", "
		    "\"client_secret\"} JSON", ae.message[0] ? ": " : "",
		    ae.message);
		if (resp->result == CURLE_OK && !aws_retryable(resp, &ae))
			pt->rejected = 1;
		pt->retry_at = ej_now(e) + (pt->rejected ? 5000 :
		    ej_backoff(e->cfg->retry_min, e->cfg->retry_max,
		    pt->failures));
		log_warnx("%s", pt->error);
	}
	/* The body held the secret. */
	if (resp->body != NULL)
		explicit_bzero(resp->body, resp->body_len);
	http_req_free(r);
	token_wake(e, pt, ej_now(e));
}

static void
sm_with_creds(void *arg, const struct aws_creds *c, const char *error)
{
	struct ptoken *pt = arg;
	struct engine *e = pt->e;

	pt->sm_wait = 0;
	if (e->stopping)
		return;
	if (c == NULL) {
		snprintf(pt->error, sizeof(pt->error), "no AWS credentials to "
		    "read %s: %s", pt->prof->bcda_secret_arn, error);
		pt->retry_at = ej_now(e) + 60000;
		token_wake(e, pt, ej_now(e));
		return;
	}
	pt->sm_req = sm_get_secret_value(e->cfg->secretsmanager_endpoint,
	    e->region, pt->prof->bcda_secret_arn, c, time(NULL));
	if (pt->sm_req == NULL || http_start(e->http, pt->sm_req, sm_done,
	    pt) != 0) {
		http_req_free(pt->sm_req);
		pt->sm_req = NULL;
		snprintf(pt->error, sizeof(pt->error), "cannot build the "
		    "Secrets Manager request");
		pt->retry_at = ej_now(e) + 5000;
		token_wake(e, pt, ej_now(e));
	}
}

/*
 * The BCDA client id and secret: from Secrets Manager (cached in memory
 * only) or from the profile's secret file.  Returns 1 with *id and *secret
 * set (the secret malloc'd, to wipe), 0 when a fetch (or the AWS region)
 * is under way, -1 on an error in pt->error, -2 when an answer came at
 * once: the step runs again (and may wait until pt->retry_at).
 */
static int
bcda_credentials(struct ejob *j, const char **id, char **secret)
{
	struct ptoken *pt = j->pt;
	struct engine *e = pt->e;
	char err[256];

	if (pt->prof->bcda_secret_arn == NULL) {
		if ((*secret = config_read_secret(pt->prof, err,
		    sizeof(err))) == NULL) {
			snprintf(pt->error, sizeof(pt->error), "%s", err);
			pt->rejected = 1;
			pt->retry_at = ej_now(e) + 60000;
			return -1;
		}
		*id = pt->prof->client_id;
		return 1;
	}
	if (pt->sm_secret != NULL) {
		if ((*secret = strdup(pt->sm_secret)) == NULL)
			return -1;
		*id = pt->sm_id;
		return 1;
	}
	if (pt->sm_wait || pt->sm_req != NULL)
		return 0;
	if (e->creds == NULL)
		return -1;
	switch (ej_region(j)) {
	case 0:
		return 0;	/* region_cb wakes the jobs */
	case -1:
		snprintf(pt->error, sizeof(pt->error), "no AWS region to "
		    "read %.80s: %.120s", pt->prof->bcda_secret_arn,
		    e->region_error);
		return -1;
	case -2:
		/* As a failed read: the profile's jobs wait, then ask again. */
		pt->failures++;
		snprintf(pt->error, sizeof(pt->error), "no AWS region yet to "
		    "read %.80s: %.120s", pt->prof->bcda_secret_arn,
		    e->region_why);
		pt->retry_at = ej_now(e) + ej_backoff(e->cfg->retry_min,
		    e->cfg->retry_max, pt->failures);
		return -2;
	}
	pt->sm_wait = 1;
	awscreds_get(e->creds, sm_with_creds, pt);
	return pt->sm_secret != NULL || pt->error[0] != '\0' ? -2 : 0;
}

/* True once the token endpoint has failed for the whole retry_budget. */
static int
token_outage_over(const struct ptoken *pt)
{
	const struct engine *e = pt->e;

	return pt->trouble_since != 0 && ej_now(e) - pt->trouble_since >=
	    (uint64_t)e->cfg->retry_budget * 1000;
}

#define TOKEN_WAIT	"waiting for a BCDA token: "

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
	char *secret = NULL, *url = NULL;
	const char *id = NULL;
	uint64_t wait;
	int rc;

	if (pt_valid(e, pt))
		return 1;
	if (pt->req == NULL) {
		if (pt->error[0] != '\0' && ej_now(e) < pt->retry_at) {
			if (pt->rejected || token_outage_over(pt))
				return -1;
			/* Said once per wait, so that status shows it. */
			if (j->row.last_error == NULL || strncmp(
			    j->row.last_error, TOKEN_WAIT, strlen(TOKEN_WAIT))) {
				ej_set_error(j, TOKEN_WAIT "%s; next try in %llu s",
				    pt->error, (unsigned long long)
				    (pt->retry_at - ej_now(e) + 999) / 1000);
				ej_save(j);
			}
			j->next_at = pt->retry_at;
			engine_arm(e);
			return 0;
		}
		rc = bcda_credentials(j, &id, &secret);
		if (rc == -2) {
			/* Answered at once: run the step again from the loop. */
			ej_due(j, 0);
			return 0;
		}
		if (rc < 0)
			return -1;
		if (rc == 0) {
			j->waiting_token = 1;
			j->next_at = NEVER;
			return 0;
		}
		if ((wait = ej_bcda_budget(e)) > 0) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
			ej_due(j, wait);
			return 0;
		}
		/* A new attempt: only its own answer may reject it. */
		pt->rejected = 0;
		url = bcda_token_url(pt->prof);
		pt->req = url ? http_req_new("POST", url) : NULL;
		free(url);
		if (pt->req == NULL) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
			return -1;
		}
		http_req_header(pt->req, "Accept: application/json");
		http_req_basic_auth(pt->req, id, secret);
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
int
ej_have_token(struct ejob *j)
{
	int rc = need_token(j);

	if (rc >= 0)
		return rc;
	if (j->pt->rejected)
		ej_fail(j, "%s", j->pt->error);
	else if (token_outage_over(j->pt))
		ej_fail(j, "%s (gave up after the token endpoint failed for "
		    "%d s, the retry_budget)", j->pt->error,
		    j->e->cfg->retry_budget);
	else
		ej_retry(j, -1, "%s", j->pt->error);
	return 0;
}

/* ---- requests to the BCDA API ----------------------------------------- */

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
				pt_drop(j->pt);
			JLOG(LOG_LVL_INFO, j, "BCDA answered 401; getting a "
			    "new token");
			ej_due(j, 0);
		} else {
			/*
			 * The token is new and still refused: BCDA says so
			 * when the ACO is disabled (middleware.go ACOEnabled)
			 * or the job belongs to another ACO (auth/middleware.go
			 * RequireTokenJobMatch).  Retrying cannot help.
			 */
			ej_fail(j, "BCDA answered 401 to %s with a fresh token: "
			    "credentials valid but this ACO is disabled or the "
			    "job is not ours", http_req_url(r));
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
void
ej_api_request(struct ejob *j, const char *method, const char *url,
    int export_headers, api_done_fn fn)
{
	char *auth = NULL;
	uint64_t wait;
	int rc;

	if (!bcda_url_trusted(j->pt->prof->base_url, url)) {
		ej_fail(j, "BCDA gave a URL outside %s; refusing to send the "
		    "token there", j->pt->prof->base_url);
		return;
	}
	if ((wait = ej_bcda_budget(j->e)) > 0) {
		/* The step runs again when the request budget allows. */
		ej_due(j, wait);
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
	ej_retry(j, -1, "cannot start a request to %s", url);
}

/* Says what an unexpected answer was, for errors and retries. */
void
ej_describe(const struct http_resp *resp, char *buf, size_t len)
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

/*
 * True for an answer worth retrying: no answer at all, 408, 429, or any
 * 5xx.  BCDA reports its own hiccups (a job lookup, token introspection,
 * its database or queue) as 500 + OperationOutcome code "exception", the
 * same shape as a failed job, and never sends code "transient"; the one
 * terminal 500 is bcda_job_failed()'s, which on_poll tests first.
 */
int
ej_transient(const struct http_resp *resp)
{
	if (resp->result != CURLE_OK)
		return 1;
	return resp->status == 429 || resp->status == 408 ||
	    resp->status >= 500;
}
