/*
 * One file download's data path: HTTP body -> gzip decoder -> NDJSON
 * validator -> <dir>/<name>.part, then fsync and rename to <name> off the
 * event loop.  Nothing appears under the final name unless every byte was
 * received, decoded and validated.
 */
#ifndef BCDAD_FETCH_H
#define BCDAD_FETCH_H

#include <stdint.h>

#include <uv.h>

#include "store/job.h"

struct fetch;

typedef void (*fetch_done_cb)(struct fetch *, int rc, void *arg);

/* Opens dir/name.part for writing; lines must be of type (NULL: any). */
int		 fetch_open(const char *dir, const char *name, const char *type,
		    int count_severity, struct fetch **out);
/* An http_sink: feeds body bytes through the pipeline. */
int		 fetch_sink(const void *buf, size_t len, void *arg);
/*
 * The body is complete: checks the gzip and NDJSON ends, then fsyncs,
 * renames and fsyncs the directory on libuv's thread pool; cb runs on
 * the loop with 0 or a negative code.
 */
int		 fetch_commit(uv_loop_t *, struct fetch *, fetch_done_cb,
		    void *arg);
/* Closes and unlinks the partial file. */
void		 fetch_abort(struct fetch *);
void		 fetch_free(struct fetch *);

/* Describes the first error (never file contents). */
const char	*fetch_error(const struct fetch *);
uint64_t	 fetch_lines(const struct fetch *);
uint64_t	 fetch_bytes(const struct fetch *);
const char	*fetch_sha256(const struct fetch *);
/* fatal, error, warning, information counts of OperationOutcome lines. */
const uint64_t	*fetch_severity(const struct fetch *);

#endif
