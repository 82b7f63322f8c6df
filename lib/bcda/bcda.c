/*
 * The BCDA protocol without I/O.  See bcda.h and reference/bcda.md.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "bcda.h"
#include "util/iso8601.h"
#include "util/log.h"

static const char *const endpoint_paths[] = {
	[EP_PATIENT]		= "Patient/$export",
	[EP_GROUP_ALL]		= "Group/all/$export",
	[EP_GROUP_RUNOUT]	= "Group/runout/$export",
};

int
bcda_parse_token(const char *body, size_t len, struct bcda_token *t)
{
	json_t *root, *at, *ei;
	const char *s;
	char *end;
	long long v;
	int rc = -EBADMSG;

	memset(t, 0, sizeof(*t));
	if ((root = json_loadb(body, len, 0, NULL)) == NULL)
		return -EBADMSG;
	at = json_object_get(root, "access_token");
	ei = json_object_get(root, "expires_in");
	if (!json_is_string(at) || json_string_length(at) == 0)
		goto out;
	/* BCDA sends "1200", a string, against RFC 6749; accept both. */
	if (json_is_integer(ei)) {
		v = json_integer_value(ei);
	} else if (json_is_string(ei)) {
		s = json_string_value(ei);
		errno = 0;
		v = strtoll(s, &end, 10);
		if (end == s || *end != '\0' || errno != 0)
			goto out;
	} else if (ei == NULL) {
		v = 1200;	/* BCDA's fixed lifetime, if it ever omits it */
	} else {
		goto out;
	}
	if (v <= 0)
		goto out;
	if ((t->access_token = strdup(json_string_value(at))) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	t->expires_in = v;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

void
bcda_token_clear(struct bcda_token *t)
{
	if (t->access_token != NULL) {
		explicit_bzero(t->access_token, strlen(t->access_token));
		free(t->access_token);
	}
	memset(t, 0, sizeof(*t));
}

int
bcda_parse_progress(const char *xp)
{
	const char *pct, *p;
	long v;

	if (xp == NULL || (pct = strchr(xp, '%')) == NULL)
		return -1;
	for (p = pct; p > xp && isdigit((unsigned char)p[-1]); p--)
		;
	if (p == pct || pct - p > 3)
		return -1;
	v = strtol(p, NULL, 10);
	return v > 100 ? -1 : (int)v;
}

int
bcda_parse_instant(const char *s, time_t *out)
{
	return iso8601_parse(s, 0, out);
}

int
bcda_parse_expires(const char *s, time_t *out)
{
	char buf[64];
	const char *p;
	size_t n;
	time_t t;

	/*
	 * "YYYY-MM-DD HH:MM:SS[.frac] +hhmm ZONE" is rewritten as the RFC
	 * 3339 "YYYY-MM-DDTHH:MM:SS[.frac]+hh:mm"; the zone name is ignored,
	 * since the offset says everything.
	 */
	if (strlen(s) > 19 && s[10] == ' ' && s[4] == '-') {
		for (p = s + 19; *p == '.' || isdigit((unsigned char)*p); p++)
			;
		n = (size_t)(p - s);
		if (n + 7 > sizeof(buf) || p[0] != ' ' ||
		    (p[1] != '+' && p[1] != '-') ||
		    !isdigit((unsigned char)p[2]) ||
		    !isdigit((unsigned char)p[3]) ||
		    !isdigit((unsigned char)p[4]) ||
		    !isdigit((unsigned char)p[5]) ||
		    (p[6] != '\0' && p[6] != ' '))
			return -EINVAL;
		memcpy(buf, s, n);
		buf[10] = 'T';
		snprintf(buf + n, sizeof(buf) - n, "%c%c%c:%c%c", p[1], p[2],
		    p[3], p[4], p[5]);
		return bcda_parse_instant(buf, out);
	}
	if ((t = curl_getdate(s, NULL)) < 0)
		return -EINVAL;
	*out = t;
	return 0;
}

static char *
api_base(const struct profile *p, const char *rest)
{
	char *s;

	if (asprintf(&s, "%s/api/v%d/%s", p->base_url, p->api_version,
	    rest) < 0)
		return NULL;
	return s;
}

/*
 * Query values are escaped with curl; _type is one comma-joined value
 * because BCDA reads only the first _type parameter.
 */
/*
 * The _typeFilter value with each '+' (and '%') percent-encoded once, so
 * that after curl escapes it again BCDA's two decodings give it back.
 */
static char *
type_filter_once(const char *tf)
{
	char *out, *o;

	if ((out = malloc(strlen(tf) * 3 + 1)) == NULL)
		return NULL;
	for (o = out; *tf != '\0'; tf++) {
		if (*tf == '+' || *tf == '%')
			o += sprintf(o, "%%%02X", (unsigned char)*tf);
		else
			*o++ = *tf;
	}
	*o = '\0';
	return out;
}

char *
bcda_kickoff_url(const struct profile *p, enum bcda_endpoint ep,
    const char *since)
{
	char types[512] = "", *url = NULL, *esc, *q = NULL, *tmp, *tf = NULL;
	size_t off = 0;
	int i;

	for (i = 0; i < p->ntypes && off < sizeof(types); i++)
		off += (size_t)snprintf(types + off, sizeof(types) - off,
		    "%s%s", i > 0 ? "," : "", p->types[i]);
	if ((q = strdup("")) == NULL)
		return NULL;
#define ADD(key, val) do { \
	if ((esc = curl_easy_escape(NULL, (val), 0)) == NULL) goto fail; \
	if (asprintf(&tmp, "%s%s%s=%s", q, *q ? "&" : "?", key, esc) < 0) { \
		curl_free(esc); goto fail; } \
	curl_free(esc); free(q); q = tmp; } while (0)
	if (p->ntypes > 0)
		ADD("_type", types);
	if (since != NULL)
		ADD("_since", since);
	if (p->type_filter != NULL && p->api_version >= 3) {
		if ((tf = type_filter_once(p->type_filter)) == NULL)
			goto fail;
		ADD("_typeFilter", tf);
	}
#undef ADD
	if (asprintf(&url, "%s/api/v%d/%s%s", p->base_url, p->api_version,
	    endpoint_paths[ep], q) < 0)
		url = NULL;
fail:
	free(tf);
	free(q);
	return url;
}

