/*
 * Tests of lib/aws/healthlake.c, lib/aws/sns.c and lib/aws/secretsmanager.c.  Every
 * request shape is built by the real functions, taken apart (method, URL,
 * header lines, body) and given to botocore (tests/sigv4_botocore.py):
 * the Authorization header must be the same byte for byte, and the body
 * the one a botocore client sends for the same call (the same JSON value
 * for the json protocol, the same bytes for SNS's form encoding).  Then
 * the reading of answers: successes, every job status, AWS errors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "aws/healthlake.h"
#include "aws/secretsmanager.h"
#include "aws/sns.h"
#include "t.h"
#include "botocore.h"

#define NOW		((time_t)1768478400)	/* 20260115T120000Z */
#define NOW_STAMP	"20260115T120000Z"
#define LOCAL		"http://127.0.0.1:4566"
#define KMS_ARN \
	"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#define DS_ID		"0123456789abcdef0123456789abcdef"
#define ROLE_ARN	"arn:aws:iam::123456789012:role/HealthLakeImport"
#define JOB_ID		"c145fbb27b192af392f8ce6e7838e34f"
#define TOPIC_ARN	"arn:aws:sns:us-east-1:123456789012:bcdad-events"
/* SHA-256 of "A9994\0" "42", cut to 32 hex digits (sha256sum). */
#define KNOWN_TOKEN_HASH	"2a772d734ca96d7000b5a3ad536e4603"

static char ex_akid[] = "AKIDEXAMPLE";
static char ex_secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static char ex_token[] = "IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=chars";

enum op { HL_START, HL_DESCRIBE, HL_DATASTORE, SNS_PUBLISH, SM_GET };

static const struct {
	const char	*service;	/* signing name and botocore's */
	const char	*operation;
	const char	*target;	/* X-Amz-Target, or NULL */
	const char	*content_type;
	const char	*host;		/* AWS host: <host>.<region>.amazonaws.com */
} ops[] = {
	[HL_START] = { "healthlake", "StartFHIRImportJob",
	    "HealthLake.StartFHIRImportJob", "application/x-amz-json-1.0",
	    "healthlake" },
	[HL_DESCRIBE] = { "healthlake", "DescribeFHIRImportJob",
	    "HealthLake.DescribeFHIRImportJob", "application/x-amz-json-1.0",
	    "healthlake" },
	[HL_DATASTORE] = { "healthlake", "DescribeFHIRDatastore",
	    "HealthLake.DescribeFHIRDatastore", "application/x-amz-json-1.0",
	    "healthlake" },
	[SNS_PUBLISH] = { "sns", "Publish", NULL,
	    "application/x-www-form-urlencoded; charset=utf-8",
	    "sns" },
	[SM_GET] = { "secretsmanager", "GetSecretValue",
	    "secretsmanager.GetSecretValue", "application/x-amz-json-1.1",
	    "secretsmanager" },
};

static const struct hl_import imports[] = {
	{ "bcdad-20260115", "s3://my-bucket/in/", "s3://my-bucket/out/",
	    KMS_ARN, DS_ID, ROLE_ARN, "3f1e6c1a-0000-4000-8000-000000000001" },
	/* No JobName; an alias; names outside ASCII. */
	{ NULL, "s3://my-bucket/exports/A9994/2026-11-26T044129.49402Z/",
	    "s3://my-bucket/exports/A9994/_healthlake/", "alias/bcdad",
	    DS_ID, ROLE_ARN,
	    "bcdad-42-0f343b0931126a20f133d67c2b018a3b" },
	{ "bcdad A9994 \xc3\xa9t\xc3\xa9 #7 / \"q\"", "s3://b.dotted/in/",
	    "s3://b.dotted/out/", "1234abcd-12ab-34cd-56ef-1234567890ab",
	    "ds", "arn:aws-us-gov:iam::123456789012:role/path/R",
	    "A-B-c-0" },
};

#define NATTR	3

static const struct sns_case {
	const char	*topic;
	const char	*subject;
	const char	*message;
	struct sns_attr	 attrs[NATTR];
	size_t		 nattrs;
} sns_cases[] = {
	/* reference/aws.md 1.3's captured body. */
	{ TOPIC_ARN, "bcdad import done", "{\"status\":\"COMPLETED\"}",
	    { { "kind", "import" } }, 1 },
	/* Everything form encoding can meet. */
	{ TOPIC_ARN, "bcdad: job 7 A9994 ~*+&=%/ \xc3\xa9 \xf0\x9f\x98\x80",
	    "{\"job\": 7, \"state\": \"FAILED\", \"why\": \"a+b=c&d %41 "
	    "~_.-*'()!$,;@\"}\nline 2\r\n\ttab \xe2\x80\xa8 \xf0\x9f\x98\x80",
	    { { "kind", "job.failed" }, { "profile", "A9994 +/=" },
	    { "bcdad_state-2", "\xc3\xa9t\xc3\xa9" } }, 3 },
	/* No subject, no attributes. */
	{ "arn:aws:sns:eu-west-2:123456789012:bcdad.fifo", NULL, "x", { { 0 } },
	    0 },
};

static const char *const secret_ids[] = {
	"prod/bcdad/db",
	"arn:aws:secretsmanager:us-east-1:123456789012:secret:bcdad/A9994-AbCdEf",
	"bcdad A9994+x=y",
};

struct spec {
	const char	*name;
	enum op		 op;
	const char	*endpoint;
	const char	*region;
	int		 token;
	int		 v;		/* index into imports/sns_cases/... */
};

static const struct spec specs[] = {
	{ "StartFHIRImportJob", HL_START, NULL, "us-east-1", 0, 0 },
	{ "StartFHIRImportJob token", HL_START, NULL, "us-east-1", 1, 0 },
	{ "StartFHIRImportJob no name", HL_START, NULL, "us-west-2", 1, 1 },
	{ "StartFHIRImportJob UTF-8", HL_START, NULL, "eu-west-2", 0, 2 },
	{ "local StartFHIRImportJob", HL_START, LOCAL, "us-east-1", 0, 0 },
	{ "local StartFHIRImportJob token", HL_START, LOCAL, "us-east-1", 1,
	    1 },
	{ "DescribeFHIRImportJob", HL_DESCRIBE, NULL, "us-east-1", 0, 0 },
	{ "DescribeFHIRImportJob token", HL_DESCRIBE, NULL, "ap-southeast-2",
	    1, 0 },
	{ "local DescribeFHIRImportJob", HL_DESCRIBE, LOCAL, "us-east-1", 0,
	    0 },
	{ "local DescribeFHIRImportJob token", HL_DESCRIBE, LOCAL,
	    "us-east-1", 1, 0 },
	{ "DescribeFHIRDatastore", HL_DATASTORE, NULL, "us-east-1", 0, 0 },
	{ "DescribeFHIRDatastore token", HL_DATASTORE, NULL, "us-east-2", 1,
	    0 },
	{ "local DescribeFHIRDatastore", HL_DATASTORE, LOCAL, "us-east-1", 1,
	    0 },
	{ "Publish", SNS_PUBLISH, NULL, "us-east-1", 0, 0 },
	{ "Publish token", SNS_PUBLISH, NULL, "us-east-1", 1, 0 },
	{ "Publish odd characters", SNS_PUBLISH, NULL, "us-east-1", 1, 1 },
	{ "Publish bare", SNS_PUBLISH, NULL, "eu-west-2", 0, 2 },
	{ "local Publish", SNS_PUBLISH, LOCAL, "us-east-1", 0, 0 },
	{ "local Publish odd characters token", SNS_PUBLISH, LOCAL,
	    "us-east-1", 1, 1 },
	{ "GetSecretValue", SM_GET, NULL, "us-east-1", 0, 0 },
	{ "GetSecretValue token", SM_GET, NULL, "eu-west-2", 1, 0 },
	{ "GetSecretValue ARN", SM_GET, NULL, "us-east-1", 1, 1 },
	{ "local GetSecretValue", SM_GET, LOCAL, "us-east-1", 0, 2 },
	{ "local GetSecretValue token", SM_GET, LOCAL, "us-east-1", 1, 1 },
};

