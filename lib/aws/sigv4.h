/*
 * AWS Signature Version 4 (AWS4-HMAC-SHA256) request signing, without an
 * AWS SDK.  reference/aws.md sections 1.5, 3.3, 6 and 7.
 *
 * The signer is a pure function of its inputs: it builds the canonical
 * request, the string to sign and the Authorization header value for one
 * request, and does no I/O.  The caller sends exactly the headers it gave
 * the signer, plus X-Amz-Date (result amz_date), X-Amz-Security-Token (the
 * session token, when the credentials have one and the caller did not list
 * it already) and Authorization.
 *
 * Path rules differ by service.  S3 signs the path as it goes on the wire
 * (each key segment encoded once, see sigv4_s3_path) and never normalises
 * it.  Every other service (HealthLake, SNS, Secrets Manager, STS) signs the
 * wire path after removing dot segments and empty segments and encoding it
 * a second time, which only matters for paths other than "/".
 */
#ifndef BCDAD_SIGV4_H
#define BCDAD_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Credentials; strings are owned by whoever fills the structure. */
struct aws_creds {
	char		*access_key_id;
	char		*secret_access_key;
	char		*session_token;	/* NULL if none */
	int64_t		 expiration;	/* unix seconds, 0 = never */
};

struct sigv4_header {
	const char	*name;		/* any case */
	const char	*value;		/* trimmed when signed */
};

struct sigv4_request {
	const char	*method;	/* uppercase, "PUT" */
	/*
	 * The path exactly as sent, already URI-encoded, e.g.
	 * "/in/batch%201.ndjson".  NULL or "" means "/".
	 */
	const char	*path;
	/*
	 * The query as sent, without '?', or NULL: "uploads",
	 * "partNumber=1&uploadId=abc".  Percent-escapes are decoded and
	 * re-encoded, so send it already encoded with the RFC 3986
	 * unreserved set for the wire and the signature to agree.
	 */
	const char	*query;
	/*
	 * Every header to sign, Host included (with a non-default port).
	 * Do not list X-Amz-Date or Authorization: the signer owns them.
	 * S3 needs x-amz-content-sha256 here, equal to payload_sha256.
	 */
	const struct sigv4_header *headers;
	size_t		 nheaders;
	/* Lowercase hex SHA-256 of the body, or "UNSIGNED-PAYLOAD". */
	const char	*payload_sha256;
	const char	*region;	/* "us-east-1" */
	const char	*service;	/* signing name, "s3" */
	int		 s3;		/* 1: S3 path rules, see above */
	/* Not S3: encode the path again but keep dot and empty segments. */
	int		 no_normalize;
	time_t		 now;		/* signing time */
};

#define SIGV4_DATE_LEN	16		/* "20260115T120000Z" */
#define SIGV4_SIG_LEN	64		/* hex HMAC-SHA256 */

/*
 * Filled by sigv4_sign; release with sigv4_result_free.  The canonical
 * request holds the session token: never log it.
 */
struct sigv4_result {
	char		 amz_date[SIGV4_DATE_LEN + 1]; /* X-Amz-Date */
	char		 signature[SIGV4_SIG_LEN + 1];
	char		*authorization;	/* the header's value */
	char		*canonical_request;	/* for tests */
	char		*string_to_sign;
};

/* sigv4.c */
/*
 * Signs one request.  Returns 0 and fills out (release it with
 * sigv4_result_free), -EINVAL for a malformed request (missing field, bad
 * percent-escape in the query, X-Amz-Date or Authorization among the
 * headers, control characters other than folding whitespace in a header
 * value), -ENOMEM, or -EIO if libcrypto fails.  On failure out holds
 * nothing to free.
 */
int	 sigv4_sign(const struct sigv4_request *, const struct aws_creds *,
	    struct sigv4_result *out);
/* Frees the strings of a result and clears it; safe on a cleared result. */
void	 sigv4_result_free(struct sigv4_result *);

/*
 * Returns a malloc'd copy of the len bytes at s with every byte outside
 * the RFC 3986 unreserved set (A-Z a-z 0-9 - . _ ~) written as %XX
 * (uppercase hex); '/' is kept unless encode_slash.  NULL if out of memory.
 */
char	*sigv4_uri_encode(const char *s, size_t len, int encode_slash);
/*
 * Returns the malloc'd wire path of an S3 object: "/" + key, or "/" +
 * bucket + "/" + key for path-style addressing when bucket is not NULL,
 * each key segment encoded with sigv4_uri_encode and '/' kept.  NULL if
 * out of memory.
 */
char	*sigv4_s3_path(const char *bucket, const char *key);
/*
 * Writes the lowercase hex SHA-256 of buf (64 characters + NUL) to hex,
 * e.g. for payload_sha256.  Returns 0, or -EIO if libcrypto fails.
 */
int	 sigv4_sha256_hex(const void *buf, size_t len,
	    char hex[SIGV4_SIG_LEN + 1]);
/* Writes n bytes as lowercase hex followed by a NUL (2n + 1 bytes). */
void	 sigv4_hex(const unsigned char *, size_t n, char *hex);

#endif
