-- +goose Up
-- A job's first dataset, in name order, or '' if it binds none. A node can
-- run a job only if it holds that dataset, so the claim looks only at the
-- queued jobs of the node's own datasets: a backlog on one dataset costs
-- nothing to the nodes of others. It never changes after submission.
ALTER TABLE jobs ADD COLUMN first_dataset TEXT NOT NULL DEFAULT '';
UPDATE jobs SET first_dataset = COALESCE((SELECT MIN(ji.dataset) FROM job_inputs ji WHERE ji.job_id = jobs.id), '');
CREATE INDEX jobs_queued_dataset ON jobs(first_dataset, id) WHERE state = 'queued';

-- +goose Down
DROP INDEX jobs_queued_dataset;
ALTER TABLE jobs DROP COLUMN first_dataset;
