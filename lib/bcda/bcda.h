/*
 * The BCDA protocol, without I/O: building kickoff URLs, reading token
 * responses, X-Progress, manifests, OperationOutcomes and job listings,
 * and deciding which URLs may receive the bearer token, as BCDA's
 * server code (CMSgov/bcda-app) writes and reads them.
 */
#ifndef BCDAD_BCDA_H
#define BCDAD_BCDA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "store/job.h"

struct bcda_token {
	char		*access_token;
	int64_t		 expires_in;	/* seconds */
};

struct bcda_file {
	enum file_kind	 kind;
	char		*type;
	char		*url;
};

struct bcda_manifest {
	char		*transaction_time;
	int		 requires_token;
	struct bcda_file *files;
	size_t		 nfiles;
};

/* What a non-2xx answer's OperationOutcome says, if it has one. */
struct bcda_outcome {
	int		 present;
	char		 code[32];	/* issue[0].code, e.g. "exception" */
	char		 severity[16];
	char		 text[200];	/* diagnostics or details.text, sanitised */
};

/* Parses {"access_token": ..., "expires_in": "1200" | 1200}. */
int	bcda_parse_token(const char *body, size_t len, struct bcda_token *);
void	bcda_token_clear(struct bcda_token *);

/* Percent from "In Progress (NN%)", "In Progress, NN%", "NN%"; else -1. */
int	bcda_parse_progress(const char *x_progress);

/*
 * Parses an RFC 3339 instant with a zone (fraction optional) into *out.
 * Returns 0 or -EINVAL.
 */
int	bcda_parse_instant(const char *s, time_t *out);

/*
 * Parses a status response's Expires header: BCDA sends Go's
 * time.String() ("2026-08-23 14:03:07.123456 +0000 UTC"); an HTTP-date
 * is accepted too.  Returns 0 or -EINVAL.
 */
int	bcda_parse_expires(const char *s, time_t *out);

/*
 * The export kickoff URL for a profile, at endpoint ep (the profile's own,
 * or /Group/runout as its January fallback), with an optional _since.
 * BCDA URL-decodes _typeFilter twice (validation.go GetTypeFilterParams),
 * so a '+' in it is sent as %252B and reaches the server as '+'.
 */
char	*bcda_kickoff_url(const struct profile *, enum bcda_endpoint ep,
	    const char *since);
/* base/api/vN/jobs?_status=... for finding a job whose ID was lost. */
char	*bcda_jobs_url(const struct profile *);
char	*bcda_token_url(const struct profile *);

/*
 * Parses a completed job's manifest leniently: extra keys are ignored and
 * a second JSON object after the first is not an error.
 */
int	bcda_parse_manifest(const char *body, size_t len, struct bcda_manifest *);
void	bcda_manifest_clear(struct bcda_manifest *);

/* Reads an OperationOutcome from an error body (possibly two concatenated). */
void	bcda_parse_outcome(const char *body, size_t len, struct bcda_outcome *);

/*
 * 1 when a status URL's 500 says the BCDA job failed for good: only the
 * diagnostics "Service encountered numerous errors. Job failed to
 * complete." (requests.go JobStatus).  Every other 500, with or without
 * an OperationOutcome, is one of BCDA's own hiccups and worth a retry.
 */
int	bcda_job_failed(long status, const struct bcda_outcome *);

/* Why BCDA refused a kickoff with 404 (requests.go bulkRequest). */
enum bcda_refusal {
	BCDA_404_OTHER,
	BCDA_404_ATTRIBUTION,	/* no up-to-date attribution (January) */
	BCDA_404_RUNOUT_EXPIRED, /* runout data 180 days after ingestion */
	BCDA_404_SINCE,		/* _since older than the attribution file */
};
enum bcda_refusal bcda_kickoff_404(const struct bcda_outcome *);

/*
 * Finds, in a jobs-list Bundle, the BCDA job that blocks a kickoff with
 * the duplicate-job 429: the oldest pending or in-progress job of the same
 * API version (ratelimit.go compares versions, not endpoints).  Sets
 * *start to its executionPeriod.start and *id to its id (at most idlen
 * bytes).  Returns 0, or -ENOENT when the list holds no such job.
 */
int	bcda_find_blocker(const char *body, size_t len, int api_version,
	    time_t *start, char *id, size_t idlen);

/*
 * Finds, in a jobs-list Bundle, the status URL of a job whose request was
 * "GET <kickoff_url>" and that is pending or in progress, or completed
 * with an executionPeriod starting at or after not_before (so that an
 * older export of the same URL is never taken for ours).  Returns a
 * malloc'd URL or NULL.
 */
char	*bcda_find_job(const char *body, size_t len, const char *kickoff_url,
	    time_t not_before);

/*
 * 1 when url may receive the profile's bearer token: same scheme, host and
 * port as base_url, and https unless the host is a loopback address.
 */
int	bcda_url_trusted(const char *base_url, const char *url);

#endif
