/*
 * Streaming NDJSON validation.  See ndjson.h.
 *
 * Only the unfinished last line of the input is kept (in a buffer that
 * grows up to NDJSON_MAX_LINE); lines that end inside a fed chunk are
 * parsed straight from the caller's buffer.  The first error is sticky:
 * every later call returns it.  Error codes and messages are generic on
 * purpose: a line holds beneficiary identifiers and must never reach a
 * log, so nothing here ever quotes it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "jsonscan.h"
#include "ndjson.h"

#define NDJSON_BUF_MIN	(16 * 1024)

struct ndjson {
	char		*type;		/* expected resourceType, or NULL */
	ndjson_line_cb	 cb;
	void		*arg;
	char		*buf;		/* the unfinished line */
	size_t		 len, cap;
	uint64_t	 lines;		/* lines validated so far */
	uint64_t	 bytes;		/* bytes fed */
	uint64_t	 err_line;
	int		 err;		/* first error, sticky */
	int		 finished;
	EVP_MD_CTX	*md;
	char		 hex[2 * 32 + 1];
};

/*
 * Allocates a validator.  resource_type is copied; NULL accepts any
 * resourceType string.  cb may be NULL.  Returns NULL if memory is short
 * or the digest cannot be set up.
 */
struct ndjson *
ndjson_new(const char *resource_type, ndjson_line_cb cb, void *arg)
{
	struct ndjson *nd;

	if ((nd = calloc(1, sizeof(*nd))) == NULL)
		return NULL;
	if (resource_type != NULL &&
	    (nd->type = strdup(resource_type)) == NULL)
		goto fail;
	if ((nd->md = EVP_MD_CTX_new()) == NULL)
		goto fail;
	if (EVP_DigestInit_ex(nd->md, EVP_sha256(), NULL) != 1)
		goto fail;
	nd->cb = cb;
	nd->arg = arg;
	return nd;
fail:
	ndjson_free(nd);
	return NULL;
}

/*
 * A line of a data file, which nobody needs parsed: checked in one pass
 * (jsonscan.c), with no tree built.
 */
static int
ndjson_scan(struct ndjson *nd, const char *s, size_t n)
{
	const char *rt;
	size_t len;

	switch (jsonscan(s, n, &rt, &len)) {
	case JSONSCAN_INVALID:
		return NDJSON_EJSON;
	case JSONSCAN_OTHER:
		return NDJSON_ENOTOBJ;
	case JSONSCAN_OBJECT:
		break;
	}
	if (rt == NULL || (nd->type != NULL && (len != strlen(nd->type) ||
	    memcmp(rt, nd->type, len) != 0)))
		return NDJSON_ETYPE;
	nd->lines++;
	return 0;
}

/*
 * Validates one complete line (without its '\n'): a data file's with
 * ndjson_scan, an error file's (whose objects the callback reads) with
 * jansson.  Returns 0 or an error; the caller records it.
 */
static int
ndjson_line(struct ndjson *nd, const char *s, size_t n)
{
	json_error_t jerr;
	json_t *obj = NULL, *rt;
	const char *v;
	int rc;

	if (n == 0)
		return NDJSON_EEMPTY;
	if (n > NDJSON_MAX_LINE)
		return NDJSON_ELONG;
	if (nd->cb == NULL)
		return ndjson_scan(nd, s, n);
	/*
	 * JSON_DECODE_ANY so that a scalar line is reported as "not an
	 * object" rather than as bad JSON.  Jansson rejects anything but
	 * whitespace after the value, so two values on a line fail, while
	 * a trailing '\r' is accepted.
	 */
	if ((obj = json_loadb(s, n, JSON_DECODE_ANY, &jerr)) == NULL) {
		rc = NDJSON_EJSON;
		goto fail;
	}
	if (!json_is_object(obj)) {
		rc = NDJSON_ENOTOBJ;
		goto fail;
	}
	rt = json_object_get(obj, "resourceType");
	if ((v = json_string_value(rt)) == NULL ||
	    (nd->type != NULL && strcmp(v, nd->type) != 0)) {
		rc = NDJSON_ETYPE;
		goto fail;
	}
	if (nd->cb != NULL && (rc = nd->cb(obj, nd->arg)) < 0)
		goto fail;
	json_decref(obj);
	nd->lines++;
	return 0;
fail:
	json_decref(obj);
	return rc;
}

/*
 * Appends n bytes to the unfinished line, growing the buffer by doubling
 * up to the cap.
 */
static int
ndjson_keep(struct ndjson *nd, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (n > NDJSON_MAX_LINE - nd->len)
		return NDJSON_ELONG;
	if (nd->len + n > nd->cap) {
		cap = nd->cap ? nd->cap : NDJSON_BUF_MIN;
		while (cap < nd->len + n)
			cap *= 2;
		if (cap > NDJSON_MAX_LINE)
			cap = NDJSON_MAX_LINE;
		if ((p = realloc(nd->buf, cap)) == NULL)
			return -ENOMEM;
		nd->buf = p;
		nd->cap = cap;
	}
	memcpy(nd->buf + nd->len, s, n);
	nd->len += n;
	return 0;
}