char *
bcda_jobs_url(const struct profile *p)
{
	return api_base(p, "jobs?_status=Pending,In%20Progress,Completed");
}

char *
bcda_token_url(const struct profile *p)
{
	char *s;

	if (asprintf(&s, "%s/auth/token", p->base_url) < 0)
		return NULL;
	return s;
}

static void
manifest_add(struct bcda_manifest *m, json_t *arr, enum file_kind kind,
    int *bad)
{
	struct bcda_file *f;
	json_t *e, *type, *url;
	size_t i;

	json_array_foreach(arr, i, e) {
		type = json_object_get(e, "type");
		url = json_object_get(e, "url");
		if (!json_is_string(type) || !json_is_string(url)) {
			*bad = 1;
			continue;
		}
		f = realloc(m->files, (m->nfiles + 1) * sizeof(*f));
		if (f == NULL) {
			*bad = 1;
			return;
		}
		m->files = f;
		f = &m->files[m->nfiles];
		f->kind = kind;
		f->type = strdup(json_string_value(type));
		f->url = strdup(json_string_value(url));
		if (f->type == NULL || f->url == NULL) {
			free(f->type);
			free(f->url);
			*bad = 1;
			return;
		}
		m->nfiles++;
	}
}

int
bcda_parse_manifest(const char *body, size_t len, struct bcda_manifest *m)
{
	json_t *root, *tt, *out, *err, *rat;
	int bad = 0;

	memset(m, 0, sizeof(*m));
	root = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, NULL);
	if (!json_is_object(root))
		goto fail;
	tt = json_object_get(root, "transactionTime");
	out = json_object_get(root, "output");
	err = json_object_get(root, "error");
	rat = json_object_get(root, "requiresAccessToken");
	if (!json_is_string(tt) || !json_is_array(out) ||
	    (err != NULL && !json_is_array(err)))
		goto fail;
	if (bcda_parse_instant(json_string_value(tt), &(time_t){0}) != 0)
		goto fail;
	m->transaction_time = strdup(json_string_value(tt));
	m->requires_token = rat == NULL || json_is_true(rat);
	manifest_add(m, out, FILE_OUTPUT, &bad);
	if (err != NULL)
		manifest_add(m, err, FILE_ERROR, &bad);
	if (bad || m->transaction_time == NULL)
		goto fail;
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	bcda_manifest_clear(m);
	return -EBADMSG;
}

