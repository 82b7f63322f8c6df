-- Version 3: the S3 stage.  Each file is uploaded once it is downloaded;
-- a multipart upload's id and the ETag of every part S3 acknowledged are
-- kept, so a restart resumes from the next part.

ALTER TABLE files ADD COLUMN s3_state INTEGER NOT NULL DEFAULT 0
    CHECK (s3_state >= 0);
ALTER TABLE files ADD COLUMN s3_upload_id TEXT;
ALTER TABLE files ADD COLUMN s3_part_size INTEGER NOT NULL DEFAULT 0;

CREATE TABLE parts (
	file_id		 INTEGER NOT NULL
			     REFERENCES files (id) ON DELETE CASCADE,
	number		 INTEGER NOT NULL CHECK (number BETWEEN 1 AND 10000),
	etag		 TEXT NOT NULL,
	PRIMARY KEY (file_id, number)
);
