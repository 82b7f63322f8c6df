/*
 * Streaming gzip decoder for BCDA file bodies.  See gz.h.
 *
 * Inflating is ISA-L's (Intel's igzip, libisal): the data path of a
 * download ran a third faster with it than with zlib (bench_pipeline, on
 * the same files).  ISA-L checks each member's CRC-32 and length.  The
 * member header (RFC 1952, 2.3) is read here, not by ISA-L: ISA-L 2.30
 * accepts reserved flag bits, and rejects a good header CRC (FHCRC) when
 * the header arrives in more than one piece.
 *
 * The decoder is a small state machine fed with arbitrary chunks:
 *
 *	SNIFF	 collecting the first two bytes of the body; gzip magic
 *		 starts a member, anything else makes the body plain.
 *	PLAIN	 the body is not gzip; bytes go to the sink unchanged.
 *	HEADER	 the rest of a member's header, a byte at a time.
 *	MEMBER	 inside a gzip member's deflate data and trailer.
 *	BETWEEN	 a member ended; the next bytes must be another magic.
 *
 * Output goes to the sink in pieces of at most GZ_OUTBUF bytes, so memory
 * does not grow with the input.  The first error is sticky: every later
 * call returns it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>

#include "gz.h"

#define GZ_OUTBUF	(64 * 1024)

/* Header flags (RFC 1952, 2.3.1). */
#define GZ_FHCRC	0x02
#define GZ_FEXTRA	0x04
#define GZ_FNAME	0x08
#define GZ_FCOMMENT	0x10
#define GZ_FRESERVED	0xe0

/* Where in a header: the fixed ten bytes, then the optional fields. */
enum gz_hpart {
	GZ_H_FIXED,
	GZ_H_XLEN,
	GZ_H_EXTRA,
	GZ_H_NAME,
	GZ_H_COMMENT,
	GZ_H_HCRC,
	GZ_H_DONE,
};

enum gz_state {
	GZ_ST_SNIFF,
	GZ_ST_PLAIN,
	GZ_ST_HEADER,
	GZ_ST_MEMBER,
	GZ_ST_BETWEEN,
};

struct gz {
	gz_sink		 sink;
	void		*arg;
	enum gz_state	 state;
	int		 err;		/* first error, sticky */
	int		 was_gzip;
	size_t		 nmagic;	/* magic bytes collected */
	unsigned char	 magic[2];
	/* The header being read. */
	enum gz_hpart	 hpart;
	unsigned	 flags;
	size_t		 hpos;		/* bytes read of the current part */
	size_t		 xlen;		/* FEXTRA's length */
	uint32_t	 hcrc;		/* CRC-32 of the header so far */
	uint16_t	 hcrc_got;
	size_t		 out_bytes;
	struct inflate_state zs;
	unsigned char	 out[GZ_OUTBUF];
};

static const unsigned char gz_magic[2] = { 0x1f, 0x8b };

/*
 * Allocates a decoder that will hand its output to sink.  Returns NULL if
 * memory is short.  The inflater is set up when the magic is seen.
 */
struct gz *
gz_new(gz_sink sink, void *arg)
{
	struct gz *g;

	if (sink == NULL)
		return NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->sink = sink;
	g->arg = arg;
	g->state = GZ_ST_SNIFF;
	return g;
}

/*
 * Passes len decoded bytes to the sink and counts them.
 */
static int
gz_emit(struct gz *g, const void *buf, size_t len)
{
	int rc;

	if (len == 0)
		return 0;
	if ((rc = g->sink(buf, len, g->arg)) < 0)
		return rc;
	g->out_bytes += len;
	return 0;
}

/* The magic was seen: a member's header follows. */
static void
gz_member_start(struct gz *g)
{
	g->was_gzip = 1;
	g->state = GZ_ST_HEADER;
	g->hpart = GZ_H_FIXED;
	g->hpos = sizeof(gz_magic);
	g->flags = 0;
	g->xlen = 0;
	g->hcrc_got = 0;
	g->hcrc = crc32_gzip_refl(0, gz_magic, sizeof(gz_magic));
}

