/*
 * The state store under an export of many files: how many durable file
 * transitions per second (each one transaction writing the job row and
 * the file row, as the engine's ej_record does, in WAL mode with
 * synchronous=FULL), and how long a start-up takes to open the database
 * and read back a job of N file rows.  Beside them, the disk's own limit:
 * writes of 4 KiB, each followed by fdatasync, per second, in DIR (a
 * durable transition needs at least one).
 *
 *   bench_store DIR FILES TRANSITIONS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/job.h"
#include "store/store.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * n writes of 4 KiB, each made durable by fdatasync, per second: over a
 * file in dir written and synced beforehand, as SQLite reuses its WAL.
 */
static double
sync_limit(const char *dir, long n)
{
	char path[4096], block[4096];
	double t;
	long i;
	int fd;

	memset(block, 'x', sizeof(block));
	snprintf(path, sizeof(path), "%s/sync-limit", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return 0;
	for (i = 0; i < 256; i++)
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
			break;
	if (i < 256 || fsync(fd) != 0) {
		close(fd);
		unlink(path);
		return 0;
	}
	t = now();
	for (i = 0; i < n; i++)
		if (pwrite(fd, block, sizeof(block), (off_t)(i % 256) *
		    (off_t)sizeof(block)) != (ssize_t)sizeof(block) ||
		    fdatasync(fd) != 0)
			break;
	t = now() - t;
	close(fd);
	unlink(path);
	return i == n ? (double)n / t : 0;
}

static int
count_file(struct file_row *f, void *arg)
{
	(void)f;
	(*(long *)arg)++;
	return 0;
}

int
main(int argc, char **argv)
{
	struct store *st;
	struct job_row j;
	struct file_row f;
	char path[4096], err[512], url[256], name[64];
	char type[] = "ExplanationOfBenefit", sha[] = "e3b0c44298fc1c149afbf4c"
	    "8996fb92427ae41e4649b934ca495991b7852b855";
	long nfiles, ntrans, i, seen = 0;
	double t0, t1, t2, t3, t4, lim;

	if (argc != 4) {
		fprintf(stderr, "usage: bench_store DIR FILES TRANSITIONS\n");
		return 2;
	}
	nfiles = atol(argv[2]);
	ntrans = atol(argv[3]);
	snprintf(path, sizeof(path), "%s/bench.db", argv[1]);
	remove(path);
	if (store_open(path, 0, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	memset(&j, 0, sizeof(j));
	j.profile = strdup("A9994");
	j.progress = -1;
	if (store_job_insert(st, &j, (int64_t)time(NULL)) != 0)
		return 1;
	t0 = now();
	store_begin(st);
	for (i = 0; i < nfiles; i++) {
		memset(&f, 0, sizeof(f));
		f.job_id = j.id;
		f.kind = FILE_OUTPUT;
		f.type = type;
		f.seq = (int)i + 1;
		snprintf(url, sizeof(url), "https://api.bcda.cms.gov/data/42/"
		    "%08ld.ndjson", i);
		snprintf(name, sizeof(name), "ExplanationOfBenefit-%ld.ndjson",
		    i + 1);
		f.url = url;
		f.name = name;
		if (store_file_insert(st, &f) != 0)
			return 1;
	}
	if (store_commit(st) != 0)
		return 1;
	t1 = now();
	/* One file DONE per transaction, with its job row, as ej_record. */
	for (i = 0; i < ntrans; i++) {
		memset(&f, 0, sizeof(f));
		f.id = i + 1;
		f.job_id = j.id;
		f.kind = FILE_OUTPUT;
		f.state = FILE_DONE;
		f.lines = 150;
		f.bytes = 2600000;
		f.sha256 = sha;
		j.updated_at = (int64_t)time(NULL);
		if (store_begin(st) != 0 || store_job_save(st, &j) != 0 ||
		    store_file_save(st, &f) != 0 || store_commit(st) != 0)
			return 1;
	}
	t2 = now();
	store_close(st);
	/* A start-up: open (and check) the database, read the job's files. */
	t3 = now();
	if (store_open(path, 0, &st, err, sizeof(err)) != 0)
		return 1;
	t4 = now();
	if (store_files(st, j.id, count_file, &seen) != 0)
		return 1;
	t4 = now() - t4;
	t3 = now() - t3;
	lim = sync_limit(argv[1], ntrans);
	printf("store: %ld file rows inserted in %.2f s; %ld durable file "
	    "transitions in %.2f s = %.0f/s (the disk: %.0f writes+fdatasync/s, "
	    "%.2fx); start-up (open, read %ld file rows) %.0f ms, of which the "
	    "read %.0f ms\n", nfiles, t1 - t0, ntrans, t2 - t1,
	    (double)ntrans / (t2 - t1), lim, lim > 0 ? (double)ntrans /
	    (t2 - t1) / lim : 0, seen, t3 * 1000, t4 * 1000);
	store_close(st);
	job_row_clear(&j);
	remove(path);
	return 0;
}
