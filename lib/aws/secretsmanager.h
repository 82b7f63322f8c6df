/*
 * AWS Secrets Manager GetSecretValue, which bcdad uses to read a BCDA
 * profile's client credentials (protocol json 1.1, target prefix
 * "secretsmanager", reference/aws.md 1.4), signed with SigV4 (aws.h).
 *
 * The answer holds the secret in clear.  Whoever owns the response body
 * (the http_req) must wipe it with explicit_bzero before freeing it;
 * sm_parse_bcda_secret wipes what it allocates itself.
 */
#ifndef BCDAD_SECRETSMANAGER_H
#define BCDAD_SECRETSMANAGER_H

#include <stdint.h>
#include <time.h>

#include "aws.h"

/*
 * A signed GetSecretValue of secret_id (a name or an ARN; the current
 * version) to the endpoint (scheme://host[:port]) or, when endpoint is
 * NULL, to AWS's https://secretsmanager.<region>.amazonaws.com.  NULL
 * with errno EINVAL for an empty or over-long (2048) id, ENOMEM.
 */
struct http_req	*sm_get_secret_value(const char *endpoint, const char *region,
		    const char *secret_id, const struct aws_creds *,
		    time_t now);

/*
 * Reads a GetSecretValue answer whose SecretString is the JSON object
 * {"client_id": "...", "client_secret": "...", ...} (the layout of the
 * AWS sample: a key/value secret; other keys are ignored).  Returns 0 and
 * two malloc'd strings the caller must wipe (explicit_bzero) and free;
 * -EIO for an AWS error (ResourceNotFoundException, AccessDeniedException,
 * DecryptionFailure, ...: aws_parse_error) or a failed transfer;
 * -EBADMSG when the answer is not JSON or has no SecretString (a binary
 * secret); -EINVAL when SecretString is not such an object or either
 * value is missing, empty or not a string; -ENOMEM.  On failure both
 * pointers are NULL.
 *
 * Every copy this function or jansson keeps of the values is wiped before
 * it is freed, except jansson's parser scratch buffers (raw token text),
 * which it frees itself.  The response body stays the caller's to wipe.
 */
int		 sm_parse_bcda_secret(const struct http_resp *,
		    char **client_id, char **client_secret);

/*
 * The CreatedDate of the secret version GetSecretValue returned, in unix
 * seconds (when the BCDA credentials were stored, the start of their 90
 * days when nobody set client_secret_issued), or 0 when absent.  Wipes
 * the copies of the body it makes, as sm_parse_bcda_secret does.
 */
int64_t		 sm_parse_created(const struct http_resp *);

#endif
