/*
 * The engine runs export jobs: it owns the in-memory jobs, the per-profile
 * BCDA tokens and the downloads, and drives each job through its states
 * (see job.h) on one libuv loop.  Every decision that must survive a crash
 * is written to the store before the I/O it leads to.
 */
#ifndef BCDAD_ENGINE_H
#define BCDAD_ENGINE_H

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "store/store.h"

struct engine;

struct engine	*engine_new(uv_loop_t *, const struct config *, struct store *);
/*
 * Takes a new configuration (SIGHUP): profiles added, changed or removed
 * take effect for new jobs; running jobs keep their settings.  Refused
 * (-EINVAL, err says why) when it changes what needs a restart.  On
 * success the engine owns cfg and frees it.
 */
int		 engine_reload(struct engine *, struct config *cfg, char *err,
		    size_t errlen);
/* Loads every non-terminal job and resumes it in its state. */
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
/* The newest jobs as a JSON array (see bcdad(8) for the fields). */
json_t		*engine_status(struct engine *, int limit);
/* Job id alone, the same way (an empty array when there is none). */
json_t		*engine_job_status(struct engine *, int64_t id);
/*
 * Job id's every change of state with its time and reason, and its files
 * with their states, as {"history": [...], "files": [...]}; NULL when the
 * job does not exist or the store cannot be read.
 */
json_t		*engine_job_detail(struct engine *, int64_t id);
/* Each profile's watermarks and credential expiry, as a JSON array. */
json_t		*engine_profiles(struct engine *);
/*
 * The metrics in Prometheus text format (for node_exporter's textfile
 * collector): malloc'd, or NULL when the store cannot be read.
 */
char		*engine_metrics(struct engine *);
/* Jobs not yet in a terminal state, and transfers in flight. */
int		 engine_active_jobs(const struct engine *);
int		 engine_active_downloads(const struct engine *);

#endif
