/*
 * Signed AWS requests and error bodies.  See aws.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>
#include <jansson.h>

#include "aws.h"
#include "util/log.h"

const char *
aws_domain(const char *region)
{
	return strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" :
	    "amazonaws.com";
}

char *
aws_endpoint(const char *configured, const char *service, const char *region)
{
	size_t n;
	char *b;

	if (configured != NULL) {
		n = strlen(configured);
		return strndup(configured, n - (n > 0 &&
		    configured[n - 1] == '/'));
	}
	if (asprintf(&b, "https://%s.%s.%s", service, region,
	    aws_domain(region)) < 0)
		return NULL;
	return b;
}

struct http_req *
aws_json_request(const char *endpoint, const char *service,
    const char *region, const char *version, const char *target,
    json_t *body, const struct aws_creds *creds, time_t now)
{
	struct aws_call c;
	struct http_req *r = NULL;
	char *base = NULL, *text = NULL, ct[64], tg[128];
	const char *h[2];

	if (body == NULL || region == NULL || *region == '\0') {
		errno = body == NULL ? ENOMEM : EINVAL;
		goto out;
	}
	if ((base = aws_endpoint(endpoint, service, region)) == NULL ||
	    (text = json_dumps(body, JSON_COMPACT)) == NULL) {
		errno = ENOMEM;
		goto out;
	}
	snprintf(ct, sizeof(ct), "Content-Type: application/x-amz-json-%s",
	    version);
	snprintf(tg, sizeof(tg), "X-Amz-Target: %s", target);
	h[0] = ct;
	h[1] = tg;
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.base = base;
	c.path = "/";
	c.service = service;
	c.region = region;
	c.body = text;
	c.body_len = strlen(text);
	c.fd = -1;
	c.headers = h;
	c.nheaders = 2;
	if ((r = aws_request(&c, creds, now)) == NULL)
		errno = ENOMEM;
out:
	json_decref(body);
	free(text);
	free(base);
	return r;
}

/* "https://host:port" -> "host:port" (the Host header and what is signed). */
static const char *
host_of(const char *base)
{
	const char *p = strstr(base, "://");

	return p ? p + 3 : base;
}

struct http_req *
aws_request(const struct aws_call *c, const struct aws_creds *creds, time_t now)
{
	struct sigv4_header hdrs[24];
	struct sigv4_request sr;
	struct sigv4_result res;
	struct http_req *r = NULL;
	char hash[65], *url = NULL, *line = NULL, *names[24];
	const char *payload;
	size_t n = 0, i;
	int rc;

	memset(names, 0, sizeof(names));
	if (c->nheaders + 3 > sizeof(hdrs) / sizeof(hdrs[0]))
		return NULL;
	payload = c->payload_sha256;
	if (payload == NULL) {
		sigv4_sha256_hex(c->body ? c->body : "", c->fd >= 0 ? 0 :
		    c->body_len, hash);
		payload = hash;
	}
	hdrs[n].name = "host";
	hdrs[n++].value = host_of(c->base);
	if (c->s3) {
		hdrs[n].name = "x-amz-content-sha256";
		hdrs[n++].value = payload;
	}
	/* Split "Name: value" lines into name and value for the signer. */
	for (i = 0; i < c->nheaders; i++) {
		const char *colon = strchr(c->headers[i], ':');

		if (colon == NULL ||
		    (names[i] = strndup(c->headers[i],
		    (size_t)(colon - c->headers[i]))) == NULL)
			goto out;
		for (colon++; *colon == ' '; colon++)
			;
		hdrs[n].name = names[i];
		hdrs[n++].value = colon;
	}
	memset(&sr, 0, sizeof(sr));
	sr.method = c->method;
	sr.path = c->path;
	sr.query = c->query;
	sr.headers = hdrs;
	sr.nheaders = n;
	sr.payload_sha256 = payload;
	sr.region = c->region;
	sr.service = c->service;
	sr.s3 = c->s3;
	sr.now = now;
	if (sigv4_sign(&sr, creds, &res) != 0)
		goto out;
	if (asprintf(&url, "%s%s%s%s", c->base, c->path, c->query ? "?" : "",
	    c->query ? c->query : "") < 0) {
		url = NULL;
		goto fail_res;
	}
	if ((r = http_req_new(c->method, url)) == NULL)
		goto fail_res;
	/* Host is curl's own; every other signed header is sent as signed. */
	for (i = 1; i < n; i++) {
		if (asprintf(&line, "%s: %s", hdrs[i].name, hdrs[i].value) < 0)
			goto fail_req;
		rc = http_req_header(r, line);
		free(line);
		if (rc != 0)
			goto fail_req;
	}
	if (asprintf(&line, "X-Amz-Date: %s", res.amz_date) < 0)
		goto fail_req;
	http_req_header(r, line);
	free(line);
	if (creds->session_token != NULL) {
		if (asprintf(&line, "X-Amz-Security-Token: %s",
		    creds->session_token) < 0)
			goto fail_req;
		http_req_header(r, line);
		explicit_bzero(line, strlen(line));
		free(line);
	}
	if (asprintf(&line, "Authorization: %s", res.authorization) < 0)
		goto fail_req;
	http_req_header(r, line);
	free(line);
	/* curl would send Expect: 100-continue for large bodies and wait. */
	http_req_header(r, "Expect:");
	if (c->fd >= 0)
		http_req_body_file(r, c->fd, c->off, c->body_len);
	else if (c->body != NULL && http_req_body(r, c->body, c->body_len) != 0)
		goto fail_req;
	sigv4_result_free(&res);
	goto out;
fail_req:
	http_req_free(r);
	r = NULL;
fail_res:
	sigv4_result_free(&res);
out:
	for (i = 0; i < c->nheaders; i++)
		free(names[i]);
	free(url);
	return r;
}