#define NSPECS	(sizeof(specs) / sizeof(specs[0]))

static struct http_req *
build(const struct spec *s)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	const struct sns_case *sc = &sns_cases[s->v];

	if (s->token)
		c.session_token = ex_token;
	switch (s->op) {
	case HL_START:
		return hl_start_import(s->endpoint, s->region, &imports[s->v],
		    &c, NOW);
	case HL_DESCRIBE:
		return hl_describe_import(s->endpoint, s->region, DS_ID,
		    JOB_ID, &c, NOW);
	case HL_DATASTORE:
		return hl_describe_datastore(s->endpoint, s->region, DS_ID, &c,
		    NOW);
	case SNS_PUBLISH:
		return sns_publish(s->endpoint, s->region, sc->topic,
		    sc->subject, sc->message, sc->attrs, sc->nattrs, NULL, &c,
		    NOW);
	case SM_GET:
		return sm_get_secret_value(s->endpoint, s->region,
		    secret_ids[s->v], &c, NOW);
	}
	return NULL;
}

/* The URL a spec's request must go to. */
static void
want_url(const struct spec *s, char *out, size_t len)
{
	if (s->endpoint != NULL)
		snprintf(out, len, "%s/", s->endpoint);
	else
		snprintf(out, len, "https://%s.%s.amazonaws.com/",
		    ops[s->op].host, s->region);
}

/* The botocore client parameters of a spec's call. */
static json_t *
params(const struct spec *s)
{
	const struct hl_import *im = &imports[s->v];
	const struct sns_case *sc = &sns_cases[s->v];
	json_t *p = NULL, *attrs;
	size_t i;

	switch (s->op) {
	case HL_START:
		p = json_pack("{s:{s:s}, s:{s:{s:s, s:s}}, s:s, s:s, s:s}",
		    "InputDataConfig", "S3Uri", im->input_s3_uri,
		    "JobOutputDataConfig", "S3Configuration", "S3Uri",
		    im->output_s3_uri, "KmsKeyId", im->kms_key_id,
		    "DatastoreId", im->datastore_id,
		    "DataAccessRoleArn", im->role_arn,
		    "ClientToken", im->client_token);
		if (im->job_name != NULL)
			json_object_set_new(p, "JobName",
			    json_string(im->job_name));
		break;
	case HL_DESCRIBE:
		p = json_pack("{s:s, s:s}", "DatastoreId", DS_ID, "JobId",
		    JOB_ID);
		break;
	case HL_DATASTORE:
		p = json_pack("{s:s}", "DatastoreId", DS_ID);
		break;
	case SNS_PUBLISH:
		/* Keyword order is botocore's field order: keep it. */
		p = json_pack("{s:s}", "TopicArn", sc->topic);
		if (sc->subject != NULL)
			json_object_set_new(p, "Subject",
			    json_string(sc->subject));
		json_object_set_new(p, "Message", json_string(sc->message));
		if (sc->nattrs > 0) {
			attrs = json_object();
			for (i = 0; i < sc->nattrs; i++)
				json_object_set_new(attrs, sc->attrs[i].name,
				    json_pack("{s:s, s:s}", "DataType",
				    "String", "StringValue",
				    sc->attrs[i].value));
			json_object_set_new(p, "MessageAttributes", attrs);
		}
		break;
	case SM_GET:
		p = json_pack("{s:s}", "SecretId", secret_ids[s->v]);
		break;
	}
	if (p == NULL)
		abort();
	return p;
}

/* Method, URL and the exact header set of every shape. */
T_TEST(test_request_shapes)
{
	char url[256];
	struct taken t;
	size_t i, j, k;

	for (i = 0; i < NSPECS; i++) {
		const struct spec *s = &specs[i];
		struct http_req *r = build(s);
		const char *v;

		if (r == NULL) {
			T_FAIL("%s: not built (%s)", s->name, strerror(errno));
			continue;
		}
		take(r, &t);
		want_url(s, url, sizeof(url));
		if (strcmp(t.method, "POST") != 0)
			T_FAIL("%s: method %s", s->name, t.method);
		if (strcmp(t.url, url) != 0)
			T_FAIL("%s: URL\n  got  %s\n  want %s", s->name, t.url,
			    url);
		T_EQ_INT(t.nexpect, 1);
		T_EQ_INT(t.bad, 0);
		T_ASSERT(hdr(&t, "Host") == NULL);
		T_ASSERT(hdr(&t, "x-amz-content-sha256") == NULL);
		if ((v = hdr(&t, "Content-Type")) == NULL ||
		    strcmp(v, ops[s->op].content_type) != 0)
			T_FAIL("%s: Content-Type %s", s->name, v ? v : "absent");
		v = hdr(&t, "X-Amz-Target");
		if (ops[s->op].target ? v == NULL ||
		    strcmp(v, ops[s->op].target) != 0 : v != NULL)
			T_FAIL("%s: X-Amz-Target %s", s->name, v ? v : "absent");
		if ((v = hdr(&t, "X-Amz-Date")) == NULL ||
		    strcmp(v, NOW_STAMP) != 0)
			T_FAIL("%s: X-Amz-Date %s", s->name, v ? v : "absent");
		v = hdr(&t, "X-Amz-Security-Token");
		if (s->token ? v == NULL || strcmp(v, ex_token) != 0 : v != NULL)
			T_FAIL("%s: X-Amz-Security-Token %s", s->name,
			    v ? v : "absent");
		if ((v = hdr(&t, "Authorization")) == NULL ||
		    strncmp(v, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
		    "20260115/", 49) != 0 || strstr(v, s->region) == NULL ||
		    strstr(v, ops[s->op].service) == NULL)
			T_FAIL("%s: Authorization %s", s->name,
			    v ? v : "absent");
		T_ASSERT(t.body != NULL && t.body_len > 0);
		/* Nothing else, nothing twice. */
		if (t.n != 3 + (size_t)s->token + (ops[s->op].target != NULL))
			T_FAIL("%s: %zu headers", s->name, t.n);
		for (j = 0; j < t.n; j++)
			for (k = j + 1; k < t.n; k++)
				if (strcasecmp(t.name[j], t.name[k]) == 0)
					T_FAIL("%s: %s twice", s->name,
					    t.name[j]);
		taken_free(&t);
		http_req_free(r);
	}
}

