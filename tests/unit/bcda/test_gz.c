/*
 * Unit tests for lib/bcda/gz.c: the streaming gzip decoder.
 */
#include <errno.h>
#include <stdint.h>

#include <zlib.h>

#include "bcda/gz.h"
#include "t.h"

/* What a test sink collected. */
struct out {
	unsigned char	*p;
	size_t		 len, cap;
	size_t		 calls;
	size_t		 max_chunk;
	size_t		 fail_at;	/* 1-based call that fails, or 0 */
	int		 fail_rc;
};

/* Go's gzip.Writer.Close() with nothing written: stored final block. */
static const unsigned char go_empty[23] = {
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
	0x01, 0x00, 0x00, 0xff, 0xff,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

/* The shortest empty member: a fixed-Huffman final block, as zlib makes. */
static const unsigned char min_empty[20] = {
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
	0x03, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static int
sink(const void *buf, size_t len, void *arg)
{
	struct out *o = arg;

	o->calls++;
	if (o->fail_at != 0 && o->calls == o->fail_at)
		return o->fail_rc;
	if (len > o->max_chunk)
		o->max_chunk = len;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		unsigned char *p;

		while (cap < o->len + len)
			cap *= 2;
		if ((p = realloc(o->p, cap)) == NULL)
			abort();
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, buf, len);
	o->len += len;
	return 0;
}

static void
out_free(struct out *o)
{
	free(o->p);
	memset(o, 0, sizeof(*o));
}

/*
 * Compresses data into one gzip member with zlib; name, if set, goes in
 * the header's FNAME field.  Appends to *dst (realloc'd).
 */
static void
gzip_append(unsigned char **dst, size_t *dlen, const void *data, size_t len,
    int level, const char *name)
{
	z_stream zs;
	gz_header hd;
	uLong bound;
	unsigned char *p;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	if (name != NULL) {
		memset(&hd, 0, sizeof(hd));
		hd.name = (Bytef *)(uintptr_t)name;
		hd.os = 3;
		hd.time = 1700000000;
		hd.hcrc = 1;
		if (deflateSetHeader(&zs, &hd) != Z_OK)
			abort();
	}
	bound = deflateBound(&zs, (uLong)len) + 64 +
	    (name ? strlen(name) + 1 : 0);
	if ((p = realloc(*dst, *dlen + bound)) == NULL)
		abort();
	*dst = p;
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	zs.next_out = p + *dlen;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		abort();
	*dlen += bound - zs.avail_out;
	deflateEnd(&zs);
}

static void
bytes_append(unsigned char **dst, size_t *dlen, const void *data, size_t len)
{
	unsigned char *p;

	if ((p = realloc(*dst, *dlen + len + 1)) == NULL)
		abort();
	memcpy(p + *dlen, data, len);
	*dst = p;
	*dlen += len;
}

/*
 * Decodes in with chunks of chunk bytes (0 = all at once).  Returns the
 * first error of gz_feed, else that of gz_finish.
 */
static int
decode(const void *in, size_t len, size_t chunk, struct out *o, int *was_gzip)
{
	const unsigned char *p = in;
	struct gz *g;
	size_t off = 0, n;
	int rc = 0;

	if ((g = gz_new(sink, o)) == NULL) {
		T_FAIL("gz_new failed");
		return -ENOMEM;
	}
	if (chunk == 0)
		chunk = len ? len : 1;
	while (off < len) {
		n = len - off < chunk ? len - off : chunk;
		if ((rc = gz_feed(g, p + off, n)) < 0)
			break;
		off += n;
	}
	if (rc == 0)
		rc = gz_finish(g);
	if (rc == 0)
		T_EQ_INT(gz_out_bytes(g), o->len);
	if (was_gzip)
		*was_gzip = gz_was_gzip(g);
	gz_free(g);
	return rc;
}

static int
same(const struct out *o, const void *want, size_t len)
{
	return o->len == len && (len == 0 || memcmp(o->p, want, len) == 0);
}

T_TEST(test_fixture_gzip)
{
	unsigned char *gz, *plain;
	size_t gzlen = 0, plen = 0, chunks[] = { 0, 1, 2, 3, 10, 100, 980 };
	size_t i;
	int rc, was;

	gz = t_read_fixture("bcda/gzip/test_gzip_encoded.ndjson", &gzlen);
	plain = t_read_fixture("bcda/gzip/test_no_encoding.ndjson", &plen);
	if (gz == NULL || plain == NULL)
		goto done;
	T_EQ_INT(gzlen, 981);
	/* The decoded fixture is the plain one plus a newline. */
	plain[plen++] = '\n';
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct out o = { 0 };

		was = -1;
		rc = decode(gz, gzlen, chunks[i], &o, &was);
		T_EQ_INT(rc, 0);
		T_EQ_INT(was, 1);
		T_EQ_INT(o.len, 2968);
		T_ASSERT(same(&o, plain, plen));
		if (!same(&o, plain, plen))
			fprintf(stderr, "  (chunk size %zu)\n", chunks[i]);
		out_free(&o);
	}
done:
	free(gz);
	free(plain);
}

