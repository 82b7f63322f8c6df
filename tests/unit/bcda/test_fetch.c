/*
 * Unit tests for lib/bcda/fetch.c: a download's data path handed to the
 * thread pool, with the pause that bounds its memory.  The sink is driven
 * as curl drives it: a refused chunk is offered again after the resume
 * callback.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "bcda/fetch.h"
#include "bcda/gz.h"
#include "bcda/ndjson.h"
#include "util/http.h"
#include "t.h"

#define CHUNK	16384	/* what curl hands a write callback */

struct run {
	uv_loop_t	 loop;
	char		 dir[64];
	struct fetch	*f;		/* of Patient.ndjson, into dir */
	char		*data;		/* the NDJSON */
	size_t		 len;
	char		 hex[65];	/* its SHA-256 */
	unsigned char	*body;		/* the NDJSON, gzipped */
	size_t		 glen;
	int		 resumed;	/* resume callbacks seen */
	int		 done;		/* the commit callback ran */
	int		 rc;
	size_t		 pauses;
};

static void
on_resume(void *arg)
{
	struct run *r = arg;

	r->resumed++;
}

static void
on_done(struct fetch *f, int rc, void *arg)
{
	struct run *r = arg;

	(void)f;
	r->done = 1;
	r->rc = rc;
}

static int
exists(const struct run *r, const char *name)
{
	char p[128];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", r->dir, name);
	return stat(p, &st) == 0;
}

/* n Patient lines, each unlike the others, and their SHA-256 in hex. */
static char *
patients(size_t n, size_t *len, char hex[65])
{
	unsigned char md[32];
	size_t i, cap = n * 80 + 1, off = 0;
	char *s = malloc(cap);

	if (s == NULL)
		abort();
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off,
		    "{\"resourceType\":\"Patient\",\"id\":\"p-%zu-%08zx\"}\n", i,
		    i * 2654435761u);
	*len = off;
	EVP_Digest(s, off, md, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return s;
}

/* One gzip member at level 0 (stored), so the wire is as long as the data. */
static unsigned char *
gzip0(const char *data, size_t len, size_t *out)
{
	z_stream zs;
	uLong bound;
	unsigned char *p;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 0, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	bound = deflateBound(&zs, (uLong)len) + 64;
	if ((p = malloc(bound)) == NULL)
		abort();
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	zs.next_out = p;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		abort();
	*out = bound - zs.avail_out;
	deflateEnd(&zs);
	return p;
}

/*
 * Feeds body to the sink in CHUNK pieces as curl does: a paused chunk is
 * offered again once resume was called.  Returns the first error or 0.
 */
static int
feed(struct run *r, struct fetch *f, const unsigned char *body, size_t len)
{
	size_t off = 0, n;
	int rc;

	while (off < len) {
		n = len - off < CHUNK ? len - off : CHUNK;
		rc = fetch_sink(body + off, n, f);
		if (rc == HTTP_SINK_PAUSE) {
			int before = r->resumed;

			r->pauses++;
			while (r->resumed == before)
				uv_run(&r->loop, UV_RUN_ONCE);
			continue;
		}
		if (rc != 0)
			return rc;
		off += n;
		/* The network is sometimes slower than the worker. */
		if (off % (8 * CHUNK) == 0)
			uv_run(&r->loop, UV_RUN_NOWAIT);
	}
	return 0;
}

/*
 * A loop, a directory, n Patient lines (one broken in the middle if
 * broken) gzipped, and a fetch of them opened.
 */
static void
run_init(struct run *r, size_t n, int broken)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/bcdad-test-fetch-XXXXXX");
	if (mkdtemp(r->dir) == NULL || uv_loop_init(&r->loop) != 0)
		abort();
	r->data = patients(n, &r->len, r->hex);
	if (broken)
		r->data[r->len / 2] = '}';	/* a line no longer JSON */
	r->body = gzip0(r->data, r->len, &r->glen);
	T_EQ_INT(fetch_open(&r->loop, r->dir, "Patient.ndjson", "Patient", 0,
	    on_resume, r, &r->f), 0);
	if (r->f == NULL)
		abort();
}

/* Frees the fetch, runs what is left on the loop, which must close. */
static void
run_end(struct run *r)
{
	fetch_free(r->f);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	T_EQ_INT(uv_loop_close(&r->loop), 0);
	free(r->body);
	free(r->data);
}

static void
run_rm(struct run *r)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/Patient.ndjson", r->dir);
	unlink(p);
	rmdir(r->dir);
}

/* The body is over: commit, and run the loop until the callback. */
static int
commit(struct run *r, struct fetch *f)
{
	T_EQ_INT(fetch_commit(f, on_done, r), 0);
	while (!r->done)
		uv_run(&r->loop, UV_RUN_ONCE);
	return r->rc;
}

T_TEST(t_whole_file_through_the_pool)
{
	struct run r;

	run_init(&r, 60000, 0);
	T_EQ_INT(feed(&r, r.f, r.body, r.glen), 0);
	T_EQ_INT(commit(&r, r.f), 0);
	T_EQ_INT(fetch_lines(r.f), 60000);
	T_EQ_INT(fetch_bytes(r.f), r.len);
	T_EQ_STR(fetch_sha256(r.f), r.hex);
	T_ASSERT(exists(&r, "Patient.ndjson"));
	T_ASSERT(!exists(&r, "Patient.ndjson.part"));
	run_end(&r);
	run_rm(&r);
}

/*
 * With the worker never reported back (the loop not run), the sink must
 * refuse bytes once its buffers are full: memory stays bounded whatever
 * the network's speed.  Once the loop runs, resume comes and the rest of
 * the file goes through.
 */
