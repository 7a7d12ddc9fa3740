package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/services"
	"github.com/eudat-gef/gef/volumes"
)

// jobURL is a job's stable address, for citation. The web GUI answers it;
// so does the API, with the job's record.
func (m *Manager) jobURL(id string) string { return m.cfg.PublicURL + "/jobs/" + id }

// decorate adds what the API shows of a job but the store does not keep.
func (m *Manager) decorate(j *gef.Job) { j.URL = m.jobURL(j.ID) }

// checkReproReport refuses malformed reproducibility fields of a report
// before any of it is applied.
func checkReproReport(r gef.JobReport) error {
	for input, d := range r.DatasetDigests {
		if err := volumes.CheckDigest(d); err != nil {
			return gef.Invalid("dataset_digests."+input, "%q is %v", d, err)
		}
	}
	if l := r.Limits; l != nil && (l.MemoryBytes < 0 || l.CPUs < 0 || l.Pids < 0 || l.TimeoutSeconds < 0) {
		return gef.Invalid("limits", "must not be negative")
	}
	return nil
}

// afterReport keeps what a report says of reproducibility: the digests
// and limits a job started with and, once it ended, its sealed provenance.
// Each step is idempotent, so a node that
// retries a report after an error here completes them.
func (m *Manager) afterReport(ctx context.Context, node string, j gef.Job, r gef.JobReport, applied bool) (gef.Job, error) {
	recorded := len(r.DatasetDigests) > 0 || r.Limits != nil
	if recorded {
		if err := m.store.RecordRunning(ctx, node, j.ID, r.DatasetDigests, r.Limits, r.At); err != nil {
			return gef.Job{}, err
		}
	}
	if !j.State.Final() {
		return j, nil
	}
	// j was read after the report was stored; only what was recorded
	// since must be read again.
	if recorded {
		var err error
		if j, err = m.store.Job(ctx, j.ID); err != nil {
			return gef.Job{}, err
		}
	}
	if _, err := m.seal(ctx, j); err != nil {
		return gef.Job{}, err
	}
	if applied && j.Verdict != nil {
		m.log.Info("rerun judged", "job", j.ID, "rerun_of", deref(j.RerunOf), "verdict", *j.Verdict, "differences", len(j.Differences))
	}
	m.decorate(&j)
	return j, nil
}

// seal freezes the provenance record of a job that ended. A record sealed
// before is returned unchanged.
func (m *Manager) seal(ctx context.Context, j gef.Job) (gef.Provenance, error) {
	if !j.State.Final() {
		return gef.Provenance{}, fmt.Errorf("job %s is %s; its provenance is sealed when it ends: %w", j.ID, j.State, gef.ErrConflict)
	}
	if rec, err := m.store.Provenance(ctx, j.ID); err == nil {
		return rec, nil
	} else if !errors.Is(err, gef.ErrNotFound) {
		return gef.Provenance{}, err
	}
	spec, err := m.store.Assignment(ctx, j.ID)
	if err != nil {
		return gef.Provenance{}, err
	}
	rec, err := m.record(ctx, j, spec)
	if err != nil {
		return gef.Provenance{}, err
	}
	key := ""
	if j.State == gef.JobSucceeded && j.ReuseOf == nil {
		// Only a run that succeeded is worth reusing, and only one that
		// ran: a reuse points at the run it reused.
		if key, err = reuseKeyOf(j, spec); err != nil {
			return gef.Provenance{}, err
		}
	}
	return m.store.SealProvenance(ctx, rec, key)
}

// sealSoon seals the provenance of a job that ended other than by its
// node's report (a cancel while queued, a lost node), apart from the
// request that ended it. If it cannot, the record is sealed when first read.
func (m *Manager) sealSoon(j gef.Job) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := m.seal(ctx, j); err != nil {
			m.log.Warn("sealing provenance; it will be sealed when first read", "job", j.ID, "err", err)
		}
	}()
}

// record assembles a final job's provenance.
func (m *Manager) record(ctx context.Context, j gef.Job, spec gef.Assignment) (gef.Provenance, error) {
	params, err := services.CanonicalParams(j.Params)
	if err != nil {
		return gef.Provenance{}, err
	}
	rec := gef.Provenance{
		JobID: j.ID, URL: m.jobURL(j.ID), Service: j.Service, Version: j.Version, ImageDigest: j.ImageDigest,
		Params: params, Argv: j.Argv, Outputs: j.Outputs, Node: j.Node, ManagerVersion: gef.Version,
		Timestamps: j.Timestamps, State: j.State, Reason: j.Reason, ExitCode: j.ExitCode, Owner: j.Owner,
		RerunOf: j.RerunOf, ReuseOf: j.ReuseOf, AcceptChangedData: j.AcceptChangedData, SealedAt: m.now().UTC(),
		Inputs: []gef.ProvenanceInput{},
	}
	if svc, err := m.store.Service(ctx, j.Service, j.Version); err == nil {
		rec.ServiceTitle, rec.Resources = svc.Title, svc.Resources
	} else if !errors.Is(err, gef.ErrNotFound) {
		return gef.Provenance{}, err
	}
	for _, input := range sortedKeys(j.Inputs) {
		rec.Inputs = append(rec.Inputs, gef.ProvenanceInput{Input: input, Dataset: j.Inputs[input], Digest: j.DatasetDigests[input]})
	}
	for _, f := range spec.Files {
		sum := sha256.Sum256([]byte(f.Content))
		rec.TextInputs = append(rec.TextInputs, gef.ProvenanceText{Input: f.Input, Path: f.Path, SHA256: hex.EncodeToString(sum[:]), Text: f.Content})
	}
	if j.Node != "" {
		n, err := m.store.Node(ctx, j.Node)
		switch {
		case err == nil:
			rec.EngineVersion, rec.EngineAPI, rec.Runtime, rec.AgentVersion = n.EngineVersion, n.EngineAPI, n.Runtime, n.AgentVersion
		case !errors.Is(err, gef.ErrNotFound):
			return gef.Provenance{}, err
		}
	}
	rep, err := m.store.Repro(ctx, j.ID)
	if err != nil {
		return gef.Provenance{}, err
	}
	rec.Limits = rep.Limits
	return rec, nil
}

