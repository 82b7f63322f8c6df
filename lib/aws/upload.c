/*
 * One file's trip to S3.  See upload.h.
 *
 * Steps: PUT, or CREATE -> PART ... PART -> COMPLETE (-> ABORT on a
 * failure that will not heal).  The intent to create is recorded before
 * CREATE is sent; finding it without an upload id (a crash between S3's
 * answer and its record), LIST first finds the key's open uploads and
 * STRAY aborts each, so that none is left behind.  Each step gets credentials (they may be
 * refreshed in between), signs, sends, and reads the answer with s3_check.
 * A part's SHA-256 is computed on libuv's thread pool before it is sent:
 * it is the signed payload hash, which S3 verifies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/bulk.h"
#include "util/iso8601.h"
#include "util/log.h"
#include "upload.h"

enum up_step {
	UP_PUT, UP_CREATE, UP_PART, UP_COMPLETE, UP_ABORT, UP_LIST, UP_STRAY
};

#define UP_RESTARTS	3	/* NoSuchUpload: times an upload starts over */

static const char *const step_action[] = {
	[UP_PUT]	= "s3:PutObject",
	[UP_CREATE]	= "s3:PutObject (CreateMultipartUpload)",
	[UP_PART]	= "s3:PutObject (UploadPart)",
	[UP_COMPLETE]	= "s3:PutObject (CompleteMultipartUpload)",
	[UP_ABORT]	= "s3:AbortMultipartUpload",
	[UP_LIST]	= "s3:ListBucketMultipartUploads",
	[UP_STRAY]	= "s3:AbortMultipartUpload",
};

struct upload {
	struct upload_env env;
	struct s3_loc	 loc;
	char		*bucket, *region, *endpoint, *kms;
	struct file_row	*f;
	char		*path, *key;
	int		 fd;
	uint64_t	 size;
	enum up_step	 step;
	uint64_t	 part_size;
	int		 nparts_total;
	struct s3_part	*parts;		/* acknowledged, by number */
	int		 nparts;
	int		 next_part;
	char		 sha[65];	/* of the whole file or of this part */
	int		 sha_ok;
	struct http_req	*req;
	uv_timer_t	 timer;
	uv_work_t	 work;
	int		 working;
	int		 creds_wait;	/* awscreds_get has not called back */
	int		 abort_only;	/* upload_abort(): nothing to send */
	int		 attempts;	/* of this request; reset by success */
	int		 restarts;	/* after NoSuchUpload; never reset */
	int		 cancelled;
	int		 final_rc;
	char		**strays;	/* open uploads of the key, to abort */
	int		 nstrays;
	char		 why[512];
	upload_done_cb	 cb;
	void		*arg;
};

static void	run(struct upload *);

char *
upload_key(const char *prefix, const char *profile, const char *tt,
    const char *name)
{
	char t[64], utc[64], *k;
	size_t i, n = 0;

	/*
	 * The time in UTC (BCDA's v1/v2 transactionTime may carry an offset,
	 * and a '+' in a key is mishandled by S3 tools and signers), in ISO
	 * 8601 basic form (no colons): ':' needs special handling in S3
	 * keys, and some S3 implementations mis-sign it.
	 */
	if (iso8601_utc(tt, utc, sizeof(utc)) == 0)
		tt = utc;
	for (i = 0; tt[i] != '\0' && n + 1 < sizeof(t); i++)
		if (tt[i] != ':')
			t[n++] = tt[i];
	t[n] = '\0';
	/*
	 * Data files sit alone under <profile>/<time>/, the prefix given to
	 * HealthLake, which imports every object there; the error files and
	 * manifest.json go beside it under <time>_meta/.
	 */
	if (strncmp(name, "errors/", 7) == 0 || strcmp(name, "manifest.json")
	    == 0) {
		if (asprintf(&k, "%s%s/%s_meta/%s", prefix, profile, t,
		    name) < 0)
			return NULL;
	} else if (asprintf(&k, "%s%s/%s/%s", prefix, profile, t, name) < 0) {
		return NULL;
	}
	return k;
}

static void
timer_closed(uv_handle_t *h)
{
	struct upload *u = h->data;
	int i;

	for (i = 0; i < u->nparts; i++)
		free(u->parts[i].etag);
	free(u->parts);
	for (i = 0; i < u->nstrays; i++)
		free(u->strays[i]);
	free(u->strays);
	free(u->bucket);
	free(u->region);
	free(u->endpoint);
	free(u->kms);
	free(u->path);
	free(u->key);
	free(u);
}

