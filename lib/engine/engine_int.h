/*
 * The engine's private parts, shared by the files of lib/engine/: the
 * scheduler (engine.c), one file per stage (export.c: NEW..POLL,
 * download.c, s3put.c, import.c, notify.c), BCDA access (token.c),
 * cancellation (cancel.c) and the store (record.c, the only file that
 * touches it).  Stages depend on the scheduler and the protocol modules,
 * not on each other.  Nothing outside
 * lib/engine/ includes this.
 */
#ifndef BCDAD_ENGINE_INT_H
#define BCDAD_ENGINE_INT_H

#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "bcda/bcda.h"
#include "engine.h"
#include "bcda/fetch.h"
#include "util/http.h"
#include "util/log.h"
#include "aws/upload.h"

#define NEVER		INT64_MAX
#define MAX_KICKOFFS	3	/* BCDA jobs per bcdad job (expiry restarts) */
#define FILE_ATTEMPTS	5	/* per file, for invalid or missing content */
#define FILE_NET_ATTEMPTS 40	/* per file, for transport errors */
#define FILE_EXPIRY	(24 * 3600)	/* BCDA deletes files 24 h after */
#define KICKOFF_GRACE	150	/* s after a kickoff its job may appear:
				   our request timeout (120 s) and slack */
#define RETRY_AFTER_MAX	3600	/* seconds: a server's Retry-After, capped */
#define SECRET_LIFETIME	(90 * 86400)	/* BCDA credentials expire */
#define SECRET_WARN_DAYS 14	/* warn this many days before */

/* A profile's bearer token, shared by its jobs, refreshed before expiry. */
struct ptoken {
	struct engine	*e;
	const struct profile *prof;
	char		*token;
	unsigned	 gen;		/* bumped with every new token */
	uint64_t	 expires_at;	/* loop time, ms */
	struct http_req	*req;
	uint64_t	 retry_at;
	int		 failures;
	uint64_t	 trouble_since;	/* loop ms of the first failure, 0 */
	char		 error[256];	/* why the last request failed */
	int		 rejected;	/* credentials refused: no point retrying */
	/* BCDA credentials from Secrets Manager (bcda_secret_arn), in memory. */
	char		*sm_id, *sm_secret;
	struct http_req	*sm_req;
	int		 sm_wait;	/* waiting for AWS credentials */
	int		 sm_refetched;	/* refetched after a 401 (rotation) */
	int64_t		 sm_created;	/* the secret version's CreatedDate */
	uint64_t	 retries;	/* transient failures of its jobs */
};

/* A download in flight. */
struct dl {
	struct ejob	*job;
	size_t		 idx;		/* into job->files */
	struct http_req	*req;
	struct fetch	*fetch;
	unsigned	 token_gen;	/* ptoken gen of the token sent */
	int		 committing;
};

/* Per-file scheduling, beside the persisted file rows. */
struct fsched {
	uint64_t	 next_at;
	uint64_t	 up_next_at;	/* when to try the S3 upload again */
	struct upload	*up;		/* S3 upload in flight */
	void		*up_arg;	/* its callback's argument, ours to free */
	int		 reauth;
	struct dl	*dl;
	unsigned	 unsaved;	/* FS_*: the row changed, not written */
};

#define FS_DIRTY	0x1
#define FS_DROP_PARTS	0x2	/* its part rows go too */

/* What ej_record writes besides the job row and its unsaved files. */
#define REC_FILES	0x1	/* job->files replace the stored file list */
#define REC_WATERMARK	0x2	/* the scope's watermark moves to the job's
				   transactionTime: IMPORT -> NOTIFY only,
				   once every stage that moves data is done */