T_TEST(test_fixture_plain)
{
	unsigned char *plain;
	size_t plen = 0, chunks[] = { 0, 1, 2, 7 };
	size_t i;
	int was;

	if ((plain = t_read_fixture("bcda/gzip/test_no_encoding.ndjson",
	    &plen)) == NULL)
		return;
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct out o = { 0 };

		was = -1;
		T_EQ_INT(decode(plain, plen, chunks[i], &o, &was), 0);
		T_EQ_INT(was, 0);
		T_ASSERT(same(&o, plain, plen));
		out_free(&o);
	}
	free(plain);
}

T_TEST(test_single_byte)
{
	unsigned char *b;
	size_t len = 0;
	struct out o = { 0 };
	int was = -1;

	if ((b = t_read_fixture("bcda/gzip/single_byte_file.bin", &len)) == NULL)
		return;
	T_EQ_INT(len, 1);
	T_EQ_INT(decode(b, len, 0, &o, &was), 0);
	T_EQ_INT(was, 0);
	T_EQ_INT(o.len, 1);
	T_ASSERT(same(&o, "\x01", 1));
	out_free(&o);
	free(b);
}

T_TEST(test_corrupt_fixture)
{
	unsigned char *b;
	size_t len = 0, chunk;
	int was;

	if ((b = t_read_fixture("bcda/gzip/corrupt_gz_file.ndjson", &len)) ==
	    NULL)
		return;
	T_EQ_INT(len, 10);
	for (chunk = 0; chunk <= 3; chunk++) {
		struct out o = { 0 };

		was = -1;
		T_EQ_INT(decode(b, len, chunk, &o, &was), GZ_ECORRUPT);
		T_EQ_INT(was, 1);
		T_EQ_INT(o.len, 0);
		out_free(&o);
	}
	free(b);
}

T_TEST(test_plain_edge_cases)
{
	struct out o = { 0 };
	int was;

	/* Empty body: nothing out, no error, not gzip. */
	was = -1;
	T_EQ_INT(decode("", 0, 0, &o, &was), 0);
	T_EQ_INT(was, 0);
	T_EQ_INT(o.len, 0);
	T_EQ_INT(o.calls, 0);
	out_free(&o);

	/* 1f followed by something else is plain, both bytes kept. */
	T_EQ_INT(decode("\x1f" "abc", 4, 1, &o, &was), 0);
	T_EQ_INT(was, 0);
	T_ASSERT(same(&o, "\x1f" "abc", 4));
	out_free(&o);

	/* 8b alone first is plain too. */
	T_EQ_INT(decode("\x8b\x1f", 2, 0, &o, &was), 0);
	T_EQ_INT(was, 0);
	T_ASSERT(same(&o, "\x8b\x1f", 2));
	out_free(&o);

	/* A lone 1f may be a cut-off gzip body. */
	T_EQ_INT(decode("\x1f", 1, 0, &o, &was), GZ_ETRUNC);
	T_EQ_INT(o.len, 0);
	out_free(&o);

	/* Only the magic: a member started and was cut. */
	T_EQ_INT(decode("\x1f\x8b", 2, 1, &o, &was), GZ_ETRUNC);
	T_EQ_INT(was, 1);
	out_free(&o);

	/* Plain text with NUL bytes and later gzip-looking bytes. */
	T_EQ_INT(decode("{}\n\0\x1f\x8b", 6, 0, &o, &was), 0);
	T_EQ_INT(was, 0);
	T_ASSERT(same(&o, "{}\n\0\x1f\x8b", 6));
	out_free(&o);
}