/*
 * Feeds the next chunk.  Every line it completes is validated before this
 * returns.  Returns 0 or the first error (NDJSON_E*, -ENOMEM, or the
 * callback's code); ndjson_error_line() then tells which line.
 */
int
ndjson_feed(struct ndjson *nd, const void *buf, size_t len)
{
	const char *p = buf, *end = p + len, *nl;
	int rc;

	if (nd->err)
		return nd->err;
	if (nd->finished)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (EVP_DigestUpdate(nd->md, buf, len) != 1) {
		rc = -EIO;
		goto fail;
	}
	nd->bytes += len;
	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			if ((rc = ndjson_keep(nd, p, (size_t)(end - p))) < 0)
				goto fail;
			break;
		}
		if (nd->len == 0) {
			/* The whole line is in this chunk: no copy. */
			rc = ndjson_line(nd, p, (size_t)(nl - p));
		} else {
			if ((rc = ndjson_keep(nd, p, (size_t)(nl - p))) < 0)
				goto fail;
			rc = ndjson_line(nd, nd->buf, nd->len);
			nd->len = 0;
		}
		if (rc < 0)
			goto fail;
		p = nl + 1;
	}
	return 0;
fail:
	nd->err = rc;
	nd->err_line = nd->lines + 1;
	return rc;
}

/*
 * Input is over: validates a last line that had no '\n' and completes the
 * digest.  Counts and the digest are available afterwards even when an
 * error is returned.  Calling it again returns the same result.
 */
int
ndjson_finish(struct ndjson *nd)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	int rc;

	if (nd->finished)
		return nd->err;
	nd->finished = 1;
	if (nd->err == 0 && nd->len > 0) {
		if ((rc = ndjson_line(nd, nd->buf, nd->len)) < 0) {
			nd->err = rc;
			nd->err_line = nd->lines + 1;
		}
		nd->len = 0;
	}
	if (EVP_DigestFinal_ex(nd->md, md, &mdlen) != 1 || mdlen != 32) {
		if (nd->err == 0)
			nd->err = -EIO;
		return nd->err;
	}
	for (i = 0; i < mdlen; i++) {
		nd->hex[2 * i] = digits[md[i] >> 4];
		nd->hex[2 * i + 1] = digits[md[i] & 0x0f];
	}
	nd->hex[2 * mdlen] = '\0';
	/* The longest line's buffer is no longer needed. */
	free(nd->buf);
	nd->buf = NULL;
	nd->cap = 0;
	return nd->err;
}

/* Lines validated: all of them after a successful finish. */
uint64_t
ndjson_lines(const struct ndjson *nd)
{
	return nd->lines;
}

uint64_t
ndjson_bytes(const struct ndjson *nd)
{
	return nd->bytes;
}

/* The digest in hex after ndjson_finish(); an empty string before. */
const char *
ndjson_sha256(const struct ndjson *nd)
{
	return nd->hex;
}

uint64_t
ndjson_error_line(const struct ndjson *nd)
{
	return nd->err_line;
}

/*
 * Short English phrase for an error code.  It never names the line's
 * contents; callers add the file and line number.
 */
const char *
ndjson_strerror(int err)
{
	switch (err) {
	case 0:
		return "no error";
	case NDJSON_EJSON:
		return "line is not valid JSON";
	case NDJSON_ENOTOBJ:
		return "line is not a JSON object";
	case NDJSON_ETYPE:
		return "resourceType is missing or not the expected one";
	case NDJSON_EEMPTY:
		return "empty line";
	case NDJSON_ELONG:
		return "line longer than the limit";
	default:
		if (err < 0)
			return strerror(-err);
		return "unknown NDJSON error";
	}
}

void
ndjson_free(struct ndjson *nd)
{
	if (nd == NULL)
		return;
	EVP_MD_CTX_free(nd->md);
	free(nd->buf);
	free(nd->type);
	free(nd);
}

/*
 * Adds the severities of an OperationOutcome's issues to counts (fatal,
 * error, warning, information).  Anything else, and issues with unknown
 * or missing severities, are ignored.
 */
void
ndjson_count_severity(json_t *oo, uint64_t counts[4])
{
	static const char *const names[4] = {
		"fatal", "error", "warning", "information",
	};
	json_t *issues, *issue;
	const char *rt, *sev;
	size_t i, k;

	rt = json_string_value(json_object_get(oo, "resourceType"));
	if (rt == NULL || strcmp(rt, "OperationOutcome") != 0)
		return;
	issues = json_object_get(oo, "issue");
	json_array_foreach(issues, i, issue) {
		sev = json_string_value(json_object_get(issue, "severity"));
		if (sev == NULL)
			continue;
		for (k = 0; k < 4; k++) {
			if (strcmp(sev, names[k]) == 0) {
				counts[k]++;
				break;
			}
		}
	}
}
