-- Version 2: the per-profile cursor for incremental exports, and an index
-- for reading one job's history.
--
-- The index comes first on purpose: the migration test makes the CREATE
-- TABLE fail and checks that the index was rolled back with it.

CREATE INDEX job_history_job ON job_history (job_id, id);

-- The transactionTime of the profile's last complete export, verbatim
-- from the manifest: the next export's _since.
CREATE TABLE profile_cursor (
	profile		 TEXT PRIMARY KEY,
	transaction_time TEXT NOT NULL,
	updated_at	 INTEGER NOT NULL
);
