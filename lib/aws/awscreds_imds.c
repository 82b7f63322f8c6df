/*
 * AWS credentials, source 5: the EC2 instance role, and the IMDSv2 client
 * that the region lookup uses too.
 *
 * IMDS requests go through imds_call, which adds the IMDSv2 session token:
 * it PUTs for a token when none is cached, sends the GET, and on a 401
 * drops the token and tries once more with a new one.  See awscreds_int.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awscreds_int.h"
#include "util/log.h"
#include "util/wipe.h"

#define IMDS_DEFAULT_ENDPOINT	"http://169.254.169.254"
#define IMDS_TOKEN_TTL		21600
#define IMDS_TIMEOUT		2	/* seconds, whole request */

static void	imds_send(struct imds_call *);

/* ---------------------------------------------------------------- */
/* IMDSv2 requests                                                  */
/* ---------------------------------------------------------------- */

static char *
imds_endpoint(void)
{
	const char *e = ac_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char *out;
	size_t n;

	if ((out = strdup(e ? e : IMDS_DEFAULT_ENDPOINT)) == NULL)
		return NULL;
	n = strlen(out);
	while (n > 0 && out[n - 1] == '/')
		out[--n] = '\0';
	return out;
}

void
ac_imds_token_drop(struct awscreds *ac)
{
	wipe_free(ac->imds_token);
	free(ac->imds_token_ep);
	ac->imds_token = ac->imds_token_ep = NULL;
	ac->imds_token_exp = 0;
}

/*
 * Reports the call's end and frees its request afterwards.  A failure is
 * transient when IMDS may answer later: no answer at all (at boot the
 * network may not be up yet), a server error, or a token PUT refused
 * other than with 403 (IMDS turned off for the instance).
 */
static void
imds_end(struct imds_call *c, struct http_req *r, const char *body,
    const char *error)
{
	const struct http_resp *resp = http_req_resp(r);

	c->transient = error != NULL && (resp->result != CURLE_OK ||
	    resp->status >= 500 || resp->status == 429 ||
	    (!c->getting && resp->status != 403));
	c->req = NULL;
	c->done(c, body, error);
	http_req_wipe_free(r);
}

static void
imds_http_done(struct http_req *r, void *arg)
{
	struct imds_call *c = arg;
	struct awscreds *ac = c->ac;
	const struct http_resp *resp = http_req_resp(r);
	char err[512];

	if (resp->result != CURLE_OK) {
		snprintf(err, sizeof(err), "%s %s: %s (not running on EC2?)",
		    c->getting ? "GET" : "PUT", http_req_url(r), resp->error);
		imds_end(c, r, NULL, err);
		return;
	}
	if (!c->getting) {
		if (resp->status != 200 || resp->body == NULL) {
			snprintf(err, sizeof(err), "token request PUT %s "
			    "answered HTTP %ld%s", http_req_url(r),
			    resp->status, resp->status == 403 ?
			    " (IMDS disabled for this instance?)" : "");
			imds_end(c, r, NULL, err);
			return;
		}
		ac_imds_token_drop(ac);
		ac->imds_token = strdup(resp->body);
		ac->imds_token_ep = strdup(c->endpoint);
		if (ac->imds_token == NULL || ac->imds_token_ep == NULL) {
			ac_imds_token_drop(ac);
			imds_end(c, r, NULL, "out of memory");
			return;
		}
		ac_rtrim(ac->imds_token);
		ac->imds_token_exp = ac_now_unix() + IMDS_TOKEN_TTL;
		c->req = NULL;
		http_req_wipe_free(r);
		imds_send(c);
		return;
	}
	if (resp->status == 401 && !c->retried) {
		/* The token expired or IMDS restarted: get a new one, once. */
		log_debug("IMDS: 401 on GET %s; getting a new token",
		    http_req_url(r));
		c->retried = 1;
		ac_imds_token_drop(ac);
		c->req = NULL;
		http_req_wipe_free(r);
		imds_send(c);
		return;
	}
	if (resp->status != 200) {
		snprintf(err, sizeof(err), "GET %s answered HTTP %ld%s",
		    http_req_url(r), resp->status, resp->status == 404 ?
		    " (no IAM role attached to the instance?)" : "");
		imds_end(c, r, NULL, err);
		return;
	}
	imds_end(c, r, resp->body ? resp->body : "", NULL);
}

