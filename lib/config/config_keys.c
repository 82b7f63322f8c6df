/*
 * Configuration: what each key means.  The key names of every section,
 * their defaults, the handling of one value, and the checks that need the
 * whole section, run when it ends.  The reader that feeds these is in
 * config.c; checks of single values are in config_check.c.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config_parse.h"

#define DEFAULT_STATE_DIR	"/var/lib/bcdad"
#define DEFAULT_RUNTIME_DIR	"/run/bcdad"
#define DEFAULT_BASE_URL	"https://sandbox.bcda.cms.gov"
#define MIB			(1LL << 20)
#define MULTIPART_MIN		(5 * MIB)	/* S3's smallest part */
#define MULTIPART_MAX		(5 * 1024 * MIB) /* S3's largest PUT */
#define MULTIPART_DEFAULT	(8 * MIB)	/* as the AWS CLI */
/* A socket path's bytes without its NUL, and what leaves for the dir. */
#define SUN_PATH_MAX	(sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define RUNTIME_DIR_MAX	(SUN_PATH_MAX - sizeof("/" CONFIG_SOCKET_NAME) + 1)

enum daemon_key {
	DK_STATE_DIR,
	DK_RUNTIME_DIR,
	DK_STORAGE_DIR,
	DK_LOG_LEVEL,
	DK_MAX_DOWNLOADS,
	DK_MAX_DOWNLOADS_PER_JOB,
	DK_CONNECT_TIMEOUT,
	DK_LOW_SPEED_TIME,
	DK_POLL_MIN,
	DK_POLL_MAX,
	DK_RETRY_MIN,
	DK_RETRY_MAX,
	DK_RETRY_BUDGET,
	DK_BCDA_REQUEST_LIMIT,
	DK_BCDA_REQUEST_WINDOW,
	DK_BCDA_JOB_TIMEOUT,
	DK_METRICS_FILE,
	DK_CONTROL_GROUP,
	DK__COUNT
};

enum profile_key {
	PK_BASE_URL,
	PK_API_VERSION,
	PK_ENDPOINT,
	PK_RESOURCE_TYPES,
	PK_SINCE,
	PK_TYPE_FILTER,
	PK_CLIENT_ID,
	PK_SECRET_FILE,
	PK_SECRET_CREDENTIAL,
	PK_STORAGE_DIR,
	PK_S3_BUCKET,
	PK_S3_PREFIX,
	PK_KMS_KEY_ID,
	PK_MULTIPART_THRESHOLD,
	PK_KEEP_LOCAL,
	PK_HL_DATASTORE_ID,
	PK_HL_ROLE_ARN,
	PK_HL_OUTPUT_URI,
	PK_SNS_TOPIC_ARN,
	PK_BCDA_SECRET_ARN,
	PK_RUNOUT_FALLBACK,
	PK_SECRET_ISSUED,
	PK__COUNT
};

enum aws_key {
	AK_REGION,
	AK_S3_ENDPOINT,
	AK_STS_ENDPOINT,
	AK_HEALTHLAKE_ENDPOINT,
	AK_SNS_ENDPOINT,
	AK_SECRETSMANAGER_ENDPOINT,
	AK__COUNT
};

_Static_assert(DK__COUNT <= CONF_KEY_MAX && PK__COUNT <= CONF_KEY_MAX &&
    AK__COUNT <= CONF_KEY_MAX, "CONF_KEY_MAX");

static const char *const daemon_keys[DK__COUNT] = {
	[DK_STATE_DIR] = "state_dir",
	[DK_RUNTIME_DIR] = "runtime_dir",
	[DK_STORAGE_DIR] = "storage_dir",
	[DK_LOG_LEVEL] = "log_level",
	[DK_MAX_DOWNLOADS] = "max_downloads",
	[DK_MAX_DOWNLOADS_PER_JOB] = "max_downloads_per_job",
	[DK_CONNECT_TIMEOUT] = "connect_timeout",
	[DK_LOW_SPEED_TIME] = "low_speed_time",
	[DK_POLL_MIN] = "poll_min",
	[DK_POLL_MAX] = "poll_max",
	[DK_RETRY_MIN] = "retry_min",
	[DK_RETRY_MAX] = "retry_max",
	[DK_RETRY_BUDGET] = "retry_budget",
	[DK_BCDA_REQUEST_LIMIT] = "bcda_request_limit",
	[DK_BCDA_REQUEST_WINDOW] = "bcda_request_window",
	[DK_BCDA_JOB_TIMEOUT] = "bcda_job_timeout",
	[DK_METRICS_FILE] = "metrics_file",
	[DK_CONTROL_GROUP] = "control_group",
};