/* The part after `part` that the flags call for, or GZ_H_DONE. */
static enum gz_hpart
gz_next_part(const struct gz *g, enum gz_hpart part)
{
	static const unsigned need[] = {
		[GZ_H_XLEN] = GZ_FEXTRA, [GZ_H_EXTRA] = GZ_FEXTRA,
		[GZ_H_NAME] = GZ_FNAME, [GZ_H_COMMENT] = GZ_FCOMMENT,
		[GZ_H_HCRC] = GZ_FHCRC,
	};
	unsigned p;

	for (p = part + 1; p < GZ_H_DONE; p++)
		if (g->flags & need[p])
			return p;
	return GZ_H_DONE;
}

/* Moves to the next header part, or to the deflate data. */
static void
gz_header_advance(struct gz *g, enum gz_hpart part)
{
	enum gz_hpart next = gz_next_part(g, part);

	g->hpos = 0;
	if (next == GZ_H_EXTRA && g->xlen == 0)
		next = gz_next_part(g, GZ_H_EXTRA);
	if (next != GZ_H_DONE) {
		g->hpart = next;
		return;
	}
	isal_inflate_init(&g->zs);
	/* Raw deflate, then the trailer's CRC-32 and length checked. */
	g->zs.crc_flag = ISAL_GZIP_NO_HDR_VER;
	g->state = GZ_ST_MEMBER;
}

/*
 * Reads header bytes from buf; stores in *used how many were the
 * header's.  Returns 0 or GZ_ECORRUPT.
 */
static int
gz_header(struct gz *g, const unsigned char *buf, size_t len, size_t *used)
{
	const unsigned char *p = buf, *end = buf + len;
	unsigned char c;

	while (p < end && g->state == GZ_ST_HEADER) {
		c = *p++;
		if (g->hpart != GZ_H_HCRC)
			g->hcrc = crc32_gzip_refl(g->hcrc, &c, 1);
		switch (g->hpart) {
		case GZ_H_FIXED:
			/* CM, FLG, then MTIME, XFL and OS, unchecked. */
			if (g->hpos == 2 && c != 8)
				return GZ_ECORRUPT;	/* deflate only */
			if (g->hpos == 3 && (c & GZ_FRESERVED))
				return GZ_ECORRUPT;
			if (g->hpos == 3)
				g->flags = c;
			if (++g->hpos == 10)
				gz_header_advance(g, GZ_H_FIXED);
			break;
		case GZ_H_XLEN:
			g->xlen |= (size_t)c << (8 * g->hpos);
			if (++g->hpos == 2)
				gz_header_advance(g, GZ_H_XLEN);
			break;
		case GZ_H_EXTRA:
			if (++g->hpos == g->xlen)
				gz_header_advance(g, GZ_H_EXTRA);
			break;
		case GZ_H_NAME:
		case GZ_H_COMMENT:
			if (c == 0)
				gz_header_advance(g, g->hpart);
			break;
		case GZ_H_HCRC:
			g->hcrc_got |= (uint16_t)(c << (8 * g->hpos));
			if (++g->hpos < 2)
				break;
			if (g->hcrc_got != (g->hcrc & 0xffff))
				return GZ_ECORRUPT;
			gz_header_advance(g, GZ_H_HCRC);
			break;
		case GZ_H_DONE:
			break;		/* the state is MEMBER by now */
		}
	}
	*used = (size_t)(p - buf);
	return 0;
}

/*
 * Inflates up to len bytes of the current member, draining all output the
 * input allows.  Stores in *used how much input was consumed: all of it,
 * unless the member ended first, in which case the state is BETWEEN and
 * the rest belongs to what follows the member.
 */
