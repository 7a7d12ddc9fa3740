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
	bindings, files, err := m.bindInputs(ctx, p, svc, req)
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
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: argv, Files: files, Outputs: svc.Outputs, Resources: svc.Resources,
		Network: svc.Network}
	for _, in := range svc.DatasetInputs() {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in.Name, Dataset: bindings[in.Name], Path: in.Path})
	}
	if req.Reuse == nil || *req.Reuse {
		if j, ok, err := m.reuse(ctx, p, svc, params, bindings, files, argv, spec); err != nil || ok {
			return j, err
		}
	}
	if err := m.store.CreateJob(ctx, job, spec); err != nil {
		return gef.Job{}, err
	}
	m.metrics.submitted.Inc()
	m.wake(ctx, holders...)
	if len(datasets) == 0 {
		m.wakeAll(ctx)
	}
	job.DatasetDigests, job.Differences, job.Visibility = map[string]string{}, []gef.Difference{}, gef.Private
	m.decorate(&job)
	return job, nil
}

// bindInputs maps the request's inputs onto the service's declared ones.
func (m *Manager) bindInputs(ctx context.Context, p Principal, svc gef.Service, req gef.JobRequest) (map[string]string, []gef.InputFile, error) {
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
		// A dataset the caller may not use is as unknown as a missing one.
		ok, err := m.mayUseDataset(ctx, p, v)
		if errors.Is(err, gef.ErrNotFound) || (err == nil && !ok) {
			return nil, nil, gef.Invalid("inputs."+in.Name, "dataset %q is not known", v)
		} else if err != nil {
			return nil, nil, err
		}
		bindings[in.Name] = v
	}
	return bindings, files, nil
}

// Job returns a job its caller may see: their own, any for an admin, and
// a public one for anyone, signed in or not. A job the caller may not see
// is not found, so ids do not leak.
func (m *Manager) Job(ctx context.Context, p Principal, id string) (gef.Job, error) {
	if !gef.ValidID(id) {
		return gef.Job{}, gef.Invalid("id", "%q is not a job id", id)
	}
	j, err := m.store.Job(ctx, id)
	if err != nil {
		return gef.Job{}, err
	}
	ok, err := m.canSee(ctx, p, j)
	if err != nil {
		return gef.Job{}, err
	}
	if !ok {
		return gef.Job{}, fmt.Errorf("job %s: %w", id, gef.ErrNotFound)
	}
	m.decorate(&j)
	return j, nil
}

// canSee reports whether p may read j: its owner, its named readers and
// the admins may.
func (m *Manager) canSee(ctx context.Context, p Principal, j gef.Job) (bool, error) {
	switch {
	case p.Is(gef.RoleAdmin), j.Visibility == gef.Public:
		return true, nil
	case p.Anonymous() || p.Is(gef.RoleNode):
		return false, nil
	case j.Owner == p.Name:
		return true, nil
	case len(j.Readers.Users)+len(j.Readers.Groups) == 0:
		return false, nil
	}
	groups, err := m.store.UserGroups(ctx, p.Name)
	if err != nil {
		return false, err
	}
	return j.Readers.Includes(p.Name, groups), nil
}

// SetReaders names who may read a job besides its owner (owner or admin).
func (m *Manager) SetReaders(ctx context.Context, p Principal, id string, r gef.Readers) (gef.Job, error) {
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Job{}, err
	}
	if err := mayChange(p, j); err != nil {
		return gef.Job{}, err
	}
	for _, n := range append(append([]string{}, r.Users...), r.Groups...) {
		if !validName(n) {
			return gef.Job{}, gef.Invalid("readers", "%q is not a user or group name", n)
		}
	}
	if err := m.store.SetReaders(ctx, id, r); err != nil {
		return gef.Job{}, err
	}
	return m.store.Job(ctx, id)
}

// canChange reports whether p may act on j: its owner or an admin.
func canChange(p Principal, j gef.Job) bool {
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
	page, err := m.store.Jobs(ctx, f)
	for i := range page.Items {
		m.decorate(&page.Items[i])
	}
	return page, err
}

// Cancel stops a job. A queued job ends at once; a running one ends when its
// node has stopped the container.
func (m *Manager) Cancel(ctx context.Context, p Principal, id string) (gef.Job, error) {
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Job{}, err
	}
	if err := mayChange(p, j); err != nil {
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
	m.sealSoon(j)
	m.log.Info("job finished", "job", j.ID, "state", j.State, "service", j.Service, "node", j.Node, "reason", j.Reason)
}
