-- Version 1: jobs, their files and the history of their states.
--
-- Integers in state, from_state, to_state and kind are the values of the
-- enums in lib/job.h.  Those values are never renumbered, only appended
-- to, so the CHECKs below bound them from below only: a newer bcdad may
-- add states without a migration that rebuilds these tables.
--
-- store.c runs each migration inside a transaction of its own, which also
-- records the new schema version: a migration neither opens nor ends a
-- transaction, nor sets the version itself.

CREATE TABLE jobs (
	id		 INTEGER PRIMARY KEY,
	profile		 TEXT NOT NULL,
	state		 INTEGER NOT NULL CHECK (state >= 0),
	created_at	 INTEGER NOT NULL,
	updated_at	 INTEGER NOT NULL,
	since		 TEXT,
	kickoff_url	 TEXT,
	kickoff_sent	 INTEGER NOT NULL DEFAULT 0,
	kickoffs	 INTEGER NOT NULL DEFAULT 0,
	status_url	 TEXT,
	progress	 INTEGER NOT NULL DEFAULT -1,
	transaction_time TEXT,
	completed_at	 INTEGER NOT NULL DEFAULT 0,
	out_dir		 TEXT,
	last_error	 TEXT,
	err_fatal	 INTEGER NOT NULL DEFAULT 0,
	err_error	 INTEGER NOT NULL DEFAULT 0,
	err_warning	 INTEGER NOT NULL DEFAULT 0,
	err_info	 INTEGER NOT NULL DEFAULT 0,
	cancel_requested INTEGER NOT NULL DEFAULT 0
);

-- One row per file of a job's manifest.  The UNIQUE constraint also
-- serves as the index for "the files of job N".
CREATE TABLE files (
	id		 INTEGER PRIMARY KEY,
	job_id		 INTEGER NOT NULL
			     REFERENCES jobs (id) ON DELETE CASCADE,
	kind		 INTEGER NOT NULL CHECK (kind >= 0),
	type		 TEXT NOT NULL,
	url		 TEXT NOT NULL,
	seq		 INTEGER NOT NULL CHECK (seq >= 0),
	name		 TEXT NOT NULL,
	state		 INTEGER NOT NULL DEFAULT 0 CHECK (state >= 0),
	attempts	 INTEGER NOT NULL DEFAULT 0,
	lines		 INTEGER NOT NULL DEFAULT 0,
	bytes		 INTEGER NOT NULL DEFAULT 0,
	sha256		 TEXT,
	last_error	 TEXT,
	UNIQUE (job_id, kind, seq, type)
);

-- Every change of a job's state, in order.  from_state is NULL on the
-- row written when the job was created.
CREATE TABLE job_history (
	id		 INTEGER PRIMARY KEY,
	job_id		 INTEGER NOT NULL
			     REFERENCES jobs (id) ON DELETE CASCADE,
	at		 INTEGER NOT NULL,
	from_state	 INTEGER CHECK (from_state >= 0),
	to_state	 INTEGER NOT NULL CHECK (to_state >= 0),
	reason		 TEXT
);
