/*
 * The download data path without the network: gzip-compressed NDJSON
 * (the Coverage fixture, with its 32 KB lines, repeated to the size asked)
 * fed in 16 KiB chunks through the gzip decoder and the NDJSON validator
 * (JSON parse, resourceType check, SHA-256), as fetch.c does.  Prints MB/s
 * of decoded NDJSON and the process's peak RSS, which must not grow with
 * the input size.
 *
 *   bench_pipeline FIXTURE MIB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <zlib.h>

#include "bcda/gz.h"
#include "bcda/ndjson.h"

static int
to_ndjson(const void *buf, size_t len, void *arg)
{
	return ndjson_feed(arg, buf, len);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	FILE *f;
	char *plain;
	unsigned char *gzbuf;
	size_t plen, glen, reps, i, off, n;
	z_stream zs;
	struct gz *gz;
	struct ndjson *nd;
	struct rusage ru;
	double t0, t1, mib;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_pipeline FIXTURE MIB\n");
		return 2;
	}
	if ((f = fopen(argv[1], "rb")) == NULL) {
		perror(argv[1]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	plen = (size_t)ftell(f);
	rewind(f);
	plain = malloc(plen);
	if (plain == NULL || fread(plain, 1, plen, f) != plen)
		return 1;
	fclose(f);
	/* One gzip member of the fixture; the body repeats it (multi-member). */
	glen = compressBound(plen) + 64;
	gzbuf = malloc(glen);
	memset(&zs, 0, sizeof(zs));
	deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	zs.next_in = (unsigned char *)plain;
	zs.avail_in = (uInt)plen;
	zs.next_out = gzbuf;
	zs.avail_out = (uInt)glen;
	deflate(&zs, Z_FINISH);
	glen = zs.total_out;
	deflateEnd(&zs);

	mib = atof(argv[2]);
	reps = (size_t)(mib * 1024 * 1024 / (double)plen) + 1;
	nd = ndjson_new("Coverage", NULL, NULL);
	gz = gz_new(to_ndjson, nd);
	t0 = now();
	for (i = 0; i < reps; i++) {
		for (off = 0; off < glen; off += n) {
			n = glen - off < 16384 ? glen - off : 16384;
			if (gz_feed(gz, gzbuf + off, n) != 0) {
				fprintf(stderr, "decode failed\n");
				return 1;
			}
		}
	}
	if (gz_finish(gz) != 0 || ndjson_finish(nd) != 0) {
		fprintf(stderr, "finish failed\n");
		return 1;
	}
	t1 = now();
	getrusage(RUSAGE_SELF, &ru);
	printf("pipeline: %.0f MiB NDJSON (%llu lines) in %.2f s = %.1f MiB/s "
	    "(gzip ratio %.1f), peak RSS %ld KiB\n",
	    (double)ndjson_bytes(nd) / 1048576.0,
	    (unsigned long long)ndjson_lines(nd), t1 - t0,
	    (double)ndjson_bytes(nd) / 1048576.0 / (t1 - t0),
	    (double)plen / (double)glen, ru.ru_maxrss);
	gz_free(gz);
	ndjson_free(nd);
	free(plain);
	free(gzbuf);
	return 0;
}
