/*
 * bcdad doctor over the network: what the night will ask of BCDA (a token,
 * attribution_status) and of AWS (credentials and where they come from,
 * a test object put in the bucket with its KMS key and deleted, the
 * HealthLake datastore ACTIVE, the SNS topic), each a PASS or FAIL line
 * with what to do.  One uv loop, one request at a time; the token and
 * the secrets stay in memory and are wiped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bcdad.h"
#include "aws/awscreds.h"
#include "aws/healthlake.h"
#include "aws/s3.h"
#include "aws/secretsmanager.h"
#include "aws/sns.h"
#include "bcda/bcda.h"
#include "util/http.h"
#include "util/wipe.h"

#define NET_TIMEOUT	30	/* seconds, per request */

struct net {
	uv_loop_t		 loop;
	struct http		*http;
	struct awscreds		*ac;
	const struct config	*cfg;
	struct doctor		*d;
	int			 done;
	struct aws_creds	 creds;		/* copied; wiped at the end */
	char			*source;	/* where they came from */
	char			*region;
	char			 why[512];
};

static void
call_done(struct http_req *r, void *arg)
{
	(void)r;
	((struct net *)arg)->done = 1;
}

/* Runs r (NULL: could not be built) to its end; its answer, or NULL. */
static const struct http_resp *
call(struct net *n, struct http_req *r)
{
	if (r == NULL)
		return NULL;
	http_req_timeout(r, NET_TIMEOUT);
	n->done = 0;
	if (http_start(n->http, r, call_done, n) != 0)
		return NULL;
	while (!n->done)
		uv_run(&n->loop, UV_RUN_ONCE);
	return http_req_resp(r);
}

/* "HTTP 503" or curl's message, for a line. */
static void
describe(const struct http_resp *resp, char *out, size_t len)
{
	if (resp == NULL)
		snprintf(out, len, "the request could not be made");
	else if (resp->result != CURLE_OK)
		snprintf(out, len, "%s", resp->error);
	else
		snprintf(out, len, "HTTP %ld", resp->status);
}

/* An AWS call's failure: its error code and message, or the transfer's. */
static void
aws_failure(const struct http_resp *resp, char *out, size_t len)
{
	struct aws_error e;

	if (resp == NULL || resp->result != CURLE_OK) {
		describe(resp, out, len);
		return;
	}
	aws_parse_error(resp, &e);
	snprintf(out, len, "%s%s%.400s", e.code, e.message[0] ? ": " : "",
	    e.message);
}

static int
unreachable(const struct http_resp *resp)
{
	return resp == NULL || resp->result == CURLE_COULDNT_CONNECT ||
	    resp->result == CURLE_OPERATION_TIMEDOUT ||
	    resp->result == CURLE_COULDNT_RESOLVE_HOST;
}

static void
creds_cb(void *arg, const struct aws_creds *c, const char *error)
{
	struct net *n = arg;

	n->done = 1;
	if (c == NULL) {
		snprintf(n->why, sizeof(n->why), "%s", error);
		return;
	}
	n->creds.access_key_id = strdup(c->access_key_id);
	n->creds.secret_access_key = strdup(c->secret_access_key);
	n->creds.session_token = c->session_token ?
	    strdup(c->session_token) : NULL;
	n->creds.expiration = c->expiration;
	if (awscreds_source(n->ac) != NULL)
		n->source = strdup(awscreds_source(n->ac));
}

static void
region_cb(void *arg, const char *region, const char *error, int transient)
{
	struct net *n = arg;

	(void)transient;	/* the doctor asks once, and says why */
	n->done = 1;
	if (region != NULL)
		n->region = strdup(region);
	else
		snprintf(n->why, sizeof(n->why), "%s", error);
}

