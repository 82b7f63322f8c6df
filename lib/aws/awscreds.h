/*
 * AWS credentials and region, found the way the AWS SDKs find them
 * (aws-c-auth's default chain, reference/aws.md sections 1.7 and 2):
 *
 *   1. environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *      (+ AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION);
 *   2. shared files: profile AWS_PROFILE (else "default") of
 *      AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), then of
 *      AWS_CONFIG_FILE (~/.aws/config) — static keys only;
 *   3. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, through
 *      an unsigned STS AssumeRoleWithWebIdentity;
 *   4. ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 *      or _FULL_URI), or else
 *   5. the EC2 instance role through IMDSv2 (unless
 *      AWS_EC2_METADATA_DISABLED=true; endpoint from
 *      AWS_EC2_METADATA_SERVICE_ENDPOINT).
 *
 * Everything runs on the event loop through lib/http.  The environment
 * and the files are read again on every fetch, so a rotated web identity
 * token file is picked up.  Secret keys and tokens are never logged and
 * are wiped from memory when replaced or freed.
 */
#ifndef BCDAD_AWSCREDS_H
#define BCDAD_AWSCREDS_H

#include <stdint.h>

#include <uv.h>

#include "util/http.h"
#include "sigv4.h"

/* Refresh windows before Expiration, in seconds. */
#define AWSCREDS_ADVISORY	(15 * 60)
#define AWSCREDS_MANDATORY	(5 * 60)
/* After a failed refresh, the old credentials are kept this long. */
#define AWSCREDS_RETRY		60

struct awscreds;

struct awscreds_opts {
	const char	*region;	/* configured region, or NULL */
	/* STS base URL, or NULL for https://sts.<region>.amazonaws.com. */
	const char	*sts_endpoint;
};

/*
 * creds is NULL when error is set.  Both point into the awscreds and are
 * valid until the callback returns: copy what must outlive it.  For the
 * region, transient says the failure may heal (IMDS did not answer, as
 * when the network is not up yet at boot, or answered a server error):
 * asking again later may find it.
 */
typedef void (*awscreds_cb)(void *arg, const struct aws_creds *creds,
    const char *error);
typedef void (*awscreds_region_cb)(void *arg, const char *region,
    const char *error, int transient);

/* The strings of opts are copied.  NULL when out of memory. */
struct awscreds	*awscreds_new(uv_loop_t *, struct http *,
		    const struct awscreds_opts *);
/*
 * Cancels any fetch in flight; callbacks still waiting are not called.
 * Must not be called from inside an awscreds callback.
 */
void		 awscreds_free(struct awscreds *);

/*
 * Hands credentials to cb.  When cached credentials do not expire, or
 * expire more than AWSCREDS_MANDATORY seconds from now, cb runs at once,
 * before awscreds_get returns; inside the advisory window a refresh also
 * starts in the background.  Otherwise cb runs once the chain has been
 * walked: from the loop after network I/O, or before awscreds_get returns
 * when no source needed the network.  Callers arriving while a fetch is in
 * flight wait for that same fetch.  When a refresh fails but the old
 * credentials have not expired, they are handed out (with a warning) and
 * the refresh is retried AWSCREDS_RETRY seconds later.
 */
void		 awscreds_get(struct awscreds *, awscreds_cb, void *arg);
/* Withdraws a waiting awscreds_get(cb, arg): cb will not be called. */
void		 awscreds_forget(struct awscreds *, awscreds_cb, void *arg);
/*
 * Forgets the cached credentials, so the next awscreds_get fetches anew
 * (for when AWS answered ExpiredToken or InvalidClientTokenId).
 */
void		 awscreds_invalidate(struct awscreds *);
/*
 * Where the cached credentials came from: "environment",
 * "shared-credentials-file", "web-identity", "ecs", "imds"; NULL when none
 * are cached yet.
 */
const char	*awscreds_source(const struct awscreds *);
/* 1 while a fetch (foreground or background) is in flight. */
int		 awscreds_busy(const struct awscreds *);

/*
 * Resolves the region: the configured one, else AWS_REGION, else
 * AWS_DEFAULT_REGION, else the profile's `region` in the config file,
 * else IMDS placement/region.  A region found is cached; a failure is
 * not, so the next call looks again.  Like awscreds_get, cb runs before
 * the call returns unless IMDS must be asked.
 */
void		 awscreds_region(struct awscreds *, awscreds_region_cb,
		    void *arg);
/* The region resolved so far, or NULL. */
const char	*awscreds_region_cached(const struct awscreds *);

/*
 * Parses an ISO 8601 date-time as AWS writes it ("2017-05-17T15:09:54Z",
 * also with fractional seconds, a lowercase 't'/'z' or an offset such as
 * "+02:00" or "-0500") into unix seconds.  Returns 0 or -EINVAL.
 */
int		 awscreds_parse_time(const char *, int64_t *out);

#endif
