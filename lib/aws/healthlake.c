/*
 * AWS HealthLake requests and answers.  See healthlake.h and
 * reference/aws.md 1.2 and 1.6.
 *
 * The json 1.0 protocol: every call is POST / with the operation in
 * X-Amz-Target and the input as a JSON object; both headers are signed,
 * as botocore signs them.  Timestamps in answers are JSON numbers of
 * epoch seconds, possibly fractional.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "healthlake.h"

/* Signs POST / carrying body (consumed) as operation op. */
static struct http_req *
hl_call(const char *endpoint, const char *region, const char *op,
    json_t *body, const struct aws_creds *creds, time_t now)
{
	char target[96];

	snprintf(target, sizeof(target), "HealthLake.%s", op);
	return aws_json_request(endpoint, "healthlake", region, "1.0", target,
	    body, creds, now);
}

static int
nonempty(const char *s)
{
	return s != NULL && *s != '\0';
}

struct http_req *
hl_start_import(const char *endpoint, const char *region,
    const struct hl_import *im, const struct aws_creds *creds, time_t now)
{
	json_t *body;
	const char *p;

	if (!nonempty(im->input_s3_uri) || !nonempty(im->output_s3_uri) ||
	    !nonempty(im->kms_key_id) || !nonempty(im->datastore_id) ||
	    !nonempty(im->role_arn) || !nonempty(im->client_token) ||
	    strlen(im->client_token) > HL_CLIENT_TOKEN_MAX ||
	    (im->job_name != NULL && *im->job_name == '\0')) {
		errno = EINVAL;
		return NULL;
	}
	/* The API's pattern for ClientToken: ^[a-zA-Z0-9-]+$. */
	for (p = im->client_token; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-')) {
			errno = EINVAL;
			return NULL;
		}
	}
	/* The members in the order of the model, as botocore sends them. */
	body = json_object();
	if (body != NULL && im->job_name != NULL &&
	    json_object_set_new(body, "JobName", json_string(im->job_name)))
		goto fail;
	if (body == NULL ||
	    json_object_set_new(body, "InputDataConfig", json_pack("{s:s}",
	    "S3Uri", im->input_s3_uri)) ||
	    json_object_set_new(body, "JobOutputDataConfig",
	    json_pack("{s:{s:s, s:s}}", "S3Configuration", "S3Uri",
	    im->output_s3_uri, "KmsKeyId", im->kms_key_id)) ||
	    json_object_set_new(body, "DatastoreId",
	    json_string(im->datastore_id)) ||
	    json_object_set_new(body, "DataAccessRoleArn",
	    json_string(im->role_arn)) ||
	    json_object_set_new(body, "ClientToken",
	    json_string(im->client_token)))
		goto fail;
	return hl_call(endpoint, region, "StartFHIRImportJob", body, creds,
	    now);
fail:
	/* json_string() is NULL for invalid UTF-8 as well. */
	json_decref(body);
	errno = EINVAL;
	return NULL;
}

struct http_req *
hl_describe_import(const char *endpoint, const char *region,
    const char *datastore_id, const char *job_id,
    const struct aws_creds *creds, time_t now)
{
	json_t *body;

	if (!nonempty(datastore_id) || !nonempty(job_id)) {
		errno = EINVAL;
		return NULL;
	}
	if ((body = json_pack("{s:s, s:s}", "DatastoreId", datastore_id,
	    "JobId", job_id)) == NULL) {
		errno = EINVAL;
		return NULL;
	}
	return hl_call(endpoint, region, "DescribeFHIRImportJob", body, creds,
	    now);
}

struct http_req *
hl_describe_datastore(const char *endpoint, const char *region,
    const char *datastore_id, const struct aws_creds *creds, time_t now)
{
	json_t *body;

	if (!nonempty(datastore_id) ||
	    (body = json_pack("{s:s}", "DatastoreId", datastore_id)) == NULL) {
		errno = EINVAL;
		return NULL;
	}
	return hl_call(endpoint, region, "DescribeFHIRDatastore", body, creds,
	    now);
}

/*
 * The JSON object of a 2xx answer, or NULL with *rc set: -EIO for an AWS
 * error or a failed transfer, -EBADMSG for a body that is not an object.
 */
static json_t *
hl_answer(const struct http_resp *resp, int *rc)
{
	json_t *root;

	if (resp->result != CURLE_OK || resp->status < 200 ||
	    resp->status > 299) {
		*rc = -EIO;
		return NULL;
	}
	if (resp->body == NULL || (root = json_loadb(resp->body,
	    resp->body_len, 0, NULL)) == NULL) {
		*rc = -EBADMSG;
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*rc = -EBADMSG;
		return NULL;
	}
	*rc = 0;
	return root;
}

