-- Version 6: an index in the order a job's files are read.
--
-- store_files() reads a job's files ORDER BY kind, type, seq; the UNIQUE
-- constraint's index is (job_id, kind, seq, type), so SQLite sorted every
-- read in a temporary B-tree.  Updates of a file's state touch no column
-- of it, so a transition costs no more.
CREATE INDEX files_order ON files (job_id, kind, type, seq);
