-- +goose Up
-- Users who sign in through an OpenID Connect provider are linked to it by
-- issuer and subject, never by a name the provider controls.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users(external_id) WHERE external_id IS NOT NULL;

-- +goose Down
DROP INDEX users_external_id;
ALTER TABLE users DROP COLUMN external_id;
