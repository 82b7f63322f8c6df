/*
 * AWS credentials chain and region.  See awscreds.h.
 *
 * One fetch at a time walks the chain from the top: each source is a step
 * that either finds credentials (fetch_ok), is not configured (the next
 * step), or fails with a reason kept for the final error (why_add, then
 * the next step).  The environment and the shared files are read at once;
 * web identity, ECS and IMDS send one request (IMDS a few) and continue
 * from the request's done callback.  Callers that arrive meanwhile wait in
 * one queue and are all answered by fetch_finish.
 *
 * This file holds the chain, the cache, the waiters, the environment
 * source and region resolution; the other sources live in
 * awscreds_profile.c, awscreds_remote.c and awscreds_imds.c (see
 * awscreds_int.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "awscreds_int.h"
#include "util/iso8601.h"
#include "util/log.h"
#include "util/wipe.h"

/* ---------------------------------------------------------------- */
/* Small helpers                                                    */
/* ---------------------------------------------------------------- */

static void
creds_clear(struct aws_creds *c)
{
	wipe_free(c->access_key_id);
	wipe_free(c->secret_access_key);
	wipe_free(c->session_token);
	memset(c, 0, sizeof(*c));
}

const char *
ac_env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

static int
env_true(const char *name)
{
	const char *v = ac_env(name);

	return v != NULL && strcasecmp(v, "true") == 0;
}

