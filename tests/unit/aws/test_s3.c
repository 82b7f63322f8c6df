/*
 * Tests of lib/aws/s3.c and the parts of lib/aws/aws.c under it.  Every S3 request
 * shape bcdad sends is built by the real s3_* functions, taken apart
 * (method, URL, header lines, body) and signed again by botocore
 * (tests/sigv4_botocore.py) for a byte-for-byte comparison of the
 * Authorization header; then the reading of S3 and JSON-protocol answers,
 * part sizes and object keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "aws/s3.h"
#include "aws/upload.h"
#include "t.h"
#include "botocore.h"

#define NOW		((time_t)1768478400)	/* 20260115T120000Z */
#define NOW_STAMP	"20260115T120000Z"
#define MIB		(1024ull * 1024)
#define KMS_ARN \
	"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#define XMLNS		"http://s3.amazonaws.com/doc/2006-03-01/"
/* Base64-ish upload ids (some emulators) need encoding in the query. */
#define UPLOAD_ID	"2~Ab.c_d-E+f/g=h"
#define UPLOAD_ID_ENC	"2~Ab.c_d-E%2Bf%2Fg%3Dh"
/* A BCDA transactionTime; upload_key writes it without colons. */
#define TT		"2026-11-26T04:41:29.49402Z"
#define TT_BASIC	"2026-11-26T044129.49402Z"
#define KEY1 \
	"exports/A9994/" TT_BASIC "/ExplanationOfBenefit-1.ndjson"
#define KEY1_ENC	KEY1
/* Any key must work: ':', space, '+' and UTF-8 are encoded. */
#define KEY2 \
	"exports/A9994/" TT "/odd name+plus \xc3\xa9.ndjson"
#define KEY2_ENC \
	"exports/A9994/2026-11-26T04%3A41%3A29.49402Z/" \
	"odd%20name%2Bplus%20%C3%A9.ndjson"
#define AWS_BASE	"https://my-bucket.s3.us-east-1.amazonaws.com"
#define LOCAL_BASE	"http://127.0.0.1:4566"

static char ex_akid[] = "AKIDEXAMPLE";
static char ex_secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static char ex_token[] = "IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=chars";

static const struct s3_loc loc_aws = { NULL, "us-east-1", "my-bucket", NULL };
static const struct s3_loc loc_aws_kms = {
	NULL, "us-east-1", "my-bucket", KMS_ARN };
static const struct s3_loc loc_local = {
	LOCAL_BASE, "us-east-1", "my-bucket", NULL };
static const struct s3_loc loc_local_kms = {
	LOCAL_BASE, "us-east-1", "my-bucket", "alias/bcdad" };
/* A bucket with dots goes path style on AWS too (TLS wildcard). */
static const struct s3_loc loc_dotted = {
	NULL, "eu-west-2", "my.dotted.bucket", NULL };
/* China's regions are under amazonaws.com.cn. */
static const struct s3_loc loc_china = {
	NULL, "cn-north-1", "my-bucket", NULL };
static const struct s3_loc loc_china_dotted = {
	NULL, "cn-northwest-1", "my.dotted.bucket", NULL };

/* ETags exactly as S3 returns them, quotes included. */
static const char *const etags[3] = {
	"\"0f343b0931126a20f133d67c2b018a3b\"",
	"\"b026324c6904b2a9cb4b88d6d61c81d1\"",
	"\"26ab0db90d72e28ad0ba1e22ee510510\"",
};

#define COMPLETE_XML \
	"<CompleteMultipartUpload xmlns=\"" XMLNS "\">" \
	"<Part><PartNumber>1</PartNumber>" \
	"<ETag>&quot;0f343b0931126a20f133d67c2b018a3b&quot;</ETag></Part>" \
	"<Part><PartNumber>2</PartNumber>" \
	"<ETag>&quot;b026324c6904b2a9cb4b88d6d61c81d1&quot;</ETag></Part>" \
	"<Part><PartNumber>3</PartNumber>" \
	"<ETag>&quot;26ab0db90d72e28ad0ba1e22ee510510&quot;</ETag></Part>" \
	"</CompleteMultipartUpload>"
/* What botocore sends for the same parts (reference/aws.md 1.5). */
#define COMPLETE_XML_RAW \
	"<CompleteMultipartUpload xmlns=\"" XMLNS "\">" \
	"<Part><PartNumber>1</PartNumber>" \
	"<ETag>\"0f343b0931126a20f133d67c2b018a3b\"</ETag></Part>" \
	"<Part><PartNumber>2</PartNumber>" \
	"<ETag>\"b026324c6904b2a9cb4b88d6d61c81d1\"</ETag></Part>" \
	"<Part><PartNumber>3</PartNumber>" \
	"<ETag>\"26ab0db90d72e28ad0ba1e22ee510510\"</ETag></Part>" \
	"</CompleteMultipartUpload>"

/* The export file the file-bodied requests read from. */
#define FILE_LEN	300

static int	 data_fd = -1;
static char	 data[FILE_LEN];

/* Creates the data file once; aborts if it cannot. */
static int
data_file(void)
{
	char tmp[] = "/tmp/test_s3.XXXXXX";
	size_t i;

	if (data_fd >= 0)
		return data_fd;
	for (i = 0; i < FILE_LEN; i++)
		data[i] = i % 60 == 59 ? '\n' : (char)('a' + i % 26);
	memcpy(data, "{\"resourceType\":\"ExplanationOfBenefit\"}", 39);
	if ((data_fd = mkstemp(tmp)) < 0 ||
	    write(data_fd, data, FILE_LEN) != FILE_LEN) {
		perror("data file");
		abort();
	}
	unlink(tmp);
	return data_fd;
}

