/*
 * What `bcdad status` reads, kept in memory: the newest SUM_MAX jobs'
 * rows and file tallies, so that a status answer never waits on SQLite
 * (or on a write holding its lock) while exports run.
 *
 * Loaded at start-up; then every write of a job goes through ej_record()
 * (record.c), which hands the job here once the store took it, so memory
 * holds what the store holds.  A page that reaches past the oldest job
 * held is read from the store, as before.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "store/store.h"

#define SUM_MAX		10000	/* jobs held: a night per profile, for years */

struct jsum {
	struct job_row	 row;	/* a copy: its strings are its own */
	struct tally_row tally;
};

struct summary {
	struct jsum	*v;	/* ascending by id */
	size_t		 n, cap;
	int		 whole;	/* v holds every job of the store */
};

/* Whether memory holds jobs: loaded, and not given up. */
static int
held(const struct summary *s)
{
	return s != NULL && (s->whole || s->n > 0);
}

/* The job with id, or NULL. */
static struct jsum *
find(struct summary *s, int64_t id)
{
	size_t lo = 0, hi = s->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (s->v[mid].row.id == id)
			return &s->v[mid];
		if (s->v[mid].row.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Room for one more at the end; the oldest goes at SUM_MAX. */
static struct jsum *
append(struct summary *s, int64_t id)
{
	struct jsum *v;
	size_t cap;

	if (s->n > 0 && id <= s->v[s->n - 1].row.id)
		return NULL;		/* ids only grow */
	if (s->n == SUM_MAX) {
		job_row_clear(&s->v[0].row);
		memmove(&s->v[0], &s->v[1], (s->n - 1) * sizeof(s->v[0]));
		s->n--;
		s->whole = 0;
	}
	if (s->n == s->cap) {
		cap = s->cap ? s->cap * 2 : 64;
		if ((v = reallocarray(s->v, cap, sizeof(*v))) == NULL)
			return NULL;
		s->v = v;
		s->cap = cap;
	}
	memset(&s->v[s->n], 0, sizeof(s->v[0]));
	return &s->v[s->n++];
}

/* Newest first from the store: appended, then reversed. */
static int
load_row(struct job_row *r, void *arg)
{
	struct summary *s = arg;
	struct jsum *v;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap ? s->cap * 2 : 64;
		if ((v = reallocarray(s->v, cap, sizeof(*v))) == NULL)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	memset(&s->v[s->n], 0, sizeof(s->v[0]));
	if (job_row_copy(&s->v[s->n].row, r) != 0)
		return -ENOMEM;
	s->v[s->n++].tally.job_id = r->id;
	return 0;
}

static void
reverse(struct summary *s)
{
	struct jsum t;
	size_t i;

	for (i = 0; i < s->n / 2; i++) {
		t = s->v[i];
		s->v[i] = s->v[s->n - 1 - i];
		s->v[s->n - 1 - i] = t;
	}
}

static int
load_tally(const struct tally_row *t, void *arg)
{
	struct jsum *js = find(arg, t->job_id);

	if (js != NULL)
		js->tally = *t;
	return 0;
}

static void
sum_clear(struct summary *s)
{
	while (s->n > 0)
		job_row_clear(&s->v[--s->n].row);
	s->whole = 0;
}

/*
 * Reads the newest SUM_MAX jobs and their tallies.  On failure nothing is
 * held, and every read goes to the store.
 */
void
ej_sum_load(struct engine *e)
{
	struct job_page pg = { NULL, 0, SUM_MAX };
	struct summary *s;

	if (e->sum == NULL && (e->sum = calloc(1, sizeof(*e->sum))) == NULL)
		return;
	s = e->sum;
	sum_clear(s);
	if (store_jobs_page(e->st, &pg, load_row, s) != 0)
		goto fail;
	reverse(s);
	if (s->n > 0 && store_tallies(e->st, s->v[0].row.id,
	    s->v[s->n - 1].row.id, load_tally, s) != 0)
		goto fail;
	s->whole = s->n < SUM_MAX;
	return;
fail:
	log_warnx("status reads the database: its jobs could not be held in "
	    "memory");
	sum_clear(s);
}

void
ej_sum_free(struct engine *e)
{
	if (e->sum == NULL)
		return;
	sum_clear(e->sum);
	free(e->sum->v);
	free(e->sum);
	e->sum = NULL;
}

/* A job row the store just took (a new job, a write, a reload). */
static struct jsum *
take_row(struct engine *e, const struct job_row *row)
{
	struct summary *s = e->sum;
	struct jsum *js;
	struct job_row copy;

	if (!held(s))
		return NULL;		/* not loaded: the store answers */
	if (job_row_copy(&copy, row) != 0) {
		/* Memory would lie: hold nothing, read the store. */
		sum_clear(s);
		return NULL;
	}
	if ((js = find(s, row->id)) == NULL &&
	    (js = append(s, row->id)) == NULL) {
		job_row_clear(&copy);
		if (s->n > 0 && row->id > s->v[s->n - 1].row.id)
			sum_clear(s);	/* out of memory */
		return NULL;		/* older than any held */
	}
	job_row_clear(&js->row);
	js->row = copy;
	js->tally.job_id = row->id;
	return js;
}

void
ej_sum_row(struct engine *e, const struct job_row *row)
{
	take_row(e, row);
}

/* The job as ej_record() just wrote it: its row, and its files' tally. */
void
ej_sum_job(struct ejob *j)
{
	struct jsum *js;
	struct tally_row *t;
	const struct file_row *f;
	size_t i;

	/* No files in memory and none loaded: the tally held stands. */
	if ((js = take_row(j->e, &j->row)) == NULL || (j->nfiles == 0 &&
	    !j->files_loaded))
		return;
	t = &js->tally;
	memset(t, 0, sizeof(*t));
	t->job_id = j->row.id;
	/* As store_tallies counts them. */
	for (i = 0; i < j->nfiles; i++) {
		f = &j->files[i];
		t->total++;
		t->failed += f->state == FILE_FAILED;
		if (f->state != FILE_DONE)
			continue;
		t->done++;
		t->bytes += f->bytes;
		if (f->kind == FILE_OUTPUT)
			t->lines += f->lines;
		else
			t->error_lines += f->lines;
	}
}

static int
page_match(const struct job_page *pg, const struct jsum *js)
{
	return (pg->before <= 0 || js->row.id < pg->before) &&
	    (pg->profile == NULL || strcmp(js->row.profile, pg->profile) == 0);
}

/*
 * A page of jobs from memory, newest first: 1 when answered (*rc set), 0
 * when it reaches past the oldest job held and the store must answer.
 */
int
ej_sum_page(struct engine *e, const struct job_page *pg, job_row_fn fn,
    void *arg, int *rc)
{
	struct summary *s = e->sum;
	size_t i;
	int n = 0;

	if (!held(s) || pg->limit < 0)
		return 0;
	if (!s->whole) {
		for (i = s->n; i > 0 && n < pg->limit; i--)
			n += page_match(pg, &s->v[i - 1]);
		if (n < pg->limit)
			return 0;
		n = 0;
	}
	*rc = 0;
	for (i = s->n; i > 0 && n < pg->limit && *rc == 0; i--) {
		if (!page_match(pg, &s->v[i - 1]))
			continue;
		n++;
		*rc = fn(&s->v[i - 1].row, arg);
	}
	return 1;
}

/* The tallies of jobs min..max from memory: 1 when answered. */
int
ej_sum_tallies(struct engine *e, int64_t min, int64_t max, tally_row_fn fn,
    void *arg, int *rc)
{
	struct summary *s = e->sum;
	size_t i;

	if (!held(s) || (!s->whole && min < s->v[0].row.id))
		return 0;
	*rc = 0;
	for (i = 0; i < s->n && *rc == 0; i++)
		if (s->v[i].row.id >= min && s->v[i].row.id <= max &&
		    s->v[i].tally.total > 0)
			*rc = fn(&s->v[i].tally, arg);
	return 1;
}

/* One job's row from memory (a copy the caller clears): 1 when held. */
int
ej_sum_get(struct engine *e, int64_t id, struct job_row *out, int *rc)
{
	struct summary *s = e->sum;
	struct jsum *js;

	if (!held(s) || (js = find(s, id)) == NULL) {
		if (held(s) && s->whole) {
			*rc = -ENOENT;
			return 1;
		}
		return 0;
	}
	*rc = job_row_copy(out, &js->row);
	return 1;
}
