/*
 * AWS Secrets Manager GetSecretValue.  See secretsmanager.h and
 * reference/aws.md 1.4 and 1.6.
 *
 * The json 1.1 protocol: POST / with X-Amz-Target
 * secretsmanager.GetSecretValue and a JSON body, both headers signed.
 * Of the answer only SecretString is read; it is itself JSON.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "secretsmanager.h"

#define SM_SECRET_ID_MAX	2048

struct http_req *
sm_get_secret_value(const char *endpoint, const char *region,
    const char *secret_id, const struct aws_creds *creds, time_t now)
{
	json_t *body;

	if (region == NULL || *region == '\0' || secret_id == NULL ||
	    *secret_id == '\0' || strlen(secret_id) > SM_SECRET_ID_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if ((body = json_pack("{s:s}", "SecretId", secret_id)) == NULL) {
		errno = EINVAL;	/* not UTF-8 */
		return NULL;
	}
	return aws_json_request(endpoint, "secretsmanager", region, "1.1",
	    "secretsmanager.GetSecretValue", body, creds, now);
}

/*
 * Overwrites the text of every string in v, and in what it contains, so
 * that json_decref frees no secret.  The buffers are jansson's own, held
 * only by v.
 */
static void
wipe_json(json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (json_is_string(v)) {
		explicit_bzero((char *)json_string_value(v),
		    json_string_length(v));
	} else if (json_is_object(v)) {
		json_object_foreach(v, key, e)
			wipe_json(e);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, e)
			wipe_json(e);
	}
}

/* A malloc'd copy of the non-empty string member name of o, or NULL. */
static char *
member(json_t *o, const char *name, int *rc)
{
	json_t *v = json_object_get(o, name);
	const char *s = json_string_value(v);
	char *copy;

	if (s == NULL || json_string_length(v) == 0 ||
	    strlen(s) != json_string_length(v)) {
		*rc = -EINVAL;
		return NULL;
	}
	if ((copy = strdup(s)) == NULL)
		*rc = -ENOMEM;
	return copy;
}

int
sm_parse_bcda_secret(const struct http_resp *resp, char **client_id,
    char **client_secret)
{
	json_t *root = NULL, *inner = NULL, *ss;
	int rc = 0;

	*client_id = *client_secret = NULL;
	if (resp->result != CURLE_OK || resp->status < 200 ||
	    resp->status > 299)
		return -EIO;
	/* No json_error_t: its text can quote the secret. */
	if (resp->body == NULL || (root = json_loadb(resp->body,
	    resp->body_len, 0, NULL)) == NULL || !json_is_object(root) ||
	    !json_is_string(ss = json_object_get(root, "SecretString"))) {
		rc = -EBADMSG;
		goto out;
	}
	if ((inner = json_loadb(json_string_value(ss), json_string_length(ss),
	    0, NULL)) == NULL || !json_is_object(inner)) {
		rc = -EINVAL;
		goto out;
	}
	if ((*client_id = member(inner, "client_id", &rc)) != NULL)
		*client_secret = member(inner, "client_secret", &rc);
out:
	if (rc != 0) {
		if (*client_id != NULL)
			explicit_bzero(*client_id, strlen(*client_id));
		free(*client_id);
		*client_id = NULL;
		/* The secret is the last thing set: never left on failure. */
	}
	wipe_json(inner);
	json_decref(inner);
	wipe_json(root);
	json_decref(root);
	return rc;
}

int64_t
sm_parse_created(const struct http_resp *resp)
{
	json_t *root, *cd;
	int64_t t = 0;

	if (resp->body == NULL || (root = json_loadb(resp->body,
	    resp->body_len, 0, NULL)) == NULL)
		return 0;
	cd = json_object_get(root, "CreatedDate");
	/* Within what a time_t can hold (found by fuzz_aws: 0.7e99). */
	if (json_is_number(cd) && json_number_value(cd) > 0 &&
	    json_number_value(cd) < 1e15)
		t = (int64_t)json_number_value(cd);
	wipe_json(root);
	json_decref(root);
	return t;
}
