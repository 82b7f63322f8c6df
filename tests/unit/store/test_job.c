/*
 * Tests of the job state machine (lib/store/job.c): every (from, to) pair
 * against a transition table written here independently of job.c, the
 * state names and their parsing, the enum values stored in SQLite, and
 * job_set_state against a real store in a mkdtemp directory: what a legal
 * transition writes, and that an illegal one, a stale one and one whose
 * extra writes fail write nothing at all.
 */
#include <errno.h>
#include <unistd.h>

#include "t.h"
#include "store/job.h"
#include "util/log.h"
#include "store/store.h"

/*
 * The intended transitions, from the specification rather than from
 * job.c: the forward path, POLL and DOWNLOAD back to KICKOFF when BCDA
 * expired the job or its files, FAILED or CANCELLED from every state
 * from NEW to IMPORT, NOTIFY only to DONE, FAILED back to the state it
 * failed in (bcdad retry, never to NEW), and nothing out of DONE,
 * CANCELLED or SKIPPED.
 */
static int
expected_ok(int from, int to)
{
	static const int forward[][2] = {
		{ JOB_NEW, JOB_TOKEN },
		{ JOB_TOKEN, JOB_KICKOFF },
		{ JOB_KICKOFF, JOB_POLL },
		{ JOB_KICKOFF, JOB_SKIPPED },
		{ JOB_POLL, JOB_DOWNLOAD },
		{ JOB_POLL, JOB_KICKOFF },
		{ JOB_DOWNLOAD, JOB_S3_PUT },
		{ JOB_DOWNLOAD, JOB_KICKOFF },
		{ JOB_S3_PUT, JOB_IMPORT },
		{ JOB_IMPORT, JOB_NOTIFY },
		{ JOB_NOTIFY, JOB_DONE },
	};
	size_t i;

	for (i = 0; i < sizeof(forward) / sizeof(forward[0]); i++)
		if (forward[i][0] == from && forward[i][1] == to)
			return 1;
	if (from >= JOB_NEW && from <= JOB_IMPORT &&
	    (to == JOB_FAILED || to == JOB_CANCELLED))
		return 1;
	/* bcdad retry resumes a FAILED job where it failed. */
	if (from == JOB_FAILED && to >= JOB_TOKEN && to <= JOB_NOTIFY)
		return 1;
	return 0;
}

/* The values are stored in SQLite: renumbering one must fail here. */
T_TEST(test_enum_values_pinned)
{
	T_EQ_INT(JOB_NEW, 0);
	T_EQ_INT(JOB_TOKEN, 1);
	T_EQ_INT(JOB_KICKOFF, 2);
	T_EQ_INT(JOB_POLL, 3);
	T_EQ_INT(JOB_DOWNLOAD, 4);
	T_EQ_INT(JOB_S3_PUT, 5);
	T_EQ_INT(JOB_IMPORT, 6);
	T_EQ_INT(JOB_NOTIFY, 7);
	T_EQ_INT(JOB_DONE, 8);
	T_EQ_INT(JOB_FAILED, 9);
	T_EQ_INT(JOB_CANCELLED, 10);
	T_EQ_INT(JOB_SKIPPED, 11);
	T_EQ_INT(JOB_NSTATES, 12);
	T_EQ_INT(FILE_PENDING, 0);
	T_EQ_INT(FILE_DONE, 1);
	T_EQ_INT(FILE_FAILED, 2);
	T_EQ_INT(FILE_OUTPUT, 0);
	T_EQ_INT(FILE_ERROR, 1);
}

T_TEST(test_every_transition)
{
	int from, to, n = 0;

	for (from = 0; from < JOB_NSTATES; from++) {
		for (to = 0; to < JOB_NSTATES; to++) {
			int want = expected_ok(from, to);
			int got = job_transition_ok((enum job_state)from,
			    (enum job_state)to);

			if (got != want)
				T_FAIL("%s -> %s: job_transition_ok says %d, "
				    "expected %d", job_state_name(from),
				    job_state_name(to), got, want);
			n += want;
		}
	}
	/*
	 * 11 forward edges + 7 live states x {FAILED, CANCELLED} + FAILED
	 * back to any of 7 live states but NEW.
	 */
	T_EQ_INT(n, 32);
}

T_TEST(test_transition_out_of_range)
{
	int s;

	for (s = 0; s < JOB_NSTATES; s++) {
		T_EQ_INT(job_transition_ok((enum job_state)s, JOB_NSTATES), 0);
		T_EQ_INT(job_transition_ok(JOB_NSTATES, (enum job_state)s), 0);
		T_EQ_INT(job_transition_ok((enum job_state)s,
		    (enum job_state)-1), 0);
		T_EQ_INT(job_transition_ok((enum job_state)-1,
		    (enum job_state)s), 0);
		T_EQ_INT(job_transition_ok((enum job_state)s,
		    (enum job_state)1000), 0);
	}
}

