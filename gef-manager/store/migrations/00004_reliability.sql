-- Retries, attempts and the state a job waits in. Portable to PostgreSQL
-- and SQLite: times are unix microseconds (BIGINT).

-- +goose Up
-- Jobs made before retries existed keep running once.
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry_failed BOOLEAN NOT NULL DEFAULT FALSE;
-- What a job that is not final waits for, e.g. the object store.
ALTER TABLE jobs ADD COLUMN status TEXT NOT NULL DEFAULT '';
-- When the node last said anything of the job: stuck states time out.
ALTER TABLE jobs ADD COLUMN progress_at BIGINT;
-- A retried job prefers another node than the one it failed on, until
-- avoid_until.
ALTER TABLE jobs ADD COLUMN avoid_node TEXT;
ALTER TABLE jobs ADD COLUMN avoid_until BIGINT;

-- Every attempt that ended and was followed by another. The job's row
-- holds its last attempt.
CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    node        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    exit_code   INTEGER,
    assigned_at BIGINT,
    running_at  BIGINT,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

-- +goose Down
DROP TABLE job_attempts;
ALTER TABLE jobs DROP COLUMN avoid_until;
ALTER TABLE jobs DROP COLUMN avoid_node;
ALTER TABLE jobs DROP COLUMN progress_at;
ALTER TABLE jobs DROP COLUMN status;
ALTER TABLE jobs DROP COLUMN retry_failed;
ALTER TABLE jobs DROP COLUMN max_attempts;
