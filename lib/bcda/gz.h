/*
 * Streaming gzip decoder for BCDA file bodies.
 *
 * BCDA serves its stored gzip file followed by one extra, empty gzip member
 * (reference/bcda.md a.5), which libcurl's own decoder rejects.  This
 * decoder accepts any number of members, empty ones included.  A body that
 * does not start with the gzip magic (1f 8b) is passed through unchanged,
 * since the server may send plain NDJSON; the magic is sniffed, never the
 * file name or Content-Encoding alone.
 */
#ifndef BCDAD_GZ_H
#define BCDAD_GZ_H

#include <stddef.h>

/* Receives decoded bytes; returns 0, or a negative errno to abort. */
typedef int (*gz_sink)(const void *buf, size_t len, void *arg);

struct gz;

/* Error codes, besides negative errnos returned by the sink. */
#define GZ_ECORRUPT	(-1001)	/* bad header, bad deflate data, CRC/size */
#define GZ_ETRUNC	(-1002)	/* input ended inside a member */

struct gz	*gz_new(gz_sink, void *arg);
/* Feeds compressed (or plain) input; calls the sink as output appears. */
int		 gz_feed(struct gz *, const void *buf, size_t len);
/* Input is over: returns 0 if every member was complete, else an error. */
int		 gz_finish(struct gz *);
/* Bytes of decoded output so far, and whether input was gzip at all. */
size_t		 gz_out_bytes(const struct gz *);
int		 gz_was_gzip(const struct gz *);
const char	*gz_strerror(int);
void		 gz_free(struct gz *);

#endif
