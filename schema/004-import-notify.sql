-- Version 4: the HealthLake import and the notification of each job.
--
-- import_token is the StartFHIRImportJob ClientToken, written before the
-- call, so a retry or a restart can never start a second import.
-- notify_state: 0 nothing to announce (yet), 1 an announcement is owed,
-- 2 SNS acknowledged it and that was recorded.

ALTER TABLE jobs ADD COLUMN import_token TEXT;
ALTER TABLE jobs ADD COLUMN import_job_id TEXT;
ALTER TABLE jobs ADD COLUMN import_status TEXT;
ALTER TABLE jobs ADD COLUMN import_message TEXT;
ALTER TABLE jobs ADD COLUMN import_report TEXT;
ALTER TABLE jobs ADD COLUMN notify_state INTEGER NOT NULL DEFAULT 0
    CHECK (notify_state >= 0);
ALTER TABLE jobs ADD COLUMN notify_message_id TEXT;

CREATE INDEX jobs_notify ON jobs (notify_state) WHERE notify_state = 1;