T_TEST(test_terminal)
{
	int s;

	for (s = 0; s < JOB_NSTATES; s++)
		T_EQ_INT(job_state_terminal((enum job_state)s),
		    s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED ||
		    s == JOB_SKIPPED);
}

T_TEST(test_state_names)
{
	static const char *const names[JOB_NSTATES] = {
		"NEW", "TOKEN", "KICKOFF", "POLL", "DOWNLOAD", "S3_PUT",
		"IMPORT", "NOTIFY", "DONE", "FAILED", "CANCELLED", "SKIPPED",
	};
	enum job_state parsed;
	int s;

	for (s = 0; s < JOB_NSTATES; s++) {
		T_EQ_STR(job_state_name((enum job_state)s), names[s]);
		parsed = JOB_NSTATES;
		T_EQ_INT(job_state_parse(names[s], &parsed), 0);
		T_EQ_INT(parsed, s);
		parsed = JOB_NSTATES;
		T_EQ_INT(job_state_parse(job_state_name((enum job_state)s),
		    &parsed), 0);
		T_EQ_INT(parsed, s);
	}
	T_EQ_STR(job_state_name(JOB_NSTATES), "UNKNOWN");
	T_EQ_STR(job_state_name((enum job_state)-1), "UNKNOWN");
	T_EQ_STR(job_state_name((enum job_state)12345), "UNKNOWN");
	parsed = JOB_POLL;
	T_EQ_INT(job_state_parse("UNKNOWN", &parsed), -EINVAL);
	T_EQ_INT(job_state_parse("", &parsed), -EINVAL);
	T_EQ_INT(job_state_parse("poll", &parsed), -EINVAL);
	T_EQ_INT(job_state_parse("POLL ", &parsed), -EINVAL);
	T_EQ_INT(job_state_parse("POLLX", &parsed), -EINVAL);
	T_EQ_INT(parsed, JOB_POLL);	/* untouched on failure */
}

/* ---- job_set_state against a real store ----------------------------- */

struct tstore {
	char		 dir[64];
	char		 db[128];
	struct store	*st;
};

