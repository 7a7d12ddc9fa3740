package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/services"
)

// reuse answers a request with the results of an earlier run of the same
// image on the same parameters and the same data, if the caller may see
// one (their own, or a public one): the new job ends succeeded at once,
// nothing runs, and its outputs are the earlier run's. It reports false
// when there is nothing to reuse, including when a dataset's current
// content is unknown or differs between the nodes that hold it, and for
// services whose results may depend on more than their inputs.
func (m *Manager) reuse(ctx context.Context, p Principal, svc gef.Service, params map[string]any, bindings map[string]string,
	files []gef.InputFile, argv []string, spec gef.Assignment) (gef.Job, bool, error) {
	// A long-lived HTTP service is a session, not a computation; a service
	// with network access may read more than its inputs.
	if svc.HTTP != nil || spec.Network {
		return gef.Job{}, false, nil
	}
	digests := make(map[string]string, len(bindings))
	for input, ds := range bindings {
		held, err := m.store.HeldDigests(ctx, ds)
		if err != nil {
			return gef.Job{}, false, err
		}
		if len(held) != 1 {
			return gef.Job{}, false, nil
		}
		digests[input] = held[0]
	}
	canon, err := services.CanonicalParams(params)
	if err != nil {
		return gef.Job{}, false, err
	}
	origID, err := m.store.FindReusable(ctx, reuseKey(svc.Digest, canon, digests, files), p.Name)
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Job{}, false, nil
	}
	if err != nil {
		return gef.Job{}, false, err
	}
	orig, err := m.store.Job(ctx, origID)
	if err != nil {
		return gef.Job{}, false, err
	}
	now := m.now().UTC()
	j := gef.Job{
		ID: gef.NewID(), State: gef.JobSucceeded, ExitCode: orig.ExitCode,
		Reason:  fmt.Sprintf("reused the results of job %s, which ran the same image on the same parameters and data; nothing ran", orig.ID),
		Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Inputs: bindings, Params: params, Argv: argv,
		Outputs: orig.Outputs, Owner: p.Name, DatasetDigests: digests, ReuseOf: &orig.ID, Visibility: gef.Private,
		Differences: []gef.Difference{}, Timestamps: gef.Timestamps{Queued: now, Finished: &now},
	}
	if err := m.store.CreateJobWith(ctx, j, spec, store.JobExtra{}); err != nil {
		return gef.Job{}, false, err
	}
	if _, err := m.seal(ctx, j); err != nil {
		return gef.Job{}, false, err
	}
	m.metrics.submitted.Inc()
	m.metrics.finished.WithLabelValues(string(j.State)).Inc()
	m.log.Info("job served by reuse", "job", j.ID, "reuse_of", orig.ID, "service", j.Service, "by", p.Name)
	m.decorate(&j)
	return j, true, nil
}