/*
 * Known answers of reference/aws.md 6, signed by botocore and by
 * aws-c-auth: StartFHIRImportJob and GetSecretValue with a token.
 */
T_TEST(test_reference_signatures)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	char sm_token[] = "FwoGZXIvYXdzEXAMPLE";
	struct http_req *r;
	struct taken t;

	r = hl_start_import(NULL, "us-east-1", &imports[0], &c, NOW);
	T_ASSERT(r != NULL);
	if (r != NULL) {
		take(r, &t);
		T_EQ_STR(hdr(&t, "Authorization"), "AWS4-HMAC-SHA256 "
		    "Credential=AKIDEXAMPLE/20260115/us-east-1/healthlake/"
		    "aws4_request, SignedHeaders=content-type;host;x-amz-date;"
		    "x-amz-target, Signature=40d8a7f754e46da497ef86d31229f347e"
		    "58339d9c90195a68e3ddbc6a36a8167");
		taken_free(&t);
		http_req_free(r);
	}
	c.session_token = sm_token;
	r = sm_get_secret_value(NULL, "eu-west-2", "prod/bcdad/db", &c, NOW);
	T_ASSERT(r != NULL);
	if (r != NULL) {
		take(r, &t);
		T_ASSERT(t.body_len == 28 &&
		    memcmp(t.body, "{\"SecretId\":\"prod/bcdad/db\"}", 28) == 0);
		T_EQ_STR(hdr(&t, "Authorization"), "AWS4-HMAC-SHA256 "
		    "Credential=AKIDEXAMPLE/20260115/eu-west-2/secretsmanager/"
		    "aws4_request, SignedHeaders=content-type;host;x-amz-date;"
		    "x-amz-security-token;x-amz-target, Signature=1b8cce0e988e7"
		    "19191253f28ac8051ca7bc26bcb102fbbea816b5b177a01ec3b");
		taken_free(&t);
		http_req_free(r);
	}
}

/* Spec i for botocore_crosscheck(). */
static struct http_req *
crosscheck_build(size_t i, struct taken *t, struct botocore_sig *sig)
{
	const struct spec *s = &specs[i];
	struct http_req *r = build(s);

	sig->name = s->name;
	sig->region = s->region;
	sig->service = ops[s->op].service;
	sig->token = s->token;
	sig->s3 = 0;
	if (r != NULL)
		take(r, t);
	return r;
}

/* Every shape signed again by botocore: the same Authorization. */
T_TEST(test_botocore_signatures)
{
	struct aws_creds c = { ex_akid, ex_secret, ex_token, 0 };

	botocore_crosscheck(NSPECS, crosscheck_build, &c, NOW_STAMP);
}

static int
unhex(const char *hex, char **out, size_t *len)
{
	size_t n = strlen(hex) / 2, i;
	unsigned int b;

	if ((*out = malloc(n + 1)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		(*out)[i] = (char)b;
	}
	(*out)[n] = '\0';
	*len = n;
	return 0;
}

/*
 * Every call made again by a botocore client: the same URL and headers,
 * the same JSON value, and for SNS the same form body byte for byte.
 */
T_TEST(test_botocore_bodies)
{
	json_t *arr = json_array(), *got, *mine, *bj;
	char **lines, url[256], *body;
	size_t i, n, blen;

	for (i = 0; i < NSPECS; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:s, "
		    "s:s?}", "service", ops[specs[i].op].service,
		    "operation", ops[specs[i].op].operation,
		    "params", params(&specs[i]), "region", specs[i].region,
		    "endpoint_url", specs[i].endpoint));
	lines = botocore_run("--serialize", arr, SIZE_MAX, &n);
	T_EQ_INT(n, NSPECS);
	for (i = 0; i < n && i < NSPECS; i++) {
		const struct spec *s = &specs[i];
		struct http_req *r = build(s);
		struct taken t;
		const char *v;

		if (r == NULL || (got = json_loads(lines[i], 0, NULL)) == NULL) {
			T_FAIL("%s: not built or botocore said %s", s->name,
			    lines[i]);
			http_req_free(r);
			continue;
		}
		take(r, &t);
		want_url(s, url, sizeof(url));
		T_EQ_STR(json_string_value(json_object_get(got, "url")), url);
		T_EQ_STR(json_string_value(json_object_get(got, "url")), t.url);
		T_EQ_STR(json_string_value(json_object_get(got, "method")),
		    t.method);
		v = json_string_value(json_object_get(json_object_get(got,
		    "headers"), "Content-Type"));
		T_EQ_STR(v, hdr(&t, "Content-Type"));
		v = json_string_value(json_object_get(json_object_get(got,
		    "headers"), "X-Amz-Target"));
		if (v == NULL ? hdr(&t, "X-Amz-Target") != NULL :
		    hdr(&t, "X-Amz-Target") == NULL ||
		    strcmp(v, hdr(&t, "X-Amz-Target")) != 0)
			T_FAIL("%s: X-Amz-Target %s, botocore %s", s->name,
			    hdr(&t, "X-Amz-Target"), v);
		if (unhex(json_string_value(json_object_get(got, "body_hex")),
		    &body, &blen) != 0)
			abort();
		if (s->op == SNS_PUBLISH) {
			if (blen != t.body_len ||
			    memcmp(body, t.body, blen) != 0)
				T_FAIL("%s: form body differs\n  botocore %s\n"
				    "  bcdad    %.*s", s->name, body,
				    (int)t.body_len, t.body);
		} else {
			bj = json_loadb(body, blen, 0, NULL);
			mine = json_loadb(t.body, t.body_len, 0, NULL);
			if (bj == NULL || mine == NULL || !json_equal(bj, mine))
				T_FAIL("%s: JSON body differs\n  botocore %s\n"
				    "  bcdad    %.*s", s->name, body,
				    (int)t.body_len, t.body);
			json_decref(bj);
			json_decref(mine);
		}
		free(body);
		json_decref(got);
		taken_free(&t);
		http_req_free(r);
	}
	botocore_lines_free(lines, n);
	json_decref(arr);
}