/* AWS credentials and region, once; 0, or -1 after a FAIL line. */
static int
aws_ready(struct net *n)
{
	struct awscreds_opts o;
	char what[700], when[32];
	struct tm tm;
	time_t t;

	if (n->creds.access_key_id != NULL)
		return 0;
	if (n->ac != NULL)
		return -1;	/* failed before: said so once */
	memset(&o, 0, sizeof(o));
	o.region = n->cfg->aws_region;
	o.sts_endpoint = n->cfg->sts_endpoint;
	if ((n->ac = awscreds_new(&n->loop, n->http, &o)) == NULL)
		return -1;
	n->done = 0;
	awscreds_region(n->ac, region_cb, n);
	while (!n->done)
		uv_run(&n->loop, UV_RUN_ONCE);
	if (n->region == NULL) {
		snprintf(what, sizeof(what), "AWS region: %s", n->why);
		doctor_line(n->d, 0, what, "set region in [aws], or AWS_REGION");
		return -1;
	}
	n->done = 0;
	awscreds_get(n->ac, creds_cb, n);
	while (!n->done)
		uv_run(&n->loop, UV_RUN_ONCE);
	if (n->creds.access_key_id == NULL ||
	    n->creds.secret_access_key == NULL) {
		snprintf(what, sizeof(what), "AWS credentials: %s", n->why);
		doctor_line(n->d, 0, what, "give the instance a role (IMDS), "
		    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
		    "AWS_PROFILE or a web identity for the bcdad unit");
		return -1;
	}
	if (n->creds.expiration != 0) {
		t = (time_t)n->creds.expiration;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	snprintf(what, sizeof(what), "AWS credentials from %s (region %s)%s%s",
	    n->source ? n->source : "?", n->region, n->creds.expiration ?
	    ", expiring " : "", n->creds.expiration ? when : "");
	doctor_line(n->d, 1, what, NULL);
	return 0;
}

/* The client id and secret: the secret file, or Secrets Manager. */
static int
bcda_credentials(struct net *n, const struct profile *p, char **id,
    char **secret)
{
	const struct http_resp *resp;
	struct http_req *r;
	char what[1400], err[700];

	*id = NULL;
	if (p->bcda_secret_arn == NULL) {
		if ((*secret = config_read_secret(p, err, sizeof(err))) == NULL)
			return -1;	/* doctor.c says why */
		*id = strdup(p->client_id);
		return *id != NULL ? 0 : -1;
	}
	if (aws_ready(n) != 0)
		return -1;
	r = sm_get_secret_value(n->cfg->secretsmanager_endpoint, n->region,
	    p->bcda_secret_arn, &n->creds, time(NULL));
	resp = call(n, r);
	if (resp != NULL && resp->result == CURLE_OK && resp->status == 200 &&
	    sm_parse_bcda_secret(resp, id, secret) == 0) {
		http_req_wipe_free(r);
		snprintf(what, sizeof(what), "profile %s: BCDA credentials "
		    "read from Secrets Manager", p->name);
		doctor_line(n->d, 1, what, NULL);
		return 0;
	}
	aws_failure(resp, err, sizeof(err));
	http_req_wipe_free(r);
	snprintf(what, sizeof(what), "profile %s: cannot read the BCDA "
	    "credentials from %s: %s", p->name, p->bcda_secret_arn, err);
	doctor_line(n->d, 0, what, "the secret must hold client_id and "
	    "client_secret, and the IAM policy allow "
	    "secretsmanager:GetSecretValue on it");
	return -1;
}

/* A token from BCDA, malloc'd (to wipe), or NULL after a FAIL line. */
static char *
bcda_token(struct net *n, const struct profile *p)
{
	const struct http_resp *resp;
	struct bcda_token tok = { NULL, 0 };
	struct http_req *r = NULL;
	char *id, *secret, *url, what[700], err[512], fix[300];
	char *token = NULL;

	if (bcda_credentials(n, p, &id, &secret) != 0)
		return NULL;
	if ((url = bcda_token_url(p)) != NULL &&
	    (r = http_req_new("POST", url)) != NULL) {
		http_req_header(r, "Accept: application/json");
		http_req_basic_auth(r, id, secret);
	}
	free(url);
	wipe_free(id);
	wipe_free(secret);
	resp = call(n, r);
	if (resp != NULL && resp->result == CURLE_OK && resp->status == 200 &&
	    bcda_parse_token(resp->body, resp->body_len, &tok) == 0) {
		token = tok.access_token;
		tok.access_token = NULL;
		snprintf(what, sizeof(what), "profile %s: BCDA at %s answers "
		    "and gives a token (valid %lld s)", p->name, p->base_url,
		    (long long)tok.expires_in);
		doctor_line(n->d, 1, what, NULL);
	} else {
		describe(resp, err, sizeof(err));
		if (unreachable(resp))
			snprintf(fix, sizeof(fix), "is this host's IP address "
			    "on BCDA's allow-list (it refuses others)? check "
			    "DNS, the firewall and any proxy");
		else if (resp->status == 401 || resp->status == 403)
			snprintf(fix, sizeof(fix), "check client_id and the "
			    "client secret: BCDA secrets expire 90 days after "
			    "they are issued");
		else
			snprintf(fix, sizeof(fix), "BCDA may be down: see its "
			    "status page, and try again");
		snprintf(what, sizeof(what), "profile %s: no BCDA token from "
		    "%s: %s", p->name, p->base_url, err);
		doctor_line(n->d, 0, what, fix);
	}
	bcda_token_clear(&tok);
	http_req_wipe_free(r);
	return token;
}

static void
check_attribution(struct net *n, const struct profile *p, const char *token)
{
	const struct http_resp *resp;
	struct http_req *r = NULL;
	char *url = NULL, *auth = NULL, what[700], err[256];

	if (asprintf(&url, "%s/api/v%d/attribution_status", p->base_url,
	    p->api_version) >= 0 && (r = http_req_new("GET", url)) != NULL &&
	    asprintf(&auth, "Authorization: Bearer %s", token) >= 0) {
		http_req_header(r, auth);
		http_req_header(r, "Accept: application/json");
	}
	wipe_free(auth);
	free(url);
	resp = call(n, r);
	if (resp != NULL && resp->result == CURLE_OK && resp->status == 200) {
		snprintf(what, sizeof(what), "profile %s: attribution_status "
		    "answers", p->name);
		doctor_line(n->d, 1, what, NULL);
	} else {
		describe(resp, err, sizeof(err));
		snprintf(what, sizeof(what), "profile %s: attribution_status: "
		    "%s", p->name, err);
		doctor_line(n->d, 0, what, "BCDA gave a token but will not "
		    "say the ACO's attribution: is the ACO active in BCDA?");
	}
	http_req_wipe_free(r);
}

/* Puts a small object where the exports go, then deletes it. */
static void
check_bucket(struct net *n, const struct profile *p)
{
	const struct http_resp *resp;
	struct s3_loc l = { n->cfg->s3_endpoint, n->region, p->s3_bucket,
	    p->kms_key_id };
	struct aws_error e;
	struct http_req *r;
	char key[600], what[900], err[700];
	int ok;

	snprintf(key, sizeof(key), "%s.bcdad-doctor", p->s3_prefix ?
	    p->s3_prefix : "");
	r = s3_put_bytes(&l, key, "bcdad doctor test object\n", &n->creds,
	    time(NULL));
	resp = call(n, r);
	if (!(ok = resp != NULL && s3_check(resp, &e) == 0)) {
		if (resp == NULL || resp->result != CURLE_OK)
			describe(resp, err, sizeof(err));
		else
			s3_describe(&l, key, "s3:PutObject", resp, &e, err,
			    sizeof(err));
	}
	http_req_wipe_free(r);
	if (ok) {
		r = s3_delete_object(&l, key, &n->creds, time(NULL));
		resp = call(n, r);
		if (!(ok = resp != NULL && s3_check(resp, &e) == 0)) {
			if (resp == NULL || resp->result != CURLE_OK)
				describe(resp, err, sizeof(err));
			else
				s3_describe(&l, key, "s3:DeleteObject", resp,
				    &e, err, sizeof(err));
		}
		http_req_wipe_free(r);
	}
	if (ok)
		snprintf(what, sizeof(what), "profile %s: s3://%s/%s accepts "
		    "a test object (put and deleted), encrypted with %s",
		    p->name, p->s3_bucket, p->s3_prefix ? p->s3_prefix : "",
		    p->kms_key_id ? p->kms_key_id : "the aws/s3 key");
	else
		snprintf(what, sizeof(what), "profile %s: %s", p->name, err);
	doctor_line(n->d, ok, what, ok ? NULL : "check the bucket's name "
	    "and region, and that the IAM policy (packaging/iam-policy.json) "
	    "is attached");
}

static void
check_datastore(struct net *n, const struct profile *p)
{
	const struct http_resp *resp;
	struct http_req *r;
	char status[32] = "", what[1400], err[700];
	int ok;

	r = hl_describe_datastore(n->cfg->healthlake_endpoint, n->region,
	    p->healthlake_datastore_id, &n->creds, time(NULL));
	resp = call(n, r);
	ok = resp != NULL && resp->result == CURLE_OK &&
	    resp->status == 200 && hl_parse_datastore(resp, status) == 0;
	if (ok && strcmp(status, "ACTIVE") == 0) {
		snprintf(what, sizeof(what), "profile %s: HealthLake datastore "
		    "%s is ACTIVE", p->name, p->healthlake_datastore_id);
		doctor_line(n->d, 1, what, NULL);
	} else if (ok) {
		snprintf(what, sizeof(what), "profile %s: HealthLake datastore "
		    "%s is %s, not ACTIVE", p->name, p->healthlake_datastore_id,
		    status);
		doctor_line(n->d, 0, what, "imports wait for an ACTIVE "
		    "datastore: see it in the HealthLake console");
	} else {
		aws_failure(resp, err, sizeof(err));
		snprintf(what, sizeof(what), "profile %s: HealthLake datastore "
		    "%s: %s", p->name, p->healthlake_datastore_id, err);
		doctor_line(n->d, 0, what, "check healthlake_datastore_id and "
		    "that the IAM policy allows healthlake:DescribeFHIRDatastore");
	}
	http_req_wipe_free(r);
}

static void
check_topic(struct net *n, const struct profile *p)
{
	const struct http_resp *resp;
	struct http_req *r;
	char what[1400], err[700];

	r = sns_get_topic_attributes(n->cfg->sns_endpoint, n->region,
	    p->sns_topic_arn, &n->creds, time(NULL));
	resp = call(n, r);
	if (resp != NULL && resp->result == CURLE_OK && resp->status == 200) {
		snprintf(what, sizeof(what), "profile %s: SNS topic %s exists",
		    p->name, p->sns_topic_arn);
		doctor_line(n->d, 1, what, NULL);
	} else {
		aws_failure(resp, err, sizeof(err));
		snprintf(what, sizeof(what), "profile %s: SNS topic %s: %s",
		    p->name, p->sns_topic_arn, err);
		doctor_line(n->d, 0, what, "check sns_topic_arn and that the "
		    "IAM policy allows sns:GetTopicAttributes and sns:Publish");
	}
	http_req_wipe_free(r);
}

static void
check_profile_net(struct net *n, const struct profile *p)
{
	char *token;

	if ((token = bcda_token(n, p)) != NULL) {
		check_attribution(n, p, token);
		wipe_free(token);
	}
	if (p->s3_bucket == NULL && p->healthlake_datastore_id == NULL &&
	    p->sns_topic_arn == NULL)
		return;
	if (aws_ready(n) != 0)
		return;
	if (p->s3_bucket != NULL)
		check_bucket(n, p);
	if (p->healthlake_datastore_id != NULL)
		check_datastore(n, p);
	if (p->sns_topic_arn != NULL)
		check_topic(n, p);
}

void
doctor_net(struct doctor *d, const struct config *c,
    const struct profile *only)
{
	struct net n;
	int i;

	memset(&n, 0, sizeof(n));
	n.cfg = c;
	n.d = d;
	uv_loop_init(&n.loop);
	if ((n.http = http_new(&n.loop, c->connect_timeout,
	    c->low_speed_time)) == NULL) {
		doctor_line(d, 0, "network checks: out of memory", NULL);
		uv_loop_close(&n.loop);
		return;
	}
	for (i = 0; i < c->nprofiles; i++)
		if (only == NULL || c->profiles[i] == only)
			check_profile_net(&n, c->profiles[i]);
	awscreds_free(n.ac);
	http_free(n.http);
	uv_run(&n.loop, UV_RUN_DEFAULT);
	uv_loop_close(&n.loop);
	wipe_free(n.creds.access_key_id);
	wipe_free(n.creds.secret_access_key);
	wipe_free(n.creds.session_token);
	free(n.source);
	free(n.region);
}