/* The SHA-256 of a range of the data file, computed here. */
static void
range_sha(off_t off, size_t len, char hex[SIGV4_SIG_LEN + 1])
{
	if (sigv4_sha256_hex(data + off, len, hex) != 0)
		abort();
}

/* One request shape bcdad sends. */
enum op { OP_PUT, OP_CREATE, OP_PART, OP_COMPLETE, OP_ABORT, OP_HEAD };

struct spec {
	const char		*name;
	enum op			 op;
	const struct s3_loc	*loc;
	const char		*key;
	int			 token;
	int			 part;		/* UploadPart number */
	off_t			 off;		/* file range: Put, UploadPart */
	size_t			 len;
	const char		*url;		/* the URL expected */
};

static const struct spec specs[] = {
	{ "PutObject", OP_PUT, &loc_aws, KEY1, 0, 0, 0, FILE_LEN,
	    AWS_BASE "/" KEY1_ENC },
	{ "PutObject KMS key token", OP_PUT, &loc_aws_kms, KEY2, 1, 0, 7, 100,
	    AWS_BASE "/" KEY2_ENC },
	{ "PutObject empty", OP_PUT, &loc_aws, KEY1, 1, 0, 0, 0,
	    AWS_BASE "/" KEY1_ENC },
	{ "CreateMultipartUpload", OP_CREATE, &loc_aws, KEY1, 0, 0, 0, 0,
	    AWS_BASE "/" KEY1_ENC "?uploads" },
	{ "CreateMultipartUpload KMS key token", OP_CREATE, &loc_aws_kms, KEY2,
	    1, 0, 0, 0, AWS_BASE "/" KEY2_ENC "?uploads" },
	{ "UploadPart 1", OP_PART, &loc_aws, KEY1, 0, 1, 0, 120,
	    AWS_BASE "/" KEY1_ENC "?partNumber=1&uploadId=" UPLOAD_ID_ENC },
	{ "UploadPart 10000 token", OP_PART, &loc_aws_kms, KEY2, 1, 10000, 120,
	    180, AWS_BASE "/" KEY2_ENC "?partNumber=10000&uploadId="
	    UPLOAD_ID_ENC },
	{ "CompleteMultipartUpload", OP_COMPLETE, &loc_aws, KEY1, 1, 0, 0, 0,
	    AWS_BASE "/" KEY1_ENC "?uploadId=" UPLOAD_ID_ENC },
	{ "CompleteMultipartUpload KMS", OP_COMPLETE, &loc_aws_kms, KEY2, 0, 0,
	    0, 0, AWS_BASE "/" KEY2_ENC "?uploadId=" UPLOAD_ID_ENC },
	{ "AbortMultipartUpload", OP_ABORT, &loc_aws, KEY1, 1, 0, 0, 0,
	    AWS_BASE "/" KEY1_ENC "?uploadId=" UPLOAD_ID_ENC },
	{ "AbortMultipartUpload KMS", OP_ABORT, &loc_aws_kms, KEY2, 0, 0, 0, 0,
	    AWS_BASE "/" KEY2_ENC "?uploadId=" UPLOAD_ID_ENC },
	{ "HeadObject", OP_HEAD, &loc_aws, KEY1, 0, 0, 0, 0,
	    AWS_BASE "/" KEY1_ENC },
	{ "HeadObject KMS token", OP_HEAD, &loc_aws_kms, KEY2, 1, 0, 0, 0,
	    AWS_BASE "/" KEY2_ENC },

	{ "local PutObject", OP_PUT, &loc_local, KEY1, 0, 0, 0, FILE_LEN,
	    LOCAL_BASE "/my-bucket/" KEY1_ENC },
	{ "local PutObject KMS key token", OP_PUT, &loc_local_kms, KEY2, 1, 0,
	    13, 200, LOCAL_BASE "/my-bucket/" KEY2_ENC },
	{ "local CreateMultipartUpload", OP_CREATE, &loc_local, KEY1, 1, 0, 0,
	    0, LOCAL_BASE "/my-bucket/" KEY1_ENC "?uploads" },
	{ "local CreateMultipartUpload KMS", OP_CREATE, &loc_local_kms, KEY2,
	    0, 0, 0, 0, LOCAL_BASE "/my-bucket/" KEY2_ENC "?uploads" },
	{ "local UploadPart 2", OP_PART, &loc_local, KEY1, 1, 2, 150, 150,
	    LOCAL_BASE "/my-bucket/" KEY1_ENC "?partNumber=2&uploadId="
	    UPLOAD_ID_ENC },
	{ "local UploadPart 3", OP_PART, &loc_local_kms, KEY2, 0, 3, 299, 1,
	    LOCAL_BASE "/my-bucket/" KEY2_ENC "?partNumber=3&uploadId="
	    UPLOAD_ID_ENC },
	{ "local CompleteMultipartUpload", OP_COMPLETE, &loc_local, KEY1, 0, 0,
	    0, 0, LOCAL_BASE "/my-bucket/" KEY1_ENC "?uploadId="
	    UPLOAD_ID_ENC },
	{ "local CompleteMultipartUpload token", OP_COMPLETE, &loc_local_kms,
	    KEY2, 1, 0, 0, 0, LOCAL_BASE "/my-bucket/" KEY2_ENC "?uploadId="
	    UPLOAD_ID_ENC },
	{ "local AbortMultipartUpload", OP_ABORT, &loc_local, KEY1, 1, 0, 0, 0,
	    LOCAL_BASE "/my-bucket/" KEY1_ENC "?uploadId=" UPLOAD_ID_ENC },
	{ "local HeadObject", OP_HEAD, &loc_local, KEY2, 0, 0, 0, 0,
	    LOCAL_BASE "/my-bucket/" KEY2_ENC },
	{ "local HeadObject token", OP_HEAD, &loc_local_kms, KEY1, 1, 0, 0, 0,
	    LOCAL_BASE "/my-bucket/" KEY1_ENC },

	{ "dotted bucket PutObject", OP_PUT, &loc_dotted, KEY1, 1, 0, 0, 50,
	    "https://s3.eu-west-2.amazonaws.com/my.dotted.bucket/" KEY1_ENC },
	{ "dotted bucket UploadPart", OP_PART, &loc_dotted, KEY2, 0, 4, 50, 50,
	    "https://s3.eu-west-2.amazonaws.com/my.dotted.bucket/" KEY2_ENC
	    "?partNumber=4&uploadId=" UPLOAD_ID_ENC },

	{ "China PutObject", OP_PUT, &loc_china, KEY1, 1, 0, 0, 50,
	    "https://my-bucket.s3.cn-north-1.amazonaws.com.cn/" KEY1_ENC },
	{ "China UploadPart", OP_PART, &loc_china, KEY2, 0, 2, 50, 50,
	    "https://my-bucket.s3.cn-north-1.amazonaws.com.cn/" KEY2_ENC
	    "?partNumber=2&uploadId=" UPLOAD_ID_ENC },
	{ "China dotted bucket PutObject", OP_PUT, &loc_china_dotted, KEY1, 0,
	    0, 0, 50, "https://s3.cn-northwest-1.amazonaws.com.cn/"
	    "my.dotted.bucket/" KEY1_ENC },
};

