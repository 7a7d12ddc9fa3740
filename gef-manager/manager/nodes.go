package manager

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// requireNode checks that p is the node credential for name.
func requireNode(p Principal, name string) error {
	if err := requireRole(p, gef.RoleNode); err != nil {
		return err
	}
	if name != "" && p.Name != name {
		return fmt.Errorf("the credential of node %q cannot act for node %q: %w", p.Name, name, gef.ErrForbidden)
	}
	return nil
}

// RegisterNode records what a node holds. A node registers whenever it
// (re)connects.
func (m *Manager) RegisterNode(ctx context.Context, p Principal, reg gef.NodeRegistration) error {
	if err := requireNode(p, reg.Name); err != nil {
		return err
	}
	if reg.Capacity < 1 || reg.Capacity > 4096 {
		return gef.Invalid("capacity", "must be between 1 and 4096")
	}
	seen := map[string]bool{}
	for _, d := range reg.Datasets {
		if err := checkDatasetDigest(d); err != nil {
			return err
		}
		if !validName(d.Name) {
			return gef.Invalid("datasets", "dataset name %q must be 1-64 letters, digits, '.', '_' or '-'", d.Name)
		}
		if seen[d.Name] {
			return gef.Invalid("datasets", "dataset %q is listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	for _, img := range reg.Images {
		if !validImageID(img.ID) {
			return gef.Invalid("images", "image id %q is not sha256:<64 hex>", img.ID)
		}
	}
	if err := m.store.RegisterNode(ctx, reg, m.now().UTC()); err != nil {
		return err
	}
	m.log.Info("node registered", "node", reg.Name, "datasets", len(reg.Datasets), "capacity", reg.Capacity,
		"engine", reg.EngineVersion, "engine_api", reg.EngineAPI)
	m.wake(ctx, reg.Name)
	return nil
}

// Poll answers a node's long poll: it returns as soon as there is a job for
// the node or a job it must stop, or after the wait with nothing. Jobs are
// claimed for the node the moment it asks, so assignment costs one query,
// not a scheduler tick.
func (m *Manager) Poll(ctx context.Context, p Principal, req gef.PollRequest) (gef.PollResponse, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.PollResponse{}, err
	}
	node := p.Name
	wait := time.Duration(req.WaitMS) * time.Millisecond
	if wait < 0 || wait > m.cfg.PollWait {
		wait = m.cfg.PollWait
	}
	m.metrics.polls.Inc()
	wake := m.hub.channel(node)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	stopping := map[string]bool{}
	for _, id := range req.Stopping {
		stopping[id] = true
	}
	for {
		if _, err := m.store.TouchNode(ctx, node, m.now().UTC()); errors.Is(err, gef.ErrNotFound) {
			return gef.PollResponse{}, fmt.Errorf("node %q must register first: %w", node, gef.ErrConflict)
		} else if err != nil {
			return gef.PollResponse{}, err
		}
		resp, err := m.pollOnce(ctx, node, req, stopping)
		if err != nil || !resp.Empty() {
			return resp, err
		}
		select {
		case <-wake:
		case <-m.rel.recheck():
		case <-timer.C:
			return resp, nil
		case <-ctx.Done():
			return resp, nil
		case <-m.hub.closed:
			return resp, nil
		}
	}
}

func (m *Manager) pollOnce(ctx context.Context, node string, req gef.PollRequest, stopping map[string]bool) (gef.PollResponse, error) {
	resp := gef.PollResponse{Jobs: []gef.Assignment{}, Cancel: []string{}}
	if err := m.pollSessions(ctx, node, req, &resp); err != nil {
		return resp, err
	}
	active, err := m.store.ActiveJobs(ctx, node)
	if err != nil {
		return resp, err
	}
	cancels, err := m.store.PendingCancels(ctx, node)
	if err != nil {
		return resp, err
	}
	for _, id := range cancels {
		if !stopping[id] {
			resp.Cancel = append(resp.Cancel, id)
		}
	}
	// A job the node runs that the manager no longer gives it (it ended or
	// went elsewhere) must stop too.
	mine := map[string]bool{}
	for _, id := range active {
		mine[id] = true
	}
	// A job the manager gave the node that the node does not run was lost:
	// the agent restarted, or never received the assignment. The node
	// lists every job it holds, including those given in its last poll.
	// Their attempts fail, and are retried where that is allowed.
	held, err := m.loseJobs(ctx, node, active, req.Running)
	if err != nil {
		return resp, err
	}
	for _, id := range active {
		if !slices.Contains(held, id) {
			delete(mine, id)
		}
	}
	active = held
	for _, id := range req.Running {
		if !mine[id] && !stopping[id] {
			resp.Cancel = append(resp.Cancel, id)
		}
	}
	n, err := m.store.Node(ctx, node)
	if err != nil {
		return resp, err
	}
	building, err := m.heldBuilds(ctx, node, req)
	if err != nil {
		return resp, err
	}
	// A job the node listed that has ended since frees its slot now: the
	// node is only removing its container.
	freed := 0
	for _, id := range req.Running {
		if !mine[id] {
			freed++
		}
	}
	free := min(req.Free+freed, n.Capacity-len(active)-building)
	if free <= 0 || n.State != gef.NodeReady {
		return resp, nil
	}
	now := m.now().UTC()
	jobs, err := m.store.ClaimJobs(ctx, node, free, now)
	if err != nil {
		return resp, err
	}
	if jobs, err = m.withdrawn(ctx, node, jobs, now); err != nil {
		return resp, err
	}
	for _, a := range jobs {
		if j, err := m.store.JobHead(ctx, a.JobID); err == nil {
			m.metrics.dispatch.Observe(now.Sub(j.Timestamps.Queued).Seconds())
		}
	}
	resp.Jobs = jobs
	// Builds take the slots jobs left. The jobs are the node's now, so a
	// failure here must not lose them.
	if resp.Builds, err = m.claimBuilds(ctx, node, free-len(jobs)); err != nil {
		m.log.Warn("claiming builds", "node", node, "err", err)
	}
	return resp, nil
}

// Report applies a node's report on one of its jobs. Outputs it lists must
// already be in the object store: a success is never recorded for results
// that could be missing.
func (m *Manager) Report(ctx context.Context, p Principal, id string, r gef.JobReport) (gef.Job, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.Job{}, err
	}
	if !gef.ValidID(id) {
		return gef.Job{}, gef.Invalid("id", "%q is not a job id", id)
	}
	if !r.State.Valid() || r.State == gef.JobQueued {
		return gef.Job{}, gef.Invalid("state", "cannot report state %q", r.State)
	}
	if r.At.IsZero() || r.At.After(m.now().Add(time.Minute)) {
		r.At = m.now()
	}
	r.At = r.At.UTC()
	if err := checkReproReport(r); err != nil {
		return gef.Job{}, err
	}
	if len(r.Outputs) > 0 {
		if err := m.verifyOutputs(ctx, id, r.Attempt, r.Outputs); err != nil {
			return gef.Job{}, err
		}
	}
	if j, retried, err := m.retryReported(ctx, p.Name, id, r); err != nil || retried {
		return j, err
	}
	verdict, err := m.verdictFor(ctx, id, r)
	if err != nil {
		return gef.Job{}, err
	}
	j, applied, err := m.store.ReportJobWith(ctx, p.Name, id, r, verdict)
	if err != nil {
		return gef.Job{}, err
	}
	if applied && j.State.Final() {
		// Its slot is free: the node's held poll can take the next job
		// while the provenance is sealed. Those waiting on the job learn
		// of its end once it is sealed, so that it can be reused.
		m.wake(ctx, p.Name)
	}
	if j, err = m.afterReport(ctx, p.Name, j, r, applied); err != nil {
		return gef.Job{}, err
	}
	if applied && j.State.Final() {
		m.finished(j)
	}
	return j, nil
}