static const char *const profile_keys[PK__COUNT] = {
	[PK_BASE_URL] = "base_url",
	[PK_API_VERSION] = "api_version",
	[PK_ENDPOINT] = "endpoint",
	[PK_RESOURCE_TYPES] = "resource_types",
	[PK_SINCE] = "since",
	[PK_TYPE_FILTER] = "type_filter",
	[PK_CLIENT_ID] = "client_id",
	[PK_SECRET_FILE] = "client_secret_file",
	[PK_SECRET_CREDENTIAL] = "client_secret_credential",
	[PK_STORAGE_DIR] = "storage_dir",
	[PK_S3_BUCKET] = "s3_bucket",
	[PK_S3_PREFIX] = "s3_prefix",
	[PK_KMS_KEY_ID] = "kms_key_id",
	[PK_MULTIPART_THRESHOLD] = "multipart_threshold",
	[PK_KEEP_LOCAL] = "keep_local",
	[PK_HL_DATASTORE_ID] = "healthlake_datastore_id",
	[PK_HL_ROLE_ARN] = "healthlake_role_arn",
	[PK_HL_OUTPUT_URI] = "healthlake_output_uri",
	[PK_SNS_TOPIC_ARN] = "sns_topic_arn",
	[PK_BCDA_SECRET_ARN] = "bcda_secret_arn",
	[PK_RUNOUT_FALLBACK] = "runout_fallback",
	[PK_SECRET_ISSUED] = "client_secret_issued",
};

static const char *const aws_keys[AK__COUNT] = {
	[AK_REGION] = "region",
	[AK_S3_ENDPOINT] = "s3_endpoint_url",
	[AK_STS_ENDPOINT] = "sts_endpoint_url",
	[AK_HEALTHLAKE_ENDPOINT] = "healthlake_endpoint_url",
	[AK_SNS_ENDPOINT] = "sns_endpoint_url",
	[AK_SECRETSMANAGER_ENDPOINT] = "secretsmanager_endpoint_url",
};

/*
 * The integer keys of [daemon].  The lower bounds of poll_max and
 * retry_max are checked against poll_min and retry_min once the section
 * is complete.
 */
static const struct int_key {
	enum daemon_key	 key;
	size_t		 off;
	int		 min, max, def;
} int_keys[] = {
	{ DK_MAX_DOWNLOADS, offsetof(struct config, max_downloads),
	    1, 256, 16 },
	{ DK_MAX_DOWNLOADS_PER_JOB,
	    offsetof(struct config, max_downloads_per_job), 1, 64, 4 },
	{ DK_CONNECT_TIMEOUT, offsetof(struct config, connect_timeout),
	    1, 600, 30 },
	{ DK_LOW_SPEED_TIME, offsetof(struct config, low_speed_time),
	    1, 3600, 60 },
	{ DK_POLL_MIN, offsetof(struct config, poll_min), 1, 3600, 15 },
	{ DK_POLL_MAX, offsetof(struct config, poll_max), 1, 86400, 300 },
	{ DK_RETRY_MIN, offsetof(struct config, retry_min), 1, 86400, 5 },
	{ DK_RETRY_MAX, offsetof(struct config, retry_max), 1, 86400, 900 },
	/* How long one stage keeps retrying transient failures in a row. */
	{ DK_RETRY_BUDGET, offsetof(struct config, retry_budget),
	    1, 7 * 86400, 6 * 3600 },
	/*
	 * BCDA's WAF: a rate-based rule of 1,000 requests per 5 minutes per
	 * IP address (CMSgov/cdap terraform/services/api-waf/main.tf; the
	 * docs say 3,000, the deployed rule says 1,000).
	 */
	{ DK_BCDA_REQUEST_LIMIT, offsetof(struct config, bcda_request_limit),
	    1, 1000000, 1000 },
	{ DK_BCDA_REQUEST_WINDOW, offsetof(struct config, bcda_request_window),
	    1, 86400, 300 },
	/* BCDA's ARCHIVE_THRESHOLD_HR: a job blocks others for 24 h. */
	{ DK_BCDA_JOB_TIMEOUT, offsetof(struct config, bcda_job_timeout),
	    1, 7 * 86400, 86400 },
};

/*
 * The keys whose value is one string, checked by a function of
 * config_check.c and then kept as written; a URL loses its trailing
 * slash.  Their errors read "key \"value\" <what the check says>".
 */
