-- The schema is shared by PostgreSQL and SQLite, so it sticks to types both
-- understand. Times are unix microseconds (BIGINT); JSON is TEXT.

-- +goose Up
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '',
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    capacity       INTEGER NOT NULL,
    engine_version TEXT NOT NULL DEFAULT '',
    engine_api     TEXT NOT NULL DEFAULT '',
    agent_version  TEXT NOT NULL DEFAULT '',
    registered_at  BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL
);

CREATE TABLE datasets (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE node_datasets (
    node    TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
    dataset TEXT NOT NULL REFERENCES datasets(name),
    size    BIGINT NOT NULL DEFAULT 0,
    files   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (node, dataset)
);
CREATE INDEX node_datasets_dataset ON node_datasets(dataset);

CREATE TABLE node_images (
    node     TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    info     TEXT NOT NULL,
    PRIMARY KEY (node, image_id)
);
CREATE INDEX node_images_image ON node_images(image_id);

CREATE TABLE services (
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    digest     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    deprecated BOOLEAN NOT NULL DEFAULT FALSE,
    publisher  TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX services_digest ON services(digest);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    exit_code        INTEGER,
    service          TEXT NOT NULL,
    version          TEXT NOT NULL,
    image_digest     TEXT NOT NULL,
    node             TEXT,
    owner            TEXT NOT NULL,
    params           TEXT NOT NULL,
    argv             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    queued_at        BIGINT NOT NULL,
    assigned_at      BIGINT,
    fetching_at      BIGINT,
    running_at       BIGINT,
    staging_at       BIGINT,
    finished_at      BIGINT,
    FOREIGN KEY (service, version) REFERENCES services(name, version)
);
-- The claim scans only queued jobs, oldest first.
CREATE INDEX jobs_queued ON jobs(id) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_service ON jobs(service, id);
CREATE INDEX jobs_owner ON jobs(owner, id);
CREATE INDEX jobs_node ON jobs(node, id);

CREATE TABLE job_inputs (
    job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    input   TEXT NOT NULL,
    dataset TEXT NOT NULL REFERENCES datasets(name),
    PRIMARY KEY (job_id, input)
);
CREATE INDEX job_inputs_dataset ON job_inputs(dataset, job_id);

CREATE TABLE job_outputs (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    output TEXT NOT NULL,
    path   TEXT NOT NULL,
    size   BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, output, path)
);

-- +goose Down
DROP TABLE job_outputs;
DROP TABLE job_inputs;
DROP TABLE jobs;
DROP TABLE services;
DROP TABLE node_images;
DROP TABLE node_datasets;
DROP TABLE datasets;
DROP TABLE nodes;
DROP TABLE api_tokens;
DROP TABLE users;
