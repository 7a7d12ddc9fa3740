-- The service catalog: image builds run on nodes. Image blobs need no table:
-- they are kept in the object store under a key derived from the image ID.

-- +goose Up
CREATE TABLE builds (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    kind          TEXT NOT NULL,
    spec          TEXT NOT NULL DEFAULT '',
    hash          TEXT NOT NULL,
    base_image    TEXT NOT NULL DEFAULT '',
    -- Set when only a node holding this image can run the build: its base
    -- is an image GEF keeps no copy of.
    needs_image   TEXT NOT NULL DEFAULT '',
    node          TEXT,
    owner         TEXT NOT NULL,
    image_digest  TEXT NOT NULL DEFAULT '',
    service       TEXT NOT NULL DEFAULT '',
    version       TEXT NOT NULL DEFAULT '',
    queued_at     BIGINT NOT NULL,
    building_at   BIGINT,
    publishing_at BIGINT,
    finished_at   BIGINT
);
-- The claim scans only queued builds, oldest first.
CREATE INDEX builds_queued ON builds(id) WHERE state = 'queued';
CREATE INDEX builds_hash ON builds(hash, id);
CREATE INDEX builds_owner ON builds(owner, id);
CREATE INDEX builds_node ON builds(node, id);

-- +goose Down
DROP TABLE builds;