/* Copies s into out, cut on a UTF-8 character boundary if too long. */
static void
copy_cut(char *out, size_t outlen, const char *s)
{
	size_t n = strlen(s);

	if (n >= outlen) {
		n = outlen - 1;
		/* Back off continuation bytes of a character cut in two. */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

int
hl_parse_start(const struct http_resp *resp, char **job_id, char status[32])
{
	const char *id, *st;
	json_t *root;
	int rc;

	*job_id = NULL;
	status[0] = '\0';
	if ((root = hl_answer(resp, &rc)) == NULL)
		return rc;
	id = json_string_value(json_object_get(root, "JobId"));
	st = json_string_value(json_object_get(root, "JobStatus"));
	if (!nonempty(id) || st == NULL) {
		rc = -EBADMSG;
		goto out;
	}
	if ((*job_id = strdup(id)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	copy_cut(status, 32, st);
out:
	json_decref(root);
	return rc;
}

/* A count of the progress report: integer or real, -1 when absent. */
static int64_t
count(json_t *report, const char *name)
{
	json_t *v = json_object_get(report, name);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_real(v) && json_real_value(v) >= 0 &&
	    json_real_value(v) < 9.2e18)
		return (int64_t)json_real_value(v);
	return -1;
}

static const struct {
	const char	*status;
	int		 failed;
	int		 with_errors;
} hl_terminal[] = {
	{ "COMPLETED", 0, 0 },
	{ "COMPLETED_WITH_ERRORS", 0, 1 },
	{ "FAILED", 1, 0 },
	{ "CANCEL_COMPLETED", 1, 0 },
	/* The job's last word too: it is not picked up again. */
	{ "CANCEL_FAILED", 1, 0 },
};

int
hl_parse_describe(const struct http_resp *resp, struct hl_job_status *js)
{
	json_t *root, *props, *report;
	const char *st, *msg;
	size_t i;
	int rc;

	memset(js, 0, sizeof(*js));
	js->scanned_files = js->imported_files = js->resources_scanned =
	    js->resources_imported = js->resources_customer_error =
	    js->files_customer_error = -1;
	if ((root = hl_answer(resp, &rc)) == NULL)
		return rc;
	props = json_object_get(root, "ImportJobProperties");
	if ((st = json_string_value(json_object_get(props, "JobStatus")))
	    == NULL || *st == '\0') {
		rc = -EBADMSG;
		goto out;
	}
	copy_cut(js->status, sizeof(js->status), st);
	if ((msg = json_string_value(json_object_get(props, "Message")))
	    != NULL)
		copy_cut(js->message, sizeof(js->message), msg);
	js->submit_time = json_number_value(json_object_get(props,
	    "SubmitTime"));
	js->end_time = json_number_value(json_object_get(props, "EndTime"));
	if ((report = json_object_get(props, "JobProgressReport")) != NULL &&
	    json_is_object(report)) {
		js->scanned_files = count(report, "TotalNumberOfScannedFiles");
		js->imported_files = count(report,
		    "TotalNumberOfImportedFiles");
		js->resources_scanned = count(report,
		    "TotalNumberOfResourcesScanned");
		js->resources_imported = count(report,
		    "TotalNumberOfResourcesImported");
		js->resources_customer_error = count(report,
		    "TotalNumberOfResourcesWithCustomerError");
		js->files_customer_error = count(report,
		    "TotalNumberOfFilesReadWithCustomerError");
	}
	for (i = 0; i < sizeof(hl_terminal) / sizeof(hl_terminal[0]); i++) {
		if (strcmp(st, hl_terminal[i].status) == 0) {
			js->terminal = 1;
			js->failed = hl_terminal[i].failed;
			js->with_errors = hl_terminal[i].with_errors;
		}
	}
out:
	json_decref(root);
	return rc;
}

int
hl_parse_datastore(const struct http_resp *resp, char status[32])
{
	json_t *root;
	const char *st;
	int rc;

	status[0] = '\0';
	if ((root = hl_answer(resp, &rc)) == NULL)
		return rc;
	st = json_string_value(json_object_get(json_object_get(root,
	    "DatastoreProperties"), "DatastoreStatus"));
	if (!nonempty(st))
		rc = -EBADMSG;
	else
		copy_cut(status, 32, st);
	json_decref(root);
	return rc;
}

int
hl_client_token(int64_t job_id, const char *profile,
    char out[HL_CLIENT_TOKEN_MAX + 1])
{
	char *buf, id[24], hex[SIGV4_SIG_LEN + 1];
	size_t plen = profile ? strlen(profile) : 0;
	int rc;

	/* Unsigned, so that even a negative id is digits only. */
	snprintf(id, sizeof(id), "%" PRIu64, (uint64_t)job_id);
	/* The profile, a NUL, the id: no two pairs hash the same input. */
	if ((buf = malloc(plen + 1 + strlen(id))) == NULL)
		return -ENOMEM;
	if (plen > 0)
		memcpy(buf, profile, plen);
	buf[plen] = '\0';
	memcpy(buf + plen + 1, id, strlen(id));
	rc = sigv4_sha256_hex(buf, plen + 1 + strlen(id), hex);
	free(buf);
	if (rc != 0)
		return -EIO;
	snprintf(out, HL_CLIENT_TOKEN_MAX + 1, "bcdad-%s-%.32s", id, hex);
	return 0;
}