/* reference/aws.md 1.3's captured body, as a constant. */
T_TEST(test_sns_reference_body)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	const struct sns_case *sc = &sns_cases[0];
	struct http_req *r;
	const char *b, *want = "Action=Publish&Version=2010-03-31&TopicArn="
	    "arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Abcdad-events&"
	    "Subject=bcdad+import+done&Message=%7B%22status%22%3A%22"
	    "COMPLETED%22%7D&MessageAttributes.entry.1.Name=kind&"
	    "MessageAttributes.entry.1.Value.DataType=String&"
	    "MessageAttributes.entry.1.Value.StringValue=import";
	size_t len;

	r = sns_publish(NULL, "us-east-1", sc->topic, sc->subject,
	    sc->message, sc->attrs, sc->nattrs, NULL, &c, NOW);
	T_ASSERT(r != NULL);
	if (r == NULL)
		return;
	b = http_req_body_mem(r, &len);
	T_ASSERT(b != NULL && len == strlen(want) && memcmp(b, want, len) == 0);
	http_req_free(r);
}

/* A FIFO topic's two members, last, in botocore's order; bad ids refused. */
T_TEST(test_sns_fifo)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	struct sns_fifo ok = { "A9994-7-1764460800-DONE", "A9994" };
	struct sns_fifo nogroup = { "x", NULL }, space = { "a b", "g" };
	const char *b, *tail = "&MessageDeduplicationId=A9994-7-1764460800-"
	    "DONE&MessageGroupId=A9994";
	struct http_req *r;
	char long_id[130];
	size_t len;

	T_EQ_INT(sns_topic_fifo("arn:aws:sns:us-east-1:1:t.fifo"), 1);
	T_EQ_INT(sns_topic_fifo(TOPIC_ARN), 0);
	T_EQ_INT(sns_topic_fifo(".fifo"), 0);
	r = sns_publish(NULL, "us-east-1", TOPIC_ARN ".fifo", NULL, "m", NULL,
	    0, &ok, &c, NOW);
	T_ASSERT(r != NULL);
	if (r != NULL) {
		b = http_req_body_mem(r, &len);
		T_ASSERT(len > strlen(tail) && memcmp(b + len - strlen(tail),
		    tail, strlen(tail)) == 0);
		http_req_free(r);
	}
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", NULL, 0,
	    &nogroup, &c, NOW) == NULL);
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", NULL, 0,
	    &space, &c, NOW) == NULL);
	memset(long_id, 'x', 129);
	long_id[129] = '\0';
	ok.dedup_id = long_id;
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", NULL, 0,
	    &ok, &c, NOW) == NULL);
	long_id[128] = '\0';
	r = sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", NULL, 0, &ok,
	    &c, NOW);
	T_ASSERT(r != NULL);
	http_req_free(r);
}

T_TEST(test_sns_checks)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	char s99[100], s100[101], big[SNS_MESSAGE_MAX + 2], e99[2 * 99 + 1];
	struct sns_attr a[SNS_ATTRS_MAX + 1], dup[2] = {
		{ "kind", "a" }, { "kind", "b" } };
	struct http_req *r;
	size_t i;

	memset(s99, 'x', 99);
	s99[99] = '\0';
	memset(s100, 'x', 100);
	s100[100] = '\0';
	for (i = 0; i < 99; i++)
		memcpy(e99 + 2 * i, "\xc3\xa9", 2);
	e99[2 * 99] = '\0';
	T_EQ_INT(sns_check_subject("bcdad import done"), 0);
	T_EQ_INT(sns_check_subject(s99), 0);
	T_EQ_INT(sns_check_subject(s100), -EINVAL);
	/* Characters, not bytes: 99 two-byte characters are fine. */
	T_EQ_INT(sns_check_subject(e99), 0);
	T_EQ_INT(sns_check_subject(""), -EINVAL);
	T_EQ_INT(sns_check_subject(NULL), -EINVAL);
	T_EQ_INT(sns_check_subject("two\nlines"), -EINVAL);
	T_EQ_INT(sns_check_subject("cr\r"), -EINVAL);
	T_EQ_INT(sns_check_subject("tab\there"), -EINVAL);
	T_EQ_INT(sns_check_subject("del\x7f"), -EINVAL);
	T_EQ_INT(sns_check_subject("c1 \xc2\x85"), -EINVAL);	/* NEL */
	T_EQ_INT(sns_check_subject("ls \xe2\x80\xa8"), -EINVAL);
	T_EQ_INT(sns_check_subject("bad \xc3"), -EINVAL);
	T_EQ_INT(sns_check_subject("overlong \xc0\xaf"), -EINVAL);
	T_EQ_INT(sns_check_subject("surrogate \xed\xa0\x80"), -EINVAL);

	memset(big, 'm', SNS_MESSAGE_MAX);
	big[SNS_MESSAGE_MAX] = '\0';
	T_EQ_INT(sns_check_message(big), 0);
	big[SNS_MESSAGE_MAX] = 'm';
	big[SNS_MESSAGE_MAX + 1] = '\0';
	T_EQ_INT(sns_check_message(big), -EINVAL);
	T_EQ_INT(sns_check_message("{\"a\":1}\nline\r\n\ttab"), 0);
	T_EQ_INT(sns_check_message(""), -EINVAL);
	T_EQ_INT(sns_check_message("bell \a"), -EINVAL);
	T_EQ_INT(sns_check_message("bad \xff"), -EINVAL);
	T_EQ_INT(sns_check_message("nonchar \xef\xbf\xbe"), -EINVAL);
	T_EQ_INT(sns_check_message("emoji \xf0\x9f\x98\x80"), 0);

	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "kind", "x" }), 0);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "a.b-c_D9", "x" }), 0);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "k", "" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "a b", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ ".a", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "a.", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "a..b", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "AWS.x", "x" }), -EINVAL);
	T_EQ_INT(sns_check_attr(&(struct sns_attr){ "amazon.x", "x" }),
	    -EINVAL);

	/* sns_publish refuses what the checks refuse. */
	errno = 0;
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, "a\nb", "m", NULL,
	    0, NULL, &c, NOW) == NULL);
	T_EQ_INT(errno, EINVAL);
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, big, NULL,
	    0, NULL, &c, NOW) == NULL);
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "", NULL, 0,
	    NULL, &c, NOW) == NULL);
	T_ASSERT(sns_publish(NULL, "us-east-1", NULL, NULL, "m", NULL, 0, NULL,
	    &c, NOW) == NULL);
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", dup, 2,
	    NULL, &c, NOW) == NULL);
	for (i = 0; i <= SNS_ATTRS_MAX; i++) {
		static char names[SNS_ATTRS_MAX + 1][8];

		snprintf(names[i], sizeof(names[i]), "a%zu", i);
		a[i].name = names[i];
		a[i].value = "v";
	}
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", a,
	    SNS_ATTRS_MAX + 1, NULL, &c, NOW) == NULL);
	r = sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, "m", a,
	    SNS_ATTRS_MAX, NULL, &c, NOW);
	T_ASSERT(r != NULL);
	http_req_free(r);
	/* The largest message fits alone, not with an attribute. */
	big[SNS_MESSAGE_MAX] = '\0';
	r = sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, big, NULL, 0, NULL,
	    &c, NOW);
	T_ASSERT(r != NULL);
	http_req_free(r);
	T_ASSERT(sns_publish(NULL, "us-east-1", TOPIC_ARN, NULL, big, a, 1,
	    NULL, &c, NOW) == NULL);
}