#define NSPECS	(sizeof(specs) / sizeof(specs[0]))

/* Builds the request of a spec with the real s3_* function. */
static struct http_req *
build(const struct spec *s)
{
	struct aws_creds c = { ex_akid, ex_secret, NULL, 0 };
	struct s3_part parts[3];
	char sha[SIGV4_SIG_LEN + 1];
	int fd = data_file(), i;

	if (s->token)
		c.session_token = ex_token;
	for (i = 0; i < 3; i++) {
		parts[i].number = i + 1;
		parts[i].etag = (char *)etags[i];
	}
	switch (s->op) {
	case OP_PUT:
		range_sha(s->off, s->len, sha);
		return s3_put_object(s->loc, s->key, fd, s->off, s->len, sha,
		    "application/fhir+ndjson", &c, NOW);
	case OP_CREATE:
		return s3_create_multipart(s->loc, s->key,
		    "application/fhir+ndjson", &c, NOW);
	case OP_PART:
		range_sha(s->off, s->len, sha);
		return s3_upload_part(s->loc, s->key, UPLOAD_ID, s->part, fd,
		    s->off, s->len, sha, &c, NOW);
	case OP_COMPLETE:
		return s3_complete_multipart(s->loc, s->key, UPLOAD_ID, parts,
		    3, &c, NOW);
	case OP_ABORT:
		return s3_abort_multipart(s->loc, s->key, UPLOAD_ID, &c, NOW);
	case OP_HEAD:
		return s3_head_object(s->loc, s->key, &c, NOW);
	}
	return NULL;
}

/* A built request, taken apart: a file body is the spec's range. */
static void
take_s3(struct http_req *r, const struct spec *s, struct taken *t)
{
	take(r, t);
	if (s->op == OP_PUT || s->op == OP_PART) {
		/* A file body: not in memory, its length is the range's. */
		if (t->body != NULL)
			t->bad++;
		t->body = data + s->off;
	}
}

static int
hdr_count(const struct taken *t, const char *name)
{
	size_t i;
	int n = 0;

	for (i = 0; i < t->n; i++)
		n += strcasecmp(t->name[i], name) == 0;
	return n;
}

T_TEST(test_part_size)
{
	unsigned long long gib = 1024 * MIB, sizes[] = {
		0, 1, 8 * MIB, 10000 * 8 * MIB, 10000 * 8 * MIB + 1,
		100 * gib, 5 * 1024 * gib,
	};
	size_t i;

	T_EQ_INT(s3_part_size(1), 8 * MIB);
	T_EQ_INT(s3_part_size(0), 8 * MIB);
	T_EQ_INT(s3_part_size(5 * MIB), 8 * MIB);
	T_EQ_INT(s3_part_size(10000 * 8 * MIB), 8 * MIB);
	T_EQ_INT(s3_part_size(10000 * 8 * MIB + 1), 8 * MIB + 1);
	/* 100 GiB / 10000 = 10737418.24: rounded up. */
	T_EQ_INT(s3_part_size(100 * gib), (100 * gib + 9999) / 10000);
	T_EQ_INT(s3_part_size(100 * gib), 10737419);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned long long ps = s3_part_size(sizes[i]);

		/* Never more than 10,000 parts, each within S3's limits. */
		T_ASSERT((sizes[i] + ps - 1) / ps <= S3_MAX_PARTS);
		T_ASSERT(ps >= S3_MIN_PART);
		T_ASSERT(ps <= 5 * gib);
	}
}

T_TEST(test_upload_key)
{
	char *k;

	k = upload_key("exports/", "A9994", TT,
	    "ExplanationOfBenefit-1.ndjson");
	T_EQ_STR(k, KEY1);
	free(k);
	k = upload_key("exports/", "A9994", TT,
	    "errors/ExplanationOfBenefit-1.ndjson");
	T_EQ_STR(k, "exports/A9994/" TT_BASIC "_meta/errors/"
	    "ExplanationOfBenefit-1.ndjson");
	free(k);
	k = upload_key("exports/", "A9994", TT, "manifest.json");
	T_EQ_STR(k, "exports/A9994/" TT_BASIC "_meta/manifest.json");
	free(k);
	/* Only the errors/ directory and manifest.json are meta. */
	k = upload_key("", "A9994", TT, "errors.ndjson");
	T_EQ_STR(k, "A9994/" TT_BASIC "/errors.ndjson");
	free(k);
	k = upload_key("", "A9994", TT, "Patient-manifest.json");
	T_EQ_STR(k, "A9994/" TT_BASIC "/Patient-manifest.json");
	free(k);
	/* A time already in basic form stays as it is. */
	k = upload_key("p/", "Z0000", TT_BASIC, "Patient.ndjson");
	T_EQ_STR(k, "p/Z0000/" TT_BASIC "/Patient.ndjson");
	free(k);
	/*
	 * BFD's lastUpdated with an offset (v1/v2) names the same instant in
	 * UTC: no '+' or offset in a key, the fraction kept as written.
	 */
	k = upload_key("", "A9994", "2024-07-24T08:08:33.779-04:00",
	    "Patient-1.ndjson");
	T_EQ_STR(k, "A9994/2024-07-24T120833.779Z/Patient-1.ndjson");
	free(k);
	k = upload_key("", "A9994", "2024-07-24T01:30:00+05:30",
	    "Patient-1.ndjson");
	T_EQ_STR(k, "A9994/2024-07-23T200000Z/Patient-1.ndjson");
	free(k);
}

