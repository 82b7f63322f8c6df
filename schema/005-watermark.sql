-- Version 5: incremental watermarks per export scope, and what a job
-- needs to say which scope it exports.
--
-- A profile's watermark is kept per scope: API version, endpoint,
-- resource type set and type filter (see engine_scope()), so that
-- changing a profile's types starts the new set from full history
-- instead of skipping what it never exported.  profile_cursor (version 2)
-- stays as it was: a profile with no watermark yet starts from its old
-- cursor once.
CREATE TABLE watermark (
	profile		 TEXT NOT NULL,
	scope		 TEXT NOT NULL,
	transaction_time TEXT NOT NULL,
	updated_at	 INTEGER NOT NULL,
	job_id		 INTEGER NOT NULL,
	PRIMARY KEY (profile, scope)
);

-- scope: the scope the job exports (set in NEW, changed by the runout
-- fallback).  since_mode: 0 the profile's since policy, 1 the since
-- column as given by `bcdad run --since`, 2 full history (`--full`).
-- runout: 1 when the job exports /Group/runout as January's fallback.
ALTER TABLE jobs ADD COLUMN scope TEXT;
ALTER TABLE jobs ADD COLUMN since_mode INTEGER NOT NULL DEFAULT 0
    CHECK (since_mode BETWEEN 0 AND 2);
ALTER TABLE jobs ADD COLUMN runout INTEGER NOT NULL DEFAULT 0;