T_TEST(t_a_busy_worker_pauses_the_transfer)
{
	struct run r;
	size_t off = 0;
	int rc = 0;

	run_init(&r, 60000, 0);
	while (off < r.glen && (rc = fetch_sink(r.body + off, CHUNK,
	    r.f)) == 0)
		off += CHUNK;
	T_EQ_INT(rc, HTTP_SINK_PAUSE);
	/* At most one batch with the worker and one full buffer. */
	T_ASSERT(off <= 2 * 256 * 1024);
	T_ASSERT(off >= 256 * 1024);
	while (r.resumed == 0)
		uv_run(&r.loop, UV_RUN_ONCE);
	T_EQ_INT(feed(&r, r.f, r.body + off, r.glen - off), 0);
	T_EQ_INT(commit(&r, r.f), 0);
	T_EQ_STR(fetch_sha256(r.f), r.hex);
	run_end(&r);
	run_rm(&r);
}

/* Bad bytes in the middle: the sink returns the data's error, no file. */
T_TEST(t_corrupt_body_fails_as_bad_data)
{
	struct run r;
	int rc;

	run_init(&r, 20000, 1);
	/* Met after the last chunk, the error comes from the commit. */
	if ((rc = feed(&r, r.f, r.body, r.glen)) == 0)
		rc = commit(&r, r.f);
	else
		fetch_abort(r.f);
	T_EQ_INT(rc, NDJSON_EJSON);
	T_ASSERT(fetch_bad_data(r.f));
	T_ASSERT(strstr(fetch_error(r.f), "line ") != NULL);
	run_end(&r);
	T_ASSERT(!exists(&r, "Patient.ndjson"));
	T_ASSERT(!exists(&r, "Patient.ndjson.part"));
	run_rm(&r);
}

/* A body cut short: the commit says so, and the partial file is gone. */
T_TEST(t_truncated_body_fails_at_commit)
{
	struct run r;

	run_init(&r, 20000, 0);
	T_EQ_INT(feed(&r, r.f, r.body, r.glen - 100), 0);
	T_EQ_INT(commit(&r, r.f), GZ_ETRUNC);
	T_ASSERT(fetch_bad_data(r.f));
	T_ASSERT(!exists(&r, "Patient.ndjson"));
	T_ASSERT(!exists(&r, "Patient.ndjson.part"));
	run_end(&r);
	run_rm(&r);
}

/*
 * A transfer cancelled while a batch is on the pool: abort and free wait
 * for the batch, then unlink and free (ASan and the loop's close check).
 */
T_TEST(t_free_while_a_batch_is_on_the_pool)
{
	struct run r;
	size_t off;

	run_init(&r, 20000, 0);
	for (off = 0; off < 128 * 1024; off += CHUNK)
		T_EQ_INT(fetch_sink(r.body + off, CHUNK, r.f), 0);
	fetch_abort(r.f);
	run_end(&r);
	T_EQ_INT(r.resumed, 0);
	T_ASSERT(!exists(&r, "Patient.ndjson.part"));
	run_rm(&r);
}

/* Reads back text written under the final name; its callback's rc. */
static int
read_back(struct run *r, const char *text, int spare_fds)
{
	struct rlimit was, rl;
	struct fetch *f;
	char p[128];
	FILE *fp;
	int fd, rc;

	snprintf(p, sizeof(p), "%s/Patient.ndjson", r->dir);
	T_ASSERT((fp = fopen(p, "w")) != NULL);
	T_ASSERT(fputs(text, fp) >= 0);
	T_EQ_INT(fclose(fp), 0);
	T_EQ_INT(getrlimit(RLIMIT_NOFILE, &was), 0);
	if (spare_fds > 0) {
		/* The lowest free descriptor and spare_fds - 1 above it. */
		T_ASSERT((fd = dup(0)) >= 0);
		close(fd);
		rl = was;
		rl.rlim_cur = (rlim_t)(fd + spare_fds);
		T_EQ_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	r->done = 0;
	rc = fetch_verify(&r->loop, r->dir, "Patient.ndjson", "Patient", 0,
	    on_done, r, &f);
	while (rc == 0 && !r->done)
		uv_run(&r->loop, UV_RUN_ONCE);
	T_EQ_INT(setrlimit(RLIMIT_NOFILE, &was), 0);
	T_EQ_INT(rc, 0);
	fetch_free(f);
	return r->rc;
}

/*
 * A file found under its final name after a crash is read back.  Data
 * that do not pass are removed, to be fetched again; a file the system
 * could not sync (here its directory, for want of a descriptor) is kept:
 * it may be whole, and the next try reads it again.
 */
T_TEST(t_read_back_removes_bad_data_only)
{
	struct run r;

	run_init(&r, 10, 0);
	fetch_abort(r.f);
	T_EQ_INT(read_back(&r, r.data, 0), 0);
	T_ASSERT(exists(&r, "Patient.ndjson"));
	T_EQ_INT(read_back(&r, r.data, 1), -EMFILE);
	T_ASSERT(exists(&r, "Patient.ndjson"));
	T_EQ_INT(read_back(&r, "{\"resourceType\":\"Patient\"\n", 0),
	    NDJSON_EJSON);
	T_ASSERT(!exists(&r, "Patient.ndjson"));
	run_end(&r);
	run_rm(&r);
}

T_MAIN("fetch",
    T_CASE(t_whole_file_through_the_pool),
    T_CASE(t_a_busy_worker_pauses_the_transfer),
    T_CASE(t_corrupt_body_fails_as_bad_data),
    T_CASE(t_truncated_body_fails_at_commit),
    T_CASE(t_read_back_removes_bad_data_only),
    T_CASE(t_free_while_a_batch_is_on_the_pool))
