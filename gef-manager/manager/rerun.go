package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// Rerun runs a job again exactly: the same image digest (even if its
// service version was deprecated since), the same parameters and argv, the
// same datasets. The rerun is pinned to the bytes the original ran on; if a
// dataset changed since, it is refused with a conflict naming both digests,
// unless accept says to run on the data as it is now. When the rerun ends,
// its outputs are compared with the original's and the verdict recorded.
func (m *Manager) Rerun(ctx context.Context, p Principal, id string, accept bool) (gef.Job, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser); err != nil {
		return gef.Job{}, err
	}
	orig, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Job{}, err
	}
	if !orig.State.Final() {
		return gef.Job{}, fmt.Errorf("job %s is still %s; rerun it once it has ended: %w", orig.ID, orig.State, gef.ErrConflict)
	}
	// Reading a public job does not grant its data: the caller must be
	// allowed to run on every dataset it bound.
	for input, ds := range orig.Inputs {
		if _, err := m.Dataset(ctx, p, ds); errors.Is(err, gef.ErrNotFound) {
			return gef.Job{}, gef.Invalid("inputs."+input, "dataset %q is not known", ds)
		} else if err != nil {
			return gef.Job{}, err
		}
	}
	spec, err := m.store.Assignment(ctx, orig.ID)
	if err != nil {
		return gef.Job{}, err
	}
	pins, err := m.checkData(ctx, "job "+orig.ID, orig.Inputs, orig.DatasetDigests, accept)
	if err != nil {
		return gef.Job{}, err
	}
	j := gef.Job{Service: orig.Service, Version: orig.Version, ImageDigest: orig.ImageDigest, Inputs: orig.Inputs,
		Params: orig.Params, Argv: spec.Argv, RerunOf: &orig.ID, AcceptChangedData: accept}
	return m.createRerun(ctx, p, j, spec, pins, store.JobExtra{})
}

// checkData compares the digests a run recorded (input → digest) with what
// the nodes hold now, and returns the digests a rerun must be pinned to.
// A dataset that changed is a conflict naming both digests, and saying so
// plainly when no node holds the old bytes any more; accept lets the rerun
// run on the current data instead.
func (m *Manager) checkData(ctx context.Context, what string, inputs, recorded map[string]string, accept bool) (map[string]string, error) {
	pins := map[string]string{}
	var problems []string
	for _, input := range sortedKeys(inputs) {
		dataset, was := inputs[input], recorded[input]
		held, err := m.store.HeldDigests(ctx, dataset)
		if err != nil {
			return nil, err
		}
		if was != "" && slices.Contains(held, was) {
			pins[input] = was
			continue
		}
		if accept {
			continue
		}
		now := "no node holds it now"
		if len(held) > 0 {
			now = "the nodes hold " + strings.Join(held, " and ") + " now"
		}
		switch {
		case was == "":
			problems = append(problems, fmt.Sprintf("%s recorded no digest of dataset %s (input %s), so it cannot tell whether the data changed; %s",
				what, dataset, input, now))
		default:
			msg := fmt.Sprintf("dataset %s (input %s) changed since %s ran: it ran on %s, %s", dataset, input, what, was, now)
			if v, err := m.store.DatasetVersion(ctx, dataset, was); err == nil && v.GoneSince != nil {
				msg += fmt.Sprintf("; no node has held the bytes it ran on since %s, so it cannot be repeated as it was",
					v.GoneSince.Format(time.RFC3339))
			}
			problems = append(problems, msg)
		}
	}
	if len(problems) > 0 {
		return nil, &DataChangedError{Problems: problems}
	}
	return pins, nil
}

// DataChangedError refuses a rerun because the data it would run on is not
// the data the original ran on. It is a conflict (errors.Is ErrConflict);
// each of Problems names a dataset with the digest the original ran on and
// those the nodes hold now. Accepting changed data lifts it.
type DataChangedError struct {
	Problems []string
}

func (e *DataChangedError) Error() string {
	return strings.Join(e.Problems, ". ") + ". To run on the data as it is now, rerun with accept_changed_data: " + gef.ErrConflict.Error()
}

// Unwrap makes the error a conflict.
func (e *DataChangedError) Unwrap() error { return gef.ErrConflict }

// createRerun queues a job built from another run's record. Reuse never
// serves it: a rerun is there to run.
func (m *Manager) createRerun(ctx context.Context, p Principal, j gef.Job, spec gef.Assignment, pins map[string]string, extra store.JobExtra) (gef.Job, error) {
	datasets := make([]string, 0, len(j.Inputs))
	for _, ds := range j.Inputs {
		datasets = append(datasets, ds)
	}
	sort.Strings(datasets)
	holders, err := m.store.NodesHolding(ctx, datasets)
	if err != nil {
		return gef.Job{}, err
	}
	if len(holders) == 0 && len(datasets) > 0 {
		return gef.Job{}, fmt.Errorf("no node holds all of the datasets %s together now: %w", strings.Join(datasets, ", "), gef.ErrConflict)
	}
	if len(pins) == 0 {
		pins = nil
	}
	j.ID, j.State, j.Owner, j.Outputs = gef.NewID(), gef.JobQueued, p.Name, []gef.OutputFile{}
	j.Timestamps = gef.Timestamps{Queued: m.now().UTC()}
	j.DatasetDigests, j.Differences, j.Visibility = map[string]string{}, []gef.Difference{}, gef.Private
	spec.JobID, spec.Attempt, spec.DatasetDigests = "", 0, pins
	if err := m.store.CreateJobWith(ctx, j, spec, extra); err != nil {
		return gef.Job{}, err
	}
	m.metrics.submitted.Inc()
	m.hub.wake(holders...)
	if len(datasets) == 0 {
		m.hub.wakeAll()
	}
	m.log.Info("rerun queued", "job", j.ID, "rerun_of", deref(j.RerunOf), "accept_changed_data", j.AcceptChangedData, "by", p.Name)
	m.decorate(&j)
	return j, nil
}