#define C_OFF(f)	offsetof(struct config, f)
#define P_OFF(f)	offsetof(struct profile, f)
static const struct str_key {
	enum sect_kind	 sect;
	int		 key;
	size_t		 off;		/* of the char * in config or profile */
	const char	*(*check)(const char *);
	int		 url;
} str_keys[] = {
	{ SECT_AWS, AK_REGION, C_OFF(aws_region), config_check_region, 0 },
	{ SECT_AWS, AK_S3_ENDPOINT, C_OFF(s3_endpoint), config_check_url, 1 },
	{ SECT_AWS, AK_STS_ENDPOINT, C_OFF(sts_endpoint), config_check_url,
	    1 },
	{ SECT_AWS, AK_HEALTHLAKE_ENDPOINT, C_OFF(healthlake_endpoint),
	    config_check_url, 1 },
	{ SECT_AWS, AK_SNS_ENDPOINT, C_OFF(sns_endpoint), config_check_url,
	    1 },
	{ SECT_AWS, AK_SECRETSMANAGER_ENDPOINT, C_OFF(secretsmanager_endpoint),
	    config_check_url, 1 },
	{ SECT_PROFILE, PK_BASE_URL, P_OFF(base_url), config_check_url, 1 },
	{ SECT_PROFILE, PK_S3_BUCKET, P_OFF(s3_bucket), config_check_bucket,
	    0 },
	{ SECT_PROFILE, PK_KMS_KEY_ID, P_OFF(kms_key_id),
	    config_check_kms_key_id, 0 },
	{ SECT_PROFILE, PK_HL_DATASTORE_ID, P_OFF(healthlake_datastore_id),
	    config_check_datastore_id, 0 },
	{ SECT_PROFILE, PK_HL_ROLE_ARN, P_OFF(healthlake_role_arn),
	    config_check_role_arn, 0 },
	{ SECT_PROFILE, PK_HL_OUTPUT_URI, P_OFF(healthlake_output_uri),
	    config_check_s3_uri, 0 },
	{ SECT_PROFILE, PK_SNS_TOPIC_ARN, P_OFF(sns_topic_arn),
	    config_check_sns_topic_arn, 0 },
	{ SECT_PROFILE, PK_BCDA_SECRET_ARN, P_OFF(bcda_secret_arn),
	    config_check_secret_id, 0 },
};

/* Profile keys that only mean something when files go to S3. */
static const enum profile_key s3_only_keys[] = {
	PK_S3_PREFIX, PK_KMS_KEY_ID, PK_MULTIPART_THRESHOLD, PK_KEEP_LOCAL,
	PK_HL_DATASTORE_ID, PK_HL_ROLE_ARN, PK_HL_OUTPUT_URI,
};

static const char *const endpoint_names[] = {
	[EP_PATIENT] = "patient",
	[EP_GROUP_ALL] = "group-all",
	[EP_GROUP_RUNOUT] = "group-runout",
};

/* Replaces *dst with a copy of s. */
static void
set_str(struct parse_state *ps, char **dst, const char *s)
{
	free(*dst);
	*dst = conf_strdup(ps, s);
}

/* Like set_str() for a directory, without trailing slashes. */
static void
set_dir(struct parse_state *ps, char **dst, const char *s)
{
	size_t len = strlen(s);

	while (len > 1 && s[len - 1] == '/')
		len--;
	free(*dst);
	if ((*dst = strndup(s, len)) == NULL)
		ps->oom = 1;
}

static const struct str_key *
str_key_find(enum sect_kind sect, int key)
{
	size_t i;

	for (i = 0; i < sizeof(str_keys) / sizeof(str_keys[0]); i++)
		if (str_keys[i].sect == sect && str_keys[i].key == key)
			return &str_keys[i];
	return NULL;
}

/*
 * Handles a key of str_keys in the current section.  Returns 0, or
 * -EINVAL after recording the problem.
 */
static int
str_key_set(struct parse_state *ps, const struct str_key *sk,
    const char *name, const char *value)
{
	char *base = sk->sect == SECT_AWS ? (char *)ps->conf :
	    (char *)ps->prof;
	char **dst = (char **)(void *)(base + sk->off);
	size_t len = strlen(value);
	const char *why;

	if ((why = sk->check(value)) != NULL) {
		conf_error(ps, ps->line, "%s \"%s\" %s", name, value, why);
		return -EINVAL;
	}
	if (sk->url && len > 0 && value[len - 1] == '/')
		len--;
	free(*dst);
	if ((*dst = strndup(value, len)) == NULL)
		ps->oom = 1;
	return 0;
}