T_TEST(test_hl_start_checks)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	struct hl_import im;
	struct http_req *r;

	im = imports[0];
	im.kms_key_id = NULL;
	errno = 0;
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	T_EQ_INT(errno, EINVAL);
	im = imports[0];
	im.client_token = NULL;
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	im.client_token = "has_underscore";
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	im.client_token = "a234567890123456789012345678901234567890123456789"
	    "0123456789012345";	/* 65 */
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	im = imports[0];
	im.datastore_id = "";
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	im = imports[0];
	im.job_name = "";
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	im = imports[0];
	im.role_arn = "bad \xff utf-8";
	T_ASSERT(hl_start_import(NULL, "us-east-1", &im, &c, NOW) == NULL);
	T_ASSERT(hl_describe_import(NULL, "us-east-1", DS_ID, "", &c, NOW)
	    == NULL);
	T_ASSERT(hl_describe_datastore(NULL, "us-east-1", NULL, &c, NOW)
	    == NULL);
	T_ASSERT(sm_get_secret_value(NULL, "us-east-1", "", &c, NOW) == NULL);
	/* A trailing slash on an endpoint is not doubled. */
	r = hl_describe_datastore(LOCAL "/", "us-east-1", DS_ID, &c, NOW);
	T_ASSERT(r != NULL);
	if (r != NULL)
		T_EQ_STR(http_req_url(r), LOCAL "/");
	http_req_free(r);
	/* China's partition. */
	r = sm_get_secret_value(NULL, "cn-north-1", "s", &c, NOW);
	T_ASSERT(r != NULL);
	if (r != NULL)
		T_EQ_STR(http_req_url(r),
		    "https://secretsmanager.cn-north-1.amazonaws.com.cn/");
	http_req_free(r);
}

static struct http_resp
resp(long status, const char *body)
{
	struct http_resp r;

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.result = CURLE_OK;
	r.body = (char *)body;
	r.body_len = body ? strlen(body) : 0;
	return r;
}

T_TEST(test_hl_parse_start)
{
	struct http_resp r = resp(200, "{\"JobId\":\"" JOB_ID "\","
	    "\"JobStatus\":\"SUBMITTED\",\"DatastoreId\":\"" DS_ID "\"}");
	char *id, st[32];

	T_EQ_INT(hl_parse_start(&r, &id, st), 0);
	T_EQ_STR(id, JOB_ID);
	T_EQ_STR(st, "SUBMITTED");
	free(id);
	r = resp(200, "{\"JobStatus\":\"SUBMITTED\"}");
	T_EQ_INT(hl_parse_start(&r, &id, st), -EBADMSG);
	T_ASSERT(id == NULL);
	r = resp(200, "{\"JobId\":\"x\"}");
	T_EQ_INT(hl_parse_start(&r, &id, st), -EBADMSG);
	r = resp(200, "not json");
	T_EQ_INT(hl_parse_start(&r, &id, st), -EBADMSG);
	r = resp(200, "[1]");
	T_EQ_INT(hl_parse_start(&r, &id, st), -EBADMSG);
	r = resp(200, NULL);
	T_EQ_INT(hl_parse_start(&r, &id, st), -EBADMSG);
	r = resp(400, "{\"__type\":\"ValidationException\"}");
	T_EQ_INT(hl_parse_start(&r, &id, st), -EIO);
	T_ASSERT(id == NULL);
	r = resp(0, NULL);
	r.result = CURLE_COULDNT_CONNECT;
	T_EQ_INT(hl_parse_start(&r, &id, st), -EIO);
}

#define DESCRIBE(status, extra) \
	"{\"ImportJobProperties\":{\"JobId\":\"" JOB_ID "\"," \
	"\"JobName\":\"bcdad-20260115\",\"JobStatus\":\"" status "\"," \
	"\"SubmitTime\":1768478400.125,\"DatastoreId\":\"" DS_ID "\"," \
	"\"InputDataConfig\":{\"S3Uri\":\"s3://my-bucket/in/\"}," \
	"\"JobOutputDataConfig\":{\"S3Configuration\":{\"S3Uri\":" \
	"\"s3://my-bucket/out/\",\"KmsKeyId\":\"" KMS_ARN "\"}}," \
	"\"DataAccessRoleArn\":\"" ROLE_ARN "\"" extra "}}"

T_TEST(test_hl_parse_describe_statuses)
{
	static const struct {
		const char	*body;
		const char	*status;
		int		 terminal, failed, with_errors;
	} cases[] = {
		{ DESCRIBE("SUBMITTED", ""), "SUBMITTED", 0, 0, 0 },
		{ DESCRIBE("IN_PROGRESS", ""), "IN_PROGRESS", 0, 0, 0 },
		{ DESCRIBE("QUEUED", ""), "QUEUED", 0, 0, 0 },
		{ DESCRIBE("CANCEL_SUBMITTED", ""), "CANCEL_SUBMITTED", 0, 0,
		    0 },
		{ DESCRIBE("CANCEL_IN_PROGRESS", ""), "CANCEL_IN_PROGRESS", 0,
		    0, 0 },
		{ DESCRIBE("SOMETHING_NEW_IN_2027", ""),
		    "SOMETHING_NEW_IN_2027", 0, 0, 0 },
		{ DESCRIBE("COMPLETED", ",\"EndTime\":1768482000"),
		    "COMPLETED", 1, 0, 0 },
		{ DESCRIBE("COMPLETED_WITH_ERRORS", ",\"EndTime\":1768482000"),
		    "COMPLETED_WITH_ERRORS", 1, 0, 1 },
		{ DESCRIBE("FAILED", ",\"Message\":\"Access denied to "
		    "s3://my-bucket/in/\",\"EndTime\":1768482000"), "FAILED",
		    1, 1, 0 },
		{ DESCRIBE("CANCEL_COMPLETED", ""), "CANCEL_COMPLETED", 1, 1,
		    0 },
		{ DESCRIBE("CANCEL_FAILED", ""), "CANCEL_FAILED", 1, 1, 0 },
	};
	struct hl_job_status js;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_resp r = resp(200, cases[i].body);

		if (hl_parse_describe(&r, &js) != 0) {
			T_FAIL("%s: not parsed", cases[i].status);
			continue;
		}
		T_EQ_STR(js.status, cases[i].status);
		if (js.terminal != cases[i].terminal ||
		    js.failed != cases[i].failed ||
		    js.with_errors != cases[i].with_errors)
			T_FAIL("%s: terminal %d failed %d with_errors %d",
			    cases[i].status, js.terminal, js.failed,
			    js.with_errors);
		T_ASSERT(js.submit_time == 1768478400.125);
		T_ASSERT(js.end_time == (cases[i].terminal &&
		    strncmp(cases[i].status, "CANCEL", 6) != 0 ?
		    1768482000.0 : 0.0));
		/* No progress report: every count unknown. */
		T_EQ_INT(js.scanned_files, -1);
		T_EQ_INT(js.resources_imported, -1);
		T_EQ_INT(js.files_customer_error, -1);
		if (strcmp(cases[i].status, "FAILED") == 0)
			T_EQ_STR(js.message, "Access denied to "
			    "s3://my-bucket/in/");
		else
			T_EQ_STR(js.message, "");
	}
}