/* Builds two real members, a zlib empty member, Go's and the minimal one. */
static unsigned char *
build_multi(size_t *len, size_t bounds[6], unsigned char **want,
    size_t *wlen)
{
	static const char part1[] =
	    "{\"resourceType\":\"Patient\",\"id\":\"1\"}\n";
	unsigned char *part2, *s = NULL;
	size_t i, n = 0;

	if ((part2 = malloc(5000)) == NULL)
		abort();
	for (i = 0; i < 5000; i++)
		part2[i] = (unsigned char)("abcdefghij\n"[i % 11] + (i / 977));
	bounds[0] = 0;
	gzip_append(&s, &n, part1, sizeof(part1) - 1, 6, NULL);
	bounds[1] = n;
	gzip_append(&s, &n, part2, 5000, 9, "part2.ndjson");
	bounds[2] = n;
	gzip_append(&s, &n, "", 0, 6, NULL);
	bounds[3] = n;
	bytes_append(&s, &n, go_empty, sizeof(go_empty));
	bounds[4] = n;
	bytes_append(&s, &n, min_empty, sizeof(min_empty));
	bounds[5] = n;
	*len = n;
	*want = NULL;
	*wlen = 0;
	bytes_append(want, wlen, part1, sizeof(part1) - 1);
	bytes_append(want, wlen, part2, 5000);
	free(part2);
	return s;
}

T_TEST(test_empty_members)
{
	unsigned char *s = NULL;
	size_t n = 0;
	struct out o = { 0 };
	int was;

	/* zlib's own empty member is the 20-byte minimal one. */
	gzip_append(&s, &n, "", 0, 6, NULL);
	T_EQ_INT(n, 20);
	T_ASSERT(n == 20 && memcmp(s + 10, min_empty + 10, 10) == 0);

	T_EQ_INT(decode(s, n, 0, &o, &was), 0);
	T_EQ_INT(was, 1);
	T_EQ_INT(o.len, 0);
	out_free(&o);
	T_EQ_INT(decode(go_empty, sizeof(go_empty), 1, &o, &was), 0);
	T_EQ_INT(was, 1);
	T_EQ_INT(o.len, 0);
	out_free(&o);
	T_EQ_INT(decode(min_empty, sizeof(min_empty), 0, &o, &was), 0);
	T_EQ_INT(o.len, 0);
	out_free(&o);
	free(s);
}

T_TEST(test_bcda_shape)
{
	unsigned char *gz, *plain, *s = NULL;
	size_t gzlen = 0, plen = 0, n = 0, chunk;
	int was;

	/* What BCDA sends: the stored file, then Go's empty member. */
	gz = t_read_fixture("bcda/gzip/test_gzip_encoded.ndjson", &gzlen);
	plain = t_read_fixture("bcda/gzip/test_no_encoding.ndjson", &plen);
	if (gz == NULL || plain == NULL)
		goto done;
	plain[plen++] = '\n';
	bytes_append(&s, &n, gz, gzlen);
	bytes_append(&s, &n, go_empty, sizeof(go_empty));
	for (chunk = 0; chunk < 30; chunk++) {
		struct out o = { 0 };

		T_EQ_INT(decode(s, n, chunk, &o, &was), 0);
		T_EQ_INT(was, 1);
		T_ASSERT(same(&o, plain, plen));
		out_free(&o);
	}
done:
	free(s);
	free(gz);
	free(plain);
}

T_TEST(test_multi_member)
{
	unsigned char *s, *want;
	size_t n, wlen, bounds[6], chunks[] = { 0, 1, 2, 3, 5, 19, 20, 23, 64 };
	size_t i;
	int was;

	s = build_multi(&n, bounds, &want, &wlen);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct out o = { 0 };

		was = -1;
		T_EQ_INT(decode(s, n, chunks[i], &o, &was), 0);
		T_EQ_INT(was, 1);
		T_ASSERT(same(&o, want, wlen));
		out_free(&o);
	}
	free(s);
	free(want);
}