static int
tstore_open(struct tstore *t)
{
	char err[256];

	log_init(getenv("T_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERR, 0);
	snprintf(t->dir, sizeof(t->dir), "/tmp/test_job.XXXXXX");
	if (mkdtemp(t->dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(t->db, sizeof(t->db), "%s/bcdad.db", t->dir);
	if (store_open(t->db, 0, &t->st, err, sizeof(err)) != 0) {
		T_FAIL("store_open: %s", err);
		return -1;
	}
	return 0;
}

static void
tstore_close(struct tstore *t)
{
	static const char *const suffixes[] = { "", "-wal", "-shm",
	    "-journal" };
	char p[160];
	size_t i;

	store_close(t->st);
	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", t->db, suffixes[i]);
		unlink(p);
	}
	rmdir(t->dir);
}

/* A new job row in JOB_NEW, inserted; the caller clears it. */
static int
new_job(struct store *st, struct job_row *j)
{
	memset(j, 0, sizeof(*j));
	j->profile = strdup("A9994");
	j->progress = -1;
	return store_job_insert(st, j, 1000);
}

struct hist {
	int		 n;
	int		 from[16], to[16];
	char		 reason[16][64];
};

static int
hist_cb(int64_t at, enum job_state from, enum job_state to,
    const char *reason, void *arg)
{
	struct hist *h = arg;

	(void)at;
	if (h->n < 16) {
		h->from[h->n] = (int)from;
		h->to[h->n] = (int)to;
		snprintf(h->reason[h->n], sizeof(h->reason[0]), "%s",
		    reason ? reason : "(null)");
	}
	h->n++;
	return 0;
}

static int
history_of(struct store *st, int64_t id, struct hist *h)
{
	memset(h, 0, sizeof(*h));
	return store_history(st, id, hist_cb, h);
}

struct extra_ctx {
	int		 calls;
	int		 fail;		/* what to return */
	int		 seen_state;	/* job->state when called */
};

static int
extra_cb(struct store *st, struct job_row *job, void *arg)
{
	struct extra_ctx *x = arg;
	struct file_row f;
	int rc;

	x->calls++;
	x->seen_state = (int)job->state;
	/* Write something, so that a rollback has something to undo. */
	memset(&f, 0, sizeof(f));
	f.job_id = job->id;
	f.kind = FILE_OUTPUT;
	f.type = (char *)"Patient";
	f.url = (char *)"https://sandbox.bcda.cms.gov/data/1/a.ndjson";
	f.seq = 1;
	f.name = (char *)"Patient-1.ndjson";
	if ((rc = store_file_insert(st, &f)) != 0)
		return rc;
	return x->fail;
}

static int
count_file(struct file_row *f, void *arg)
{
	(void)f;
	(*(int *)arg)++;
	return 0;
}

static int
nfiles(struct store *st, int64_t id)
{
	int n = 0;

	if (store_files(st, id, count_file, &n) != 0)
		return -1;
	return n;
}

T_TEST(test_set_state_legal)
{
	struct tstore t;
	struct job_row j, got;
	struct hist h;
	struct extra_ctx x = { 0, 0, -1 };

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, JOB_TOKEN, "run requested",
	    NULL, NULL), 0);
	T_EQ_INT(j.state, JOB_TOKEN);
	T_EQ_INT(job_set_state(t.st, &j, JOB_TOKEN, JOB_KICKOFF, "token ok",
	    NULL, NULL), 0);

	/* The fields the next step needs are saved with the state. */
	j.kickoff_url = strdup("https://sandbox.bcda.cms.gov/api/v2/"
	    "Group/all/$export");
	j.status_url = strdup("https://sandbox.bcda.cms.gov/api/v2/jobs/42");
	j.kickoff_sent = 1234;
	j.kickoffs = 1;
	j.progress = 7;
	j.err_counts[2] = 3;
	T_EQ_INT(job_set_state(t.st, &j, JOB_KICKOFF, JOB_POLL,
	    "kickoff accepted", extra_cb, &x), 0);
	T_EQ_INT(x.calls, 1);
	T_EQ_INT(x.seen_state, JOB_POLL);	/* extra runs after the write */
	T_EQ_INT(j.state, JOB_POLL);
	T_ASSERT(j.updated_at >= 1000);

	T_EQ_INT(store_job_get(t.st, j.id, &got), 0);
	T_EQ_INT(got.state, JOB_POLL);
	T_EQ_STR(got.profile, "A9994");
	T_EQ_STR(got.kickoff_url, j.kickoff_url);
	T_EQ_STR(got.status_url, j.status_url);
	T_EQ_INT(got.kickoff_sent, 1234);
	T_EQ_INT(got.kickoffs, 1);
	T_EQ_INT(got.progress, 7);
	T_EQ_INT(got.err_counts[2], 3);
	T_EQ_INT(got.updated_at, j.updated_at);
	job_row_clear(&got);
	T_EQ_INT(nfiles(t.st, j.id), 1);

	T_EQ_INT(history_of(t.st, j.id, &h), 0);
	T_EQ_INT(h.n, 4);			/* creation + 3 changes */
	T_EQ_INT(h.from[0], -1);
	T_EQ_INT(h.to[0], JOB_NEW);
	T_EQ_INT(h.from[1], JOB_NEW);
	T_EQ_INT(h.to[1], JOB_TOKEN);
	T_EQ_STR(h.reason[1], "run requested");
	T_EQ_INT(h.from[2], JOB_TOKEN);
	T_EQ_INT(h.to[2], JOB_KICKOFF);
	T_EQ_STR(h.reason[2], "token ok");
	T_EQ_INT(h.from[3], JOB_KICKOFF);
	T_EQ_INT(h.to[3], JOB_POLL);
	T_EQ_STR(h.reason[3], "kickoff accepted");

	/* The expiry path back to KICKOFF, then on to the end. */
	T_EQ_INT(job_set_state(t.st, &j, JOB_POLL, JOB_KICKOFF, "expired",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_KICKOFF, JOB_POLL, "again",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_POLL, JOB_DOWNLOAD, "complete",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_DOWNLOAD, JOB_S3_PUT, "files",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_S3_PUT, JOB_IMPORT, "put",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_IMPORT, JOB_NOTIFY, "imported",
	    NULL, NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NOTIFY, JOB_DONE, NULL,
	    NULL, NULL), 0);
	T_EQ_INT(store_job_get(t.st, j.id, &got), 0);
	T_EQ_INT(got.state, JOB_DONE);
	job_row_clear(&got);
	T_EQ_INT(history_of(t.st, j.id, &h), 0);
	T_EQ_INT(h.n, 11);
	T_EQ_INT(h.to[10], JOB_DONE);
	T_EQ_STR(h.reason[10], "(null)");

	/* Nothing leaves DONE. */
	T_EQ_INT(job_set_state(t.st, &j, JOB_DONE, JOB_NEW, "no", NULL, NULL),
	    -EINVAL);
	job_row_clear(&j);
	tstore_close(&t);
}

/* Checks that job id is still in state with nhist history rows. */
static void
check_untouched(struct store *st, int64_t id, enum job_state state,
    int nhist, const char *status_url)
{
	struct job_row got;
	struct hist h;

	T_EQ_INT(store_job_get(st, id, &got), 0);
	T_EQ_INT(got.state, state);
	if (status_url == NULL)
		T_ASSERT(got.status_url == NULL);
	else
		T_EQ_STR(got.status_url, status_url);
	T_EQ_INT(got.updated_at, 1000);
	job_row_clear(&got);
	T_EQ_INT(history_of(st, id, &h), 0);
	T_EQ_INT(h.n, nhist);
	T_EQ_INT(nfiles(st, id), 0);
}

T_TEST(test_set_state_illegal)
{
	struct tstore t;
	struct job_row j;
	struct extra_ctx x = { 0, 0, -1 };
	int to;

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);
	j.status_url = strdup("https://example/should-not-be-saved");
	for (to = 0; to < JOB_NSTATES; to++) {
		if (expected_ok(JOB_NEW, to))
			continue;
		T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, (enum job_state)to,
		    "illegal", extra_cb, &x), -EINVAL);
		T_EQ_INT(j.state, JOB_NEW);
		T_EQ_INT(j.updated_at, 1000);
	}
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, JOB_NSTATES, "range",
	    extra_cb, &x), -EINVAL);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, (enum job_state)-1, "range",
	    extra_cb, &x), -EINVAL);
	T_EQ_INT(x.calls, 0);
	check_untouched(t.st, j.id, JOB_NEW, 1, NULL);
	job_row_clear(&j);
	tstore_close(&t);
}

