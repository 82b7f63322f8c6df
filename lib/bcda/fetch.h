/*
 * One file download's data path: HTTP body -> gzip decoder -> NDJSON
 * validator -> <dir>/<name>.part, then fsync and rename to <name>.
 * Nothing appears under the final name unless every byte was received,
 * decoded and validated.
 *
 * The loop only copies body bytes into a bounded buffer; inflating,
 * validating, hashing and writing run on libuv's thread pool, one batch
 * at a time per file, so bytes stay in order and every core works.  When
 * the buffer is full the sink asks the transfer to pause, and the resume
 * callback says when it may go on: memory stays bounded whatever the
 * network's speed.
 */
#ifndef BCDAD_FETCH_H
#define BCDAD_FETCH_H

#include <stdint.h>

#include <uv.h>

#include "store/job.h"

struct fetch;

typedef void (*fetch_done_cb)(struct fetch *, int rc, void *arg);
typedef void (*fetch_resume_cb)(void *arg);

/*
 * Opens dir/name.part for writing; lines must be of type (NULL: any).
 * resume is called, on the loop, when a sink that returned HTTP_SINK_PAUSE
 * may be called again.
 */
int		 fetch_open(uv_loop_t *, const char *dir, const char *name,
		    const char *type, int count_severity, fetch_resume_cb resume,
		    void *resume_arg, struct fetch **out);
/*
 * An http_sink: takes body bytes, or returns HTTP_SINK_PAUSE without
 * taking them, or the first error the data path met.
 */
int		 fetch_sink(const void *buf, size_t len, void *arg);
/*
 * The body is complete: the last bytes are processed, the gzip and NDJSON
 * ends checked, and the file fsynced, renamed and its directory fsynced,
 * all off the loop; cb runs on the loop with 0 or a negative code.  A
 * file that fails is unlinked.  Returns non-zero if nothing was queued.
 */
int		 fetch_commit(struct fetch *, fetch_done_cb, void *arg);
/*
 * A file already under its final name in dir (a crash came after its
 * rename and before it was recorded): read back and validated on the
 * thread pool, then cb as for fetch_commit, with its lines, bytes and
 * SHA-256.  A file that fails is unlinked.  -ENOENT if there is none.
 */
int		 fetch_verify(uv_loop_t *, const char *dir, const char *name,
		    const char *type, int count_severity, fetch_done_cb cb,
		    void *arg, struct fetch **out);
/* Closes and unlinks the partial file (once any batch in flight ends). */
void		 fetch_abort(struct fetch *);
/* Frees now, or once the batch in flight ends; no callback runs after. */
void		 fetch_free(struct fetch *);

/* Describes the first error (never file contents). */
const char	*fetch_error(const struct fetch *);
/* Whether that error was in the data (gzip, NDJSON), not the system's. */
int		 fetch_bad_data(const struct fetch *);
uint64_t	 fetch_lines(const struct fetch *);
uint64_t	 fetch_bytes(const struct fetch *);
const char	*fetch_sha256(const struct fetch *);
/* fatal, error, warning, information counts of OperationOutcome lines. */
const uint64_t	*fetch_severity(const struct fetch *);

#endif
