/*
 * AWS HealthLake requests bcdad sends: StartFHIRImportJob,
 * DescribeFHIRImportJob and DescribeFHIRDatastore (protocol json 1.0,
 * target prefix "HealthLake", reference/aws.md 1.2), signed with SigV4
 * (aws.h), and the reading of their answers with jansson.
 *
 * Request builders return NULL with errno EINVAL when a required input is
 * missing or malformed, or ENOMEM (or whatever aws_request met).  Parsers
 * return 0; -EIO when the answer is an AWS error or no answer at all
 * (read it with aws_parse_error and aws_retryable); -EBADMSG when a 2xx
 * body is not the expected JSON; -ENOMEM.
 */
#ifndef BCDAD_HEALTHLAKE_H
#define BCDAD_HEALTHLAKE_H

#include <stdint.h>
#include <time.h>

#include "aws.h"

#define HL_CLIENT_TOKEN_MAX	64

/* One StartFHIRImportJob.  job_name may be NULL; the rest are required. */
struct hl_import {
	const char	*job_name;
	const char	*input_s3_uri;	/* s3://bucket/prefix/ */
	const char	*output_s3_uri;	/* where HealthLake writes its report */
	const char	*kms_key_id;	/* required by the API for the output */
	const char	*datastore_id;
	const char	*role_arn;	/* DataAccessRoleArn */
	const char	*client_token;	/* hl_client_token() */
};

/* What DescribeFHIRImportJob says of a job. */
struct hl_job_status {
	char		 status[40];	/* JobStatus as sent, maybe unknown */
	char		 message[512];	/* Message, "" if none; may be cut */
	/* JobProgressReport; -1 when HealthLake did not report it. */
	int64_t		 scanned_files;
	int64_t		 imported_files;
	int64_t		 resources_scanned;
	int64_t		 resources_imported;
	int64_t		 resources_customer_error;
	int64_t		 files_customer_error;
	double		 submit_time;	/* epoch seconds; 0 if absent */
	double		 end_time;	/* epoch seconds; 0 if not ended */
	int		 terminal;	/* no further change: stop polling */
	int		 failed;	/* terminal without an import */
	int		 with_errors;	/* COMPLETED_WITH_ERRORS */
};

/*
 * Each builds a signed POST / for the endpoint (scheme://host[:port]) or,
 * when endpoint is NULL, AWS's https://healthlake.<region>.amazonaws.com.
 * The body goes with the request; nothing in it is secret.
 */
struct http_req	*hl_start_import(const char *endpoint, const char *region,
		    const struct hl_import *, const struct aws_creds *,
		    time_t now);
struct http_req	*hl_describe_import(const char *endpoint, const char *region,
		    const char *datastore_id, const char *job_id,
		    const struct aws_creds *, time_t now);
struct http_req	*hl_describe_datastore(const char *endpoint,
		    const char *region, const char *datastore_id,
		    const struct aws_creds *, time_t now);

/*
 * A StartFHIRImportJob answer: *job_id (malloc'd, the caller frees it)
 * and JobStatus (cut to 31 bytes).  Both are required in the answer.
 */
int		 hl_parse_start(const struct http_resp *, char **job_id,
		    char status[32]);
/*
 * A DescribeFHIRImportJob answer.  An unknown JobStatus (a newer API's
 * QUEUED, say) parses fine and is not terminal: keep polling, within the
 * job's deadline.  COMPLETED and COMPLETED_WITH_ERRORS are terminal;
 * FAILED, CANCEL_COMPLETED and CANCEL_FAILED are terminal and failed
 * (bcdad never cancels an import, so a cancelled one did not import).
 */
int		 hl_parse_describe(const struct http_resp *,
		    struct hl_job_status *);
/* A DescribeFHIRDatastore answer's DatastoreStatus ("ACTIVE", ...). */
int		 hl_parse_datastore(const struct http_resp *, char status[32]);

/*
 * The ClientToken of bcdad job job_id for profile: the same on every
 * retry and after a restart, so HealthLake starts one import per job;
 * different for every (job, profile).  Written as
 * "bcdad-<job id>-<32 hex digits of SHA-256(profile, job id)>", at most
 * 59 characters, all of [a-z0-9-].  Returns 0, -ENOMEM, or -EIO if
 * libcrypto fails.  A job id alone repeats when the state database is
 * recreated: callers that fear it fold something unique to the
 * installation or the export into profile.
 */
int		 hl_client_token(int64_t job_id, const char *profile,
		    char out[HL_CLIENT_TOKEN_MAX + 1]);

#endif
