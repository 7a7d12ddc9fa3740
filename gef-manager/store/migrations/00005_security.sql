-- +goose Up
-- Users who sign in through an OpenID Connect provider are linked to it by
-- issuer and subject, never by a name the provider controls.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users(external_id) WHERE external_id IS NOT NULL;

-- Groups of users, for access lists.
CREATE TABLE groups (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL,
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_user ON group_members(user_name);

-- A restricted dataset may be used only by the users and groups listed for
-- it (and admins); an unrestricted one by every signed-in user.
ALTER TABLE datasets ADD COLUMN restricted BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE dataset_access (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    kind    TEXT NOT NULL, -- user or group
    name    TEXT NOT NULL,
    PRIMARY KEY (dataset, kind, name)
);

-- Named readers of a job, besides its owner and the admins.
CREATE TABLE job_readers (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind   TEXT NOT NULL, -- user or group
    name   TEXT NOT NULL,
    PRIMARY KEY (job_id, kind, name)
);

-- A service may reach the network only if an admin allowed it.
ALTER TABLE services ADD COLUMN network BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE services DROP COLUMN network;
DROP TABLE job_readers;
DROP TABLE dataset_access;
ALTER TABLE datasets DROP COLUMN restricted;
DROP TABLE group_members;
DROP TABLE groups;
DROP INDEX users_external_id;
ALTER TABLE users DROP COLUMN external_id;
