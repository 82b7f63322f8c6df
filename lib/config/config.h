/*
 * Configuration: an INI file read with libinih.
 *
 *   [daemon]            state_dir, runtime_dir, storage_dir, log_level,
 *                       max_downloads, max_downloads_per_job,
 *                       connect_timeout, low_speed_time, poll_min, poll_max,
 *                       retry_min, retry_max
 *   [aws]               region, s3_endpoint_url, sts_endpoint_url,
 *                       healthlake_endpoint_url, sns_endpoint_url,
 *                       secretsmanager_endpoint_url
 *   [profile NAME]      one per ACO: base_url, api_version, endpoint,
 *                       resource_types, since, type_filter, client_id,
 *                       client_secret_file | client_secret_credential,
 *                       storage_dir, s3_bucket, s3_prefix, kms_key_id,
 *                       multipart_threshold, keep_local,
 *                       healthlake_datastore_id, healthlake_role_arn,
 *                       healthlake_output_uri, sns_topic_arn,
 *                       bcda_secret_arn (instead of client_id and
 *                       client_secret_*)
 *
 * Every error is collected as "file:line: message" and parsing goes on, so
 * `bcdad -n` reports all of them at once.  Unknown sections and keys are
 * errors.  Secrets are never stored in struct config: only where to read
 * them from (see config_read_secret).  AWS credentials are not configured
 * here at all: they come from the standard AWS chain.
 */
#ifndef BCDAD_CONFIG_H
#define BCDAD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

#define CONFIG_MAX_PROFILES	256
#define CONFIG_MAX_TYPES	8
#define CONFIG_PROFILE_NAME_MAX	64
/* The control socket, <runtime_dir>/CONFIG_SOCKET_NAME. */
#define CONFIG_SOCKET_NAME	"bcdad.sock"

enum bcda_endpoint {
	EP_PATIENT,		/* /Patient/$export */
	EP_GROUP_ALL,		/* /Group/all/$export */
	EP_GROUP_RUNOUT,	/* /Group/runout/$export */
};

enum since_policy {
	SINCE_AUTO,		/* last successful transactionTime, none at first */
	SINCE_NONE,		/* always full history */
	SINCE_FIXED,		/* the instant given in since_value */
};

struct profile {
	char		*name;
	char		*base_url;	/* scheme://host[:port], no trailing / */
	int		 api_version;	/* 1, 2 or 3 */
	enum bcda_endpoint endpoint;
	char		*types[CONFIG_MAX_TYPES];
	int		 ntypes;	/* 0 = the server's default set */
	enum since_policy since;
	char		*since_value;	/* SINCE_FIXED only */
	char		*type_filter;	/* v3 only; raw, unencoded */
	char		*client_id;
	char		*secret_file;	/* path, mode 0600 enforced */
	char		*secret_credential; /* name in $CREDENTIALS_DIRECTORY */
	char		*storage_dir;	/* local output root */
	int		 line;		/* where the section starts */

	/* Upload to S3; the next four fields and HealthLake need it. */
	char		*s3_bucket;	/* NULL: files stay local only */
	char		*s3_prefix;	/* "" or "dir/.../" (one final '/') */
	char		*kms_key_id;	/* SSE-KMS key; NULL: bucket default */
	long long	 multipart_threshold; /* bytes, 5 MiB..5 GiB */
	int		 keep_local;	/* keep files after upload; 1 w/o S3 */

	/* Import into AWS HealthLake: both ids set, or neither. */
	char		*healthlake_datastore_id;
	char		*healthlake_role_arn;	/* DataAccessRoleArn */
	char		*healthlake_output_uri; /* s3://...; defaulted */

	char		*sns_topic_arn;	/* job events; NULL: none */
	char		*bcda_secret_arn; /* Secrets Manager JSON with
					   client_id, client_secret; then
					   client_id and secret_* are NULL */
	int		 runout_fallback; /* January: export /Group/runout */
	int64_t		 secret_issued;	/* unix s of the secret's issue, 0 */
};