/* Method, URL, headers and body of every shape, without botocore. */
T_TEST(test_request_shapes)
{
	static const char *const method[] = {
		[OP_PUT] = "PUT", [OP_CREATE] = "POST", [OP_PART] = "PUT",
		[OP_COMPLETE] = "POST", [OP_ABORT] = "DELETE",
		[OP_HEAD] = "HEAD",
	};
	char sha[SIGV4_SIG_LEN + 1];
	struct taken t;
	size_t i;

	for (i = 0; i < NSPECS; i++) {
		const struct spec *s = &specs[i];
		struct http_req *r = build(s);
		const char *v;
		int sse = s->op == OP_PUT || s->op == OP_CREATE;
		size_t want_n;

		if (r == NULL) {
			T_FAIL("%s: not built", s->name);
			continue;
		}
		take_s3(r, s, &t);
		if (strcmp(t.method, method[s->op]) != 0)
			T_FAIL("%s: method %s", s->name, t.method);
		if (strcmp(t.url, s->url) != 0)
			T_FAIL("%s: URL\n  got  %s\n  want %s", s->name, t.url,
			    s->url);
		T_EQ_INT(t.nexpect, 1);
		T_EQ_INT(t.bad, 0);
		T_ASSERT(hdr(&t, "Host") == NULL);	/* curl's own */
		if ((v = hdr(&t, "X-Amz-Date")) == NULL ||
		    strcmp(v, NOW_STAMP) != 0)
			T_FAIL("%s: X-Amz-Date %s", s->name, v ? v : "absent");
		v = hdr(&t, "X-Amz-Security-Token");
		if (s->token ? v == NULL || strcmp(v, ex_token) != 0 : v != NULL)
			T_FAIL("%s: X-Amz-Security-Token %s", s->name,
			    v ? v : "absent");
		if ((v = hdr(&t, "Authorization")) == NULL ||
		    strncmp(v, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
		    "20260115/", 49) != 0 ||
		    strstr(v, s->loc->region) == NULL)
			T_FAIL("%s: Authorization %s", s->name,
			    v ? v : "absent");

		/* x-amz-content-sha256: the body's real hash. */
		if (sigv4_sha256_hex(t.body ? t.body : "", t.body_len, sha))
			abort();
		if ((v = hdr(&t, "x-amz-content-sha256")) == NULL ||
		    strcmp(v, sha) != 0)
			T_FAIL("%s: x-amz-content-sha256 %s, body hash %s",
			    s->name, v ? v : "absent", sha);
		if (s->op == OP_PUT || s->op == OP_PART)
			T_EQ_INT(t.body_len, s->len);
		else if (s->op == OP_CREATE)
			T_ASSERT(t.body != NULL && t.body_len == 0);
		else if (s->op == OP_ABORT || s->op == OP_HEAD)
			T_ASSERT(t.body == NULL && t.body_len == 0);

		/* SSE-KMS is chosen at Put and Create, never repeated. */
		v = hdr(&t, "x-amz-server-side-encryption");
		if (sse ? v == NULL || strcmp(v, "aws:kms") != 0 : v != NULL)
			T_FAIL("%s: x-amz-server-side-encryption %s", s->name,
			    v ? v : "absent");
		v = hdr(&t, "x-amz-server-side-encryption-aws-kms-key-id");
		if (sse && s->loc->kms_key_id != NULL ?
		    v == NULL || strcmp(v, s->loc->kms_key_id) != 0 : v != NULL)
			T_FAIL("%s: kms key id %s", s->name, v ? v : "absent");
		v = hdr(&t, "Content-Type");
		if (sse ? v == NULL || strcmp(v, "application/fhir+ndjson") :
		    s->op == OP_COMPLETE ? v == NULL ||
		    strcmp(v, "application/xml") : v != NULL)
			T_FAIL("%s: Content-Type %s", s->name, v ? v : "absent");

		/* Nothing else, and nothing twice. */
		want_n = 3 + (size_t)s->token + (sse ? 2 : 0) +
		    (sse && s->loc->kms_key_id ? 1 : 0) +
		    (s->op == OP_COMPLETE ? 1 : 0);
		if (t.n != want_n)
			T_FAIL("%s: %zu headers, want %zu", s->name, t.n,
			    want_n);
		for (size_t j = 0; j < t.n; j++)
			if (hdr_count(&t, t.name[j]) != 1)
				T_FAIL("%s: %s twice", s->name, t.name[j]);
		if (s->op == OP_COMPLETE)
			T_ASSERT(t.body_len == strlen(COMPLETE_XML) &&
			    memcmp(t.body, COMPLETE_XML, t.body_len) == 0);
		taken_free(&t);
		http_req_free(r);
	}
}