T_TEST(test_truncated_everywhere)
{
	unsigned char *s, *want;
	size_t n, wlen, bounds[6], cut, b, chunk;
	int at_bound, bad = 0;

	/*
	 * Every prefix of a multi-member body is an error unless it ends
	 * exactly between members.  At a boundary the output is the
	 * decoded prefix.
	 */
	s = build_multi(&n, bounds, &want, &wlen);
	for (cut = 0; cut <= n; cut++) {
		at_bound = 0;
		for (b = 0; b < 6; b++)
			if (bounds[b] == cut)
				at_bound = 1;
		for (chunk = 0; chunk <= 7; chunk += 7) {
			struct out o = { 0 };
			int rc = decode(s, cut, chunk, &o, NULL);

			if (rc != (at_bound ? 0 : GZ_ETRUNC)) {
				if (bad++ < 5)
					T_FAIL("cut %zu/%zu chunk %zu: rc %d",
					    cut, n, chunk, rc);
			}
			out_free(&o);
		}
	}
	T_EQ_INT(bad, 0);
	/* Boundaries give the matching prefix of the output. */
	{
		struct out o = { 0 };

		T_EQ_INT(decode(s, bounds[1], 0, &o, NULL), 0);
		T_ASSERT(o.len > 0 && o.len < wlen &&
		    memcmp(o.p, want, o.len) == 0);
		out_free(&o);
		T_EQ_INT(decode(s, bounds[2], 0, &o, NULL), 0);
		T_ASSERT(same(&o, want, wlen));
		out_free(&o);
	}
	free(s);
	free(want);
}

T_TEST(test_garbage_after_member)
{
	static const struct {
		const char	*tail;
		size_t		 len;
		int		 rc;
	} cases[] = {
		{ "x", 1, GZ_ECORRUPT },
		{ "\n", 1, GZ_ECORRUPT },
		{ "\0", 1, GZ_ECORRUPT },
		{ "\0\0\0\0\0\0\0\0", 8, GZ_ECORRUPT },
		{ "\x1f" "x", 2, GZ_ECORRUPT },
		{ "\x1f\x1f", 2, GZ_ECORRUPT },
		{ "\x8b\x1f", 2, GZ_ECORRUPT },
		{ "\x1f", 1, GZ_ETRUNC },
		{ "\x1f\x8b", 2, GZ_ETRUNC },
		{ "\x1f\x8b\x08\x00", 4, GZ_ETRUNC },
		/* A second header with an unknown method. */
		{ "\x1f\x8b\x07\x00\x00\x00\x00\x00\x00\xff", 10, GZ_ECORRUPT },
	};
	unsigned char *gz, *s;
	size_t gzlen = 0, n, i, chunk;

	if ((gz = t_read_fixture("bcda/gzip/test_gzip_encoded.ndjson",
	    &gzlen)) == NULL)
		return;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (chunk = 0; chunk <= 1; chunk++) {
			struct out o = { 0 };
			int rc;

			s = NULL;
			n = 0;
			bytes_append(&s, &n, gz, gzlen);
			bytes_append(&s, &n, cases[i].tail, cases[i].len);
			rc = decode(s, n, chunk, &o, NULL);
			if (rc != cases[i].rc)
				T_FAIL("case %zu chunk %zu: rc %d, want %d",
				    i, chunk, rc, cases[i].rc);
			/* The first member was still decoded in full. */
			T_EQ_INT(o.len, 2968);
			out_free(&o);
			free(s);
		}
	}
	free(gz);
}

T_TEST(test_bad_trailer_and_header)
{
	/* Offsets from the end: CRC32 is -8..-5, ISIZE -4..-1. */
	static const size_t from_end[] = { 8, 5, 4, 1 };
	unsigned char *gz;
	size_t gzlen = 0, i;

	if ((gz = t_read_fixture("bcda/gzip/test_gzip_encoded.ndjson",
	    &gzlen)) == NULL)
		return;
	for (i = 0; i < sizeof(from_end) / sizeof(from_end[0]); i++) {
		struct out o = { 0 };

		gz[gzlen - from_end[i]] ^= 0x01;
		T_EQ_INT(decode(gz, gzlen, 0, &o, NULL), GZ_ECORRUPT);
		out_free(&o);
		T_EQ_INT(decode(gz, gzlen, 1, &o, NULL), GZ_ECORRUPT);
		out_free(&o);
		gz[gzlen - from_end[i]] ^= 0x01;
	}
	{
		struct out o = { 0 };

		/* Method 8 is the only one gzip defines. */
		gz[2] = 0x07;
		T_EQ_INT(decode(gz, gzlen, 0, &o, NULL), GZ_ECORRUPT);
		T_EQ_INT(o.len, 0);
		out_free(&o);
		gz[2] = 0x08;
		/* Reserved flag bits must be zero. */
		gz[3] = 0xe0;
		T_EQ_INT(decode(gz, gzlen, 0, &o, NULL), GZ_ECORRUPT);
		out_free(&o);
		gz[3] = 0x00;
		/* The unchanged body still decodes. */
		T_EQ_INT(decode(gz, gzlen, 0, &o, NULL), 0);
		T_EQ_INT(o.len, 2968);
		out_free(&o);
	}
	free(gz);
}

