/*
 * One file's trip to S3.  Below the multipart threshold a single signed
 * PutObject; above it a multipart upload whose id and acknowledged parts
 * the caller records as they happen (the upload never writes anything
 * durable itself), so that after a restart the upload resumes at the next
 * part, or starts over when S3 no longer knows the upload (NoSuchUpload).  Transient failures are retried here with
 * capped backoff; the caller hears once, with success or a sentence.
 */
#ifndef BCDAD_UPLOAD_H
#define BCDAD_UPLOAD_H

#include <uv.h>

#include "awscreds.h"
#include "util/http.h"
#include "store/job.h"
#include "s3.h"

/*
 * How a multipart upload's progress is made durable, by the caller; arg
 * is the argument given to upload_start or upload_abort.
 *
 * record: with part 0, f's s3_upload_id and s3_part_size changed (a new
 * upload, or none: the old one and its parts are gone); the upload sends
 * no part until it returns 0.  With part > 0, S3 acknowledged that part
 * with etag; if it cannot be recorded the upload goes on (a restart sends
 * the part again).
 * parts: calls add(number, etag, add_arg) for every part recorded for f.
 */
struct upload_journal {
	int	(*record)(void *arg, struct file_row *f, int part,
		    const char *etag);
	int	(*parts)(void *arg, const struct file_row *f, part_row_fn add,
		    void *add_arg);
};

struct upload_env {
	uv_loop_t	*loop;
	struct http	*http;
	struct upload_journal journal;
	struct awscreds	*creds;
	int		 retry_min, retry_max;	/* seconds */
	int		 max_attempts;
};

struct upload;

/* rc 0: S3 has the object; otherwise why is a sentence for the user. */
typedef void (*upload_done_cb)(struct upload *, int rc, const char *why,
    void *arg);

/*
 * Uploads path to key.  f (kept by the caller until done) is the file's
 * row: its s3_upload_id and s3_part_size are recorded as the upload goes,
 * and
 * its sha256 is used as the payload hash of a single PUT (NULL: computed).
 * f may be NULL for a file with no row (manifest.json): then a single
 * PUT whatever the size.
 */
int	upload_start(const struct upload_env *, const struct s3_loc *,
	    struct file_row *f, const char *path, const char *key,
	    unsigned long long threshold, upload_done_cb, void *arg,
	    struct upload **out);
/* Aborts f's multipart upload in S3 and forgets it (job given up). */
int	upload_abort(const struct upload_env *, const struct s3_loc *,
	    struct file_row *f, const char *key, upload_done_cb, void *arg,
	    struct upload **out);
/* Stops the upload; done is not called.  A multipart upload stays open
 * in S3 (and in the journal), to be resumed. */
void	upload_cancel(struct upload *);

/*
 * The S3 key of a file of an export: prefix + profile/time/name, time
 * being transaction_time in UTC in ISO 8601 basic form
 * (2026-11-26T050612.9Z), or, when it is not a time (the export's
 * directory's name, as 2026-11-26T05:06:12.9Z.2), itself without its
 * colons; error files and manifest.json under time_meta/ instead of time/.
 */
char	*upload_key(const char *prefix, const char *profile,
	    const char *transaction_time, const char *name);

#endif
