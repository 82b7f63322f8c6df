/*
 * The gzip decoder (ISA-L behind our header reader) against zlib, on the
 * same input cut in the same pieces: both must accept the same bodies,
 * with the same output, and name the same fault (corrupt or cut short)
 * for the rest.  zlib here follows gz.h's rules: any number of members,
 * a body without the magic passed through, nothing but members after one.
 */
#include <zlib.h>

#include "bcda/gz.h"
#include "fuzz.h"

struct buf {
	unsigned char	*p;
	size_t		 len;
};

static int
collect(const void *b, size_t len, void *arg)
{
	struct buf *o = arg;
	unsigned char *p;

	if ((p = realloc(o->p, o->len + len + 1)) == NULL)
		abort();
	memcpy(p + o->len, b, len);
	o->p = p;
	o->len += len;
	return 0;
}

/* The reference: zlib over the whole input at once. */
static int
reference(const uint8_t *in, size_t len, struct buf *o)
{
	unsigned char out[65536];
	z_stream zs;
	size_t off = 0;
	int zr, rc = 0;

	if (len < 2 || in[0] != 0x1f || in[1] != 0x8b) {
		/* Plain, unless a lone 1f may start a cut-off member. */
		if (len == 1 && in[0] == 0x1f)
			return GZ_ETRUNC;
		collect(in, len, o);
		return 0;
	}
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		abort();
	while (off < len) {
		if (len - off < 2)
			return inflateEnd(&zs), in[off] == 0x1f ? GZ_ETRUNC :
			    GZ_ECORRUPT;
		if (in[off] != 0x1f || in[off + 1] != 0x8b) {
			rc = GZ_ECORRUPT;
			break;
		}
		inflateReset(&zs);
		zs.next_in = (unsigned char *)(uintptr_t)(in + off);
		zs.avail_in = (uInt)(len - off);
		do {
			zs.next_out = out;
			zs.avail_out = sizeof(out);
			zr = inflate(&zs, Z_NO_FLUSH);
			collect(out, sizeof(out) - zs.avail_out, o);
		} while (zr == Z_OK);
		if (zr == Z_BUF_ERROR) {
			rc = GZ_ETRUNC;
			break;
		}
		if (zr != Z_STREAM_END) {
			rc = GZ_ECORRUPT;
			break;
		}
		off = len - zs.avail_in;
	}
	inflateEnd(&zs);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf ours = { 0 }, ref = { 0 };
	struct gz *gz;
	size_t off, step;
	int rc = 0, want;

	if (size < 1 || size > 1 << 16)
		return 0;
	step = (size_t)data[0] % 97 + 1;
	data++;
	size--;
	if ((gz = gz_new(collect, &ours)) == NULL)
		return 0;
	for (off = 0; off < size && rc == 0; off += step)
		rc = gz_feed(gz, data + off, size - off < step ? size - off :
		    step);
	if (rc == 0)
		rc = gz_finish(gz);
	want = reference(data, size, &ref);
	/*
	 * Both decoders stop at the first fault they see; a body that is
	 * both corrupt and cut short may be named either way.
	 */
	if ((rc == 0) != (want == 0))
		abort();
	if (rc == 0 && (ours.len != ref.len || (ours.len > 0 &&
	    memcmp(ours.p, ref.p, ours.len) != 0)))
		abort();
	gz_free(gz);
	free(ours.p);
	free(ref.p);
	return 0;
}