struct ejob {
	TAILQ_ENTRY(ejob) entry;
	struct engine	*e;
	struct job_row	 row;
	struct ptoken	*pt;
	uint64_t	 next_at;	/* loop time, ms; NEVER = waiting */
	int		 attempts;	/* transient failures in a row */
	uint64_t	 trouble_since;	/* loop ms of the first of them, 0 */
	uint64_t	 blocked_until;	/* wall ms: duplicate-job 429 wait */
	int		 reauth;	/* a 401 was answered with a new token */
	int		 waiting_token;
	int		 polls;		/* status requests answered 202 */
	time_t		 polled_at;	/* wall time of the last 202, 0 none */
	int		 list_checked;	/* looked for a job lost in a crash */
	int		 kickoff_unknown; /* the last kickoff got no answer */
	int		 dup429;	/* the kickoff got the duplicate-job 429 */
	long		 dup_retry_after; /* its Retry-After, s */
	int		 dup_waits;	/* waits for the blocking job so far */
	struct http_req	*req;		/* the one control request in flight */
	unsigned	 req_gen;	/* ptoken gen of the token it carries */
	void		(*req_fn)(struct ejob *, const struct http_resp *);
	/* An AWS call (import.c): how to build it, who gets the answer. */
	struct http_req	*(*aws_build)(struct ejob *, const struct aws_creds *,
			    time_t);
	void		(*aws_fn)(struct ejob *, const struct http_resp *);
	int		 aws_wait;	/* waiting for AWS credentials */
	int		 region_wait;	/* waiting for a region lookup */
	int		 region_failed;	/* and it failed, transiently */
	int		 ds_checked;	/* HealthLake datastore seen ACTIVE */
	uint64_t	 recheck_at;	/* status asked after a file's 404 */
	uint64_t	 starved_since;	/* loop ms the disk (or the descriptors)
					   first ran out, 0 */
	int		 starved_waits;
	struct file_row	*files;
	struct fsched	*fs;
	size_t		 nfiles;
	int		 files_loaded;
	int		 ndl;
	int		 nup;		/* S3 uploads in flight, manifest too */
	struct upload	*manifest_up;
	int		 manifest_done;
	int		 s3_swept;	/* stale local copies removed once */
	int		 dead;
	/* A failed write, tried again before the next step (record.c). */
	int		 unsaved;	/* the job row */
	char		*held_why;	/* a transition, to held_to */
	enum job_state	 held_to;
	unsigned	 held_what;
	int		 write_failures;	/* in a row */
	int		 stale;		/* lost a compare-and-set: reload */
};

TAILQ_HEAD(ejob_list, ejob);

/*
 * A configuration replaced by a reload, kept with its tokens while the
 * engine lives: jobs started before the reload keep their profile and
 * token.  owned: the engine frees it (every configuration but the first).
 */
struct retired {
	const struct config *cfg;
	int		 owned;
	struct ptoken	*tokens;
	struct retired	*next;
};

struct engine {
	uv_loop_t	*loop;
	const struct config *cfg;
	struct store	*st;
	struct http	*http;
	uv_timer_t	 wake;
	struct ejob_list jobs;
	struct ptoken	*tokens;	/* one per profile, cfg order */
	int		 cfg_owned;	/* cfg came from engine_reload */
	struct retired	*retired;
	struct summary	*sum;		/* what status reads (summary.c) */
	int		 ndl;		/* downloads in flight, all jobs */
	int		 nup;		/* S3 uploads in flight, all jobs */
	int		 max_transfers;	/* downloads + uploads the descriptor
					   limit allows (engine_reserve_fds) */
	struct awscreds	*creds;		/* NULL when no profile uses AWS */
	char		*region;	/* AWS region, once known */
	char		 region_error[256];	/* there is none, for good */
	char		 region_why[256];	/* the last lookup failed, transiently */
	int		 region_asking;	/* a lookup is in flight */
	struct upload_env uenv;
	int		 stopping;
	int		 running_steps;
	/* BCDA requests of every profile (bcda_request_limit per window). */
	uint64_t	*reqlog;	/* loop ms of the last limit requests */
	int		 reqlog_len, reqlog_next;
};

/* Builds a job's AWS request with credentials (see ej_aws_call). */
typedef struct http_req *(*aws_build_fn)(struct ejob *,
    const struct aws_creds *, time_t);
typedef void (*aws_done_fn)(struct ejob *, const struct http_resp *);

/* Handles the answer to a job's API request (see ej_api_request). */
typedef void (*api_done_fn)(struct ejob *, const struct http_resp *);

#define JLOG(lvl, j, ...) log_job((lvl), (j)->row.id, (j)->row.profile, \
	job_state_name((j)->row.state), __VA_ARGS__)

/* engine.c: scheduling, the job life cycle, the public API */
uint64_t	ej_backoff(int min_s, int max_s, int n);
uint64_t	ej_bcda_budget(struct engine *e);
void	ej_ok(struct ejob *j);
int	ej_add_file(struct ejob *j, struct file_row *f);
void	ej_cancel_transfers(struct ejob *j);
void	ej_due(struct ejob *j, uint64_t delay_ms);
int	ej_enter(struct ejob *j, enum job_state to, const char *why,
	    unsigned what);