/* Appends one reason, "label: text", to the fetch's list of failures. */
void
ac_why_add(struct awscreds *ac, const char *fmt, ...)
{
	size_t len = strlen(ac->why);
	va_list ap;

	if (len > 0 && len + 2 < sizeof(ac->why)) {
		memcpy(ac->why + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(ac->why + len, sizeof(ac->why) - len, fmt, ap);
	va_end(ap);
}

void
ac_rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

int64_t
ac_now_unix(void)
{
	return (int64_t)time(NULL);
}

static void
fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "never");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
awscreds_parse_time(const char *s, int64_t *out)
{
	time_t t;
	int rc;

	if ((rc = iso8601_parse(s, ISO8601_LENIENT, &t)) == 0)
		*out = (int64_t)t;
	return rc;
}

/* ---------------------------------------------------------------- */
/* Waiters and the end of a fetch                                   */
/* ---------------------------------------------------------------- */

static int
creds_valid(const struct awscreds *ac, int64_t now)
{
	return ac->have_creds &&
	    (ac->creds.expiration == 0 || ac->creds.expiration > now);
}

/*
 * Ends the fetch: on success the fetched credentials replace the cached
 * ones; on failure the cached ones stay while they are valid.  Then every
 * waiter is answered, in arrival order.
 */
static void
fetch_finish(struct awscreds *ac, const char *source, const char *error)
{
	struct waiter *w;
	int64_t now = ac_now_unix();
	char exp[32], *err = NULL;

	ac->fetching = 0;
	free(ac->role_arn);
	ac->role_arn = NULL;
	if (error == NULL && ac->fetched.expiration != 0 &&
	    ac->fetched.expiration <= now) {
		fmt_time(ac->fetched.expiration, exp, sizeof(exp));
		if (asprintf(&err, "AWS credentials from %s expired at %s "
		    "already: is the system clock right?", source, exp) < 0)
			err = NULL;
		error = err ? err : "AWS credentials already expired";
		creds_clear(&ac->fetched);
	}
	if (error == NULL) {
		creds_clear(&ac->creds);
		ac->creds = ac->fetched;
		memset(&ac->fetched, 0, sizeof(ac->fetched));
		ac->have_creds = 1;
		ac->source = source;
		ac->retry_at = 0;
		fmt_time(ac->creds.expiration, exp, sizeof(exp));
		log_info("AWS credentials from %s, expiring %s", ac->source,
		    exp);
		if (ac->creds.expiration != 0 &&
		    ac->creds.expiration - now <= AWSCREDS_MANDATORY)
			log_warnx("AWS credentials from %s expire in %lld s, "
			    "less than the %d s refresh margin", ac->source,
			    (long long)(ac->creds.expiration - now),
			    AWSCREDS_MANDATORY);
	} else {
		creds_clear(&ac->fetched);
		if (creds_valid(ac, now)) {
			ac->retry_at = now + AWSCREDS_RETRY;
			log_warnx("refreshing AWS credentials failed: %s; "
			    "keeping those from %s (valid for %lld s more), "
			    "retrying in %d s", error, ac->source,
			    (long long)(ac->creds.expiration - now),
			    AWSCREDS_RETRY);
		} else {
			log_warnx("%s", error);
		}
		/* Copy: a waiter may start a fetch that rewrites ac->why. */
		if (err == NULL && (err = strdup(error)) != NULL)
			error = err;
	}
	/*
	 * The list being called back stays where awscreds_forget finds it: a
	 * callback may cancel another waiter.
	 */
	ac->calling = ac->waiters;
	ac->waiters = NULL;
	ac->waiters_tail = &ac->waiters;
	while ((w = ac->calling) != NULL) {
		ac->calling = w->next;
		if (creds_valid(ac, now))
			w->cb(w->arg, &ac->creds, NULL);
		else
			w->cb(w->arg, NULL, error);
		free(w);
	}
	free(err);
}

void
ac_fetch_ok(struct awscreds *ac, const char *source)
{
	fetch_finish(ac, source, NULL);
}

static void
fetch_start(struct awscreds *ac)
{
	ac->fetching = 1;
	ac->step = STEP_ENV;
	ac->why[0] = '\0';
	creds_clear(&ac->fetched);
	ac_chain_next(ac);
}

/* Fills ac->fetched from strings; 0 or -ENOMEM. */
int
ac_fetched_set(struct awscreds *ac, const char *id, const char *secret,
    const char *token, int64_t expiration)
{
	creds_clear(&ac->fetched);
	ac->fetched.access_key_id = strdup(id);
	ac->fetched.secret_access_key = strdup(secret);
	if (token != NULL)
		ac->fetched.session_token = strdup(token);
	ac->fetched.expiration = expiration;
	if (ac->fetched.access_key_id == NULL ||
	    ac->fetched.secret_access_key == NULL ||
	    (token != NULL && ac->fetched.session_token == NULL)) {
		creds_clear(&ac->fetched);
		return -ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* 1. Environment                                                   */
/* ---------------------------------------------------------------- */

/* 1: found, 0: not configured, -1: configured but unusable (why). */
static int
from_env(struct awscreds *ac)
{
	const char *id = ac_env("AWS_ACCESS_KEY_ID");
	const char *secret = ac_env("AWS_SECRET_ACCESS_KEY");
	const char *exp = ac_env("AWS_CREDENTIAL_EXPIRATION");
	int64_t expiration = 0;

	if (id == NULL && secret == NULL)
		return 0;
	if (id == NULL || secret == NULL) {
		ac_why_add(ac, "environment: %s is set but %s is not",
		    id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
		    id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -1;
	}
	if (exp != NULL && awscreds_parse_time(exp, &expiration) != 0) {
		ac_why_add(ac, "environment: AWS_CREDENTIAL_EXPIRATION \"%s\" is "
		    "not an ISO 8601 time such as 2030-01-02T03:04:05Z", exp);
		return -1;
	}
	if (ac_fetched_set(ac, id, secret, ac_env("AWS_SESSION_TOKEN"),
	    expiration) != 0) {
		ac_why_add(ac, "environment: out of memory");
		return -1;
	}
	return 1;
}

/* ---------------------------------------------------------------- */
/* Region without the network                                       */
/* ---------------------------------------------------------------- */

char *
ac_region_local(struct awscreds *ac)
{
	const char *r;

	if (ac->opt_region != NULL)
		return strdup(ac->opt_region);
	if ((r = ac_env("AWS_REGION")) != NULL ||
	    (r = ac_env("AWS_DEFAULT_REGION")) != NULL)
		return strdup(r);
	return ac_profile_region(ac);
}

/* ---------------------------------------------------------------- */
/* 4, 5. ECS and IMDS answers (the same JSON)                       */
/* ---------------------------------------------------------------- */

/*
 * Fills ac->fetched from a container or instance-role JSON answer.
 * Returns 0, or -1 with a reason (label first) in ac->why.
 */
int
ac_creds_from_json(struct awscreds *ac, const char *label, const char *body,
    int strict)
{
	const char *id, *secret, *token, *exp, *code, *msg;
	json_error_t jerr;
	json_t *j;
	int64_t expiration = 0;
	int rc = -1;

	if ((j = json_loads(body ? body : "", 0, &jerr)) == NULL ||
	    !json_is_object(j)) {
		ac_why_add(ac, "%s: the answer is not a JSON object", label);
		goto out;
	}
	id = json_string_value(json_object_get(j, "AccessKeyId"));
	secret = json_string_value(json_object_get(j, "SecretAccessKey"));
	token = json_string_value(json_object_get(j, "Token"));
	exp = json_string_value(json_object_get(j, "Expiration"));
	code = json_string_value(json_object_get(j, "Code"));
	msg = json_string_value(json_object_get(j, "Message"));
	if (code != NULL && strcmp(code, "Success") != 0) {
		ac_why_add(ac, "%s: %s%s%s", label, code, msg ? ": " : "",
		    msg ? msg : "");
		goto out;
	}
	if (id == NULL || secret == NULL || (strict && (token == NULL ||
	    exp == NULL))) {
		ac_why_add(ac, "%s: the answer lacks AccessKeyId, "
		    "SecretAccessKey%s", label, strict ?
		    ", Token or Expiration" : "");
		goto out;
	}
	if (exp != NULL && awscreds_parse_time(exp, &expiration) != 0) {
		ac_why_add(ac, "%s: Expiration \"%s\" is not ISO 8601", label,
		    exp);
		goto out;
	}
	if (ac_fetched_set(ac, id, secret, token, expiration) != 0) {
		ac_why_add(ac, "%s: out of memory", label);
		goto out;
	}
	rc = 0;
out:
	json_decref(j);
	return rc;
}

/* ---------------------------------------------------------------- */
/* The chain                                                        */
/* ---------------------------------------------------------------- */

static void
chain_error(struct awscreds *ac)
{
	char msg[WHY_MAX + 256];

	snprintf(msg, sizeof(msg), "no AWS credentials: set AWS_ACCESS_KEY_ID/"
	    "AWS_SECRET_ACCESS_KEY, a shared credentials profile, web "
	    "identity, or run on EC2 with an instance role (%s)",
	    ac->why[0] ? ac->why : "nothing configured");
	fetch_finish(ac, NULL, msg);
}

/*
 * Tries the sources from ac->step on, until one finds credentials, one
 * has started a request (its done callback calls chain_next again), or
 * none is left.
 */
void
ac_chain_next(struct awscreds *ac)
{
	int rc;

	for (;;) {
		switch (ac->step++) {
		case STEP_ENV:
			if (from_env(ac) == 1) {
				ac_fetch_ok(ac, "environment");
				return;
			}
			break;
		case STEP_PROFILE:
			if (ac_from_profile(ac) == 1) {
				ac_fetch_ok(ac, "shared-credentials-file");
				return;
			}
			break;
		case STEP_WEB_IDENTITY:
			if (ac_from_web_identity(ac) == 1)
				return;
			break;
		case STEP_CONTAINER:
			rc = ac_from_container(ac);
			if (rc != 0) {
				/* When ECS is configured IMDS is not tried. */
				ac->step = STEP_END;
				if (rc == 1)
					return;
			}
			break;
		case STEP_IMDS:
			if (env_true("AWS_EC2_METADATA_DISABLED")) {
				ac_why_add(ac, "IMDS: disabled by "
				    "AWS_EC2_METADATA_DISABLED=true");
				break;
			}
			ac_from_imds(ac);
			return;
		case STEP_END:
		default:
			ac->step = STEP_END;
			chain_error(ac);
			return;
		}
	}
}

/* ---------------------------------------------------------------- */
/* Public interface                                                 */
/* ---------------------------------------------------------------- */

struct awscreds *
awscreds_new(uv_loop_t *loop, struct http *http,
    const struct awscreds_opts *opts)
{
	struct awscreds *ac;

	if ((ac = calloc(1, sizeof(*ac))) == NULL)
		return NULL;
	ac->loop = loop;
	ac->http = http;
	ac->waiters_tail = &ac->waiters;
	ac->rwaiters_tail = &ac->rwaiters;
	ac->imds.ac = ac;
	ac->rimds.ac = ac;
	if (opts != NULL && opts->region != NULL && *opts->region &&
	    (ac->opt_region = strdup(opts->region)) == NULL)
		goto fail;
	if (opts != NULL && opts->sts_endpoint != NULL &&
	    *opts->sts_endpoint &&
	    (ac->opt_sts = strdup(opts->sts_endpoint)) == NULL)
		goto fail;
	return ac;
fail:
	awscreds_free(ac);
	return NULL;
}

static void
waiters_free(struct waiter *w)
{
	struct waiter *next;

	for (; w != NULL; w = next) {
		next = w->next;
		free(w);
	}
}

/* Unlinks and frees list's waiters (cb, arg), keeping *tail right. */
static void
forget_in(struct waiter **list, struct waiter ***tail, awscreds_cb cb,
    void *arg)
{
	struct waiter **wp, *w;

	for (wp = list; (w = *wp) != NULL; ) {
		if (w->cb != cb || w->arg != arg) {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		if (tail != NULL && *tail == &w->next)
			*tail = wp;
		free(w);
	}
}

void
awscreds_forget(struct awscreds *ac, awscreds_cb cb, void *arg)
{
	forget_in(&ac->calling, NULL, cb, arg);
	forget_in(&ac->waiters, &ac->waiters_tail, cb, arg);
}

void
awscreds_free(struct awscreds *ac)
{
	if (ac == NULL)
		return;
	if (ac->req != NULL) {
		http_cancel(ac->http, ac->req);
		http_req_wipe_free(ac->req);
	}
	ac_imds_call_free(ac, &ac->imds);
	ac_imds_call_free(ac, &ac->rimds);
	waiters_free(ac->waiters);
	waiters_free(ac->calling);
	waiters_free(ac->rwaiters);
	creds_clear(&ac->creds);
	creds_clear(&ac->fetched);
	ac_imds_token_drop(ac);
	free(ac->role_arn);
	free(ac->region);
	free(ac->opt_region);
	free(ac->opt_sts);
	free(ac);
}

void
awscreds_get(struct awscreds *ac, awscreds_cb cb, void *arg)
{
	int64_t now = ac_now_unix(), left;
	struct waiter *w;

	left = ac->creds.expiration - now;
	if (ac->have_creds && (ac->creds.expiration == 0 ||
	    left > AWSCREDS_MANDATORY)) {
		if (ac->creds.expiration != 0 && left <= AWSCREDS_ADVISORY &&
		    !ac->fetching && now >= ac->retry_at) {
			log_debug("AWS credentials from %s expire in %lld s: "
			    "refreshing in the background", ac->source,
			    (long long)left);
			fetch_start(ac);
		}
		cb(arg, &ac->creds, NULL);
		return;
	}
	if (!ac->fetching && creds_valid(ac, now) && now < ac->retry_at) {
		/* A refresh failed moments ago: the old ones still work. */
		cb(arg, &ac->creds, NULL);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		cb(arg, NULL, "out of memory");
		return;
	}
	w->cb = cb;
	w->arg = arg;
	*ac->waiters_tail = w;
	ac->waiters_tail = &w->next;
	if (!ac->fetching)
		fetch_start(ac);
}

void
awscreds_invalidate(struct awscreds *ac)
{
	creds_clear(&ac->creds);
	ac->have_creds = 0;
	ac->source = NULL;
	ac->retry_at = 0;
}

const char *
awscreds_source(const struct awscreds *ac)
{
	return ac->have_creds ? ac->source : NULL;
}

int
awscreds_busy(const struct awscreds *ac)
{
	return ac->fetching || ac->region_fetching;
}

const char *
awscreds_region_cached(const struct awscreds *ac)
{
	return ac->region;
}

static void
region_answer(struct awscreds *ac, const char *error, int transient)
{
	struct waiter *w, *list = ac->rwaiters;

	ac->rwaiters = NULL;
	ac->rwaiters_tail = &ac->rwaiters;
	while ((w = list) != NULL) {
		list = w->next;
		w->rcb(w->arg, error ? NULL : ac->region, error, transient);
		free(w);
	}
}

static void
region_imds_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;
	int transient = error != NULL && c->transient;
	char msg[768];
	char *r = NULL;

	ac->region_fetching = 0;
	if (error == NULL) {
		if ((r = strndup(body, strcspn(body, "\r\n"))) != NULL)
			ac_rtrim(r);
		if (r == NULL || *r == '\0') {
			free(r);
			r = NULL;
			error = "IMDS placement/region is empty";
		}
	}
	if (r != NULL) {
		free(ac->region);
		ac->region = r;
		log_info("AWS region %s (from IMDS)", r);
		region_answer(ac, NULL, 0);
		return;
	}
	snprintf(msg, sizeof(msg), "no AWS region: set region in bcdad.conf, "
	    "AWS_REGION or AWS_DEFAULT_REGION (IMDS: %s)", error);
	log_warnx("%s", msg);
	region_answer(ac, msg, transient);
}

void
awscreds_region(struct awscreds *ac, awscreds_region_cb cb, void *arg)
{
	struct waiter *w;
	char *r;

	if (ac->region != NULL) {
		cb(arg, ac->region, NULL, 0);
		return;
	}
	if ((r = ac_region_local(ac)) != NULL) {
		ac->region = r;
		cb(arg, ac->region, NULL, 0);
		return;
	}
	if (env_true("AWS_EC2_METADATA_DISABLED")) {
		cb(arg, NULL, "no AWS region: set region in bcdad.conf, "
		    "AWS_REGION or AWS_DEFAULT_REGION (IMDS is disabled by "
		    "AWS_EC2_METADATA_DISABLED=true)", 0);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		cb(arg, NULL, "out of memory", 1);
		return;
	}
	w->rcb = cb;
	w->arg = arg;
	*ac->rwaiters_tail = w;
	ac->rwaiters_tail = &w->next;
	if (!ac->region_fetching) {
		ac->region_fetching = 1;
		ac_imds_get(&ac->rimds, "/latest/meta-data/placement/region",
		    region_imds_done);
	}
}