// reuseKey names what makes two runs the same: the image, the canonical
// parameters, the content of every dataset and every text input. Resource
// hints are not part of it: they change how fast a run goes, not what it
// computes.
func reuseKey(image string, params []byte, digests map[string]string, files []gef.InputFile) string {
	text := map[string]string{}
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.Content))
		text[f.Path] = hex.EncodeToString(sum[:])
	}
	b, _ := json.Marshal(struct {
		Image    string            `json:"image"`
		Params   json.RawMessage   `json:"params"`
		Datasets map[string]string `json:"datasets"`
		Text     map[string]string `json:"text"`
	}{image, params, digests, text})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// reuseKeyOf is the reuse key of a job that ran, or "" if it lacks a
// dataset's digest.
func reuseKeyOf(j gef.Job, spec gef.Assignment) (string, error) {
	for input := range j.Inputs {
		if j.DatasetDigests[input] == "" {
			return "", nil
		}
	}
	params, err := services.CanonicalParams(j.Params)
	if err != nil {
		return "", err
	}
	return reuseKey(j.ImageDigest, params, j.DatasetDigests, spec.Files), nil
}

// verdictFor judges a rerun as the report that ends it arrives: its
// outputs compared with those of the run it repeats. The store records the
// verdict with the final state, so no reader sees the rerun ended without
// it. A rerun that did not run to its end (a system error or a cancel)
// gets no verdict.
func (m *Manager) verdictFor(ctx context.Context, id string, r gef.JobReport) (store.ReportExtra, error) {
	if r.State != gef.JobSucceeded && r.State != gef.JobFailed {
		return store.ReportExtra{}, nil
	}
	// Most jobs are no rerun: their record says so in one read.
	rep, err := m.store.Repro(ctx, id)
	if err != nil {
		return store.ReportExtra{}, err
	}
	if rep.Judged || (rep.Expected == nil && rep.RerunOf == nil) {
		return store.ReportExtra{}, nil
	}
	j, err := m.store.JobHead(ctx, id)
	if errors.Is(err, gef.ErrNotFound) {
		return store.ReportExtra{}, nil // the report itself will say so
	}
	if err != nil {
		return store.ReportExtra{}, err
	}
	if j.State.Final() {
		return store.ReportExtra{}, nil
	}
	expected := rep.Expected
	if expected == nil {
		orig, err := m.store.Job(ctx, *rep.RerunOf)
		if errors.Is(err, gef.ErrNotFound) {
			return store.ReportExtra{}, nil
		}
		if err != nil {
			return store.ReportExtra{}, err
		}
		expected = orig.Outputs
	}
	diffs := compareOutputs(expected, r.Outputs)
	verdict := gef.VerdictIdentical
	if len(diffs) > 0 {
		verdict = gef.VerdictDiffers
	}
	return store.ReportExtra{Verdict: &verdict, Differences: diffs}, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// compareOutputs lists the files that differ between two manifests, by
// output name and path, in path order.
func compareOutputs(original, rerun []gef.OutputFile) []gef.Difference {
	key := func(o gef.OutputFile) string { return o.Name + "/" + o.Path }
	before := map[string]gef.OutputFile{}
	for _, o := range original {
		before[key(o)] = o
	}
	diffs := []gef.Difference{}
	seen := map[string]bool{}
	for _, o := range rerun {
		k := key(o)
		seen[k] = true
		b, ok := before[k]
		switch {
		case !ok:
			diffs = append(diffs, gef.Difference{Path: k, Change: gef.ChangeAdded})
		case b.SHA256 != o.SHA256 || b.Size != o.Size:
			diffs = append(diffs, gef.Difference{Path: k, Change: gef.ChangeChanged})
		}
	}
	for k := range before {
		if !seen[k] {
			diffs = append(diffs, gef.Difference{Path: k, Change: gef.ChangeRemoved})
		}
	}
	sort.Slice(diffs, func(i, k int) bool { return diffs[i].Path < diffs[k].Path })
	return diffs
}

// Provenance returns the sealed provenance record of a job the caller may
// see. A job that ended before its record could be sealed is sealed now.
func (m *Manager) Provenance(ctx context.Context, p Principal, id string) (gef.Provenance, error) {
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Provenance{}, err
	}
	rec, err := m.store.Provenance(ctx, j.ID)
	if errors.Is(err, gef.ErrNotFound) {
		return m.seal(ctx, j)
	}
	return rec, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkDatasetDigest(d gef.NodeDataset) error {
	if d.Digest == "" {
		return nil // an older node; its jobs cannot be rerun with a check of their data
	}
	if err := volumes.CheckDigest(d.Digest); err != nil {
		return gef.Invalid("datasets", "dataset %s: digest %q is %v", d.Name, d.Digest, err)
	}
	return nil
}

// mayChange refuses a caller who may read a public job but not act on it.
func mayChange(p Principal, j gef.Job) error {
	switch {
	case canChange(p, j):
		return nil
	case p.Anonymous():
		return fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	return fmt.Errorf("only the owner of job %s may do this: %w", j.ID, gef.ErrForbidden)
}
