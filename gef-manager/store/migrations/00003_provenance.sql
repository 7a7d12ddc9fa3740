-- Reproducibility: dataset versions by content digest, what each job ran
-- on, reruns, reuse, verdicts, visibility, and the sealed provenance record.
-- See docs/reproducibility.md.

-- +goose Up
ALTER TABLE nodes ADD COLUMN runtime TEXT NOT NULL DEFAULT '';
-- The digest of the copy each node holds, as it last reported.
ALTER TABLE node_datasets ADD COLUMN digest TEXT NOT NULL DEFAULT '';
-- digest: the dataset's digest when the container started. pinned: the
-- digest a rerun must run on; only nodes holding it may claim the job.
ALTER TABLE job_inputs ADD COLUMN digest TEXT NOT NULL DEFAULT '';
ALTER TABLE job_inputs ADD COLUMN pinned TEXT NOT NULL DEFAULT '';

-- Every content a dataset was seen with. gone_since is set while no node
-- holds the bytes.
CREATE TABLE dataset_versions (
    dataset    TEXT NOT NULL REFERENCES datasets(name),
    digest     TEXT NOT NULL,
    files      BIGINT NOT NULL DEFAULT 0,
    size       BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    gone_since BIGINT,
    PRIMARY KEY (dataset, digest)
);

-- One row per job made since this migration; older jobs read as private
-- with no links.
CREATE TABLE job_repro (
    job_id              TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    rerun_of            TEXT,
    reuse_of            TEXT,
    accept_changed_data BOOLEAN NOT NULL DEFAULT FALSE,
    visibility          TEXT NOT NULL DEFAULT 'private',
    -- Set when a job that ran succeeded: what an identical request matches.
    reuse_key           TEXT NOT NULL DEFAULT '',
    -- The manifest a rerun is compared with, when it is not rerun_of's
    -- (a job made from a provenance crate of another manager).
    expected_outputs    TEXT,
    verdict             TEXT,
    differences         TEXT,
    limits              TEXT
);
CREATE INDEX job_repro_reuse ON job_repro(reuse_key) WHERE reuse_key <> '';
CREATE INDEX job_repro_rerun ON job_repro(rerun_of);
CREATE INDEX jobs_image ON jobs(image_digest);

-- Written once, when the job ends; the store has no way to change it.
CREATE TABLE job_provenance (
    job_id    TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    record    TEXT NOT NULL,
    sealed_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE job_provenance;
DROP INDEX jobs_image;
DROP TABLE job_repro;
DROP TABLE dataset_versions;
ALTER TABLE job_inputs DROP COLUMN pinned;
ALTER TABLE job_inputs DROP COLUMN digest;
ALTER TABLE node_datasets DROP COLUMN digest;
ALTER TABLE nodes DROP COLUMN runtime;