/*
 * Splits a comma list of resource types into the profile.  Whitespace
 * around names is allowed.  The API version is checked later, once the
 * whole section is known.
 */
static int
parse_types(struct parse_state *ps, struct profile *p, const char *value)
{
	char all[128], *copy, *tok, *save = NULL;
	int i, j, rc = 0;

	for (i = 0; i < p->ntypes; i++)
		free(p->types[i]);
	p->ntypes = 0;
	if (value[0] == '\0')
		return 0;
	if ((copy = conf_strdup(ps, value)) == NULL)
		return -ENOMEM;
	config_types_for_version(0, all, sizeof(all));
	/* strtok_r would skip empty entries, which we want to report. */
	for (tok = copy; tok != NULL; tok = save) {
		char *end;

		if ((save = strchr(tok, ',')) != NULL)
			*save++ = '\0';
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok == '\0') {
			conf_error(ps, ps->line, "resource_types \"%s\" has an "
			    "empty entry; list types separated by commas",
			    value);
			rc = -EINVAL;
			continue;
		}
		if (config_type_index(tok) == -1) {
			conf_error(ps, ps->line, "resource type \"%s\" is not "
			    "one of %s", tok, all);
			rc = -EINVAL;
			continue;
		}
		for (j = 0; j < p->ntypes; j++)
			if (strcmp(p->types[j], tok) == 0)
				break;
		if (j < p->ntypes) {
			conf_error(ps, ps->line, "resource type \"%s\" is "
			    "listed twice", tok);
			rc = -EINVAL;
			continue;
		}
		if ((p->types[p->ntypes] = conf_strdup(ps, tok)) == NULL) {
			rc = -ENOMEM;
			break;
		}
		p->ntypes++;
	}
	free(copy);
	return rc;
}

/*
 * Handles one key of [daemon].  Returns 0, or -EINVAL after recording the
 * problem.
 */
