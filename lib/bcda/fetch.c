/*
 * One file download's data path.  See fetch.h.
 *
 * Two buffers per file: `in`, filled by the sink on the loop, and `batch`,
 * which a thread-pool worker owns while `busy`.  A batch is handed over
 * when the worker is idle and `in` holds FETCH_BATCH bytes (or the body
 * ended); while the worker is busy `in` fills up to FETCH_CAP, then the
 * sink pauses the transfer.  Everything the worker writes (the decoders,
 * the fd, w_rc, w_error) is read on the loop only after its batch is
 * back, in batch_after().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "util/bulk.h"
#include "util/fs.h"
#include "util/http.h"
#include "gz.h"
#include "ndjson.h"

#define FETCH_BATCH	(64u * 1024)	/* hand over once this much is in */
#define FETCH_CAP	(256u * 1024)	/* pause the transfer beyond this */

struct fetch {
	uv_loop_t	*loop;
	char		*dir;
	char		*path;		/* final name */
	char		*part;		/* name.part */
	int		 fd;
	struct gz	*gz;
	struct ndjson	*nd;
	int		 count_severity;
	uint64_t	 sev[4];
	/* The loop's side. */
	char		*in;
	size_t		 in_len, in_cap;
	int		 rc;		/* first error, sticky */
	int		 bad_data;	/* rc came from the data, not the system */
	int		 paused;	/* the sink asked the transfer to wait */
	int		 ending;	/* fetch_commit was called */
	int		 aborted;	/* fetch_abort: unlink once idle */
	int		 freed;		/* fetch_free: free once idle */
	fetch_resume_cb	 resume;
	void		*resume_arg;
	fetch_done_cb	 cb;
	void		*cb_arg;
	char		 error[256];
	/* The worker's side, while busy. */
	int		 busy;
	uv_work_t	 work;
	char		*batch;
	size_t		 batch_len, batch_cap;
	int		 last;		/* this batch ends the body */
	int		 w_rc;
	char		 w_error[256];
};

static void	release(struct fetch *);

/* An error file's OperationOutcome: its severities counted. */
static int
on_line(json_t *obj, void *arg)
{
	struct fetch *f = arg;

	ndjson_count_severity(obj, f->sev);
	return 0;
}

/* Decoded bytes, on the worker: validate, then store. */
static int
on_decoded(const void *buf, size_t len, void *arg)
{
	struct fetch *f = arg;
	int rc;

	if ((rc = ndjson_feed(f->nd, buf, len)) != 0) {
		snprintf(f->w_error, sizeof(f->w_error), "line %llu: %s",
		    (unsigned long long)ndjson_error_line(f->nd),
		    ndjson_strerror(rc));
		return rc;
	}
	if ((rc = fs_write_all(f->fd, buf, len)) != 0) {
		snprintf(f->w_error, sizeof(f->w_error), "writing %s: %s",
		    f->part, strerror(-rc));
		return rc;
	}
	return 0;
}