T_TEST(test_hl_parse_describe_progress)
{
	struct http_resp r = resp(200, DESCRIBE("COMPLETED_WITH_ERRORS",
	    ",\"EndTime\":1768482000.5,\"Message\":\"2 resources failed "
	    "validation\",\"ValidationLevel\":\"strict\","
	    "\"JobProgressReport\":{\"TotalNumberOfScannedFiles\":12,"
	    "\"TotalSizeOfScannedFilesInMB\":1536.25,"
	    "\"TotalNumberOfImportedFiles\":11,"
	    "\"TotalNumberOfResourcesScanned\":120000,"
	    "\"TotalNumberOfResourcesImported\":119998,"
	    "\"TotalNumberOfResourcesWithCustomerError\":2,"
	    "\"TotalNumberOfFilesReadWithCustomerError\":1,"
	    "\"Throughput\":3.5}"));
	struct hl_job_status js;

	T_EQ_INT(hl_parse_describe(&r, &js), 0);
	T_EQ_STR(js.status, "COMPLETED_WITH_ERRORS");
	T_ASSERT(js.terminal && !js.failed && js.with_errors);
	T_EQ_STR(js.message, "2 resources failed validation");
	T_EQ_INT(js.scanned_files, 12);
	T_EQ_INT(js.imported_files, 11);
	T_EQ_INT(js.resources_scanned, 120000);
	T_EQ_INT(js.resources_imported, 119998);
	T_EQ_INT(js.resources_customer_error, 2);
	T_EQ_INT(js.files_customer_error, 1);
	T_ASSERT(js.end_time == 1768482000.5);
}

T_TEST(test_hl_parse_describe_odd)
{
	char msg[2100], body[2600];
	struct http_resp r;
	struct hl_job_status js;
	size_t i;

	/* A long Message is cut on a character boundary. */
	for (i = 0; i + 2 <= 2048; i += 2)
		memcpy(msg + i, "\xc3\xa9", 2);
	msg[i] = '\0';
	snprintf(body, sizeof(body), "{\"ImportJobProperties\":{\"JobStatus\":"
	    "\"FAILED\",\"SubmitTime\":1,\"Message\":\"xy%s\"}}", msg);
	r = resp(200, body);
	T_EQ_INT(hl_parse_describe(&r, &js), 0);
	T_EQ_INT(strlen(js.message), 510);	/* "xy" + 254 * 2 */
	T_ASSERT(js.failed);
	/* A status longer than the field is cut, still unknown. */
	r = resp(200, "{\"ImportJobProperties\":{\"JobStatus\":\"A_VERY_LONG_"
	    "STATUS_NAME_FROM_THE_FUTURE_THAT_GOES_ON\"}}");
	T_EQ_INT(hl_parse_describe(&r, &js), 0);
	T_EQ_INT(strlen(js.status), 39);
	T_ASSERT(!js.terminal);
	T_ASSERT(js.submit_time == 0);
	r = resp(200, "{\"ImportJobProperties\":{}}");
	T_EQ_INT(hl_parse_describe(&r, &js), -EBADMSG);
	r = resp(200, "{\"JobStatus\":\"COMPLETED\"}");
	T_EQ_INT(hl_parse_describe(&r, &js), -EBADMSG);
	r = resp(200, "{\"ImportJobProperties\":{\"JobStatus\":7}}");
	T_EQ_INT(hl_parse_describe(&r, &js), -EBADMSG);
	r = resp(200, "{\"ImportJobProperties\":");
	T_EQ_INT(hl_parse_describe(&r, &js), -EBADMSG);
	r = resp(400, "{\"__type\":\"ResourceNotFoundException\"}");
	T_EQ_INT(hl_parse_describe(&r, &js), -EIO);
	T_ASSERT(!js.terminal);
}

T_TEST(test_hl_parse_datastore)
{
	struct http_resp r = resp(200, "{\"DatastoreProperties\":{"
	    "\"DatastoreId\":\"" DS_ID "\",\"DatastoreArn\":\"arn:aws:"
	    "healthlake:us-east-1:123456789012:datastore/fhir/" DS_ID "\","
	    "\"DatastoreName\":\"bcdad\",\"DatastoreStatus\":\"ACTIVE\","
	    "\"CreatedAt\":1.7e9,\"DatastoreTypeVersion\":\"R4\","
	    "\"DatastoreEndpoint\":\"https://healthlake.us-east-1.amazonaws."
	    "com/datastore/" DS_ID "/r4/\"}}");
	char st[32];

	T_EQ_INT(hl_parse_datastore(&r, st), 0);
	T_EQ_STR(st, "ACTIVE");
	r = resp(200, "{\"DatastoreProperties\":{\"DatastoreStatus\":"
	    "\"CREATING\"}}");
	T_EQ_INT(hl_parse_datastore(&r, st), 0);
	T_EQ_STR(st, "CREATING");
	r = resp(200, "{\"DatastoreProperties\":{}}");
	T_EQ_INT(hl_parse_datastore(&r, st), -EBADMSG);
	r = resp(400, "{\"__type\":\"ResourceNotFoundException\","
	    "\"Message\":\"Datastore " DS_ID " does not exist\"}");
	T_EQ_INT(hl_parse_datastore(&r, st), -EIO);
	T_EQ_STR(st, "");
}

