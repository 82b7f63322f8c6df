/*
 * One file download's data path.  See fetch.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "util/fs.h"
#include "gz.h"
#include "ndjson.h"

struct fetch {
	char		*dir;
	char		*path;		/* final name */
	char		*part;		/* name.part */
	int		 fd;
	struct gz	*gz;
	struct ndjson	*nd;
	int		 count_severity;
	uint64_t	 sev[4];
	char		 error[256];
	/* Set by the thread-pool half of fetch_commit. */
	uv_work_t	 work;
	int		 work_rc;
	fetch_done_cb	 cb;
	void		*cb_arg;
};

/* An error file's OperationOutcome: its severities counted. */
static int
on_line(json_t *obj, void *arg)
{
	struct fetch *f = arg;

	ndjson_count_severity(obj, f->sev);
	return 0;
}

/* Decoded bytes: validate, then store. */
static int
on_decoded(const void *buf, size_t len, void *arg)
{
	struct fetch *f = arg;
	int rc;

	if ((rc = ndjson_feed(f->nd, buf, len)) != 0) {
		snprintf(f->error, sizeof(f->error), "line %llu: %s",
		    (unsigned long long)ndjson_error_line(f->nd),
		    ndjson_strerror(rc));
		return rc;
	}
	if ((rc = fs_write_all(f->fd, buf, len)) != 0) {
		snprintf(f->error, sizeof(f->error), "writing %s: %s",
		    f->part, strerror(-rc));
		return rc;
	}
	return 0;
}

int
fetch_open(const char *dir, const char *name, const char *type,
    int count_severity, struct fetch **out)
{
	struct fetch *f;
	int rc = -ENOMEM;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -ENOMEM;
	f->fd = -1;
	f->count_severity = count_severity;
	if ((f->dir = strdup(dir)) == NULL ||
	    asprintf(&f->path, "%s/%s", dir, name) < 0 ||
	    asprintf(&f->part, "%s/%s.part", dir, name) < 0) {
		f->path = f->part = NULL;
		goto fail;
	}
	if ((f->gz = gz_new(on_decoded, f)) == NULL ||
	    (f->nd = ndjson_new(type, count_severity ? on_line : NULL,
	    f)) == NULL)
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
	fetch_free(f);
	return rc;
}

int
fetch_sink(const void *buf, size_t len, void *arg)
{
	struct fetch *f = arg;
	int rc;

	if ((rc = gz_feed(f->gz, buf, len)) != 0 && f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "%s", gz_strerror(rc));
	return rc;
}

/* Runs on the thread pool: the blocking half of the commit. */
static void
commit_work(uv_work_t *w)
{
	struct fetch *f = w->data;

	f->work_rc = 0;
	if (fsync(f->fd) != 0) {
		f->work_rc = -errno;
		close(f->fd);
		f->fd = -1;
		return;
	}
	if (close(f->fd) != 0) {
		f->work_rc = -errno;
		f->fd = -1;
		return;
	}
	f->fd = -1;
	if (rename(f->part, f->path) != 0) {
		f->work_rc = -errno;
		return;
	}
	f->work_rc = fs_fsync_dir(f->dir);
}

static void
commit_after(uv_work_t *w, int status)
{
	struct fetch *f = w->data;
	int rc = status < 0 ? status : f->work_rc;

	if (rc != 0 && f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "saving %s: %s",
		    f->path, strerror(-rc));
	f->cb(f, rc, f->cb_arg);
}

int
fetch_commit(uv_loop_t *loop, struct fetch *f, fetch_done_cb cb, void *arg)
{
	int rc;

	if ((rc = gz_finish(f->gz)) != 0) {
		snprintf(f->error, sizeof(f->error), "%s", gz_strerror(rc));
		return rc;
	}
	if ((rc = ndjson_finish(f->nd)) != 0) {
		snprintf(f->error, sizeof(f->error), "line %llu: %s",
		    (unsigned long long)ndjson_error_line(f->nd),
		    ndjson_strerror(rc));
		return rc;
	}
	f->cb = cb;
	f->cb_arg = arg;
	f->work.data = f;
	return uv_queue_work(loop, &f->work, commit_work, commit_after);
}

void
fetch_abort(struct fetch *f)
{
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->part != NULL)
		unlink(f->part);
}

void
fetch_free(struct fetch *f)
{
	if (f == NULL)
		return;
	if (f->fd >= 0)
		close(f->fd);
	gz_free(f->gz);
	ndjson_free(f->nd);
	free(f->dir);
	free(f->path);
	free(f->part);
	free(f);
}

const char *
fetch_error(const struct fetch *f)
{
	return f->error[0] ? f->error : "unknown error";
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

