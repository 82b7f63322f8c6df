-- Version 7: when a BCDA job's progress last moved.
--
-- progress_at: unix seconds at which the job entered POLL or BCDA's
-- X-Progress last changed; 0 for rows from before this version (set at
-- their next poll).  A BCDA job that shows no progress for
-- bcda_job_timeout is given up: BCDA's status handler has no timeout of
-- its own, so bcdad would otherwise poll it forever.
ALTER TABLE jobs ADD COLUMN progress_at INTEGER NOT NULL DEFAULT 0;
