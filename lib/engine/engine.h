/*
 * The engine runs export jobs: it owns the in-memory jobs, the per-profile
 * BCDA tokens and the downloads, and drives each job through its states
 * (see job.h) on one libuv loop.  Every decision that must survive a crash
 * is written to the store before the I/O it leads to.
 */
#ifndef BCDAD_ENGINE_H
#define BCDAD_ENGINE_H

#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "store/job.h"

struct engine;

/*
 * Opens (creating and migrating it if needed) the database at db, which
 * the engine owns from then on.  NULL with a sentence in err on failure.
 */
struct engine	*engine_new(uv_loop_t *, const struct config *, const char *db,
		    char *err, size_t errlen);
/*
 * Takes a new configuration (SIGHUP): profiles added, changed or removed
 * take effect for new jobs; running jobs keep their settings.  Refused
 * (-EINVAL, err says why) when it changes what needs a restart.  On
 * success the engine owns cfg and frees it.
 */
int		 engine_reload(struct engine *, struct config *cfg, char *err,
		    size_t errlen);
/* Loads every non-terminal job and resumes it in its state. */
/*
 * Leaves reserved descriptors (the control socket's clients) out of what
 * transfers may use: downloads and uploads together stay within what the
 * descriptor limit has left after the ones open now.  Returns that cap.
 */
int		 engine_reserve_fds(struct engine *, int reserved);
int		 engine_start(struct engine *);
/* Cancels transfers in flight (their state is already saved). */
void		 engine_stop(struct engine *);
void		 engine_free(struct engine *);

/*
 * Starts an export for profile now; *job_id gets the new job's id.  since
 * (an RFC 3339 instant) or full overrides the profile's _since for this
 * job only; the watermark moves as usual when the job succeeds.
 */
int		 engine_run(struct engine *, const char *profile,
		    const char *since, int full, int64_t *job_id, char *err,
		    size_t errlen);
int		 engine_cancel(struct engine *, int64_t job_id, char *err,
		    size_t errlen);
/*
 * Resumes a FAILED job in the state it failed in, with its files' and
 * uploads' attempts renewed: the same BCDA job while BCDA still has it
 * (past its expiry the job starts a new one, as always).  -ENOENT, or
 * -EINVAL / -EBUSY with err saying why it cannot.
 */
int		 engine_retry(struct engine *, int64_t job_id, char *err,
		    size_t errlen);
/*
 * Reads for status and metrics (rows as job.h describes them; a callback
 * owns nothing and may stop the walk by returning non-zero).  0 or a
 * negative errno; engine_job gives -ENOENT for no such job.
 */
int		 engine_jobs(struct engine *, const struct job_page *,
		    job_row_fn, void *);
int		 engine_job(struct engine *, int64_t id, struct job_row *out);
int		 engine_tallies(struct engine *, int64_t min_job_id,
		    int64_t max_job_id, tally_row_fn, void *);
int		 engine_files(struct engine *, int64_t job_id, file_row_fn,
		    void *);
int		 engine_history(struct engine *, int64_t job_id, hist_row_fn,
		    void *);
int		 engine_watermarks(struct engine *, mark_row_fn, void *);
int		 engine_state_counts(struct engine *,
		    int64_t counts[JOB_NSTATES]);
int		 engine_outcomes(struct engine *, outcome_row_fn, void *);

/* What the engine knows of a configured profile, beside the database. */
struct engine_profile {
	const char	*name;
	int64_t		 secret_expires;	/* unix seconds, 0 unknown */
	char		 warning[256];		/* empty: none */
	uint64_t	 retries;	/* transient failures since start */
};
/* Profile i of the configuration in force: 0, or -ENOENT past the last. */
int		 engine_profile(struct engine *, int i,
		    struct engine_profile *out);
/* Jobs not yet in a terminal state, and transfers in flight. */
int		 engine_active_jobs(const struct engine *);
int		 engine_active_downloads(const struct engine *);

#endif
