package manager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/services"
)

// maxStringInput bounds the literal text of a string input.
const maxStringInput = 64 << 10

// Submit validates a run request and queues the job. It refuses, with an
// error naming the field, a request no node could ever run.
func (m *Manager) Submit(ctx context.Context, p Principal, req gef.JobRequest) (gef.Job, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser); err != nil {
		return gef.Job{}, err
	}
	if req.Service == "" {
		return gef.Job{}, gef.Invalid("service", "is required")
	}
	svc, err := m.resolveService(ctx, req.Service, req.Version)
	if errors.Is(err, gef.ErrNotFound) {
		if req.Version != "" {
			return gef.Job{}, gef.Invalid("version", "service %q has no version %q", req.Service, req.Version)
		}
		return gef.Job{}, gef.Invalid("service", "%s", strings.TrimSuffix(err.Error(), ": "+gef.ErrNotFound.Error()))
	}
	if err != nil {
		return gef.Job{}, err
	}
	return m.submit(ctx, p, svc, req)
}

func (m *Manager) submit(ctx context.Context, p Principal, svc gef.Service, req gef.JobRequest) (gef.Job, error) {
	bindings, files, err := m.bindInputs(ctx, svc, req)
	if err != nil {
		return gef.Job{}, err
	}
	params, err := services.ValidateParams(&svc, req.Params)
	if err != nil {
		return gef.Job{}, err
	}
	attempts, err := m.maxAttempts(req)
	if err != nil {
		return gef.Job{}, err
	}
	argv := append(append(append([]string{}, svc.Entrypoint...), svc.Cmd...), services.Argv(&svc, params)...)

	datasets := make([]string, 0, len(bindings))
	for _, ds := range bindings {
		datasets = append(datasets, ds)
	}
	holders, err := m.store.NodesHolding(ctx, datasets)
	if err != nil {
		return gef.Job{}, err
	}
	if len(holders) == 0 && len(datasets) > 0 {
		sort.Strings(datasets)
		return gef.Job{}, gef.Invalid("inputs", "no node holds all of the datasets %s together", strings.Join(datasets, ", "))
	}

	job := gef.Job{
		ID: gef.NewID(), State: gef.JobQueued, Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest,
		Inputs: bindings, Params: params, Argv: argv, Owner: p.Name, Outputs: []gef.OutputFile{},
		MaxAttempts: attempts, RetryFailed: req.RetryFailed, Attempts: []gef.Attempt{},
		Timestamps: gef.Timestamps{Queued: m.now().UTC()},
	}
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: argv, Files: files, Outputs: svc.Outputs, Resources: svc.Resources}
	for _, in := range svc.DatasetInputs() {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in.Name, Dataset: bindings[in.Name], Path: in.Path})
	}
	if err := m.store.CreateJob(ctx, job, spec); err != nil {
		return gef.Job{}, err
	}
	m.metrics.submitted.Inc()
	m.wake(ctx, holders...)
	if len(datasets) == 0 {
		m.wakeAll(ctx)
	}
	return job, nil
}

// bindInputs maps the request's inputs onto the service's declared ones.
func (m *Manager) bindInputs(ctx context.Context, svc gef.Service, req gef.JobRequest) (map[string]string, []gef.InputFile, error) {
	given := req.Inputs
	if req.Dataset != "" {
		dsInputs := svc.DatasetInputs()
		switch {
		case len(given) > 0:
			return nil, nil, gef.Invalid("dataset", "give either dataset or inputs, not both")
		case len(dsInputs) != 1:
			return nil, nil, gef.Invalid("dataset", "service %s has %d dataset inputs; name each in inputs", svc.Name, len(dsInputs))
		}
		given = map[string]string{dsInputs[0].Name: req.Dataset}
	}
	declared := map[string]gef.Input{}
	for _, in := range svc.Inputs {
		declared[in.Name] = in
	}
	for name := range given {
		if _, ok := declared[name]; !ok {
			return nil, nil, gef.Invalid("inputs."+name, "service %s has no input %q", svc.Name, name)
		}
	}
	bindings := map[string]string{}
	var files []gef.InputFile
	for _, in := range svc.Inputs {
		v, ok := given[in.Name]
		if !ok {
			return nil, nil, gef.Invalid("inputs."+in.Name, "is required")
		}
		if in.Type == gef.InputString {
			if len(v) > maxStringInput || strings.ContainsRune(v, 0) {
				return nil, nil, gef.Invalid("inputs."+in.Name, "text must be at most 64 KiB with no NUL byte")
			}
			files = append(files, gef.InputFile{Input: in.Name, Path: strings.TrimSuffix(in.Path, "/") + "/" + in.Filename, Content: v})
			continue
		}
		if _, err := m.store.Dataset(ctx, v); errors.Is(err, gef.ErrNotFound) {
			return nil, nil, gef.Invalid("inputs."+in.Name, "dataset %q is not known", v)
		} else if err != nil {
			return nil, nil, err
		}
		bindings[in.Name] = v
	}
	return bindings, files, nil
}

// Job returns a job its caller may see. A job the caller may not see is
// not found, so ids do not leak.
func (m *Manager) Job(ctx context.Context, p Principal, id string) (gef.Job, error) {
	if p.Anonymous() {
		return gef.Job{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !gef.ValidID(id) {
		return gef.Job{}, gef.Invalid("id", "%q is not a job id", id)
	}
	j, err := m.store.Job(ctx, id)
	if err != nil {
		return gef.Job{}, err
	}
	if !canSee(p, j) {
		return gef.Job{}, fmt.Errorf("job %s: %w", id, gef.ErrNotFound)
	}
	return j, nil
}

func canSee(p Principal, j gef.Job) bool {
	return p.Is(gef.RoleAdmin) || (!p.Anonymous() && j.Owner == p.Name)
}

// Jobs lists the jobs the caller may see, newest first.
func (m *Manager) Jobs(ctx context.Context, p Principal, f gef.JobFilter) (gef.Page[gef.Job], error) {
	if p.Anonymous() {
		return gef.Page[gef.Job]{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if f.State != "" && !f.State.Valid() {
		return gef.Page[gef.Job]{}, gef.Invalid("state", "unknown state %q", f.State)
	}
	if f.PageToken != "" && !gef.ValidID(f.PageToken) {
		return gef.Page[gef.Job]{}, gef.Invalid("page_token", "is not a page token")
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return gef.Page[gef.Job]{}, gef.Invalid("limit", "must be between 1 and 1000")
	}
	if !p.Is(gef.RoleAdmin) {
		if f.Owner != "" && f.Owner != p.Name {
			return gef.Page[gef.Job]{Items: []gef.Job{}}, nil
		}
		f.Owner = p.Name
	}
	return m.store.Jobs(ctx, f)
}

// Cancel stops a job. A queued job ends at once; a running one ends when its
// node has stopped the container.
func (m *Manager) Cancel(ctx context.Context, p Principal, id string) (gef.Job, error) {
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Job{}, err
	}
	j, err = m.store.CancelJob(ctx, j.ID, "canceled by "+p.Name, m.now().UTC())
	if err != nil {
		return gef.Job{}, err
	}
	if j.State.Final() {
		m.finished(j)
	} else if j.Node != "" {
		m.wake(ctx, j.Node)
	}
	return j, nil
}

// finished records that a job reached its final state.
func (m *Manager) finished(j gef.Job) {
	m.metrics.finished.WithLabelValues(string(j.State)).Inc()
	m.logs.end(j.ID)
	m.log.Info("job finished", "job", j.ID, "state", j.State, "service", j.Service, "node", j.Node, "reason", j.Reason)
}