T_TEST(test_set_state_stale)
{
	struct tstore t;
	struct job_row j, other;
	struct extra_ctx x = { 0, 0, -1 };

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);

	/* The caller's expectation does not match the job in memory. */
	j.status_url = strdup("https://example/should-not-be-saved");
	T_EQ_INT(job_set_state(t.st, &j, JOB_TOKEN, JOB_KICKOFF, "stale",
	    extra_cb, &x), -ESTALE);
	T_EQ_INT(j.state, JOB_NEW);
	check_untouched(t.st, j.id, JOB_NEW, 1, NULL);

	/*
	 * Memory says NEW, but another writer moved the stored job on:
	 * the compare-and-set in the database must catch it.
	 */
	T_EQ_INT(store_job_get(t.st, j.id, &other), 0);
	other.updated_at = 1000;
	T_EQ_INT(store_job_cas_state(t.st, other.id, JOB_NEW, JOB_TOKEN,
	    1000), 0);
	job_row_clear(&other);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, JOB_TOKEN, "stale on disk",
	    extra_cb, &x), -ESTALE);
	T_EQ_INT(j.state, JOB_NEW);
	T_EQ_INT(j.updated_at, 1000);
	T_EQ_INT(x.calls, 0);
	check_untouched(t.st, j.id, JOB_TOKEN, 1, NULL);

	/* A job that does not exist is not stale but missing. */
	j.id = 999;
	T_ASSERT(job_set_state(t.st, &j, JOB_NEW, JOB_TOKEN, "gone", NULL,
	    NULL) != 0);
	T_EQ_INT(j.state, JOB_NEW);
	job_row_clear(&j);
	tstore_close(&t);
}

/*
 * A checkpoint saves the row and runs extra in the job's state, with a
 * history row only when it gives a reason; a stale one writes nothing.
 */
