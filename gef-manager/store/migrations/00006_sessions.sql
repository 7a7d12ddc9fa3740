-- Sessions: long-lived HTTP service containers, reached through the
-- manager. Portable SQL for PostgreSQL and SQLite, like 00001.

-- +goose Up
-- A friendly name belongs to the user who first used it, for good, so that
-- /s/NAME/ keeps pointing at that user's sessions across restarts.
CREATE TABLE session_names (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    name           TEXT REFERENCES session_names(name),
    state          TEXT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    exit_code      INTEGER,
    service        TEXT NOT NULL,
    version        TEXT NOT NULL,
    image_digest   TEXT NOT NULL,
    node           TEXT,
    owner          TEXT NOT NULL,
    access         TEXT NOT NULL,
    users          TEXT NOT NULL,
    access_groups  TEXT NOT NULL DEFAULT '[]',
    params         TEXT NOT NULL,
    argv           TEXT NOT NULL,
    spec           TEXT NOT NULL,
    http_path      TEXT NOT NULL DEFAULT '',
    idle_timeout   BIGINT NOT NULL,
    max_lifetime   BIGINT NOT NULL,
    stop_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    assigned_at    BIGINT,
    started_at     BIGINT,
    last_active_at BIGINT,
    ended_at       BIGINT,
    FOREIGN KEY (service, version) REFERENCES services(name, version)
);
-- The claim scans only queued sessions, oldest first.
CREATE INDEX sessions_queued ON sessions(id) WHERE state = 'queued';
CREATE INDEX sessions_owner ON sessions(owner, id);
CREATE INDEX sessions_node ON sessions(node, state);
CREATE INDEX sessions_name ON sessions(name, id);

CREATE TABLE session_inputs (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    input      TEXT NOT NULL,
    dataset    TEXT NOT NULL REFERENCES datasets(name),
    PRIMARY KEY (session_id, input)
);
CREATE INDEX session_inputs_dataset ON session_inputs(dataset, session_id);

-- +goose Down
DROP TABLE session_inputs;
DROP TABLE sessions;
DROP TABLE session_names;