/* The Complete body is the XML of reference/aws.md, quotes escaped. */
T_TEST(test_complete_body)
{
	const struct spec *s = NULL;
	struct http_req *r;
	struct taken t;
	char et[3][64], pn[3][16], root[64];
	struct aws_xml_field f[6] = {
		{ "ETag", et[0], sizeof(et[0]) }, { "PartNumber", pn[0], 16 },
		{ "ETag", et[1], sizeof(et[1]) }, { "PartNumber", pn[1], 16 },
		{ "ETag", et[2], sizeof(et[2]) }, { "PartNumber", pn[2], 16 },
	};
	const char *docs[2] = { COMPLETE_XML, COMPLETE_XML_RAW };
	size_t i, d;

	for (i = 0; i < NSPECS; i++)
		if (specs[i].op == OP_COMPLETE)
			s = &specs[i];
	if (s == NULL || (r = build(s)) == NULL) {
		T_FAIL("no CompleteMultipartUpload");
		return;
	}
	take_s3(r, s, &t);
	T_ASSERT(t.body != NULL);
	if (t.body == NULL || t.body_len != strlen(COMPLETE_XML) ||
	    memcmp(t.body, COMPLETE_XML, t.body_len) != 0)
		T_FAIL("Complete body\n  got  %.*s\n  want %s",
		    (int)t.body_len, t.body ? t.body : "", COMPLETE_XML);
	/*
	 * &quot; and a raw quote are the same XML text: expat (as S3's
	 * parser, and the AWS SDK for Java v2, which escapes quotes the same
	 * way) reads back the ETags exactly as S3 returned them.
	 */
	for (d = 0; d < 2; d++) {
		T_EQ_INT(aws_xml(d == 0 && t.body ? t.body : docs[d],
		    d == 0 && t.body ? t.body_len : strlen(docs[d]), f, 6,
		    root, sizeof(root)), 0);
		T_EQ_STR(root, "CompleteMultipartUpload");
		for (i = 0; i < 3; i++) {
			char want[4];

			snprintf(want, sizeof(want), "%zu", i + 1);
			T_EQ_STR(et[i], etags[i]);
			T_EQ_STR(pn[i], want);
		}
	}
	taken_free(&t);
	http_req_free(r);
}

/* Spec i for botocore_crosscheck(). */
static struct http_req *
crosscheck_build(size_t i, struct taken *t, struct botocore_sig *sig)
{
	const struct spec *s = &specs[i];
	struct http_req *r = build(s);

	sig->name = s->name;
	sig->region = s->loc->region;
	sig->service = "s3";
	sig->token = s->token;
	sig->s3 = 1;
	if (r != NULL)
		take_s3(r, s, t);
	return r;
}

/*
 * Every shape, signed again by botocore from the method, URL, headers and
 * body the request carries: the Authorization headers must be equal.
 */
T_TEST(test_botocore_crosscheck)
{
	struct aws_creds c = { ex_akid, ex_secret, ex_token, 0 };

	botocore_crosscheck(NSPECS, crosscheck_build, &c, NOW_STAMP);
}

/* An answer with a body, as http.c would hand it over. */
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

#define XML_DECL	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define S3_ERROR(code, msg) \
	XML_DECL "<Error><Code>" code "</Code><Message>" msg "</Message>" \
	"<RequestId>4442587FB7D0A2F9</RequestId><HostId>" \
	"nH8v0dWz+2gPBcEtSXtW0TN0r3w=</HostId></Error>"

T_TEST(test_check_200_error)
{
	/* CompleteMultipartUpload's failure after its 200 OK. */
	const char *bodies[] = {
		S3_ERROR("InternalError", "We encountered an internal error. "
		    "Please try again."),
		/* S3 keeps the connection alive with whitespace. */
		XML_DECL "\n      \n      <Error><Code>InternalError</Code>"
		"<Message>We encountered an internal error.</Message></Error>",
		/* Some S3 servers (MinIO) send it before the declaration. */
		"\r\n \r\n \r\n" XML_DECL "<Error><Code>InternalError</Code>"
		"<Message>We encountered an internal error.</Message></Error>",
	};
	struct aws_error e;
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct http_resp r = resp(200, bodies[i]);

		if (s3_check(&r, &e) != -EIO) {
			T_FAIL("body %zu: a 200 <Error> taken for success", i);
			continue;
		}
		T_EQ_STR(e.code, "InternalError");
		T_ASSERT(strncmp(e.message, "We encountered an internal error",
		    32) == 0);
		T_ASSERT(aws_retryable(&r, &e));
	}
}

T_TEST(test_check_200_ok)
{
	struct http_resp r = resp(200, XML_DECL
	    "<CompleteMultipartUploadResult xmlns=\"" XMLNS "\">"
	    "<Location>https://my-bucket.s3.us-east-1.amazonaws.com/" KEY1_ENC
	    "</Location><Bucket>my-bucket</Bucket><Key>" KEY1 "</Key>"
	    "<ETag>\"3858f62230ac3c915f300c664312c11f-3\"</ETag>"
	    "</CompleteMultipartUploadResult>");
	struct http_resp ws = resp(200, XML_DECL "\n   \n   "
	    "<CompleteMultipartUploadResult xmlns=\"" XMLNS "\">"
	    "<ETag>\"x-3\"</ETag></CompleteMultipartUploadResult>");
	struct http_resp empty = resp(200, NULL), del = resp(204, NULL);
	struct http_resp spaces = resp(200, "   ");
	struct aws_error e;

	T_EQ_INT(s3_check(&r, &e), 0);
	T_EQ_STR(e.code, "");
	T_EQ_STR(e.message, "");
	T_EQ_INT(s3_check(&ws, &e), 0);
	T_EQ_INT(s3_check(&empty, &e), 0);
	T_EQ_INT(s3_check(&del, &e), 0);	/* AbortMultipartUpload */
	T_EQ_INT(s3_check(&spaces, &e), 0);
	T_EQ_STR(e.code, "");
}