/* Frees u once nothing of it is in flight. */
static void
up_free(struct upload *u)
{
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
	}
	http_req_free(u->req);
	u->req = NULL;
	uv_close((uv_handle_t *)&u->timer, timer_closed);
}

static void
finish(struct upload *u, int rc)
{
	upload_done_cb cb = u->cb;
	void *arg = u->arg;
	char why[512];

	snprintf(why, sizeof(why), "%s", u->why);
	up_free(u);
	cb(u, rc, rc ? why : NULL, arg);
}

/* ---- hashing on the thread pool ---------------------------------------- */

static void
hash_work(uv_work_t *w)
{
	struct upload *u = w->data;
	unsigned char buf[1 << 16], md[32];
	unsigned int mdlen;
	uint64_t off = 0, len = u->size;
	EVP_MD_CTX *ctx;
	ssize_t n;
	size_t want;

	bulk_thread();
	if (u->step == UP_PART) {
		off = (uint64_t)(u->next_part - 1) * u->part_size;
		len = u->size - off < u->part_size ? u->size - off :
		    u->part_size;
	}
	u->sha_ok = 0;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while (len > 0) {
		want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		if ((n = pread(u->fd, buf, want, (off_t)off)) <= 0)
			goto out;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	sigv4_hex(md, 32, u->sha);
	u->sha_ok = 1;
out:
	EVP_MD_CTX_free(ctx);
}

static void
hash_after(uv_work_t *w, int status)
{
	struct upload *u = w->data;

	u->working = 0;
	if (u->cancelled) {
		up_free(u);
		return;
	}
	if (status != 0 || !u->sha_ok) {
		snprintf(u->why, sizeof(u->why), "cannot read %s", u->path);
		finish(u, -EIO);
		return;
	}
	run(u);
}

static void
hash_then_run(struct upload *u)
{
	u->work.data = u;
	u->working = 1;
	if (uv_queue_work(u->env.loop, &u->work, hash_work, hash_after) != 0) {
		u->working = 0;
		snprintf(u->why, sizeof(u->why), "cannot hash %s", u->path);
		finish(u, -EIO);
	}
}

/* ---- answers ----------------------------------------------------------- */

static void
retry_cb(uv_timer_t *t)
{
	run(t->data);
}

/*
 * Adds an acknowledged part where its number goes, replacing one of the
 * same number: parts are acknowledged out of order after a resume whose
 * record has a gap (1, 3: part 2 is sent next), and both first_missing
 * and CompleteMultipartUpload, which S3 refuses otherwise
 * (InvalidPartOrder), need them in order, each once.
 */
static int
add_part(int number, const char *etag, void *arg)
{
	struct upload *u = arg;
	struct s3_part *p;
	char *e;
	int i;

	if ((e = strdup(etag)) == NULL)
		return -ENOMEM;
	for (i = u->nparts; i > 0 && u->parts[i - 1].number > number; i--)
		;
	if (i > 0 && u->parts[i - 1].number == number) {
		free(u->parts[i - 1].etag);
		u->parts[i - 1].etag = e;
		return 0;
	}
	if ((p = realloc(u->parts, (size_t)(u->nparts + 1) *
	    sizeof(*p))) == NULL) {
		free(e);
		return -ENOMEM;
	}
	u->parts = p;
	memmove(&p[i + 1], &p[i], (size_t)(u->nparts - i) * sizeof(*p));
	p[i].number = number;
	p[i].etag = e;
	u->nparts++;
	return 0;
}

/* The first part S3 has not acknowledged; u->parts is in order. */
static int
first_missing(const struct upload *u)
{
	int n = 1, i;

	for (i = 0; i < u->nparts; i++)
		if (u->parts[i].number == n)
			n++;
	return n;
}

static void
forget_upload(struct upload *u)
{
	int i;

	for (i = 0; i < u->nparts; i++)
		free(u->parts[i].etag);
	u->nparts = 0;
	free(u->f->s3_upload_id);
	u->f->s3_upload_id = NULL;
	/* Unrecorded, a restart resumes it and hears NoSuchUpload again. */
	u->env.journal.record(u->arg, u->f, 0, NULL);
}

/*
 * CREATE, once the intent is recorded (its part size, no id yet): a crash
 * after S3's answer then leaves a trace that the next start follows.
 */
static void
create(struct upload *u)
{
	u->attempts = 0;
	u->step = UP_CREATE;
	u->f->s3_part_size = (int64_t)u->part_size;
	if (u->env.journal.record(u->arg, u->f, 0, NULL) != 0) {
		snprintf(u->why, sizeof(u->why), "cannot record the upload of "
		    "%s", u->key);
		finish(u, -EIO);
		return;
	}
	run(u);
}

/* Aborts the next stray upload of the key, or creates ours. */
static void
next_stray(struct upload *u)
{
	u->attempts = 0;
	if (u->nstrays == 0) {
		create(u);
		return;
	}
	log_warnx("S3 upload %s of %s was started before a restart and never "
	    "recorded; aborting it", u->strays[u->nstrays - 1], u->key);
	u->step = UP_STRAY;
	run(u);
}

static void
failed(struct upload *u, const struct http_resp *resp,
    const struct aws_error *e)
{
	char abort_why[512];
	uint64_t delay, d;
	int n;

	if (u->step == UP_ABORT && strcmp(e->code, "NoSuchUpload") == 0) {
		/* Gone already (aborted or completed): nothing lingers. */
		forget_upload(u);
		finish(u, u->final_rc);
		return;
	}
	if (u->step == UP_ABORT && !u->abort_only) {
		/*
		 * Best effort: the upload failed already, and u->why says
		 * why; that is what the caller hears, not the abort's failure.
		 */
		s3_describe(&u->loc, u->key, step_action[u->step], resp, e,
		    abort_why, sizeof(abort_why));
		log_warnx("%s, after the upload failed", abort_why);
		finish(u, u->final_rc);
		return;
	}
	s3_describe(&u->loc, u->key, step_action[u->step], resp, e, u->why,
	    sizeof(u->why));
	if (u->step == UP_ABORT) {
		finish(u, -EIO);
		return;
	}
	if (u->step == UP_LIST || (u->step == UP_STRAY &&
	    strcmp(e->code, "NoSuchUpload") != 0)) {
		/* Best effort too: the new upload matters more. */
		log_warnx("%s; an upload of it may stay open (an S3 lifecycle "
		    "rule AbortIncompleteMultipartUpload removes it)", u->why);
		u->nstrays = 0;
		create(u);
		return;
	}
	if (u->step == UP_STRAY) {
		next_stray(u);
		return;
	}
	/*
	 * Counted apart from attempts, which each success (the new upload's
	 * CREATE) resets: an S3 that keeps losing uploads must not have them
	 * started over without end.
	 */
	if (strcmp(e->code, "NoSuchUpload") == 0 && u->f != NULL &&
	    u->f->s3_upload_id != NULL && u->restarts < UP_RESTARTS) {
		log_warnx("S3 no longer knows the upload of %s; starting it "
		    "over", u->key);
		forget_upload(u);
		u->restarts++;
		u->attempts = 0;
		u->step = UP_CREATE;
		run(u);
		return;
	}
	if (strcmp(e->code, "ExpiredToken") == 0 ||
	    strcmp(e->code, "InvalidToken") == 0)
		awscreds_invalidate(u->env.creds);
	if ((aws_retryable(resp, e) || strcmp(e->code, "ExpiredToken") == 0) &&
	    ++u->attempts < u->env.max_attempts) {
		d = (uint64_t)u->env.retry_min * 1000;
		for (n = 1; n < u->attempts && d < (uint64_t)u->env.retry_max *
		    1000; n++)
			d *= 2;
		if (d > (uint64_t)u->env.retry_max * 1000)
			d = (uint64_t)u->env.retry_max * 1000;
		delay = d / 2 + (uint64_t)random() % (d / 2 + 1);
		log_warnx("%s; retry %d in %llu s", u->why, u->attempts,
		    (unsigned long long)(delay + 999) / 1000);
		uv_timer_start(&u->timer, retry_cb, delay, 0);
		return;
	}
	/* It will not heal: abort a multipart upload so no parts linger. */
	if (u->f != NULL && u->f->s3_upload_id != NULL) {
		u->final_rc = -EIO;
		u->step = UP_ABORT;
		run(u);
		return;
	}
	finish(u, -EIO);
}

static void
req_done(struct http_req *r, void *arg)
{
	struct upload *u = arg;
	const struct http_resp *resp = http_req_resp(r);
	struct aws_error e;
	char *id;

	u->req = NULL;
	if (s3_check(resp, &e) != 0) {
		failed(u, resp, &e);
		http_req_free(r);
		return;
	}
	u->attempts = 0;
	switch (u->step) {
	case UP_PUT:
	case UP_COMPLETE:
		http_req_free(r);
		finish(u, 0);
		return;
	case UP_ABORT:
		http_req_free(r);
		forget_upload(u);
		finish(u, u->final_rc);
		return;
	case UP_LIST:
		if ((u->nstrays = s3_upload_ids(resp, u->key, &u->strays)) < 0) {
			u->nstrays = 0;
			snprintf(e.code, sizeof(e.code), "BadResponse");
			snprintf(e.message, sizeof(e.message), "not XML");
			failed(u, resp, &e);
			break;
		}
		next_stray(u);
		break;
	case UP_STRAY:
		free(u->strays[--u->nstrays]);
		next_stray(u);
		break;
	case UP_CREATE:
		if ((id = s3_upload_id(resp)) == NULL) {
			snprintf(e.code, sizeof(e.code), "BadResponse");
			snprintf(e.message, sizeof(e.message), "no UploadId");
			failed(u, resp, &e);
			break;
		}
		/* Saved before any part is sent, so a restart resumes it. */
		free(u->f->s3_upload_id);
		u->f->s3_upload_id = id;
		u->f->s3_part_size = (int64_t)u->part_size;
		if (u->env.journal.record(u->arg, u->f, 0, NULL) != 0) {
			snprintf(u->why, sizeof(u->why), "cannot record the "
			    "upload of %s", u->key);
			u->final_rc = -EIO;
			u->step = UP_ABORT;
			run(u);
			break;
		}
		u->step = UP_PART;
		u->next_part = 1;
		hash_then_run(u);
		break;
	case UP_PART:
		if (resp->etag == NULL || add_part(u->next_part, resp->etag,
		    u) != 0) {
			snprintf(u->why, sizeof(u->why), "%s for part %d of "
			    "%s", resp->etag ? "out of memory" : "no ETag",
			    u->next_part, u->key);
			http_req_free(r);
			finish(u, -EIO);
			return;
		}
		if (u->env.journal.record(u->arg, u->f, u->next_part,
		    resp->etag) != 0)
			log_warnx("part %d of %s not recorded; a restart sends "
			    "it again", u->next_part, u->key);
		u->next_part = first_missing(u);
		if (u->next_part > u->nparts_total) {
			u->step = UP_COMPLETE;
			run(u);
		} else {
			hash_then_run(u);
		}
		break;
	}
	http_req_free(r);
}

/* ---- requests ---------------------------------------------------------- */

static void
with_creds(void *arg, const struct aws_creds *c, const char *error)
{
	struct upload *u = arg;
	time_t now = time(NULL);
	uint64_t off, len;
	int rc;

	u->creds_wait = 0;
	if (u->cancelled) {
		up_free(u);
		return;
	}
	if (c == NULL) {
		snprintf(u->why, sizeof(u->why), "no AWS credentials for "
		    "s3://%s/%s: %s", u->bucket, u->key, error);
		finish(u, -EACCES);
		return;
	}
	switch (u->step) {
	case UP_PUT:
		u->req = s3_put_object(&u->loc, u->key, u->fd, 0,
		    (size_t)u->size, u->sha, "application/fhir+ndjson", c, now);
		break;
	case UP_CREATE:
		u->req = s3_create_multipart(&u->loc, u->key,
		    "application/fhir+ndjson", c, now);
		break;
	case UP_PART:
		off = (uint64_t)(u->next_part - 1) * u->part_size;
		len = u->size - off < u->part_size ? u->size - off :
		    u->part_size;
		u->req = s3_upload_part(&u->loc, u->key, u->f->s3_upload_id,
		    u->next_part, u->fd, (off_t)off, (size_t)len, u->sha, c,
		    now);
		break;
	case UP_COMPLETE:
		u->req = s3_complete_multipart(&u->loc, u->key,
		    u->f->s3_upload_id, u->parts, (size_t)u->nparts, c, now);
		break;
	case UP_ABORT:
		u->req = s3_abort_multipart(&u->loc, u->key,
		    u->f->s3_upload_id, c, now);
		break;
	case UP_LIST:
		u->req = s3_list_multipart(&u->loc, c, now);
		break;
	case UP_STRAY:
		u->req = s3_abort_multipart(&u->loc, u->key,
		    u->strays[u->nstrays - 1], c, now);
		break;
	}
	if (u->req != NULL) {
		http_req_timeout(u->req, 0);
		if ((rc = http_start(u->env.http, u->req, req_done, u)) == 0)
			return;
		http_req_free(u->req);
		u->req = NULL;
	}
	snprintf(u->why, sizeof(u->why), "cannot build the S3 request for %s",
	    u->key);
	finish(u, -ENOMEM);
}

static void
run(struct upload *u)
{
	u->creds_wait = 1;
	awscreds_get(u->env.creds, with_creds, u);
}

/* A new upload of path to key, not started.  NULL when out of memory. */
static struct upload *
up_new(const struct upload_env *env, const struct s3_loc *loc,
    struct file_row *f, const char *path, const char *key,
    upload_done_cb cb, void *arg)
{
	struct upload *u;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->env = *env;
	u->fd = -1;
	u->f = f;
	u->cb = cb;
	u->arg = arg;
	uv_timer_init(env->loop, &u->timer);
	u->timer.data = u;
	u->bucket = strdup(loc->bucket);
	u->region = strdup(loc->region);
	u->endpoint = loc->endpoint ? strdup(loc->endpoint) : NULL;
	u->kms = loc->kms_key_id ? strdup(loc->kms_key_id) : NULL;
	u->path = strdup(path);
	u->key = strdup(key);
	u->loc.bucket = u->bucket;
	u->loc.region = u->region;
	u->loc.endpoint = u->endpoint;
	u->loc.kms_key_id = u->kms;
	if (u->bucket == NULL || u->region == NULL || u->path == NULL ||
	    u->key == NULL) {
		up_free(u);
		return NULL;
	}
	return u;
}

int
upload_start(const struct upload_env *env, const struct s3_loc *loc,
    struct file_row *f, const char *path, const char *key,
    unsigned long long threshold, upload_done_cb cb, void *arg,
    struct upload **out)
{
	struct upload *u;
	struct stat sb;
	int rc;

	if ((u = up_new(env, loc, f, path, key, cb, arg)) == NULL)
		return -ENOMEM;
	if ((u->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(u->fd, &sb) != 0) {
		rc = -errno;
		goto fail;
	}
	u->size = (uint64_t)sb.st_size;
	*out = u;
	if (f == NULL || u->size < threshold) {
		u->step = UP_PUT;
		if (f != NULL && f->sha256 != NULL && strlen(f->sha256) == 64) {
			memcpy(u->sha, f->sha256, 65);
			run(u);
		} else {
			hash_then_run(u);
		}
		return 0;
	}
	u->part_size = f->s3_part_size > 0 ? (uint64_t)f->s3_part_size :
	    s3_part_size(u->size);
	u->nparts_total = (int)((u->size + u->part_size - 1) / u->part_size);
	if (f->s3_upload_id != NULL) {
		/* Resume: skip every part S3 already acknowledged. */
		if ((rc = env->journal.parts(arg, f, add_part, u)) != 0)
			goto fail;
		u->next_part = first_missing(u);
		if (u->next_part > u->nparts_total) {
			u->step = UP_COMPLETE;
			run(u);
		} else {
			u->step = UP_PART;
			hash_then_run(u);
		}
		return 0;
	}
	if (f->s3_part_size > 0) {
		/* An intent without an id: a CREATE may have gone unrecorded. */
		u->step = UP_LIST;
		run(u);
		return 0;
	}
	u->step = UP_CREATE;
	f->s3_part_size = (int64_t)u->part_size;
	if (env->journal.record(arg, f, 0, NULL) != 0) {
		f->s3_part_size = 0;
		rc = -EIO;
		goto fail;
	}
	run(u);
	return 0;
fail:
	*out = NULL;
	up_free(u);
	return rc;
}

/*
 * Aborts f's multipart upload in S3 (the job was cancelled or failed), so
 * no parts linger there; then has it forgotten (journal.record).  cb hears 0 or why
 * it could not.
 */
int
upload_abort(const struct upload_env *env, const struct s3_loc *loc,
    struct file_row *f, const char *key, upload_done_cb cb, void *arg,
    struct upload **out)
{
	struct upload *u;

	if (f->s3_upload_id == NULL)
		return -ENOENT;
	if ((u = up_new(env, loc, f, "", key, cb, arg)) == NULL)
		return -ENOMEM;
	*out = u;
	u->step = UP_ABORT;
	u->abort_only = 1;
	u->final_rc = 0;
	run(u);
	return 0;
}

void
upload_cancel(struct upload *u)
{
	if (u == NULL)
		return;
	u->cancelled = 1;
	uv_timer_stop(&u->timer);
	if (u->req != NULL) {
		http_cancel(u->env.http, u->req);
		http_req_free(u->req);
		u->req = NULL;
	}
	/* A credentials fetch goes on for others, without this upload. */
	if (u->creds_wait) {
		awscreds_forget(u->env.creds, with_creds, u);
		u->creds_wait = 0;
	}
	/* A hash on the thread pool finishes first. */
	if (!u->working)
		up_free(u);
}
