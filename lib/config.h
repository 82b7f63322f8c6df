/*
 * Configuration: an INI file read with libinih.
 *
 *   [daemon]            state_dir, runtime_dir, storage_dir, log_level,
 *                       max_downloads, max_downloads_per_job,
 *                       connect_timeout, low_speed_time, poll_min, poll_max,
 *                       retry_min, retry_max
 *   [profile NAME]      one per ACO: base_url, api_version, endpoint,
 *                       resource_types, since, type_filter, client_id,
 *                       client_secret_file | client_secret_credential,
 *                       storage_dir
 *
 * Every error is collected as "file:line: message" and parsing goes on, so
 * `bcdad -n` reports all of them at once.  Unknown sections and keys are
 * errors.  Secrets are never stored in struct config: only where to read
 * them from (see config_read_secret).
 */
#ifndef BCDAD_CONFIG_H
#define BCDAD_CONFIG_H

#include <stddef.h>

#include "log.h"

#define CONFIG_MAX_PROFILES	256
#define CONFIG_MAX_TYPES	8

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
	struct profile	*profiles[CONFIG_MAX_PROFILES];
	int		 nprofiles;
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
 * free, or NULL with a message in err.
 */
char		*config_read_secret(const struct profile *, char *err, size_t errlen);

#endif