T_TEST(test_check_no_such_upload)
{
	struct http_resp r = resp(404, XML_DECL "<Error><Code>NoSuchUpload"
	    "</Code><Message>The specified upload does not exist. The upload "
	    "ID may be invalid, or the upload may have been aborted or "
	    "completed.</Message><UploadId>" UPLOAD_ID "</UploadId>"
	    "<RequestId>1</RequestId><HostId>2</HostId></Error>");
	struct aws_error e;
	char out[512];

	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "NoSuchUpload");
	T_ASSERT(strncmp(e.message, "The specified upload does not exist",
	    35) == 0);
	T_ASSERT(!aws_retryable(&r, &e));
	s3_describe(&loc_aws, KEY1, "s3:PutObject", &r, &e, out, sizeof(out));
	T_ASSERT(strstr(out, "s3://my-bucket/" KEY1) != NULL);
	T_ASSERT(strstr(out, "NoSuchUpload") != NULL);
}

T_TEST(test_describe_access_denied)
{
	struct http_resp r = resp(403, S3_ERROR("AccessDenied",
	    "Access Denied"));
	struct http_resp head = resp(403, NULL);
	struct aws_error e;
	char out[512];

	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "AccessDenied");
	T_ASSERT(!aws_retryable(&r, &e));
	s3_describe(&loc_aws, KEY1, "s3:PutObject", &r, &e, out, sizeof(out));
	T_ASSERT(strstr(out, "my-bucket") != NULL);
	T_ASSERT(strstr(out, KEY1) != NULL);
	T_ASSERT(strstr(out, "s3:PutObject") != NULL);
	T_ASSERT(strstr(out, "kms:") == NULL);
	/* With a customer key, the KMS permission too. */
	s3_describe(&loc_aws_kms, KEY1, "s3:PutObject", &r, &e, out,
	    sizeof(out));
	T_ASSERT(strstr(out, "s3:PutObject") != NULL);
	T_ASSERT(strstr(out, "kms:GenerateDataKey") != NULL);
	/* A HEAD has no body: the status alone says it. */
	T_EQ_INT(s3_check(&head, &e), -EIO);
	T_EQ_STR(e.code, "HTTP403");
	s3_describe(&loc_aws, KEY1, "s3:GetObject", &head, &e, out,
	    sizeof(out));
	T_ASSERT(strstr(out, "s3:GetObject") != NULL);
	T_ASSERT(strstr(out, "s3://my-bucket/" KEY1) != NULL);
}

T_TEST(test_describe_skew)
{
	/* S3 answers RequestTimeTooSkewed with a 403. */
	struct http_resp r = resp(403, S3_ERROR("RequestTimeTooSkewed",
	    "The difference between the request time and the current time is "
	    "too large."));
	struct aws_error e;
	char out[512];

	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "RequestTimeTooSkewed");
	s3_describe(&loc_aws, KEY1, "s3:PutObject", &r, &e, out, sizeof(out));
	T_ASSERT(strstr(out, "clock") != NULL);
	T_ASSERT(strstr(out, "RequestTimeTooSkewed") != NULL);
	T_ASSERT(strstr(out, "IAM") == NULL);
}

T_TEST(test_describe_signature)
{
	/* Both are 403 on S3. */
	struct http_resp sig = resp(403, S3_ERROR("SignatureDoesNotMatch",
	    "The request signature we calculated does not match the signature "
	    "you provided. Check your key and signing method."));
	struct http_resp key = resp(403, S3_ERROR("InvalidAccessKeyId",
	    "The AWS Access Key Id you provided does not exist in our "
	    "records."));
	struct aws_error e;
	char out[512];

	T_EQ_INT(s3_check(&sig, &e), -EIO);
	T_EQ_STR(e.code, "SignatureDoesNotMatch");
	T_ASSERT(!aws_retryable(&sig, &e));
	s3_describe(&loc_aws, KEY1, "s3:PutObject", &sig, &e, out,
	    sizeof(out));
	T_ASSERT(strstr(out, "credentials") != NULL);
	T_ASSERT(strstr(out, "SignatureDoesNotMatch") != NULL);
	T_ASSERT(strstr(out, "s3://my-bucket/" KEY1) != NULL);
	T_EQ_INT(s3_check(&key, &e), -EIO);
	T_EQ_STR(e.code, "InvalidAccessKeyId");
	s3_describe(&loc_aws, KEY1, "s3:PutObject", &key, &e, out,
	    sizeof(out));
	T_ASSERT(strstr(out, "credentials") != NULL);
}

T_TEST(test_check_retryable)
{
	struct http_resp slow = resp(503, S3_ERROR("SlowDown",
	    "Please reduce your request rate."));
	struct http_resp internal = resp(500, S3_ERROR("InternalError", "x"));
	struct http_resp timeout = resp(400, S3_ERROR("RequestTimeout",
	    "Your socket connection to the server was not read from or "
	    "written to within the timeout period."));
	struct http_resp bad = resp(400, S3_ERROR("EntityTooSmall", "x"));
	struct aws_error e;

	T_EQ_INT(s3_check(&slow, &e), -EIO);
	T_EQ_STR(e.code, "SlowDown");
	T_EQ_STR(e.message, "Please reduce your request rate.");
	T_ASSERT(aws_retryable(&slow, &e));
	T_EQ_INT(s3_check(&internal, &e), -EIO);
	T_ASSERT(aws_retryable(&internal, &e));
	T_EQ_INT(s3_check(&timeout, &e), -EIO);
	T_EQ_STR(e.code, "RequestTimeout");
	T_ASSERT(aws_retryable(&timeout, &e));
	T_EQ_INT(s3_check(&bad, &e), -EIO);
	T_ASSERT(!aws_retryable(&bad, &e));
}

