package manager

import (
	"context"
	"fmt"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// reap marks nodes that missed their heartbeats down and fails the
// attempts they held, which are retried where that is allowed. With
// several managers on one database, one of them does it at a time.
func (r *reliability) reap(ctx context.Context) error {
	m := r.m
	now := m.now().UTC()
	_, err := m.store.Exclusive(ctx, "reaper", func(ctx context.Context) error {
		if !r.mayReap(now) {
			return nil
		}
		downed, err := m.store.MarkSilentNodes(ctx, now.Add(-m.cfg.NodeTimeout))
		if err != nil {
			return err
		}
		for _, n := range downed {
			r.nodeLoss.Inc()
			m.log.Warn("node lost", "node", n, "silent_for_more_than", m.cfg.NodeTimeout)
		}
		held, err := m.store.JobsOnDownNodes(ctx)
		if err != nil {
			return err
		}
		for _, h := range held {
			_, _, err := m.failAttempt(ctx, store.AttemptFailure{JobID: h.ID, Node: h.Node, Attempt: h.Attempt, IfState: h.State,
				Reason: fmt.Sprintf("node %s stopped responding (no heartbeat for %s); the attempt is lost", h.Node, m.cfg.NodeTimeout)})
			if err != nil {
				return err
			}
		}
		return nil
	})
	r.observe(err, now)
	return err
}

// sweep ends or retries the jobs that stayed in a state longer than its
// limit, so that no job stays unfinished forever.
func (r *reliability) sweep(ctx context.Context) error {
	m := r.m
	_, err := m.store.Exclusive(ctx, "sweeper", func(ctx context.Context) error {
		c := m.cfg.Reliability
		now := m.now().UTC()
		limits := store.StateLimits{Queued: c.QueueTimeout, Assigned: c.AssignedTimeout, FetchingImage: c.FetchTimeout,
			RunningMin: c.RunGrace, StagingStall: c.StagingStallTimeout, Staging: c.StagingTimeout, Cancel: c.CancelTimeout}
		after := ""
		for {
			overdue, err := m.store.OverdueJobs(ctx, limits, now, after, 200)
			if err != nil {
				return err
			}
			for _, o := range overdue {
				if _, err := r.enforce(ctx, o, now); err != nil {
					return err
				}
				after = o.ID
			}
			if len(overdue) < 200 {
				return nil
			}
		}
	})
	return err
}

// enforce fails or ends one overdue job and reports whether it did.
func (r *reliability) enforce(ctx context.Context, o store.OverdueJob, now time.Time) (bool, error) {
	m, c := r.m, r.m.cfg.Reliability
	f := store.AttemptFailure{JobID: o.ID, Node: o.Node, Attempt: o.Attempt, IfState: o.State, At: now}
	switch o.Limit {
	case "queued":
		ended, err := m.store.EndQueuedJob(ctx, o.ID, gef.JobSystemError,
			fmt.Sprintf("no node took the job within %s of its queueing; check that a ready node holds its datasets", c.QueueTimeout), now)
		if err != nil || !ended {
			return false, err
		}
		r.overdue.WithLabelValues(o.Limit).Inc()
		if j, err := m.store.Job(ctx, o.ID); err == nil {
			m.finished(j)
		}
		return true, nil
	case "cancel":
		f.Reason = fmt.Sprintf("node %s did not confirm the stop within %s", o.Node, c.CancelTimeout)
	case "assigned":
		f.Reason = fmt.Sprintf("node %s did not start the job within %s", o.Node, c.AssignedTimeout)
	case "fetching_image":
		f.Reason = fmt.Sprintf("node %s did not fetch the image within %s", o.Node, c.FetchTimeout)
	case "running":
		limit := c.MaxRunTime
		if o.TimeoutSeconds > 0 {
			limit = time.Duration(o.TimeoutSeconds) * time.Second
		}
		if now.Sub(o.Since) < limit+c.RunGrace {
			return false, nil
		}
		f.Reason = fmt.Sprintf("still running %s past its wall time of %s; node %s did not end it", c.RunGrace, limit, o.Node)
	case "staging_stall":
		f.Reason = fmt.Sprintf("node %s reported no staging progress for %s", o.Node, c.StagingStallTimeout)
	case "staging":
		f.Reason = fmt.Sprintf("staging did not finish within %s", c.StagingTimeout)
	default:
		return false, fmt.Errorf("manager: unknown state limit %q", o.Limit)
	}
	_, out, err := m.failAttempt(ctx, f)
	if err != nil || out == store.Unchanged {
		return false, err
	}
	r.overdue.WithLabelValues(o.Limit).Inc()
	m.log.Warn("job overdue", "job", o.ID, "node", o.Node, "attempt", o.Attempt, "limit", o.Limit, "reason", f.Reason)
	// The node, if it lives, learns from its next poll to stop the job.
	m.wake(ctx, o.Node)
	return true, nil
}