T_TEST(test_checkpoint)
{
	struct tstore t;
	struct job_row j, got, other;
	struct extra_ctx x = { 0, 0, -1 };
	struct hist h;

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);
	j.progress = 40;
	T_EQ_INT(job_checkpoint(t.st, &j, NULL, extra_cb, &x), 0);
	T_EQ_INT(x.calls, 1);
	T_EQ_INT(x.seen_state, JOB_NEW);
	T_EQ_INT(history_of(t.st, j.id, &h), 0);
	T_EQ_INT(h.n, 1);			/* creation only */
	j.runout = 1;
	T_EQ_INT(job_checkpoint(t.st, &j, "change of plan", NULL, NULL), 0);
	T_EQ_INT(history_of(t.st, j.id, &h), 0);
	T_EQ_INT(h.n, 2);
	T_EQ_INT(h.from[1], JOB_NEW);
	T_EQ_INT(h.to[1], JOB_NEW);
	T_EQ_STR(h.reason[1], "change of plan");
	T_EQ_INT(store_job_get(t.st, j.id, &got), 0);
	T_EQ_INT(got.progress, 40);
	T_EQ_INT(got.runout, 1);
	T_EQ_INT(nfiles(t.st, j.id), 1);
	job_row_clear(&got);

	/* Another writer moved it: nothing of ours is written. */
	T_EQ_INT(store_job_get(t.st, j.id, &other), 0);
	T_EQ_INT(store_job_cas_state(t.st, other.id, JOB_NEW, JOB_TOKEN,
	    2000), 0);
	job_row_clear(&other);
	j.progress = 90;
	T_EQ_INT(job_checkpoint(t.st, &j, "stale", extra_cb, &x), -ESTALE);
	T_EQ_INT(j.state, JOB_NEW);
	T_EQ_INT(x.calls, 1);
	T_EQ_INT(store_job_get(t.st, j.id, &got), 0);
	T_EQ_INT(got.state, JOB_TOKEN);
	T_EQ_INT(got.progress, 40);
	job_row_clear(&got);
	T_EQ_INT(nfiles(t.st, j.id), 1);
	job_row_clear(&j);
	tstore_close(&t);
}

T_TEST(test_set_state_extra_fails)
{
	struct tstore t;
	struct job_row j;
	struct extra_ctx x = { 0, -EIO, -1 };

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, JOB_TOKEN, "token", NULL,
	    NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_TOKEN, JOB_KICKOFF, "kickoff",
	    NULL, NULL), 0);
	/* Make the row's updated_at known so that check_untouched works. */
	j.updated_at = 1000;
	T_EQ_INT(store_job_save(t.st, &j), 0);

	j.status_url = strdup("https://sandbox.bcda.cms.gov/api/v2/jobs/9");
	T_EQ_INT(job_set_state(t.st, &j, JOB_KICKOFF, JOB_POLL, "accepted",
	    extra_cb, &x), -EIO);
	T_EQ_INT(x.calls, 1);
	T_EQ_INT(x.seen_state, JOB_POLL);
	T_EQ_INT(j.state, JOB_KICKOFF);		/* memory unchanged */
	T_EQ_INT(j.updated_at, 1000);
	check_untouched(t.st, j.id, JOB_KICKOFF, 3, NULL);

	/* The same change succeeds once the extra writes do. */
	x.fail = 0;
	T_EQ_INT(job_set_state(t.st, &j, JOB_KICKOFF, JOB_POLL, "accepted",
	    extra_cb, &x), 0);
	T_EQ_INT(j.state, JOB_POLL);
	T_EQ_INT(nfiles(t.st, j.id), 1);
	job_row_clear(&j);
	tstore_close(&t);
}

/* Inside an outer transaction (savepoints), a failure undoes only itself. */
T_TEST(test_set_state_nested_rollback)
{
	struct tstore t;
	struct job_row j, got;
	struct extra_ctx x = { 0, -EIO, -1 };
	struct hist h;

	if (tstore_open(&t) != 0)
		return;
	T_EQ_INT(new_job(t.st, &j), 0);
	T_EQ_INT(store_begin(t.st), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_NEW, JOB_TOKEN, "token", NULL,
	    NULL), 0);
	T_EQ_INT(job_set_state(t.st, &j, JOB_TOKEN, JOB_KICKOFF, "kickoff",
	    extra_cb, &x), -EIO);
	T_EQ_INT(j.state, JOB_TOKEN);
	T_EQ_INT(store_commit(t.st), 0);
	T_EQ_INT(store_job_get(t.st, j.id, &got), 0);
	T_EQ_INT(got.state, JOB_TOKEN);
	job_row_clear(&got);
	T_EQ_INT(history_of(t.st, j.id, &h), 0);
	T_EQ_INT(h.n, 2);
	T_EQ_INT(nfiles(t.st, j.id), 0);
	job_row_clear(&j);
	tstore_close(&t);
}

T_MAIN("job",
    T_CASE(test_enum_values_pinned),
    T_CASE(test_every_transition),
    T_CASE(test_transition_out_of_range),
    T_CASE(test_terminal),
    T_CASE(test_state_names),
    T_CASE(test_set_state_legal),
    T_CASE(test_set_state_illegal),
    T_CASE(test_set_state_stale),
    T_CASE(test_checkpoint),
    T_CASE(test_set_state_extra_fails),
    T_CASE(test_set_state_nested_rollback))