void	ej_fail(struct ejob *j, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	ej_free_files(struct ejob *j);
uint64_t	ej_now(const struct engine *e);
int64_t	ej_secret_issued(const struct ptoken *pt);
int	ej_secret_warning(const struct ptoken *pt, time_t now, char *buf,
	    size_t len);
void	ej_set_error(struct ejob *j, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	ej_retry(struct ejob *j, long retry_after, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	engine_arm(struct engine *e);

/* summary.c: the newest jobs' rows and tallies, in memory */
void	ej_sum_load(struct engine *e);
void	ej_sum_free(struct engine *e);
void	ej_sum_row(struct engine *e, const struct job_row *row);
void	ej_sum_job(struct ejob *j);
int	ej_sum_page(struct engine *e, const struct job_page *pg,
	    job_row_fn fn, void *arg, int *rc);
int	ej_sum_tallies(struct engine *e, int64_t min, int64_t max,
	    tally_row_fn fn, void *arg, int *rc);
int	ej_sum_get(struct engine *e, int64_t id, struct job_row *out,
	    int *rc);

/* record.c: every write of the store, and the reads */
int	ej_record(struct ejob *j, enum job_state to, const char *why,
	    unsigned what);
int	ej_save(struct ejob *j);
int	ej_file_save(struct ejob *j, struct file_row *f, int drop_parts);
int	ej_part_save(struct ejob *j, const struct file_row *f, int part,
	    const char *etag);
int	ej_flush(struct ejob *j);
int	ej_reload(struct ejob *j);
int	ej_load_files(struct ejob *j);
int	ej_load_jobs(struct engine *e, job_row_fn active, job_row_fn owed);
int	ej_insert_job(struct engine *e, struct job_row *row);
int	ej_parts(struct ejob *j, const struct file_row *f, part_row_fn add,
	    void *arg);
int	ej_watermark(struct engine *e, const char *profile, const char *scope,
	    char **out);
int	ej_store_open(struct engine *e, const char *path, char *err,
	    size_t errlen);
void	ej_store_close(struct engine *e);

/* cancel.c */
void	step_cancel(struct ejob *j);

/* token.c */
void	ej_api_request(struct ejob *j, const char *method, const char *url,
	    int export_headers, api_done_fn fn);
void	ej_describe(const struct http_resp *resp, char *buf, size_t len);
int	ej_have_token(struct ejob *j);
int	ej_transient(const struct http_resp *resp);
void	pt_drop(struct ptoken *pt);
void	sm_forget(struct ptoken *pt);
struct ptoken	*pt_for(struct engine *e, const char *profile);
int	pt_valid(struct engine *e, const struct ptoken *pt);

/* export.c */
int	ej_job_gone(struct ejob *j, const struct http_resp *resp,
	    const char *what);
char	*ej_own_job(struct ejob *j, const struct http_resp *resp);
void	ej_rekickoff(struct ejob *j, const char *why);
char	*ej_scope(const struct profile *p, enum bcda_endpoint ep);
void	step_kickoff(struct ejob *j);
void	step_new(struct ejob *j);
void	step_poll(struct ejob *j);
void	step_token(struct ejob *j);

/* download.c */
void	ej_wake_downloads(struct engine *e);
void	ej_dl_free(struct dl *d);
void	step_download(struct ejob *j);

/* s3put.c */
int	ej_s3_init(struct engine *e);
int	ej_region(struct ejob *j);
void	ej_s3_free(struct engine *e);
void	ej_s3_kick(struct ejob *j);
void	ej_s3_cancel(struct ejob *j);
void	ej_s3_abandon(struct ejob *j);
char	*ej_s3_key(const struct ejob *j, const char *name);
void	step_s3_put(struct ejob *j);

/* import.c */
void	ej_aws_call(struct ejob *j, aws_build_fn, aws_done_fn);
int	ej_import_reset(struct job_row *row, time_t now);
char	*ej_import_uri(const struct ejob *j);
void	step_import(struct ejob *j);

/* notify.c */
void	step_notify(struct ejob *j);
int	ej_notify_owed(const struct ejob *j);
void	ej_notify_retry(struct ejob *j);

#endif