/* Sends the token PUT or the GET, whichever comes next. */
static void
imds_send(struct imds_call *c)
{
	struct awscreds *ac = c->ac;
	struct http_req *r = NULL;
	char *url = NULL, *hdr = NULL;
	int ok;

	ok = ac->imds_token != NULL && ac->imds_token_ep != NULL &&
	    strcmp(ac->imds_token_ep, c->endpoint) == 0 &&
	    ac->imds_token_exp > ac_now_unix() + 60;
	c->getting = ok;
	if (asprintf(&url, "%s%s", c->endpoint, ok ? c->path :
	    "/latest/api/token") < 0) {
		url = NULL;
		goto oom;
	}
	if ((r = http_req_new(ok ? "GET" : "PUT", url)) == NULL)
		goto oom;
	if (ok) {
		if (asprintf(&hdr, "X-aws-ec2-metadata-token: %s",
		    ac->imds_token) < 0) {
			hdr = NULL;
			goto oom;
		}
	} else if (asprintf(&hdr, "X-aws-ec2-metadata-token-ttl-seconds: %d",
	    IMDS_TOKEN_TTL) < 0) {
		hdr = NULL;
		goto oom;
	}
	if (http_req_header(r, hdr) != 0)
		goto oom;
	http_req_timeout(r, IMDS_TIMEOUT);
	if (http_start(ac->http, r, imds_http_done, c) != 0) {
		http_req_free(r);
		free(url);
		wipe_free(hdr);
		c->transient = 1;
		c->done(c, NULL, "cannot start a request");
		return;
	}
	c->req = r;
	free(url);
	wipe_free(hdr);
	return;
oom:
	http_req_free(r);
	free(url);
	wipe_free(hdr);
	c->transient = 1;
	c->done(c, NULL, "out of memory");
}

/* Starts GET path on IMDS; done runs once, possibly before this returns. */
void
ac_imds_get(struct imds_call *c, const char *path, imds_done_cb done)
{
	free(c->path);
	free(c->endpoint);
	c->path = strdup(path);
	c->endpoint = imds_endpoint();
	c->retried = 0;
	c->transient = 0;
	c->done = done;
	if (c->path == NULL || c->endpoint == NULL) {
		c->transient = 1;
		done(c, NULL, "out of memory");
		return;
	}
	imds_send(c);
}

void
ac_imds_call_free(struct awscreds *ac, struct imds_call *c)
{
	if (c->req != NULL) {
		http_cancel(ac->http, c->req);
		http_req_wipe_free(c->req);
	}
	free(c->path);
	free(c->endpoint);
	memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- */
/* 5. IMDS instance role                                            */
/* ---------------------------------------------------------------- */

static void
imds_creds_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;

	if (error != NULL) {
		ac_why_add(ac, "IMDS: %s", error);
		ac_chain_next(ac);
	} else if (ac_creds_from_json(ac, "IMDS", body, 1) != 0) {
		ac_chain_next(ac);
	} else {
		ac_fetch_ok(ac, "imds");
	}
}

static void
imds_role_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;
	char *role = NULL, *esc = NULL, *path = NULL;
	size_t n;

	if (error != NULL) {
		ac_why_add(ac, "IMDS: %s", error);
		ac_chain_next(ac);
		return;
	}
	n = strcspn(body, "\r\n");
	if (n == 0 || (role = strndup(body, n)) == NULL ||
	    (esc = curl_easy_escape(NULL, role, 0)) == NULL ||
	    asprintf(&path, "/latest/meta-data/iam/security-credentials/%s",
	    esc) < 0) {
		if (n == 0)
			ac_why_add(ac, "IMDS: no IAM role is attached to the "
			    "instance");
		else
			ac_why_add(ac, "IMDS: out of memory");
		free(role);
		curl_free(esc);
		ac_chain_next(ac);
		return;
	}
	log_debug("AWS credentials: IMDS instance role %s", role);
	free(role);
	curl_free(esc);
	ac_imds_get(c, path, imds_creds_done);
	free(path);
}

/*
 * Step 5 of the chain: asks IMDS for the instance role's name, then for
 * its credentials.  Ends in fetch_ok or chain_next, possibly before this
 * returns.
 */
void
ac_from_imds(struct awscreds *ac)
{
	ac->imds.ac = ac;
	ac_imds_get(&ac->imds, "/latest/meta-data/iam/security-credentials/",
	    imds_role_done);
}