static int
gz_inflate(struct gz *g, const unsigned char *buf, size_t len, size_t *used)
{
	size_t n, left = len;
	uint32_t in_before;
	int rc, ir;

	*used = 0;
	g->zs.next_in = (uint8_t *)(uintptr_t)buf;
	/* avail_in is 32 bits; feed huge chunks in slices. */
	g->zs.avail_in = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
	left -= g->zs.avail_in;
	for (;;) {
		g->zs.next_out = g->out;
		g->zs.avail_out = sizeof(g->out);
		in_before = g->zs.avail_in;
		ir = isal_inflate(&g->zs);
		n = sizeof(g->out) - g->zs.avail_out;
		if (ir < 0)
			/* Bad header, data, CRC or length. */
			return GZ_ECORRUPT;
		if (ir != ISAL_DECOMP_OK)
			return GZ_ECORRUPT;	/* a dictionary: not gzip */
		if ((rc = gz_emit(g, g->out, n)) < 0)
			return rc;
		if (g->zs.block_state == ISAL_BLOCK_FINISH) {
			g->state = GZ_ST_BETWEEN;
			g->nmagic = 0;
			break;
		}
		if (g->zs.avail_in == 0 && left > 0) {
			g->zs.avail_in = left > UINT32_MAX ? UINT32_MAX :
			    (uint32_t)left;
			left -= g->zs.avail_in;
			continue;
		}
		/* A full output buffer may hide more pending output. */
		if (g->zs.avail_in == 0 && g->zs.avail_out != 0)
			break;
		if (n == 0 && g->zs.avail_in == in_before)
			return GZ_ECORRUPT;	/* no progress possible */
	}
	*used = (size_t)(g->zs.next_in - buf);
	return 0;
}

/*
 * Feeds the next chunk of the body.  Decoded bytes reach the sink before
 * this returns.  Returns 0, GZ_ECORRUPT, or the sink's negative code.
 */
int
gz_feed(struct gz *g, const void *buf, size_t len)
{
	const unsigned char *p = buf, *end = p + len;
	size_t used;
	int rc = 0;

	if (g->err)
		return g->err;
	while (p < end) {
		switch (g->state) {
		case GZ_ST_SNIFF:
		case GZ_ST_BETWEEN:
			g->magic[g->nmagic] = *p++;
			if (g->magic[g->nmagic] != gz_magic[g->nmagic]) {
				/*
				 * After a member only another member may
				 * follow: garbage (even zero padding) is an
				 * error.  At the start it means plain data.
				 */
				if (g->state == GZ_ST_BETWEEN) {
					rc = GZ_ECORRUPT;
					goto fail;
				}
				g->state = GZ_ST_PLAIN;
				if ((rc = gz_emit(g, g->magic,
				    g->nmagic + 1)) < 0)
					goto fail;
				break;
			}
			if (++g->nmagic < sizeof(gz_magic))
				break;
			gz_member_start(g);
			break;
		case GZ_ST_HEADER:
			if ((rc = gz_header(g, p, (size_t)(end - p),
			    &used)) < 0)
				goto fail;
			p += used;
			break;
		case GZ_ST_PLAIN:
			if ((rc = gz_emit(g, p, (size_t)(end - p))) < 0)
				goto fail;
			p = end;
			break;
		case GZ_ST_MEMBER:
			if ((rc = gz_inflate(g, p, (size_t)(end - p),
			    &used)) < 0)
				goto fail;
			p += used;
			break;
		}
	}
	return 0;
fail:
	g->err = rc;
	return rc;
}

/*
 * Called once the body is complete.  Returns 0 if the body was plain or
 * ended exactly after a member, GZ_ETRUNC if it stopped inside a member
 * or inside a magic (a lone 1f byte may be the start of a cut-off gzip
 * body, so it is not passed through), or the earlier sticky error.
 */
int
gz_finish(struct gz *g)
{
	if (g->err)
		return g->err;
	switch (g->state) {
	case GZ_ST_SNIFF:
	case GZ_ST_BETWEEN:
		if (g->nmagic != 0)
			g->err = GZ_ETRUNC;
		break;
	case GZ_ST_HEADER:
	case GZ_ST_MEMBER:
		g->err = GZ_ETRUNC;
		break;
	case GZ_ST_PLAIN:
		break;
	}
	return g->err;
}

size_t
gz_out_bytes(const struct gz *g)
{
	return g->out_bytes;
}

int
gz_was_gzip(const struct gz *g)
{
	return g->was_gzip;
}

/*
 * Short English phrase for a code returned by gz_feed() or gz_finish().
 */
const char *
gz_strerror(int err)
{
	switch (err) {
	case 0:
		return "no error";
	case GZ_ECORRUPT:
		return "corrupt gzip data";
	case GZ_ETRUNC:
		return "gzip data cut short";
	default:
		if (err < 0)
			return strerror(-err);
		return "unknown gzip error";
	}
}

void
gz_free(struct gz *g)
{
	free(g);
}
