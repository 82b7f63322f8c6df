/*
 * Streaming NDJSON validation.
 *
 * Bytes are fed in arbitrary chunks (a line may span many chunks and be
 * far longer than any one chunk).  Each complete line must be one JSON
 * object whose "resourceType" equals the expected type; a last line
 * without a trailing newline is accepted at ndjson_finish().  Empty lines
 * are errors.  The validator counts lines and bytes and computes the
 * SHA-256 of every byte fed, so the caller can record them for the file.
 * Memory is bounded by the longest line (capped at NDJSON_MAX_LINE).
 */
#ifndef BCDAD_NDJSON_H
#define BCDAD_NDJSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define NDJSON_MAX_LINE		(64u * 1024 * 1024)

#define NDJSON_EJSON		(-1101)	/* a line is not valid JSON */
#define NDJSON_ENOTOBJ		(-1102)	/* a line is JSON but not an object */
#define NDJSON_ETYPE		(-1103)	/* resourceType missing or wrong */
#define NDJSON_EEMPTY		(-1104)	/* an empty line */
#define NDJSON_ELONG		(-1105)	/* a line longer than the cap */

/* Called for each valid line's parsed object; may return a negative errno. */
typedef int (*ndjson_line_cb)(json_t *obj, void *arg);

struct ndjson;

struct ndjson	*ndjson_new(const char *resource_type, ndjson_line_cb, void *arg);
int		 ndjson_feed(struct ndjson *, const void *buf, size_t len);
int		 ndjson_finish(struct ndjson *);
uint64_t	 ndjson_lines(const struct ndjson *);
uint64_t	 ndjson_bytes(const struct ndjson *);
/* 64 lowercase hex digits and a NUL; valid after ndjson_finish(). */
const char	*ndjson_sha256(const struct ndjson *);
/* Line number (1-based) where the first error was found, else 0. */
uint64_t	 ndjson_error_line(const struct ndjson *);
const char	*ndjson_strerror(int);
void		 ndjson_free(struct ndjson *);

/*
 * Counts the issue severities of one OperationOutcome line into
 * counts[4] = { fatal, error, warning, information }.
 */
void		 ndjson_count_severity(json_t *oo, uint64_t counts[4]);

#endif