/* What a download and a read-back share: paths, a buffer, the checker. */
static int
fetch_new(uv_loop_t *loop, const char *dir, const char *name,
    const char *type, int count_severity, struct fetch **out)
{
	struct fetch *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -ENOMEM;
	f->loop = loop;
	f->fd = -1;
	f->count_severity = count_severity;
	f->batch_cap = FETCH_CAP;
	if ((f->dir = strdup(dir)) == NULL ||
	    asprintf(&f->path, "%s/%s", dir, name) < 0) {
		f->path = NULL;
		release(f);
		return -ENOMEM;
	}
	if ((f->batch = malloc(f->batch_cap)) == NULL ||
	    (f->nd = ndjson_new(type, count_severity ? on_line : NULL,
	    f)) == NULL) {
		release(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

int
fetch_open(uv_loop_t *loop, const char *dir, const char *name,
    const char *type, int count_severity, fetch_resume_cb resume,
    void *resume_arg, struct fetch **out)
{
	struct fetch *f;
	int rc;

	if ((rc = fetch_new(loop, dir, name, type, count_severity, &f)) != 0)
		return rc;
	f->resume = resume;
	f->resume_arg = resume_arg;
	f->in_cap = FETCH_CAP;
	rc = -ENOMEM;
	if (asprintf(&f->part, "%s.part", f->path) < 0) {
		f->part = NULL;
		goto fail;
	}
	if ((f->in = malloc(f->in_cap)) == NULL ||
	    (f->gz = gz_new(on_decoded, f)) == NULL)
		goto fail;
	/* The data is the daemon user's alone: beneficiary data. */
	f->fd = open(f->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		rc = -errno;
		goto fail;
	}
	*out = f;
	return 0;
fail:
	release(f);
	return rc;
}

/* The end of the body, on the worker: check the ends, then save. */
static int
finish(struct fetch *f)
{
	int rc;

	if ((rc = gz_finish(f->gz)) != 0) {
		snprintf(f->w_error, sizeof(f->w_error), "%s",
		    gz_strerror(rc));
		return rc;
	}
	if ((rc = ndjson_finish(f->nd)) != 0) {
		snprintf(f->w_error, sizeof(f->w_error), "line %llu: %s",
		    (unsigned long long)ndjson_error_line(f->nd),
		    ndjson_strerror(rc));
		return rc;
	}
	rc = fsync(f->fd) != 0 ? -errno : 0;
	if (close(f->fd) != 0 && rc == 0)
		rc = -errno;
	f->fd = -1;
	if (rc == 0 && rename(f->part, f->path) != 0)
		rc = -errno;
	if (rc == 0)
		rc = fs_fsync_dir(f->dir);
	if (rc != 0)
		snprintf(f->w_error, sizeof(f->w_error), "saving %s: %s",
		    f->path, strerror(-rc));
	return rc;
}

/* Runs on the thread pool. */
static void
batch_work(uv_work_t *w)
{
	struct fetch *f = w->data;
	int rc = 0;

	bulk_thread();
	if (f->batch_len > 0 && (rc = gz_feed(f->gz, f->batch,
	    f->batch_len)) != 0 && f->w_error[0] == '\0')
		snprintf(f->w_error, sizeof(f->w_error), "%s",
		    gz_strerror(rc));
	if (rc == 0 && f->last)
		rc = finish(f);
	if (rc != 0 && f->last) {
		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		unlink(f->part);
	}
	f->w_rc = rc;
}

static void	batch_after(uv_work_t *, int);

/*
 * Runs on the thread pool: a file already under its final name, read
 * back through the validator for its lines, bytes and SHA-256, and made
 * durable (the crash may have come before the directory's fsync).  A
 * file whose data do not pass is unlinked, to be fetched again; one the
 * system could not read or sync (out of descriptors, EIO) is kept for
 * the next try: it may be whole, and BCDA may have deleted its own copy.
 */
static void
verify_work(uv_work_t *w)
{
	struct fetch *f = w->data;
	ssize_t n;
	int rc = 0;

	bulk_thread();
	while ((n = read(f->fd, f->batch, f->batch_cap)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(f->w_error, sizeof(f->w_error), "reading %s: "
			    "%s", f->path, strerror(-rc));
			break;
		}
		if ((rc = ndjson_feed(f->nd, f->batch, (size_t)n)) != 0)
			break;
	}
	if (rc == 0)
		rc = ndjson_finish(f->nd);
	if (rc != 0 && f->w_error[0] == '\0')
		snprintf(f->w_error, sizeof(f->w_error), "%s, line %llu: %s",
		    f->path, (unsigned long long)ndjson_error_line(f->nd),
		    ndjson_strerror(rc));
	if (rc == 0 && fsync(f->fd) != 0)
		rc = -errno;
	if (rc == 0)
		rc = fs_fsync_dir(f->dir);
	if (rc != 0 && f->w_error[0] == '\0')
		snprintf(f->w_error, sizeof(f->w_error), "saving %s: %s",
		    f->path, strerror(-rc));
	close(f->fd);
	f->fd = -1;
	if (rc <= GZ_ECORRUPT)
		unlink(f->path);
	f->w_rc = rc;
}

int
fetch_verify(uv_loop_t *loop, const char *dir, const char *name,
    const char *type, int count_severity, fetch_done_cb cb, void *arg,
    struct fetch **out)
{
	struct fetch *f;
	int rc;

	if ((rc = fetch_new(loop, dir, name, type, count_severity, &f)) != 0)
		return rc;
	f->cb = cb;
	f->cb_arg = arg;
	if ((f->fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto fail;
	}
	f->ending = f->last = 1;
	f->work.data = f;
	if ((rc = uv_queue_work(loop, &f->work, verify_work,
	    batch_after)) != 0)
		goto fail;
	f->busy = 1;
	*out = f;
	return 0;
fail:
	release(f);
	return rc;
}

/* Hands `in` to the worker; the body's end goes with its last bytes. */
static int
dispatch(struct fetch *f)
{
	char *t = f->batch;
	size_t cap = f->batch_cap;
	int rc;

	f->batch = f->in;
	f->batch_cap = f->in_cap;
	f->batch_len = f->in_len;
	f->in = t;
	f->in_cap = cap;
	f->in_len = 0;
	f->last = f->ending;
	f->w_rc = 0;
	f->w_error[0] = '\0';
	f->work.data = f;
	if ((rc = uv_queue_work(f->loop, &f->work, batch_work,
	    batch_after)) != 0)
		return rc;
	f->busy = 1;
	return 0;
}

static void
fail(struct fetch *f, int rc, const char *why)
{
	if (f->rc != 0)
		return;
	f->rc = rc;
	f->bad_data = rc <= GZ_ECORRUPT;
	snprintf(f->error, sizeof(f->error), "%s", why);
}

static void
batch_after(uv_work_t *w, int status)
{
	struct fetch *f = w->data;
	int last = f->last;

	f->busy = 0;
	if (status < 0)
		fail(f, status, uv_strerror(status));
	else if (f->w_rc != 0)
		fail(f, f->w_rc, f->w_error);
	/* Aborted or freed meanwhile: no more batches, no callback. */
	if (f->aborted || f->freed) {
		if (f->aborted)
			fetch_abort(f);
		if (f->freed)
			release(f);
		return;
	}
	if (last) {
		f->cb(f, f->rc, f->cb_arg);
		return;
	}
	if (f->rc == 0 && (f->in_len >= FETCH_BATCH || f->ending) &&
	    (status = dispatch(f)) != 0)
		fail(f, status, uv_strerror(status));
	if (f->rc != 0 && f->ending) {
		/* The end never reached a worker: report it now. */
		f->ending = 0;
		fetch_abort(f);
		f->cb(f, f->rc, f->cb_arg);
		return;
	}
	/* Room again, or an error the sink should now return. */
	if (f->paused && (f->rc != 0 || f->in_len < FETCH_CAP)) {
		f->paused = 0;
		f->resume(f->resume_arg);
	}
}

int
fetch_sink(const void *buf, size_t len, void *arg)
{
	struct fetch *f = arg;
	int rc;

	if (f->rc != 0)
		return f->rc;
	if (f->in_len > 0 && f->in_len + len > f->in_cap) {
		if (f->busy) {
			f->paused = 1;
			return HTTP_SINK_PAUSE;
		}
		if ((rc = dispatch(f)) != 0) {
			fail(f, rc, uv_strerror(rc));
			return rc;
		}
	}
	if (len > f->in_cap) {
		/* Larger than any chunk curl hands over; kept just in case. */
		char *p = realloc(f->in, len);

		if (p == NULL) {
			fail(f, -ENOMEM, strerror(ENOMEM));
			return -ENOMEM;
		}
		f->in = p;
		f->in_cap = len;
	}
	memcpy(f->in + f->in_len, buf, len);
	f->in_len += len;
	if (!f->busy && f->in_len >= FETCH_BATCH &&
	    (rc = dispatch(f)) != 0) {
		fail(f, rc, uv_strerror(rc));
		return rc;
	}
	return 0;
}

int
fetch_commit(struct fetch *f, fetch_done_cb cb, void *arg)
{
	int rc;

	if (f->rc != 0)
		return f->rc;
	f->cb = cb;
	f->cb_arg = arg;
	f->ending = 1;
	if (f->busy)
		return 0;		/* batch_after sends the end */
	if ((rc = dispatch(f)) != 0) {
		f->ending = 0;
		fail(f, rc, uv_strerror(rc));
	}
	return rc;
}

void
fetch_abort(struct fetch *f)
{
	if (f->busy) {
		f->aborted = 1;
		return;
	}
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->part != NULL)
		unlink(f->part);
}

static void
release(struct fetch *f)
{
	if (f->fd >= 0)
		close(f->fd);
	gz_free(f->gz);
	ndjson_free(f->nd);
	free(f->in);
	free(f->batch);
	free(f->dir);
	free(f->path);
	free(f->part);
	free(f);
}

void
fetch_free(struct fetch *f)
{
	if (f == NULL)
		return;
	if (f->busy)
		f->freed = 1;
	else
		release(f);
}

const char *
fetch_error(const struct fetch *f)
{
	return f->error[0] ? f->error : "unknown error";
}

int
fetch_bad_data(const struct fetch *f)
{
	return f->bad_data;
}

uint64_t
fetch_lines(const struct fetch *f)
{
	return ndjson_lines(f->nd);
}

uint64_t
fetch_bytes(const struct fetch *f)
{
	return ndjson_bytes(f->nd);
}

const char *
fetch_sha256(const struct fetch *f)
{
	return ndjson_sha256(f->nd);
}

const uint64_t *
fetch_severity(const struct fetch *f)
{
	return f->sev;
}