void
bcda_manifest_clear(struct bcda_manifest *m)
{
	size_t i;

	for (i = 0; i < m->nfiles; i++) {
		free(m->files[i].type);
		free(m->files[i].url);
	}
	free(m->files);
	free(m->transaction_time);
	memset(m, 0, sizeof(*m));
}

/* Copies printable ASCII only, so server text cannot forge log lines. */
static void
copy_clean(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src ? src : "");
	log_sanitize(dst);
}

void
bcda_parse_outcome(const char *body, size_t len, struct bcda_outcome *o)
{
	json_t *root, *issue, *i0, *text;

	memset(o, 0, sizeof(*o));
	if (body == NULL || len == 0)
		return;
	root = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, NULL);
	if (!json_is_object(root) || !json_is_string(json_object_get(root,
	    "resourceType")) || strcmp(json_string_value(json_object_get(root,
	    "resourceType")), "OperationOutcome") != 0)
		goto out;
	issue = json_object_get(root, "issue");
	if ((i0 = json_array_get(issue, 0)) == NULL)
		goto out;
	o->present = 1;
	copy_clean(o->code, sizeof(o->code),
	    json_string_value(json_object_get(i0, "code")));
	copy_clean(o->severity, sizeof(o->severity),
	    json_string_value(json_object_get(i0, "severity")));
	text = json_object_get(i0, "diagnostics");
	if (!json_is_string(text))
		text = json_object_get(json_object_get(i0, "details"), "text");
	copy_clean(o->text, sizeof(o->text), json_string_value(text));
out:
	json_decref(root);
}

int
bcda_job_failed(long status, const struct bcda_outcome *o)
{
	return status == 500 && o->present &&
	    strstr(o->text, "Job failed to complete") != NULL;
}

enum bcda_refusal
bcda_kickoff_404(const struct bcda_outcome *o)
{
	if (!o->present)
		return BCDA_404_OTHER;
	if (strcasestr(o->text, "No up-to-date attribution information"))
		return BCDA_404_ATTRIBUTION;
	if (strcasestr(o->text, "runout data is no longer available"))
		return BCDA_404_RUNOUT_EXPIRED;
	if (strcasestr(o->text, "attribution file not found for given _since"))
		return BCDA_404_SINCE;
	return BCDA_404_OTHER;
}

int
bcda_find_blocker(const char *body, size_t len, int api_version,
    time_t *start, char *id, size_t idlen)
{
	json_t *root, *e, *task, *in;
	const char *st, *vs, *s, *v;
	char ver[16];
	time_t t;
	size_t i;
	int rc = -ENOENT;

	if ((root = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, NULL)) ==
	    NULL)
		return -ENOENT;
	snprintf(ver, sizeof(ver), "/api/v%d/", api_version);
	json_array_foreach(json_object_get(root, "entry"), i, e) {
		task = json_object_get(e, "resource");
		st = json_string_value(json_object_get(task, "status"));
		in = json_array_get(json_object_get(task, "input"), 0);
		vs = json_string_value(json_object_get(in, "valueString"));
		s = json_string_value(json_object_get(json_object_get(task,
		    "executionPeriod"), "start"));
		v = json_string_value(json_object_get(json_array_get(
		    json_object_get(task, "identifier"), 0), "value"));
		if (st == NULL || vs == NULL || s == NULL || v == NULL ||
		    (strcmp(st, "accepted") != 0 &&
		    strcmp(st, "in-progress") != 0) ||
		    strstr(vs, ver) == NULL ||
		    iso8601_parse(s, ISO8601_LENIENT, &t) != 0)
			continue;
		if (rc != 0 || t < *start) {
			*start = t;
			copy_clean(id, idlen, v);
			rc = 0;
		}
	}
	json_decref(root);
	return rc;
}