T_TEST(test_bounded_output)
{
	unsigned char *zeros, *s = NULL;
	size_t n = 0, big = 4u * 1024 * 1024, i;
	struct out o = { 0 };
	int was;

	/*
	 * 4 MiB of zeros shrink to a few KiB: one gz_feed() must hand it
	 * out in many bounded pieces, and none may be lost.
	 */
	if ((zeros = calloc(1, big)) == NULL)
		abort();
	gzip_append(&s, &n, zeros, big, 9, NULL);
	T_ASSERT(n < 16 * 1024);
	T_EQ_INT(decode(s, n, 0, &o, &was), 0);
	T_EQ_INT(o.len, big);
	T_ASSERT(o.max_chunk <= 64 * 1024);
	T_ASSERT(o.calls >= big / (64 * 1024));
	for (i = 0; i < o.len && o.p[i] == 0; i++)
		;
	T_EQ_INT(i, big);
	out_free(&o);
	free(s);
	free(zeros);
}

T_TEST(test_sink_error)
{
	unsigned char *s, *want;
	size_t n, wlen, bounds[6];
	struct out o = { 0 };
	struct gz *g;

	s = build_multi(&n, bounds, &want, &wlen);

	/* The sink's error stops decoding and sticks. */
	o.fail_at = 2;
	o.fail_rc = -EIO;
	if ((g = gz_new(sink, &o)) == NULL) {
		T_FAIL("gz_new");
		goto done;
	}
	T_EQ_INT(gz_feed(g, s, n), -EIO);
	T_EQ_INT(o.calls, 2);
	T_EQ_INT(gz_feed(g, s, 1), -EIO);
	T_EQ_INT(gz_finish(g), -EIO);
	T_EQ_INT(o.calls, 2);
	gz_free(g);
	out_free(&o);

	/* Also for plain bodies. */
	o.fail_at = 1;
	o.fail_rc = -ENOSPC;
	if ((g = gz_new(sink, &o)) == NULL) {
		T_FAIL("gz_new");
		goto done;
	}
	T_EQ_INT(gz_feed(g, "hello", 5), -ENOSPC);
	T_EQ_INT(gz_finish(g), -ENOSPC);
	T_EQ_INT(gz_out_bytes(g), 0);
	gz_free(g);
	out_free(&o);
done:
	free(s);
	free(want);
}

T_TEST(test_sticky_corrupt)
{
	struct out o = { 0 };
	struct gz *g;

	if ((g = gz_new(sink, &o)) == NULL) {
		T_FAIL("gz_new");
		return;
	}
	T_EQ_INT(gz_feed(g, go_empty, sizeof(go_empty)), 0);
	T_EQ_INT(gz_feed(g, "zz", 2), GZ_ECORRUPT);
	/* Even a valid member afterwards does not clear the error. */
	T_EQ_INT(gz_feed(g, go_empty, sizeof(go_empty)), GZ_ECORRUPT);
	T_EQ_INT(gz_finish(g), GZ_ECORRUPT);
	gz_free(g);
	out_free(&o);
	gz_free(NULL);
}

T_TEST(test_strerror)
{
	T_ASSERT(strcmp(gz_strerror(GZ_ECORRUPT), gz_strerror(GZ_ETRUNC)) != 0);
	T_ASSERT(strstr(gz_strerror(GZ_ECORRUPT), "corrupt") != NULL);
	T_ASSERT(strstr(gz_strerror(GZ_ETRUNC), "short") != NULL);
	T_EQ_STR(gz_strerror(-ENOMEM), strerror(ENOMEM));
	T_ASSERT(gz_strerror(0) != NULL && gz_strerror(12345) != NULL);
}

T_MAIN("gz",
    T_CASE(test_fixture_gzip),
    T_CASE(test_fixture_plain),
    T_CASE(test_single_byte),
    T_CASE(test_corrupt_fixture),
    T_CASE(test_plain_edge_cases),
    T_CASE(test_empty_members),
    T_CASE(test_bcda_shape),
    T_CASE(test_multi_member),
    T_CASE(test_truncated_everywhere),
    T_CASE(test_garbage_after_member),
    T_CASE(test_bad_trailer_and_header),
    T_CASE(test_bounded_output),
    T_CASE(test_sink_error),
    T_CASE(test_sticky_corrupt),
    T_CASE(test_strerror))