/* HealthLake's and Secrets Manager's errors, read by aws.c. */
T_TEST(test_json_errors)
{
	static const struct {
		long		 status;
		const char	*body;
		const char	*code;
		const char	*message;
		int		 retryable;
	} cases[] = {
		{ 400, "{\"__type\":\"ThrottlingException\",\"Message\":"
		    "\"Rate exceeded\"}", "ThrottlingException",
		    "Rate exceeded", 1 },
		{ 400, "{\"__type\":\"com.amazonaws.healthlake#"
		    "ValidationException\",\"message\":\"1 validation error "
		    "detected: Value at 'clientToken' failed\"}",
		    "ValidationException", "1 validation error detected: "
		    "Value at 'clientToken' failed", 0 },
		{ 400, "{\"__type\":\"AccessDeniedException\",\"Message\":"
		    "\"Insufficient access to perform this action.\"}",
		    "AccessDeniedException",
		    "Insufficient access to perform this action.", 0 },
		{ 400, "{\"__type\":\"ResourceNotFoundException\",\"Message\":"
		    "\"Datastore does not exist\"}",
		    "ResourceNotFoundException", "Datastore does not exist",
		    0 },
		{ 500, "{\"__type\":\"InternalServerException\",\"Message\":"
		    "\"x\"}", "InternalServerException", "x", 1 },
		{ 400, "{\"__type\":\"ResourceNotFoundException\",\"Message\":"
		    "\"Secrets Manager can't find the specified secret.\"}",
		    "ResourceNotFoundException",
		    "Secrets Manager can't find the specified secret.", 0 },
		{ 400, "{\"__type\":\"DecryptionFailure\",\"Message\":\"KMS\"}",
		    "DecryptionFailure", "KMS", 0 },
		{ 500, "{\"__type\":\"InternalServiceError\"}",
		    "InternalServiceError", "", 1 },
		{ 403, "{\"__type\":\"UnrecognizedClientException:\","
		    "\"message\":\"The security token included in the request "
		    "is invalid.\"}", "UnrecognizedClientException",
		    "The security token included in the request is invalid.",
		    0 },
	};
	struct hl_job_status js;
	struct aws_error e;
	char *id, *cs;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_resp r = resp(cases[i].status, cases[i].body);

		T_EQ_INT(hl_parse_start(&r, &id, (char[32]){ 0 }), -EIO);
		T_EQ_INT(hl_parse_describe(&r, &js), -EIO);
		T_EQ_INT(sm_parse_bcda_secret(&r, &id, &cs), -EIO);
		T_ASSERT(id == NULL && cs == NULL);
		aws_parse_error(&r, &e);
		T_EQ_STR(e.code, cases[i].code);
		T_EQ_STR(e.message, cases[i].message);
		if (aws_retryable(&r, &e) != cases[i].retryable)
			T_FAIL("%s: retryable %d", cases[i].code,
			    aws_retryable(&r, &e));
	}
}

T_TEST(test_sns_parse_publish)
{
	struct http_resp r = resp(200, "<PublishResponse xmlns=\"http://sns."
	    "amazonaws.com/doc/2010-03-31/\">\n  <PublishResult>\n    "
	    "<MessageId>94f20ce6-13c5-43a0-9a9e-ca52d816e90b</MessageId>\n"
	    "  </PublishResult>\n  <ResponseMetadata>\n    <RequestId>"
	    "f187a3c1-376f-11df-8963-01868b7c937a</RequestId>\n  "
	    "</ResponseMetadata>\n</PublishResponse>\n");
	struct aws_error e;
	char id[128];

	T_EQ_INT(sns_parse_publish(&r, id), 0);
	T_EQ_STR(id, "94f20ce6-13c5-43a0-9a9e-ca52d816e90b");
	/* FIFO topics add a SequenceNumber. */
	r = resp(200, "<PublishResponse><PublishResult><SequenceNumber>"
	    "10000000000000003000</SequenceNumber><MessageId>m-1</MessageId>"
	    "</PublishResult></PublishResponse>");
	T_EQ_INT(sns_parse_publish(&r, id), 0);
	T_EQ_STR(id, "m-1");
	r = resp(200, "<PublishResponse><PublishResult/></PublishResponse>");
	T_EQ_INT(sns_parse_publish(&r, id), -EBADMSG);
	r = resp(200, "<Other><MessageId>x</MessageId></Other>");
	T_EQ_INT(sns_parse_publish(&r, id), -EBADMSG);
	T_EQ_STR(id, "");
	r = resp(200, "<PublishResponse><MessageId>x");
	T_EQ_INT(sns_parse_publish(&r, id), -EBADMSG);
	r = resp(200, NULL);
	T_EQ_INT(sns_parse_publish(&r, id), -EBADMSG);

	r = resp(403, "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/"
	    "2010-03-31/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>"
	    "AuthorizationError</Code>\n    <Message>User: arn:aws:sts::"
	    "123456789012:assumed-role/bcdad/i-0 is not authorized to perform:"
	    " SNS:Publish on resource: " TOPIC_ARN "</Message>\n  </Error>\n"
	    "  <RequestId>9d2d3b0e-1234</RequestId>\n</ErrorResponse>\n");
	T_EQ_INT(sns_parse_publish(&r, id), -EIO);
	aws_parse_error(&r, &e);
	T_EQ_STR(e.code, "AuthorizationError");
	T_ASSERT(strstr(e.message, "SNS:Publish") != NULL);
	T_ASSERT(!aws_retryable(&r, &e));
	r = resp(400, "<ErrorResponse><Error><Type>Sender</Type><Code>"
	    "Throttling</Code><Message>Rate exceeded</Message></Error>"
	    "</ErrorResponse>");
	T_EQ_INT(sns_parse_publish(&r, id), -EIO);
	aws_parse_error(&r, &e);
	T_EQ_STR(e.code, "Throttling");
	T_ASSERT(aws_retryable(&r, &e));
	r = resp(404, "<ErrorResponse><Error><Type>Sender</Type><Code>"
	    "NotFound</Code><Message>Topic does not exist</Message></Error>"
	    "</ErrorResponse>");
	T_EQ_INT(sns_parse_publish(&r, id), -EIO);
	aws_parse_error(&r, &e);
	T_EQ_STR(e.code, "NotFound");
	T_ASSERT(!aws_retryable(&r, &e));
	/* Server text cannot forge a log line or break the status table. */
	r = resp(403, "<Error><Code>Access&#10;Denied</Code><Message>no\n"
	    "2026-01-01 info: job 1 DONE&#9;\xc3\xa9</Message></Error>");
	aws_parse_error(&r, &e);
	T_EQ_STR(e.code, "Access?Denied");
	T_EQ_STR(e.message, "no?2026-01-01 info: job 1 DONE???");
	r = resp(400, "{\"__type\":\"Bad\\nType\",\"message\":\"a\\tb\"}");
	aws_parse_error(&r, &e);
	T_EQ_STR(e.code, "Bad?Type");
	T_EQ_STR(e.message, "a?b");
	/* An <ErrorResponse> with a 200 is an error all the same. */
	r = resp(200, "<ErrorResponse><Error><Code>InternalError</Code>"
	    "</Error></ErrorResponse>");
	T_EQ_INT(sns_parse_publish(&r, id), -EIO);
}

#define SECRET_ANSWER(ss) \
	"{\"ARN\":\"arn:aws:secretsmanager:us-east-1:123456789012:secret:" \
	"bcdad/A9994-AbCdEf\",\"CreatedDate\":1.768478400123E9,\"Name\":" \
	"\"bcdad/A9994\",\"SecretString\":" ss ",\"VersionId\":" \
	"\"a1b2c3d4-5678-90ab-cdef-EXAMPLE11111\",\"VersionStages\":" \
	"[\"AWSCURRENT\"]}"