T_TEST(test_check_head_404)
{
	struct http_resp r = resp(404, NULL);
	struct http_resp r503 = resp(503, NULL);
	struct aws_error e;
	char out[512];

	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "HTTP404");
	T_EQ_STR(e.message, "");
	T_ASSERT(!aws_retryable(&r, &e));
	s3_describe(&loc_aws, KEY2, "s3:GetObject", &r, &e, out, sizeof(out));
	T_ASSERT(strstr(out, "s3://my-bucket/" KEY2) != NULL);
	T_ASSERT(strstr(out, "HTTP404") != NULL);
	T_EQ_INT(s3_check(&r503, &e), -EIO);
	T_EQ_STR(e.code, "HTTP503");
	T_ASSERT(aws_retryable(&r503, &e));
}

T_TEST(test_check_connection_error)
{
	struct http_resp r = resp(0, NULL);
	struct aws_error e;
	char out[512];

	r.result = CURLE_COULDNT_CONNECT;
	r.error = "Failed to connect to 127.0.0.1 port 4566: Connection "
	    "refused";
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "ConnectionError");
	T_EQ_STR(e.message, r.error);
	T_ASSERT(aws_retryable(&r, &e));
	s3_describe(&loc_local, KEY1, "s3:PutObject", &r, &e, out,
	    sizeof(out));
	T_ASSERT(strstr(out, "Connection refused") != NULL);
	/* A transfer that broke after a 200 status line is no success. */
	r = resp(200, XML_DECL "   ");
	r.result = CURLE_RECV_ERROR;
	r.error = "Recv failure: Connection reset by peer";
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_ASSERT(aws_retryable(&r, &e));
}

T_TEST(test_upload_id)
{
	struct http_resp ok = resp(200, XML_DECL
	    "<InitiateMultipartUploadResult xmlns=\"" XMLNS "\">"
	    "<Bucket>my-bucket</Bucket><Key>" KEY1 "</Key>"
	    "<UploadId>" UPLOAD_ID "</UploadId>"
	    "</InitiateMultipartUploadResult>");
	struct http_resp prefixed = resp(200,
	    "<s3:InitiateMultipartUploadResult xmlns:s3=\"" XMLNS "\">"
	    "<s3:UploadId>abc</s3:UploadId></s3:InitiateMultipartUploadResult>");
	const char *bad[] = {
		NULL, "", "not xml",
		"<InitiateMultipartUploadResult><UploadId>abc",
		"<InitiateMultipartUploadResult><Bucket>b</Bucket>"
		"</InitiateMultipartUploadResult>",
		"<InitiateMultipartUploadResult><UploadId></UploadId>"
		"</InitiateMultipartUploadResult>",
		S3_ERROR("InternalError", "x"),
		"<Other><UploadId>abc</UploadId></Other>",
	};
	char *id;
	size_t i;

	id = s3_upload_id(&ok);
	T_EQ_STR(id, UPLOAD_ID);
	free(id);
	id = s3_upload_id(&prefixed);
	T_EQ_STR(id, "abc");
	free(id);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_resp r = resp(200, bad[i]);

		if ((id = s3_upload_id(&r)) != NULL) {
			T_FAIL("bad %zu: upload id \"%s\"", i, id);
			free(id);
		}
	}
}

/* ListMultipartUploads: the key's own uploads, not its prefix's. */
T_TEST(test_upload_ids)
{
	struct http_resp list = resp(200, XML_DECL
	    "<ListMultipartUploadsResult xmlns=\"" XMLNS "\">"
	    "<Bucket>my-bucket</Bucket><KeyMarker></KeyMarker>"
	    "<Upload><Key>a/b.ndjson</Key><UploadId>one</UploadId>"
	    "<Initiator><ID>x</ID></Initiator></Upload>"
	    "<Upload><Key>a/b.ndjson.2</Key><UploadId>other</UploadId></Upload>"
	    "<Upload><UploadId>two</UploadId><Key>a/b.ndjson</Key></Upload>"
	    "<Upload><Key>a/b.ndjson</Key></Upload>"
	    "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>");
	struct http_resp none = resp(200, XML_DECL
	    "<ListMultipartUploadsResult xmlns=\"" XMLNS "\">"
	    "<Bucket>my-bucket</Bucket></ListMultipartUploadsResult>");
	struct http_resp bad = resp(200, "<ListMultipartUploadsResult><Upload>");
	char **ids = NULL;
	int n, i;

	n = s3_upload_ids(&list, "a/b.ndjson", &ids);
	T_EQ_INT(n, 2);
	if (n == 2) {
		T_EQ_STR(ids[0], "one");
		T_EQ_STR(ids[1], "two");
	}
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	T_EQ_INT(s3_upload_ids(&none, "a/b.ndjson", &ids), 0);
	free(ids);
	T_EQ_INT(s3_upload_ids(&bad, "a/b.ndjson", &ids), -EBADMSG);
	T_ASSERT(ids == NULL);
}

T_TEST(test_malformed)
{
	const char *bodies[] = {
		"<Error><Code>InternalError</Code><Message>trunc",
		"<Error><Code>Internal", "<", "<<<>>>", "<Error></Code>",
		"\xff\xfe<\0E", "{\"__type\":", "[]", "null", "{\"__type\":7}",
		"<?xml version=\"1.0\"?>",
	};
	struct aws_error e;
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct http_resp r = resp(500, bodies[i]);
		char *id;

		T_EQ_INT(s3_check(&r, &e), -EIO);
		/* Half a document names nothing: the status speaks. */
		if (strcmp(e.code, "HTTP500") != 0)
			T_FAIL("body %zu: code \"%s\"", i, e.code);
		T_ASSERT(aws_retryable(&r, &e));
		r.status = 200;
		T_ASSERT((id = s3_upload_id(&r)) == NULL);
		free(id);
	}
}

