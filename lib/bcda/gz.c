/*
 * Streaming gzip decoder for BCDA file bodies.  See gz.h.
 *
 * The decoder is a small state machine fed with arbitrary chunks:
 *
 *	SNIFF	 collecting the first two bytes of the body; gzip magic
 *		 starts a member, anything else makes the body plain.
 *	PLAIN	 the body is not gzip; bytes go to the sink unchanged.
 *	MEMBER	 inside a gzip member; zlib inflates.
 *	BETWEEN	 a member ended; the next bytes must be another magic.
 *
 * Output goes to the sink in pieces of at most GZ_OUTBUF bytes, so memory
 * does not grow with the input.  The first error is sticky: every later
 * call returns it.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "gz.h"

#define GZ_OUTBUF	(64 * 1024)

/* windowBits for inflateInit2: 32 KiB window, gzip wrapper only. */
#define GZ_WBITS	(15 + 16)

enum gz_state {
	GZ_ST_SNIFF,
	GZ_ST_PLAIN,
	GZ_ST_MEMBER,
	GZ_ST_BETWEEN,
};

struct gz {
	gz_sink		 sink;
	void		*arg;
	enum gz_state	 state;
	int		 err;		/* first error, sticky */
	int		 zinit;		/* inflateInit2 done */
	int		 was_gzip;
	size_t		 nmagic;	/* magic bytes collected */
	unsigned char	 magic[2];
	size_t		 out_bytes;
	z_stream	 zs;
	unsigned char	 out[GZ_OUTBUF];
};

static const unsigned char gz_magic[2] = { 0x1f, 0x8b };

/*
 * Allocates a decoder that will hand its output to sink.  Returns NULL if
 * memory is short.  zlib is set up lazily, when the magic is seen.
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

/*
 * Prepares zlib for a new member: initialises it for the first member,
 * resets it for later ones.
 */
static int
gz_member_start(struct gz *g)
{
	int zr;

	if (!g->zinit) {
		zr = inflateInit2(&g->zs, GZ_WBITS);
		if (zr == Z_MEM_ERROR)
			return -ENOMEM;
		if (zr != Z_OK)
			return -EINVAL;
		g->zinit = 1;
	} else if (inflateReset(&g->zs) != Z_OK)
		return -EINVAL;
	g->was_gzip = 1;
	g->state = GZ_ST_MEMBER;
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
	size_t n;
	int rc, zr;

	*used = 0;
	/* avail_in is a uInt; feed huge chunks in slices. */
	g->zs.next_in = (unsigned char *)buf;
	g->zs.avail_in = len > UINT_MAX ? UINT_MAX : (uInt)len;
	for (;;) {
		g->zs.next_out = g->out;
		g->zs.avail_out = sizeof(g->out);
		zr = inflate(&g->zs, Z_NO_FLUSH);
		n = sizeof(g->out) - g->zs.avail_out;
		if ((rc = gz_emit(g, g->out, n)) < 0)
			goto fail;
		if (zr == Z_STREAM_END) {
			g->state = GZ_ST_BETWEEN;
			g->nmagic = 0;
			break;
		}
		if (zr == Z_BUF_ERROR) {
			/* No progress is possible without more input. */
			if (g->zs.avail_in != 0) {
				rc = GZ_ECORRUPT;
				goto fail;
			}
			break;
		}
		if (zr == Z_MEM_ERROR) {
			rc = -ENOMEM;
			goto fail;
		}
		if (zr != Z_OK) {
			/* Z_DATA_ERROR (bad header, data, CRC or length). */
			rc = GZ_ECORRUPT;
			goto fail;
		}
		/* A full output buffer may hide more pending output. */
		if (g->zs.avail_in == 0 && g->zs.avail_out != 0)
			break;
	}
	*used = (size_t)(g->zs.next_in - buf);
	g->zs.next_in = NULL;
	g->zs.avail_in = 0;
	return 0;
fail:
	g->zs.next_in = NULL;
	g->zs.avail_in = 0;
	return rc;
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
			if ((rc = gz_member_start(g)) < 0)
				goto fail;
			/* The magic is part of the member's header. */
			if ((rc = gz_inflate(g, g->magic, sizeof(g->magic),
			    &used)) < 0)
				goto fail;
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
	if (g == NULL)
		return;
	if (g->zinit)
		inflateEnd(&g->zs);
	free(g);
}