struct config {
	char		*path;
	char		*state_dir;
	char		*runtime_dir;
	char		*storage_dir;	/* default for profiles */
	enum log_level	 log_level;
	int		 max_downloads;		/* overall */
	int		 max_downloads_per_job;
	int		 connect_timeout;	/* seconds */
	int		 low_speed_time;	/* seconds below 1 byte/s */
	int		 poll_min, poll_max;	/* status poll backoff, seconds */
	int		 retry_min, retry_max;	/* transient-error backoff, s */
	int		 retry_budget;	/* s a stage retries before failing */
	int		 bcda_request_limit;	/* BCDA requests per window, */
	int		 bcda_request_window;	/* all profiles together (s) */
	int		 bcda_job_timeout;	/* s a BCDA job blocks others */
	char		*metrics_file;	/* Prometheus text file, or NULL */
	long		 control_gid;	/* the control socket's group, or -1 */
	struct profile	*profiles[CONFIG_MAX_PROFILES];
	int		 nprofiles;

	/* [aws]: NULL when unset; endpoints have no trailing '/'. */
	char		*aws_region;	/* else AWS_REGION, IMDS, ... */
	char		*s3_endpoint;	/* scheme://host[:port] */
	char		*sts_endpoint;
	char		*healthlake_endpoint;
	char		*sns_endpoint;
	char		*secretsmanager_endpoint;
};

/*
 * Parses and validates path.  Returns the config, or NULL with every
 * problem written to errs (one "file:line: message" per line, NUL
 * terminated, truncated to errlen).
 */
struct config	*config_load(const char *path, char *errs, size_t errlen);
void		 config_free(struct config *);
struct profile	*config_profile(const struct config *, const char *name);
const char	*config_endpoint_name(enum bcda_endpoint);

/*
 * Reads the profile's client secret from its file (refused unless owned by
 * us and not readable by group or others) or from the systemd credential.
 * Returns a malloc'd string the caller must wipe with explicit_bzero and
 * free, or NULL with a message in err (always for a profile that sets
 * bcda_secret_arn: its credentials come from Secrets Manager).
 */
char		*config_read_secret(const struct profile *, char *err, size_t errlen);

/*
 * config_check.c: checks of single values, used by config.c and open to
 * the modules that build requests from them.  The config_check_*
 * functions return NULL when the value is acceptable, or else a phrase
 * saying why not, written to follow `key "value"` in an error message.
 * The others return 1/0 (valid_*) or 0/-EINVAL (parse_*).
 */
const char	*config_check_url(const char *); /* https://host[:port] */
const char	*config_check_region(const char *);
const char	*config_check_bucket(const char *);
const char	*config_check_prefix(const char *);
const char	*config_check_kms_key_id(const char *);
const char	*config_check_datastore_id(const char *);
const char	*config_check_role_arn(const char *);
const char	*config_check_s3_uri(const char *);
const char	*config_check_sns_topic_arn(const char *);
const char	*config_check_secret_id(const char *);
int		 config_valid_profile_name(const char *);
int		 config_valid_credential_name(const char *);
int		 config_valid_instant(const char *);	/* RFC 3339, zoned */
int		 config_parse_int(const char *, long min, long max, int *);
int		 config_parse_size(const char *, long long min, long long max,
		    long long *);			/* 123, 8K, 8M, 1G */
int		 config_parse_bool(const char *, int *); /* yes/no/true/... */
int		 config_parse_date(const char *, int64_t *); /* YYYY-MM-DD, UTC */
/*
 * The length of the longest prefix of s[0..len) that is valid UTF-8 (no
 * overlong forms, surrogates or code points past U+10FFFF, as JSON
 * needs): len when all of it is.
 */
size_t		 config_utf8_valid(const char *s, size_t len);
int		 config_type_index(const char *);	/* -1: unknown type */
int		 config_type_in_version(const char *, int version);
void		 config_types_for_version(int version, char *, size_t);

#endif