/* Percent-decodes s into a new string, for comparing URLs as BCDA saw them. */
static char *
url_decoded(const char *s)
{
	return curl_easy_unescape(NULL, s, 0, NULL);
}

char *
bcda_find_job(const char *body, size_t len, const char *kickoff_url,
    time_t not_before)
{
	json_t *root, *entries, *e, *task, *in, *id, *status;
	const char *vs, *st, *sys, *start;
	char *want = NULL, *got, *url = NULL;
	time_t t, best = 0;
	int live;
	size_t i;

	if ((root = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, NULL)) ==
	    NULL)
		return NULL;
	if ((want = url_decoded(kickoff_url)) == NULL)
		goto out;
	entries = json_object_get(root, "entry");
	json_array_foreach(entries, i, e) {
		task = json_object_get(e, "resource");
		status = json_object_get(task, "status");
		in = json_array_get(json_object_get(task, "input"), 0);
		id = json_array_get(json_object_get(task, "identifier"), 0);
		vs = json_string_value(json_object_get(in, "valueString"));
		st = json_string_value(status);
		sys = json_string_value(json_object_get(id, "system"));
		if (vs == NULL || st == NULL || sys == NULL ||
		    !json_is_string(json_object_get(id, "value")))
			continue;
		live = strcmp(st, "accepted") == 0 ||
		    strcmp(st, "in-progress") == 0;
		/*
		 * A completed job is ours only if it started after our kickoff
		 * was sent: the same URL may have been exported before.
		 */
		start = json_string_value(json_object_get(json_object_get(task,
		    "executionPeriod"), "start"));
		if (!live && (strcmp(st, "completed") != 0 || start == NULL ||
		    iso8601_parse(start, ISO8601_LENIENT, &t) != 0 ||
		    t < not_before))
			continue;
		if (strncmp(vs, "GET ", 4) != 0)
			continue;
		if ((got = url_decoded(vs + 4)) == NULL)
			continue;
		if (strcmp(got, want) != 0) {
			curl_free(got);
			continue;
		}
		curl_free(got);
		/* A live job wins; among completed ones, the newest. */
		if (live || url == NULL || t > best) {
			free(url);
			if (asprintf(&url, "%s/%s", sys, json_string_value(
			    json_object_get(id, "value"))) < 0)
				url = NULL;
			best = live ? INT64_MAX : t;
			if (live)
				break;
		}
	}
out:
	curl_free(want);
	json_decref(root);
	return url;
}

/*
 * host as curl gives it (IPv6 in brackets).  Only an address literal in
 * 127/8 or ::1, or the name localhost, is loopback: a name such as
 * 127.0.0.1.nip.io merely starts like one and may resolve anywhere.
 */
static int
host_is_loopback(const char *host)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (n < 3 || host[0] != '[' || host[n - 1] != ']' ||
	    n - 2 >= sizeof(buf))
		return 0;
	memcpy(buf, host + 1, n - 2);
	buf[n - 2] = '\0';
	return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Scheme, host and port of url, port filled in from the scheme. */
static int
url_origin(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u;
	int rc = -EINVAL;

	*scheme = *host = *port = NULL;
	if ((u = curl_url()) == NULL)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK)
		goto out;
	rc = 0;
out:
	curl_url_cleanup(u);
	return rc;
}

int
bcda_url_trusted(const char *base_url, const char *url)
{
	char *bs, *bh, *bp, *us, *uh, *up;
	int ok = 0;

	if (url_origin(base_url, &bs, &bh, &bp) != 0) {
		curl_free(bs); curl_free(bh); curl_free(bp);
		return 0;
	}
	if (url_origin(url, &us, &uh, &up) == 0 &&
	    strcasecmp(bs, us) == 0 && strcasecmp(bh, uh) == 0 &&
	    strcmp(bp, up) == 0 &&
	    (strcasecmp(us, "https") == 0 ||
	    (strcasecmp(us, "http") == 0 && host_is_loopback(uh))))
		ok = 1;
	curl_free(bs); curl_free(bh); curl_free(bp);
	curl_free(us); curl_free(uh); curl_free(up);
	return ok;
}