struct xml_state {
	struct aws_xml_field *fields;
	size_t		 nfields;
	char		*root;
	size_t		 rootlen;
	int		 depth;
	int		 capturing;	/* index + 1 of the field being read */
	int		*done;
	/* aws_xml_each: the record element, its depth, what to call. */
	const char	*record;
	int		 record_depth;
	int		(*cb)(const struct aws_xml_field *, void *);
	void		*arg;
	int		 rc;
};

static const char *
local_name(const char *name)
{
	const char *p = strrchr(name, ':');

	/* expat without namespace processing: "ns:Name" or "Name". */
	return p ? p + 1 : name;
}

static void XMLCALL
xml_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct xml_state *x = arg;
	size_t i;

	(void)attrs;
	if (x->depth++ == 0 && x->root != NULL)
		snprintf(x->root, x->rootlen, "%s", local_name(name));
	if (x->record != NULL && x->record_depth == 0 &&
	    strcmp(local_name(name), x->record) == 0) {
		/* A new record: its fields start empty. */
		x->record_depth = x->depth;
		for (i = 0; i < x->nfields; i++) {
			x->done[i] = 0;
			x->fields[i].out[0] = '\0';
		}
		return;
	}
	if (x->record != NULL && x->record_depth == 0)
		return;
	for (i = 0; i < x->nfields; i++) {
		if (!x->done[i] && strcmp(local_name(name), x->fields[i].name)
		    == 0) {
			x->capturing = (int)i + 1;
			x->fields[i].out[0] = '\0';
			return;
		}
	}
}

static void XMLCALL
xml_end(void *arg, const XML_Char *name)
{
	struct xml_state *x = arg;

	(void)name;
	if (x->record != NULL && x->depth == x->record_depth) {
		x->record_depth = 0;
		if (x->rc == 0)
			x->rc = x->cb(x->fields, x->arg);
	}
	x->depth--;
	if (x->capturing) {
		x->done[x->capturing - 1] = 1;
		x->capturing = 0;
	}
}

static void XMLCALL
xml_text(void *arg, const XML_Char *s, int len)
{
	struct xml_state *x = arg;
	struct aws_xml_field *f;
	size_t have;

	if (!x->capturing)
		return;
	f = &x->fields[x->capturing - 1];
	have = strlen(f->out);
	if (have + (size_t)len >= f->outlen)
		len = (int)(f->outlen - have - 1);
	memcpy(f->out + have, s, (size_t)len);
	f->out[have + (size_t)len] = '\0';
}