static int
daemon_key(struct parse_state *ps, int key, const char *value)
{
	struct config *c = ps->conf;
	const char *name = daemon_keys[key];
	struct group gr, *grp;
	char buf[4096];
	size_t i;

	switch (key) {
	case DK_STATE_DIR:
	case DK_RUNTIME_DIR:
	case DK_STORAGE_DIR:
		if (value[0] != '/') {
			conf_error(ps, ps->line, "%s \"%s\" is not an absolute "
			    "path", name, value);
			return -EINVAL;
		}
		set_dir(ps, key == DK_STATE_DIR ? &c->state_dir :
		    key == DK_RUNTIME_DIR ? &c->runtime_dir : &c->storage_dir,
		    value);
		/*
		 * The control socket's path must fit a Unix socket address,
		 * or binding it would cut the name short.
		 */
		if (key == DK_RUNTIME_DIR && c->runtime_dir != NULL &&
		    strlen(c->runtime_dir) > RUNTIME_DIR_MAX) {
			conf_error(ps, ps->line, "runtime_dir \"%s\" is too "
			    "long (%zu bytes): the control socket's path, "
			    "runtime_dir + \"/%s\", must fit the %zu bytes of "
			    "a Unix socket path; use at most %zu bytes",
			    c->runtime_dir, strlen(c->runtime_dir),
			    CONFIG_SOCKET_NAME, SUN_PATH_MAX, RUNTIME_DIR_MAX);
			return -EINVAL;
		}
		return 0;
	case DK_METRICS_FILE:
		if (value[0] != '/') {
			conf_error(ps, ps->line, "metrics_file \"%s\" is not an "
			    "absolute path", value);
			return -EINVAL;
		}
		set_str(ps, &c->metrics_file, value);
		return 0;
	case DK_CONTROL_GROUP:
		if (getgrnam_r(value, &gr, buf, sizeof(buf), &grp) != 0 ||
		    grp == NULL) {
			conf_error(ps, ps->line, "control_group \"%s\" is not a "
			    "group of this system", value);
			return -EINVAL;
		}
		c->control_gid = (long)grp->gr_gid;
		return 0;
	case DK_LOG_LEVEL:
		if (log_level_parse(value, &c->log_level) != 0) {
			conf_error(ps, ps->line, "log_level \"%s\" is not one "
			    "of error, warning, info, debug", value);
			return -EINVAL;
		}
		return 0;
	}
	for (i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++) {
		const struct int_key *ik = &int_keys[i];

		if ((int)ik->key != key)
			continue;
		if (config_parse_int(value, ik->min, ik->max,
		    (int *)(void *)((char *)c + ik->off)) != 0) {
			conf_error(ps, ps->line, "%s \"%s\" is not a whole "
			    "number from %d to %d", name, value, ik->min,
			    ik->max);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

/*
 * Handles one key of a [profile NAME] section.  Checks that depend on
 * other keys wait for profile_finish().
 */
static int
profile_key(struct parse_state *ps, int key, const char *value)
{
	struct profile *p = ps->prof;
	const char *why, *q;
	size_t len;

	switch (key) {
	case PK_API_VERSION:
		if (strcmp(value, "v1") == 0)
			p->api_version = 1;
		else if (strcmp(value, "v2") == 0)
			p->api_version = 2;
		else if (strcmp(value, "v3") == 0)
			p->api_version = 3;
		else {
			conf_error(ps, ps->line, "api_version \"%s\" is not "
			    "one of v1, v2, v3", value);
			return -EINVAL;
		}
		return 0;
	case PK_ENDPOINT:
		if (strcmp(value, "patient") == 0)
			p->endpoint = EP_PATIENT;
		else if (strcmp(value, "group-all") == 0)
			p->endpoint = EP_GROUP_ALL;
		else if (strcmp(value, "group-runout") == 0)
			p->endpoint = EP_GROUP_RUNOUT;
		else {
			conf_error(ps, ps->line, "endpoint \"%s\" is not one "
			    "of patient, group-all, group-runout", value);
			return -EINVAL;
		}
		return 0;
	case PK_RESOURCE_TYPES:
		return parse_types(ps, p, value);
	case PK_SINCE:
		free(p->since_value);
		p->since_value = NULL;
		if (strcmp(value, "auto") == 0)
			p->since = SINCE_AUTO;
		else if (strcmp(value, "none") == 0)
			p->since = SINCE_NONE;
		else if (config_valid_instant(value)) {
			p->since = SINCE_FIXED;
			p->since_value = conf_strdup(ps, value);
		} else {
			conf_error(ps, ps->line, "since \"%s\" is not auto, "
			    "none or an instant with a zone such as "
			    "2026-07-01T12:00:00.000-05:00 or "
			    "2026-07-01T17:00:00Z", value);
			return -EINVAL;
		}
		return 0;
	case PK_TYPE_FILTER:
		if (strncmp(value, "ExplanationOfBenefit?", 21) != 0 ||
		    value[21] == '\0') {
			conf_error(ps, ps->line, "type_filter \"%s\" must "
			    "start with \"ExplanationOfBenefit?\" followed by "
			    "search parameters", value);
			return -EINVAL;
		}
		set_str(ps, &p->type_filter, value);
		return 0;
	case PK_CLIENT_ID:
		for (q = value; *q != '\0'; q++)
			if (*q == ':' || !isgraph((unsigned char)*q))
				break;
		if (*q != '\0') {
			conf_error(ps, ps->line, "client_id \"%s\" may not "
			    "contain ':', spaces or control characters",
			    value);
			return -EINVAL;
		}
		set_str(ps, &p->client_id, value);
		return 0;
	case PK_SECRET_FILE:
	case PK_STORAGE_DIR:
		if (value[0] != '/') {
			conf_error(ps, ps->line, "%s \"%s\" is not an absolute "
			    "path", profile_keys[key], value);
			return -EINVAL;
		}
		if (key == PK_SECRET_FILE)
			set_str(ps, &p->secret_file, value);
		else
			set_dir(ps, &p->storage_dir, value);
		return 0;
	case PK_SECRET_CREDENTIAL:
		if (!config_valid_credential_name(value)) {
			conf_error(ps, ps->line, "client_secret_credential "
			    "\"%s\" is not a credential name (a file name "
			    "without '/' or spaces)", value);
			return -EINVAL;
		}
		set_str(ps, &p->secret_credential, value);
		return 0;
	case PK_S3_PREFIX:
		if ((why = config_check_prefix(value)) != NULL) {
			conf_error(ps, ps->line, "s3_prefix \"%s\" %s", value,
			    why);
			return -EINVAL;
		}
		/* Stored with exactly one trailing '/', to be prepended. */
		len = strlen(value);
		while (len > 0 && value[len - 1] == '/')
			len--;
		free(p->s3_prefix);
		if (asprintf(&p->s3_prefix, "%.*s/", (int)len, value) == -1) {
			p->s3_prefix = NULL;
			ps->oom = 1;
		}
		return 0;
	case PK_MULTIPART_THRESHOLD:
		if (config_parse_size(value, MULTIPART_MIN, MULTIPART_MAX,
		    &p->multipart_threshold) != 0) {
			conf_error(ps, ps->line, "multipart_threshold \"%s\" "
			    "is not a size from 5M to 5G; write a number of "
			    "bytes, or a number followed by K, M or G", value);
			return -EINVAL;
		}
		return 0;
	case PK_KEEP_LOCAL:
	case PK_RUNOUT_FALLBACK:
		if (config_parse_bool(value, key == PK_KEEP_LOCAL ?
		    &p->keep_local : &p->runout_fallback) != 0) {
			conf_error(ps, ps->line, "%s \"%s\" is not one of yes, "
			    "no, true, false, 1, 0", profile_keys[key], value);
			return -EINVAL;
		}
		return 0;
	case PK_SECRET_ISSUED:
		if (config_parse_date(value, &p->secret_issued) != 0) {
			conf_error(ps, ps->line, "client_secret_issued \"%s\" "
			    "is not a date such as 2026-09-01", value);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static void
daemon_finish(struct parse_state *ps)
{
	struct config *c = ps->conf;
	int line;

	if (c->poll_max < c->poll_min && !ps->keybad[DK_POLL_MAX] &&
	    !ps->keybad[DK_POLL_MIN]) {
		line = ps->keyline[DK_POLL_MAX] ? ps->keyline[DK_POLL_MAX] :
		    ps->keyline[DK_POLL_MIN];
		conf_error(ps, line, "poll_max %d is less than poll_min %d; "
		    "poll_max must be from poll_min to 86400", c->poll_max,
		    c->poll_min);
	}
	if (c->retry_max < c->retry_min && !ps->keybad[DK_RETRY_MAX] &&
	    !ps->keybad[DK_RETRY_MIN]) {
		line = ps->keyline[DK_RETRY_MAX] ? ps->keyline[DK_RETRY_MAX] :
		    ps->keyline[DK_RETRY_MIN];
		conf_error(ps, line, "retry_max %d is less than retry_min %d; "
		    "retry_max must be from retry_min to 86400", c->retry_max,
		    c->retry_min);
	}
}

/*
 * The first line at which one of keys a, b and c is set, 0 if none is.
 */
static int
first_line(const int *kl, int a, int b, int c)
{
	int line = 0;

	if (kl[a])
		line = kl[a];
	if (kl[b] && (line == 0 || kl[b] < line))
		line = kl[b];
	if (kl[c] && (line == 0 || kl[c] < line))
		line = kl[c];
	return line;
}

/*
 * The part of profile_finish() about AWS: the S3 keys need s3_bucket,
 * HealthLake needs a datastore and a role, and the defaults that follow
 * from other keys are filled in.
 */
static void
profile_finish_aws(struct parse_state *ps)
{
	struct profile *p = ps->prof;
	const int *kl = ps->keyline;
	const char *name;
	size_t i;
	int hl;

	for (i = 0; i < sizeof(s3_only_keys) / sizeof(s3_only_keys[0]); i++) {
		name = profile_keys[s3_only_keys[i]];
		/* A bad value was reported already. */
		if (kl[s3_only_keys[i]] && !kl[PK_S3_BUCKET] &&
		    !ps->keybad[s3_only_keys[i]])
			conf_error(ps, kl[s3_only_keys[i]], "%s needs "
			    "s3_bucket; set s3_bucket in [%s] or remove %s",
			    name, ps->sect_name, name);
	}
	if (kl[PK_HL_DATASTORE_ID] && !kl[PK_HL_ROLE_ARN])
		conf_error(ps, kl[PK_HL_DATASTORE_ID],
		    "healthlake_datastore_id needs healthlake_role_arn, the "
		    "role HealthLake assumes to read the bucket");
	if (kl[PK_HL_ROLE_ARN] && !kl[PK_HL_DATASTORE_ID])
		conf_error(ps, kl[PK_HL_ROLE_ARN], "healthlake_role_arn needs "
		    "healthlake_datastore_id, the datastore to import into");
	hl = kl[PK_HL_DATASTORE_ID] && kl[PK_HL_ROLE_ARN];
	if (kl[PK_HL_OUTPUT_URI] && !hl)
		conf_error(ps, kl[PK_HL_OUTPUT_URI], "healthlake_output_uri "
		    "needs healthlake_datastore_id and healthlake_role_arn");

	/* Without S3 the downloaded files are the only copy. */
	if (p->s3_bucket == NULL)
		p->keep_local = 1;
	if (hl && p->s3_bucket != NULL && p->healthlake_output_uri == NULL &&
	    asprintf(&p->healthlake_output_uri, "s3://%s/%shealthlake-output/",
	    p->s3_bucket, p->s3_prefix ? p->s3_prefix : "") == -1) {
		p->healthlake_output_uri = NULL;
		ps->oom = 1;
	}
}

/*
 * The part of profile_finish() about BCDA credentials: client_id and
 * exactly one secret source, or else bcda_secret_arn alone.
 */
static void
profile_finish_credentials(struct parse_state *ps)
{
	const int *kl = ps->keyline;
	int line;

	if (kl[PK_BCDA_SECRET_ARN]) {
		line = first_line(kl, PK_CLIENT_ID, PK_SECRET_FILE,
		    PK_SECRET_CREDENTIAL);
		if (line)
			conf_error(ps, line, "bcda_secret_arn replaces "
			    "client_id and client_secret_*; remove them");
		return;
	}
	if (!kl[PK_CLIENT_ID])
		conf_error(ps, ps->sect_line, "[%s] has no client_id; it is "
		    "required", ps->sect_name);
	if (!kl[PK_SECRET_FILE] && !kl[PK_SECRET_CREDENTIAL])
		conf_error(ps, ps->sect_line, "[%s] needs client_secret_file "
		    "or client_secret_credential", ps->sect_name);
	if (kl[PK_SECRET_FILE] && kl[PK_SECRET_CREDENTIAL])
		conf_error(ps, kl[PK_SECRET_FILE] > kl[PK_SECRET_CREDENTIAL] ?
		    kl[PK_SECRET_FILE] : kl[PK_SECRET_CREDENTIAL],
		    "[%s] sets both client_secret_file (line %d) and "
		    "client_secret_credential (line %d); use exactly one",
		    ps->sect_name, kl[PK_SECRET_FILE],
		    kl[PK_SECRET_CREDENTIAL]);
}

/*
 * Runs when a profile section is complete: where the BCDA credentials
 * come from, the AWS keys, and the checks that depend on api_version,
 * reported at the line of the offending key.
 */
static void
profile_finish(struct parse_state *ps)
{
	struct profile *p = ps->prof;
	const int *kl = ps->keyline;
	char allowed[128];
	int i, v = p->api_version;

	profile_finish_credentials(ps);
	profile_finish_aws(ps);
	if (ps->keybad[PK_API_VERSION])
		return;

	config_types_for_version(v, allowed, sizeof(allowed));
	for (i = 0; i < p->ntypes; i++) {
		if (config_type_in_version(p->types[i], v))
			continue;
		conf_error(ps, kl[PK_RESOURCE_TYPES], "resource type \"%s\" "
		    "is not available in api_version v%d; allowed: %s",
		    p->types[i], v, allowed);
	}
	if (kl[PK_TYPE_FILTER] && v != 3)
		conf_error(ps, kl[PK_TYPE_FILTER], "type_filter is only "
		    "allowed with api_version v3 (this profile uses v%d)", v);
}

/* A profile with every default that does not depend on other keys. */
struct profile *
conf_profile_new(struct parse_state *ps, const char *name, int line)
{
	struct profile *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		ps->oom = 1;
		return NULL;
	}
	p->name = conf_strdup(ps, name);
	p->base_url = conf_strdup(ps, DEFAULT_BASE_URL);
	p->api_version = 2;
	p->endpoint = EP_GROUP_ALL;
	p->since = SINCE_AUTO;
	p->s3_prefix = conf_strdup(ps, "");
	p->multipart_threshold = MULTIPART_DEFAULT;
	p->line = line;
	return p;
}

int
conf_key_lookup(enum sect_kind kind, const char *name)
{
	const char *const *names;
	int i, n;

	switch (kind) {
	case SECT_DAEMON:
		names = daemon_keys;
		n = DK__COUNT;
		break;
	case SECT_AWS:
		names = aws_keys;
		n = AK__COUNT;
		break;
	case SECT_PROFILE:
		names = profile_keys;
		n = PK__COUNT;
		break;
	default:
		return -1;
	}
	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/*
 * Handles one key of the current section, set for the first time at
 * ps->line.  A bad value is recorded and marked in ps->keybad.
 */
void
conf_key_set(struct parse_state *ps, int key, const char *name,
    const char *value)
{
	const struct str_key *sk;
	int n;

	/* An empty resource_types means the server's default set. */
	if (value[0] == '\0' &&
	    !(ps->kind == SECT_PROFILE && key == PK_RESOURCE_TYPES)) {
		conf_error(ps, ps->line, "%s in [%s] has no value", name,
		    conf_sect_label(ps));
		ps->keybad[key] = 1;
		return;
	}
	if ((sk = str_key_find(ps->kind, key)) != NULL)
		n = str_key_set(ps, sk, name, value);
	else if (ps->kind == SECT_DAEMON)
		n = daemon_key(ps, key, value);
	else
		n = profile_key(ps, key, value);
	if (n != 0)
		ps->keybad[key] = 1;
}

/*
 * An indented line after a key continues its value.  Only type_filter,
 * a long URL-like list, may do that; its pieces are joined as they are.
 */
void
conf_key_continue(struct parse_state *ps, const char *name,
    const char *value)
{
	char *s;

	if (ps->kind != SECT_PROFILE || ps->last_key != PK_TYPE_FILTER) {
		conf_error(ps, ps->line, "indented line continues the value "
		    "of \"%s\"; only type_filter may go on over several "
		    "lines, so remove the indentation", name);
		return;
	}
	if (ps->keybad[PK_TYPE_FILTER] || ps->prof->type_filter == NULL)
		return;
	if (asprintf(&s, "%s%s", ps->prof->type_filter, value) == -1) {
		ps->oom = 1;
		return;
	}
	free(ps->prof->type_filter);
	ps->prof->type_filter = s;
}

/* Called when a section ends: at the next header and at end of file. */
void
conf_section_done(struct parse_state *ps)
{
	if (ps->kind == SECT_DAEMON)
		daemon_finish(ps);
	else if (ps->kind == SECT_PROFILE)
		profile_finish(ps);
}

/* The defaults of [daemon], before the file is read. */
void
conf_defaults(struct parse_state *ps)
{
	struct config *c = ps->conf;
	size_t i;

	c->state_dir = conf_strdup(ps, DEFAULT_STATE_DIR);
	c->runtime_dir = conf_strdup(ps, DEFAULT_RUNTIME_DIR);
	c->control_gid = -1;
	c->log_level = LOG_LVL_INFO;
	for (i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++)
		*(int *)(void *)((char *)c + int_keys[i].off) = int_keys[i].def;
}

void
config_free(struct config *c)
{
	struct profile *p;
	int i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->nprofiles; i++) {
		p = c->profiles[i];
		free(p->name);
		free(p->base_url);
		for (j = 0; j < p->ntypes; j++)
			free(p->types[j]);
		free(p->since_value);
		free(p->type_filter);
		free(p->client_id);
		free(p->secret_file);
		free(p->secret_credential);
		free(p->storage_dir);
		free(p->s3_bucket);
		free(p->s3_prefix);
		free(p->kms_key_id);
		free(p->healthlake_datastore_id);
		free(p->healthlake_role_arn);
		free(p->healthlake_output_uri);
		free(p->sns_topic_arn);
		free(p->bcda_secret_arn);
		free(p);
	}
	free(c->path);
	free(c->state_dir);
	free(c->runtime_dir);
	free(c->storage_dir);
	free(c->metrics_file);
	free(c->aws_region);
	free(c->s3_endpoint);
	free(c->sts_endpoint);
	free(c->healthlake_endpoint);
	free(c->sns_endpoint);
	free(c->secretsmanager_endpoint);
	free(c);
}

/*
 * Fills in what defaults to other values: [daemon] storage_dir to
 * <state_dir>/exports, and each profile's storage_dir to [daemon]'s.
 */
void
conf_resolve(struct parse_state *ps)
{
	struct config *c = ps->conf;
	int i;

	if (c->storage_dir == NULL && c->state_dir != NULL &&
	    asprintf(&c->storage_dir, "%s/exports", c->state_dir) == -1) {
		c->storage_dir = NULL;
		ps->oom = 1;
	}
	for (i = 0; i < c->nprofiles; i++)
		if (c->profiles[i]->storage_dir == NULL && c->storage_dir)
			c->profiles[i]->storage_dir =
			    conf_strdup(ps, c->storage_dir);
}

const char *
config_endpoint_name(enum bcda_endpoint ep)
{
	if ((unsigned)ep >= sizeof(endpoint_names) / sizeof(endpoint_names[0]))
		return "unknown";
	return endpoint_names[ep];
}