T_TEST(test_sm_parse_secret)
{
	static const struct {
		const char	*body;
		int		 rc;
	} bad[] = {
		{ SECRET_ANSWER("\"not json\""), -EINVAL },
		{ SECRET_ANSWER("\"[\\\"client_id\\\"]\""), -EINVAL },
		{ SECRET_ANSWER("\"{\\\"client_id\\\":\\\"a\\\"}\""), -EINVAL },
		{ SECRET_ANSWER("\"{\\\"client_secret\\\":\\\"a\\\"}\""),
		    -EINVAL },
		{ SECRET_ANSWER("\"{\\\"client_id\\\":\\\"\\\","
		    "\\\"client_secret\\\":\\\"s\\\"}\""), -EINVAL },
		{ SECRET_ANSWER("\"{\\\"client_id\\\":1,"
		    "\\\"client_secret\\\":\\\"s\\\"}\""), -EINVAL },
		{ SECRET_ANSWER("\"{\\\"client_id\\\":\\\"a\\\\u0000b\\\","
		    "\\\"client_secret\\\":\\\"s\\\"}\""), -EINVAL },
		{ SECRET_ANSWER("\"\""), -EINVAL },
		/* A binary secret: no SecretString. */
		{ "{\"Name\":\"n\",\"SecretBinary\":\"eyJhIjoxfQ==\"}",
		    -EBADMSG },
		{ SECRET_ANSWER("{\"client_id\":\"a\",\"client_secret\":"
		    "\"b\"}"), -EBADMSG },
		{ "{\"SecretString\":", -EBADMSG },
		{ "", -EBADMSG },
	};
	struct http_resp r = resp(200, SECRET_ANSWER(
	    "\"{\\\"client_id\\\":\\\"2462c96b-6427-4efb-aed7-118e20c2e997\\\","
	    "\\\"client_secret\\\":\\\"8ae4b4e1c4b0c1f6e6d2a3b7f9c0e5d4a1b2"
	    "c3d4e5f6a7b8\\\\\\\"\\\\\\\\/\\\",\\\"note\\\":\\\"rotated\\\"}\""));
	char *id, *secret;
	size_t i;

	T_EQ_INT(sm_parse_bcda_secret(&r, &id, &secret), 0);
	/* The version's CreatedDate: when the 90 days of the secret began. */
	T_EQ_INT(sm_parse_created(&r), 1768478400);
	T_EQ_STR(id, "2462c96b-6427-4efb-aed7-118e20c2e997");
	/* JSON escapes inside the JSON string are undone twice. */
	T_EQ_STR(secret, "8ae4b4e1c4b0c1f6e6d2a3b7f9c0e5d4a1b2c3d4e5f6a7b8"
	    "\"\\/");
	if (id != NULL)
		explicit_bzero(id, strlen(id));
	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
	free(id);
	free(secret);
	/* A CreatedDate no time_t holds is none (fuzz_aws found 0.7e99). */
	r = resp(200, "{\"CreatedDate\":0.7e99}");
	T_EQ_INT(sm_parse_created(&r), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = resp(200, bad[i].body);
		if (strstr(bad[i].body, "CreatedDate") == NULL)
			T_EQ_INT(sm_parse_created(&r), 0);
		if (sm_parse_bcda_secret(&r, &id, &secret) != bad[i].rc)
			T_FAIL("case %zu: rc %d, want %d", i,
			    sm_parse_bcda_secret(&r, &id, &secret), bad[i].rc);
		T_ASSERT(id == NULL && secret == NULL);
	}
	r = resp(400, "{\"__type\":\"ResourceNotFoundException\",\"Message\":"
	    "\"Secrets Manager can't find the specified secret.\"}");
	T_EQ_INT(sm_parse_bcda_secret(&r, &id, &secret), -EIO);
	T_ASSERT(id == NULL && secret == NULL);
}

T_TEST(test_client_token)
{
	char a[HL_CLIENT_TOKEN_MAX + 1], b[HL_CLIENT_TOKEN_MAX + 1];
	char long_profile[300];
	const char *p;
	static const struct {
		int64_t		 id;
		const char	*profile;
	} in[] = {
		{ 1, "A9994" }, { 2, "A9994" }, { 1, "A9995" }, { 12, "A9994" },
		{ 1, "2A9994" }, { 0, "" }, { INT64_MAX, "A9994" },
		{ -1, "A9994" }, { 1, "sandbox extended" },
		{ 1, "A9994\n1" }, { 11, "A9994" },
	};
	size_t i, j;

	memset(long_profile, 'p', sizeof(long_profile) - 1);
	long_profile[sizeof(long_profile) - 1] = '\0';
	T_EQ_INT(hl_client_token(42, "A9994", a), 0);
	T_EQ_INT(hl_client_token(42, "A9994", b), 0);
	T_EQ_STR(a, b);
	T_ASSERT(strncmp(a, "bcdad-42-", 9) == 0);
	T_EQ_INT(strlen(a), 9 + 32);
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		T_EQ_INT(hl_client_token(in[i].id, in[i].profile, a), 0);
		T_ASSERT(strlen(a) >= 1 && strlen(a) <= HL_CLIENT_TOKEN_MAX);
		for (p = a; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
			    *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			    *p == '-'))
				T_FAIL("token %s: '%c'", a, *p);
		for (j = 0; j < i; j++) {
			T_EQ_INT(hl_client_token(in[j].id, in[j].profile, b),
			    0);
			if (strcmp(a, b) == 0)
				T_FAIL("tokens %zu and %zu both %s", i, j, a);
		}
	}
	T_EQ_INT(hl_client_token(INT64_MAX, long_profile, a), 0);
	T_ASSERT(strlen(a) <= HL_CLIENT_TOKEN_MAX);
	T_EQ_INT(hl_client_token(-1, NULL, a), 0);
	T_ASSERT(strlen(a) <= HL_CLIENT_TOKEN_MAX);
	/* A known answer: the derivation must never change. */
	T_EQ_INT(hl_client_token(42, "A9994", a), 0);
	T_EQ_STR(a, "bcdad-42-" KNOWN_TOKEN_HASH);
}

T_MAIN("awsapi",
    T_CASE(test_request_shapes),
    T_CASE(test_reference_signatures),
    T_CASE(test_botocore_signatures),
    T_CASE(test_botocore_bodies),
    T_CASE(test_sns_reference_body),
    T_CASE(test_sns_checks),
    T_CASE(test_sns_fifo),
    T_CASE(test_hl_start_checks),
    T_CASE(test_hl_parse_start),
    T_CASE(test_hl_parse_describe_statuses),
    T_CASE(test_hl_parse_describe_progress),
    T_CASE(test_hl_parse_describe_odd),
    T_CASE(test_hl_parse_datastore),
    T_CASE(test_json_errors),
    T_CASE(test_sns_parse_publish),
    T_CASE(test_sm_parse_secret),
    T_CASE(test_client_token))