T_TEST(test_json_errors)
{
	struct http_resp thr = resp(400, "{\"__type\":\"com.amazonaws."
	    "healthlake#ThrottlingException\",\"message\":\"x\"}");
	struct http_resp val = resp(400, "{\"__type\":\"ValidationException\","
	    "\"Message\":\"y\"}");
	struct http_resp colon = resp(400, "{\"__type\":\"com.amazon.coral."
	    "service#AccessDeniedException:http://internal.amazon.com/"
	    "coral/\",\"message\":\"no\"}");
	struct http_resp none = resp(500, "{\"message\":\"z\"}");
	struct aws_error e;

	aws_parse_error(&thr, &e);
	T_EQ_STR(e.code, "ThrottlingException");
	T_EQ_STR(e.message, "x");
	T_ASSERT(aws_retryable(&thr, &e));
	aws_parse_error(&val, &e);
	T_EQ_STR(e.code, "ValidationException");
	T_EQ_STR(e.message, "y");
	T_ASSERT(!aws_retryable(&val, &e));
	aws_parse_error(&colon, &e);
	T_EQ_STR(e.code, "AccessDeniedException");
	T_EQ_STR(e.message, "no");
	aws_parse_error(&none, &e);
	T_EQ_STR(e.code, "");
	T_EQ_STR(e.message, "z");
	T_ASSERT(aws_retryable(&none, &e));
	/* The query protocol's error (SNS, STS) is XML too. */
	none = resp(400, "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/"
	    "2010-03-31/\"><Error><Type>Sender</Type><Code>InvalidParameter"
	    "</Code><Message>bad topic</Message></Error><RequestId>r"
	    "</RequestId></ErrorResponse>");
	aws_parse_error(&none, &e);
	T_EQ_STR(e.code, "InvalidParameter");
	T_EQ_STR(e.message, "bad topic");
}

/* Hostile documents: deep, huge, entity bombs.  Nothing may crash. */
T_TEST(test_xml_hostile)
{
	const size_t depth = 200000, huge = HTTP_BODY_MAX;
	struct aws_error e;
	struct http_resp r;
	char *doc, *p, *id;
	size_t i;

	/* Nested deep, closed. */
	if ((doc = malloc(depth * 7 + 128)) == NULL)
		abort();
	p = doc;
	p += sprintf(p, "<Error><Code>SlowDown</Code>");
	for (i = 0; i < depth; i++)
		p += sprintf(p, "<a>");
	for (i = 0; i < depth; i++)
		p += sprintf(p, "</a>");
	p += sprintf(p, "</Error>");
	r = resp(503, doc);
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "SlowDown");
	r.status = 200;
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "SlowDown");
	/* Nested deep, never closed. */
	p = doc;
	for (i = 0; i < depth; i++)
		p += sprintf(p, "<a>");
	r = resp(500, doc);
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "HTTP500");
	T_ASSERT((id = s3_upload_id(&r)) == NULL);
	free(id);
	free(doc);

	/* As large as http.c keeps, one long message: cut, not overrun. */
	if ((doc = malloc(huge + 1)) == NULL)
		abort();
	p = doc + sprintf(doc, "<Error><Code>InternalError</Code><Message>");
	memset(p, 'm', huge - 128);
	for (i = 0; i < huge - 128; i += 1000)
		p[i] = '\n';
	p += huge - 128;
	p += sprintf(p, "</Message></Error>");
	r = resp(500, doc);
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "InternalError");
	T_EQ_INT(strlen(e.message), sizeof(e.message) - 1);
	/* A huge code: cut to the buffer too. */
	p = doc + sprintf(doc, "<Error><Code>");
	memset(p, 'C', huge - 128);
	p += huge - 128;
	p += sprintf(p, "</Code></Error>");
	r = resp(400, doc);
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_INT(strlen(e.code), sizeof(e.code) - 1);
	free(doc);

	/* Billion laughs: expat refuses the amplification. */
	r = resp(200, "<?xml version=\"1.0\"?><!DOCTYPE Error ["
	    "<!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">"
	    "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
	    "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
	    "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">"
	    "<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">"
	    "<!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">"
	    "<!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">"
	    "]><Error><Code>&g;</Code></Error>");
	(void)s3_check(&r, &e);
	T_ASSERT(strlen(e.code) < sizeof(e.code));
	r.status = 500;
	T_EQ_INT(s3_check(&r, &e), -EIO);
	/* An external entity is not fetched. */
	r = resp(400, "<?xml version=\"1.0\"?><!DOCTYPE Error [<!ENTITY x "
	    "SYSTEM \"file:///etc/passwd\">]><Error><Code>A&x;B</Code>"
	    "</Error>");
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_ASSERT(strstr(e.code, "root") == NULL);
	/* Many Code elements: the first counts. */
	r = resp(400, "<Error><Code>First</Code><Code>Second</Code></Error>");
	T_EQ_INT(s3_check(&r, &e), -EIO);
	T_EQ_STR(e.code, "First");
}

T_MAIN("s3",
    T_CASE(test_part_size),
    T_CASE(test_upload_key),
    T_CASE(test_request_shapes),
    T_CASE(test_complete_body),
    T_CASE(test_botocore_crosscheck),
    T_CASE(test_check_200_error),
    T_CASE(test_check_200_ok),
    T_CASE(test_check_no_such_upload),
    T_CASE(test_describe_access_denied),
    T_CASE(test_describe_skew),
    T_CASE(test_describe_signature),
    T_CASE(test_check_retryable),
    T_CASE(test_check_head_404),
    T_CASE(test_check_connection_error),
    T_CASE(test_upload_id),
    T_CASE(test_upload_ids),
    T_CASE(test_malformed),
    T_CASE(test_json_errors),
    T_CASE(test_xml_hostile))
