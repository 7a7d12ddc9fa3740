package manager

import (
	"context"
	"fmt"
	"slices"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// A system error (a lost node, an engine, image or staging failure, a
// stuck state) ends the attempt, not the job: the job is queued again for
// a node holding its data, preferring another node, until it has run
// max_attempts times. A failure of the service itself is retried only if
// the request asked for it. Every attempt stays in the job's record.

// maxAttempts checks the attempts a request asks for.
func (m *Manager) maxAttempts(req gef.JobRequest) (int, error) {
	switch n, limit := req.MaxAttempts, m.cfg.MaxAttemptsLimit; {
	case n == 0:
		return m.cfg.DefaultMaxAttempts, nil
	case n < 1 || n > limit:
		return 0, gef.Invalid("max_attempts", "must be between 1 and %d", limit)
	default:
		return n, nil
	}
}

// failAttempt ends an attempt that failed, retrying its job where that is
// allowed, and wakes the nodes that could take the retry.
func (m *Manager) failAttempt(ctx context.Context, f store.AttemptFailure) (gef.Job, store.Outcome, error) {
	if f.At.IsZero() {
		f.At = m.now().UTC()
	}
	f.AvoidFor = m.cfg.RetryAvoid
	j, out, err := m.store.FailAttempt(ctx, f)
	if err != nil {
		return j, out, err
	}
	switch out {
	case store.Retried:
		m.rel.retries.Inc()
		m.log.Info("job retried", "job", j.ID, "failed_attempt", j.Attempt, "max_attempts", j.MaxAttempts, "reason", f.Reason)
		if err := m.wakeHolders(ctx, j); err != nil {
			m.log.Warn("waking nodes for a retried job", "job", j.ID, "err", err)
		}
	case store.Ended:
		m.finished(j)
	}
	return j, out, nil
}

// wakeHolders wakes the nodes that hold a job's datasets.
func (m *Manager) wakeHolders(ctx context.Context, j gef.Job) error {
	datasets := make([]string, 0, len(j.Inputs))
	for _, ds := range j.Inputs {
		datasets = append(datasets, ds)
	}
	if len(datasets) == 0 {
		m.wakeAll(ctx)
		return nil
	}
	holders, err := m.store.NodesHolding(ctx, datasets)
	if err != nil {
		return err
	}
	m.wake(ctx, holders...)
	return nil
}

// retryReported retries a job whose node reported its attempt ended in a
// system error, or in a failure the request asked to retry. It reports
// false when the report must be applied as it is instead.
func (m *Manager) retryReported(ctx context.Context, node, id string, r gef.JobReport) (gef.Job, bool, error) {
	if r.State != gef.JobSystemError && r.State != gef.JobFailed {
		return gef.Job{}, false, nil
	}
	j, out, err := m.failAttempt(ctx, store.AttemptFailure{JobID: id, Node: node, Attempt: r.Attempt, State: r.State,
		Reason: r.Reason, ExitCode: r.ExitCode, At: r.At, RetryOnly: true})
	return j, out == store.Retried, err
}

// loseJobs fails the attempts a node's poll no longer lists: its agent
// restarted without finding them, or never received them. It returns the
// ids of active that the node still holds.
func (m *Manager) loseJobs(ctx context.Context, node string, active, running []string) ([]string, error) {
	held := make([]string, 0, len(active))
	for _, id := range active {
		if slices.Contains(running, id) {
			held = append(held, id)
			continue
		}
		_, out, err := m.failAttempt(ctx, store.AttemptFailure{JobID: id, Node: node,
			Reason: fmt.Sprintf("node %s no longer runs the job (its agent restarted without it, or never received it)", node)})
		if err != nil {
			return nil, err
		}
		if out == store.Unchanged {
			held = append(held, id)
		}
	}
	return held, nil
}
