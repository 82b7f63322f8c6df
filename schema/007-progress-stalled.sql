-- Version 7: how long a BCDA job has shown the same progress.
--
-- progress_stalled: seconds during which BCDA's job answered 202 with the
-- same X-Progress, counted between polls; each gap counts for at most
-- twice poll_max, so a jump of the clock, or a stop of the daemon, adds
-- little.  A BCDA job stalled for bcda_job_timeout is given up: BCDA's
-- status handler has no timeout of its own, so bcdad would otherwise poll
-- it forever.
ALTER TABLE jobs ADD COLUMN progress_stalled INTEGER NOT NULL DEFAULT 0;