/* aws_xml and aws_xml_each: record NULL for the former. */
static int
xml_parse(const char *body, size_t len, struct aws_xml_field *fields,
    size_t nfields, char *root, size_t rootlen, const char *record,
    int (*cb)(const struct aws_xml_field *, void *), void *arg)
{
	struct xml_state x;
	XML_Parser p;
	int done[16] = { 0 }, rc = 0;
	size_t i;

	if (nfields > 16)
		return -EINVAL;
	for (i = 0; i < nfields; i++)
		fields[i].out[0] = '\0';
	if (root != NULL && rootlen > 0)
		root[0] = '\0';
	memset(&x, 0, sizeof(x));
	x.fields = fields;
	x.nfields = nfields;
	x.root = root;
	x.rootlen = rootlen;
	x.done = done;
	x.record = record;
	x.cb = cb;
	x.arg = arg;
	/*
	 * Whitespace before the XML declaration is not well-formed, but a
	 * CompleteMultipartUpload answer can start with it: S3 servers keep
	 * the connection alive with spaces (MinIO sends them first).  Skip
	 * it so that a failure after 200 OK is still read as one.
	 */
	while (len > 0 && body != NULL && (*body == ' ' || *body == '\t' ||
	    *body == '\r' || *body == '\n')) {
		body++;
		len--;
	}
	if ((p = XML_ParserCreate(NULL)) == NULL)
		return -ENOMEM;
	XML_SetUserData(p, &x);
	XML_SetElementHandler(p, xml_start, xml_end);
	XML_SetCharacterDataHandler(p, xml_text);
	if (XML_Parse(p, body ? body : "", (int)len, 1) == XML_STATUS_ERROR)
		rc = -EBADMSG;
	XML_ParserFree(p);
	return rc != 0 ? rc : x.rc;
}

int
aws_xml(const char *body, size_t len, struct aws_xml_field *fields,
    size_t nfields, char *root, size_t rootlen)
{
	return xml_parse(body, len, fields, nfields, root, rootlen, NULL, NULL,
	    NULL);
}

int
aws_xml_each(const char *body, size_t len, const char *record,
    struct aws_xml_field *fields, size_t nfields,
    int (*cb)(const struct aws_xml_field *, void *), void *arg)
{
	return xml_parse(body, len, fields, nfields, NULL, 0, record, cb,
	    arg);
}

static void parse_error(const struct http_resp *, struct aws_error *);

/* The error's code and message, sanitised: they reach logs and status. */
void
aws_parse_error(const struct http_resp *resp, struct aws_error *e)
{
	parse_error(resp, e);
	log_sanitize(e->code);
	log_sanitize(e->message);
}

static void
parse_error(const struct http_resp *resp, struct aws_error *e)
{
	struct aws_xml_field f[2] = {
		{ "Code", e->code, sizeof(e->code) },
		{ "Message", e->message, sizeof(e->message) },
	};
	const char *type, *msg, *hash;
	json_t *root;

	memset(e, 0, sizeof(*e));
	if (resp->body == NULL || resp->body_len == 0)
		return;
	if (resp->body[0] == '<' || strncmp(resp->body, "<?xml", 5) == 0 ||
	    memchr(resp->body, '<', resp->body_len < 64 ?
	    resp->body_len : 64) != NULL) {
		if (aws_xml(resp->body, resp->body_len, f, 2, NULL, 0) == 0)
			return;
		memset(e, 0, sizeof(*e));
	}
	/* JSON protocols: {"__type": "ns#Code", "message"|"Message": ...}. */
	if ((root = json_loadb(resp->body, resp->body_len, 0, NULL)) == NULL)
		return;
	type = json_string_value(json_object_get(root, "__type"));
	msg = json_string_value(json_object_get(root, "message"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(root, "Message"));
	if (type != NULL) {
		if ((hash = strrchr(type, '#')) != NULL)
			type = hash + 1;
		snprintf(e->code, sizeof(e->code), "%.*s",
		    (int)strcspn(type, ":"), type);
	}
	if (msg != NULL)
		snprintf(e->message, sizeof(e->message), "%s", msg);
	json_decref(root);
}

int
aws_retryable(const struct http_resp *resp, const struct aws_error *e)
{
	static const char *const codes[] = {
		"RequestTimeout", "RequestTimeoutException",
		"PriorRequestNotComplete", "Throttling", "ThrottlingException",
		"ThrottledException", "RequestThrottledException",
		"TooManyRequestsException",
		"ProvisionedThroughputExceededException",
		"TransactionInProgressException", "RequestLimitExceeded",
		"BandwidthLimitExceeded", "LimitExceededException",
		"RequestThrottled", "SlowDown", "EC2ThrottledException",
		"InternalError", "InternalServerException",
		"InternalServiceError", "ServiceUnavailable",
	};
	size_t i;

	if (resp->result != CURLE_OK)
		return 1;
	if (resp->status >= 500 || resp->status == 429)
		return 1;
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(e->code, codes[i]) == 0)
			return 1;
	return 0;
}