func (m *Manager) verifyOutputs(ctx context.Context, id string, attempt int, outs []gef.OutputFile) error {
	if attempt == 0 {
		j, err := m.store.Job(ctx, id)
		if err != nil {
			return err
		}
		attempt = j.Attempt
	}
	stored, err := m.objects.List(ctx, "jobs/"+id+"/")
	if err != nil {
		return fmt.Errorf("manager: check outputs of %s: %w: %w", id, gef.ErrUnavailable, err)
	}
	sizes := make(map[string]int64, len(stored))
	for _, o := range stored {
		sizes[o.Key] = o.Size
	}
	for _, o := range outs {
		if err := validOutputPath(o.Name, o.Path); err != nil {
			return err
		}
		size, ok := sizes[gef.AttemptOutputKey(id, attempt, o.Name, o.Path)]
		if !ok || size != o.Size {
			return fmt.Errorf("output %s/%s is not stored with %d bytes; upload it again: %w", o.Name, o.Path, o.Size, gef.ErrConflict)
		}
	}
	return nil
}

// maxUploadBatch bounds one request for upload URLs.
const maxUploadBatch = 2000

// UploadURLs hands a node presigned URLs for its job's output files, so
// the node never holds the object store's credentials.
func (m *Manager) UploadURLs(ctx context.Context, p Principal, id string, req gef.UploadRequest) (gef.UploadResponse, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.UploadResponse{}, err
	}
	if len(req.Files) == 0 || len(req.Files) > maxUploadBatch {
		return gef.UploadResponse{}, gef.Invalid("files", "give between 1 and %d files", maxUploadBatch)
	}
	j, err := m.store.JobHead(ctx, id)
	if err != nil {
		return gef.UploadResponse{}, err
	}
	if j.Node != p.Name || j.State.Final() || (req.Attempt != 0 && req.Attempt != j.Attempt) {
		return gef.UploadResponse{}, fmt.Errorf("job %s attempt %d is not running on node %q: %w", id, req.Attempt, p.Name, gef.ErrConflict)
	}
	spec, err := m.store.Assignment(ctx, id)
	if err != nil {
		return gef.UploadResponse{}, err
	}
	declared := map[string]bool{}
	for _, o := range spec.Outputs {
		declared[o.Name] = true
	}
	resp := gef.UploadResponse{URLs: make(map[string]string, len(req.Files))}
	for _, f := range req.Files {
		if !declared[f.Name] {
			return gef.UploadResponse{}, gef.Invalid("files", "the service declares no output %q", f.Name)
		}
		if err := validOutputPath(f.Name, f.Path); err != nil {
			return gef.UploadResponse{}, err
		}
		u, err := m.objects.PresignPut(ctx, gef.AttemptOutputKey(id, j.Attempt, f.Name, f.Path), m.cfg.UploadURLTTL)
		if err != nil {
			return gef.UploadResponse{}, fmt.Errorf("manager: presign: %w", err)
		}
		resp.URLs[f.Name+"/"+f.Path] = u
	}
	return resp, nil
}

// validOutputPath refuses output paths that could escape their job's
// prefix or confuse a file system when downloaded.
func validOutputPath(name, p string) error {
	field := "outputs." + name
	switch {
	case p == "" || len(p) > 1024:
		return gef.Invalid(field, "path must be 1-1024 bytes")
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\\"):
		return gef.Invalid(field, "path %q has a NUL, a backslash or invalid UTF-8", p)
	case strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == "..":
		return gef.Invalid(field, "path %q must be relative and clean, inside the output", p)
	}
	return nil
}
