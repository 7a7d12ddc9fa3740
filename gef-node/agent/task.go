package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// task runs one job attempt on this node.
type task struct {
	a      *Agent
	job    gef.Assignment
	dir    string
	stopCh chan struct{}

	mu         sync.Mutex
	stopReason string // empty when the manager canceled the job
	isStopping bool
	container  string

	// adopted is the container an earlier run of the agent left for this
	// job; the task takes it up where it is instead of making one.
	adopted *ContainerInfo
	status  *stagingStatus
}

func newTask(a *Agent, job gef.Assignment) *task {
	return &task{a: a, job: job, stopCh: make(chan struct{}),
		dir: filepath.Join(a.cfg.WorkDir, "jobs", fmt.Sprintf("%s-%d", job.JobID, job.Attempt))}
}

// stop asks the task to end its container. reason is empty for a cancel.
func (t *task) stop(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.isStopping {
		t.isStopping, t.stopReason = true, reason
		close(t.stopCh)
	}
}

func (t *task) stopping() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.isStopping
}

// errAbandon ends a task whose job the manager no longer gives this node.
var errAbandon = errors.New("the manager no longer gives this job to the node")

func (t *task) run(ctx context.Context) {
	log := t.a.log.With("job", t.job.JobID, "attempt", t.job.Attempt)
	if done, ok := t.a.outbox.final(t.job.JobID, t.job.Attempt); ok {
		// An earlier run finished the job; its report waits to be taken.
		t.awaitFinal(ctx, done, log)
		return
	}
	final, err := t.execute(ctx)
	if errors.Is(err, errAbandon) {
		log.Warn("job abandoned", "err", err)
		t.cleanup(ctx, log)
		return
	}
	done, err := t.reportFinal(ctx, final)
	if err != nil {
		log.Error("final report failed", "state", final.State, "err", err)
		t.cleanup(ctx, log)
		return
	}
	log.Info("job finished", "state", final.State, "reason", final.Reason, "outputs", len(final.Outputs))
	t.awaitFinal(ctx, done, log)
}

// cleanup removes the container and the job's directory: the outputs and
// what the task saved of its progress.
func (t *task) cleanup(ctx context.Context, log interface{ Warn(string, ...any) }) {
	t.mu.Lock()
	id := t.container
	t.mu.Unlock()
	if id != "" {
		if err := t.a.rt.Remove(ctx, id); err != nil {
			log.Warn("removing container", "container", id, "err", err)
		}
	}
	if err := volumes.RemoveAll(t.dir); err != nil {
		log.Warn("removing job directory", "dir", t.dir, "err", err)
	}
}

func (t *task) sysErr(format string, args ...any) gef.JobReport {
	return gef.JobReport{State: gef.JobSystemError, Reason: fmt.Sprintf(format, args...)}
}

// execute runs the job and returns the report that ends it.
func (t *task) execute(ctx context.Context) (gef.JobReport, error) {
	job, rt := t.job, t.a.rt
	if len(job.Argv) == 0 {
		return t.sysErr("the job has no command to run"), nil
	}
	// The data's digests are taken beside the image check and the
	// engine's create, which take longer; only the start waits for them.
	type digestResult struct {
		digests map[string]string
		err     error
	}
	var scanned chan digestResult
	if t.adopted == nil {
		scanned = make(chan digestResult, 1)
		go func() {
			d, err := t.a.inputDigests(ctx, job)
			scanned <- digestResult{d, err}
		}()
	}
	img, noImage, err := t.image(ctx)
	if err != nil || noImage != nil {
		return derefReport(noImage), err
	}
	var (
		spec    spec
		id      string
		from    shipProgress
		started time.Time
		digests map[string]string
	)
	if c := t.adopted; c != nil {
		// The running report, with the data's digests, went out before
		// the agent restarted.
		id, started, spec = c.ID, c.StartedAt, t.adoptedSpec()
		if from, err = t.loadProgress(); err != nil {
			t.a.log.Warn("reading how far the output was shipped; shipping it all again", "job", job.JobID, "err", err)
			from = shipProgress{}
		}
	} else {
		if spec, err = t.containerSpec(img); err != nil {
			return t.sysErr("%v", err), nil
		}
		if id, err = rt.Create(ctx, spec.ContainerSpec); err != nil {
			return t.sysErr("engine: %v", err), nil
		}
	}
	t.mu.Lock()
	t.container = id
	t.mu.Unlock()
	if scanned != nil {
		// A container created for data that changed never starts; the
		// task's cleanup removes it.
		r := <-scanned
		if r.err != nil {
			return t.sysErr("%v", r.err), nil
		}
		digests = r.digests
	}

	ship := newShipper(t.a, job.JobID, job.Attempt, t.dir, from)
	logsDone := make(chan error, 1)
	if started.IsZero() {
		if err := rt.Start(ctx, id); err != nil {
			ship.close(ctx)
			return t.sysErr("engine: %v", err), nil
		}
		started = time.Now()
	}
	go func() { logsDone <- rt.Logs(ctx, id, ship.writer("stdout"), ship.writer("stderr")) }()
	t.report(ctx, gef.JobReport{State: gef.JobRunning, At: started, ImageDigest: img.ID, DatasetDigests: digests, Limits: spec.limits()})

	status, ended, err := t.wait(ctx, id, started)
	if err != nil {
		ship.close(ctx)
		return t.sysErr("engine: %v", err), nil
	}
	// The log stream ends with the container; wait for its last bytes.
	if err := <-logsDone; err != nil {
		t.a.log.Warn("reading container output", "job", job.JobID, "err", err)
	}
	ship.close(ctx)

	final := gef.JobReport{State: gef.JobSucceeded, ExitCode: &status.Code}
	switch {
	case ended == endCanceled:
		final = gef.JobReport{State: gef.JobCanceled, ExitCode: &status.Code}
	case ended == endShutdown:
		return t.sysErr("the job was stopped because %s", t.a.shutdownReason), nil
	case ended == endTimeout:
		final.State, final.Reason = gef.JobFailed, fmt.Sprintf("exceeded its wall-time limit of %s and was killed", spec.timeout)
	case ended == endOutputLimit:
		final.State, final.Reason = gef.JobFailed, fmt.Sprintf("wrote more than the node's output limit of %d MiB and was killed; its outputs were not staged",
			t.a.cfg.OutputLimitBytes>>20)
		return final, nil
	case status.Error != "":
		return t.sysErr("engine: %s", status.Error), nil
	case status.OOMKilled:
		final.State, final.Reason = gef.JobFailed, fmt.Sprintf("killed: out of memory (limit %d MiB)", spec.MemoryBytes>>20)
	case status.Code != 0:
		final.State, final.Reason = gef.JobFailed, fmt.Sprintf("exited with code %d", status.Code)
	}
	if ship.truncated() {
		final.Reason = strings.TrimPrefix(final.Reason+"; output truncated at the node's log limit", "; ")
	}

	if n := t.outputBytes(); n > t.a.cfg.OutputLimitBytes {
		final.State = gef.JobFailed
		final.Reason = fmt.Sprintf("wrote %d MiB to its outputs, more than the node's limit of %d MiB; its outputs were not staged",
			n>>20, t.a.cfg.OutputLimitBytes>>20)
		return final, nil
	}
	// Stage what the container wrote, whatever its exit: a result that was
	// produced is never thrown away.
	t.report(ctx, gef.JobReport{State: gef.JobStaging})
	outputs, skipped, err := t.stage(ctx)
	switch {
	case errors.Is(err, errAbandon):
		return gef.JobReport{}, err
	case errors.Is(err, errStopped):
		if t.stopReasonText() == "" {
			return gef.JobReport{State: gef.JobCanceled, ExitCode: &status.Code, Reason: "canceled while staging"}, nil
		}
		return t.sysErr("staging was stopped because %s", t.a.shutdownReason), nil
	case err != nil:
		return t.sysErr("staging outputs: %v", err), nil
	}
	final.Outputs = outputs
	if len(skipped) > 0 {
		final.Reason = strings.TrimPrefix(final.Reason+fmt.Sprintf("; %d links or special files in outputs were not staged (e.g. %s)",
			len(skipped), skipped[0]), "; ")
	}
	return final, nil
}

type endKind int

const (
	endExited endKind = iota
	endCanceled
	endShutdown
	endTimeout
	endOutputLimit
)

// wait waits for the container started at started to exit, stopping it on
// cancel or timeout.
func (t *task) wait(ctx context.Context, id string, started time.Time) (ExitStatus, endKind, error) {
	type result struct {
		s   ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := t.a.rt.Wait(ctx, id)
		done <- result{s, err}
	}()
	timer := time.NewTimer(max(0, t.timeout()-time.Since(started)))
	defer timer.Stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	kind := endExited
	select {
	case r := <-done:
		return r.s, kind, r.err
	case <-t.watchOutputs(watchCtx):
		kind = endOutputLimit
	case <-t.stopCh:
		kind = endCanceled
		t.mu.Lock()
		if t.stopReason != "" {
			kind = endShutdown
		}
		t.mu.Unlock()
	case <-timer.C:
		kind = endTimeout
	}
	if err := t.a.rt.Stop(ctx, id, t.a.cfg.StopGrace); err != nil {
		return ExitStatus{}, kind, err
	}
	r := <-done
	return r.s, kind, r.err
}

func (t *task) timeout() time.Duration {
	d := t.a.cfg.DefaultTimeout
	if s := t.job.Resources.TimeoutSeconds; s > 0 {
		d = time.Duration(s) * time.Second
	}
	return min(d, t.a.cfg.MaxTimeout)
}

// spec is a ContainerSpec with the wall-time limit it runs under.
type spec struct {
	ContainerSpec
	timeout time.Duration
}

// containerSpec decides the container, applying the sandbox whatever the
// image asks for: read-only datasets and root file system, no network, no
// capabilities, no new privileges, a non-root user and resource limits.
func (t *task) containerSpec(img ImageInfo) (spec, error) {
	job, cfg := t.job, t.a.cfg
	s := ContainerSpec{
		Name:  fmt.Sprintf("gef-%s-%d", strings.ToLower(job.JobID), job.Attempt),
		Image: job.ImageDigest,
		// The whole argv is fixed by the manager, so the image's own
		// ENTRYPOINT and CMD cannot add to it.
		Entrypoint: job.Argv[:1],
		Cmd:        job.Argv[1:],
		Env:        []string{"GEF_JOB_ID=" + job.JobID},
		User:       cfg.User,
		Labels: map[string]string{LabelJob: job.JobID, LabelAttempt: strconv.Itoa(job.Attempt),
			LabelNode: cfg.Name, LabelManager: cfg.Manager, LabelInstance: t.a.instance},
		Tmpfs:           map[string]string{"/tmp": "rw,nosuid,nodev,size=256m"},
		ReadOnlyRootfs:  true,
		Network:         "none",
		DropAllCaps:     true,
		NoNewPrivileges: true,
		MemoryBytes:     cfg.DefaultMemoryBytes,
		NanoCPUs:        int64(cfg.DefaultCPUs * 1e9),
		PidsLimit:       cfg.PidsLimit,
		LogMaxBytes:     cfg.LogLimitBytes,
	}
	if u := img.User; u != "" && u != "root" && u != "0" && !strings.HasPrefix(u, "0:") && !strings.HasPrefix(u, "root:") {
		s.User = u
	}
	if job.Network {
		s.Network = "bridge"
	}
	if m := job.Resources.MemoryBytes; m > 0 {
		s.MemoryBytes = min(m, cfg.MaxMemoryBytes)
	}
	if c := job.Resources.CPUs; c > 0 {
		s.NanoCPUs = int64(min(c, cfg.MaxCPUs) * 1e9)
	}
	for _, m := range job.Mounts {
		dir, ok := t.a.datasets[m.Dataset]
		if !ok {
			return spec{}, fmt.Errorf("dataset %q is not on node %s", m.Dataset, cfg.Name)
		}
		s.Mounts = append(s.Mounts, BindMount{Source: dir, Target: m.Path, ReadOnly: true})
	}
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return spec{}, fmt.Errorf("job directory: %w", err)
	}
	byDir := map[string]string{}
	for _, f := range job.Files {
		host := filepath.Join(t.dir, "in", f.Input)
		if err := os.MkdirAll(host, 0o755); err != nil {
			return spec{}, fmt.Errorf("input %s: %w", f.Input, err)
		}
		if err := os.WriteFile(filepath.Join(host, path.Base(f.Path)), []byte(f.Content), 0o644); err != nil {
			return spec{}, fmt.Errorf("input %s: %w", f.Input, err)
		}
		byDir[path.Dir(f.Path)] = host
	}
	for target, host := range byDir {
		s.Mounts = append(s.Mounts, BindMount{Source: host, Target: target, ReadOnly: true})
	}
	for _, o := range job.Outputs {
		host := t.outputDir(o.Name)
		if err := volumes.MakeWritable(host); err != nil {
			return spec{}, fmt.Errorf("output %s: %w", o.Name, err)
		}
		s.Mounts = append(s.Mounts, BindMount{Source: host, Target: o.Path})
	}
	return spec{ContainerSpec: s, timeout: t.timeout()}, nil
}

func (t *task) outputDir(name string) string { return filepath.Join(t.dir, "out", name) }

// report queues an intermediate report in the outbox, which delivers it
// whenever the manager is there. If the work directory cannot be written,
// it is sent at once instead, once.
func (t *task) report(ctx context.Context, r gef.JobReport) {
	if _, err := t.a.outbox.report(t.job.JobID, t.job.Attempt, r); err != nil {
		t.a.log.Error("queueing a report; sending it directly", "job", t.job.JobID, "state", r.State, "err", err)
		r.Attempt = t.job.Attempt
		if _, err := t.a.mgr.Report(ctx, t.job.JobID, r); err != nil {
			t.a.log.Warn("report lost", "job", t.job.JobID, "state", r.State, "err", err)
		}
	}
}

// reportFinal queues the report that ends the attempt. The channel gets
// the manager's answer once it has taken it.
func (t *task) reportFinal(_ context.Context, r gef.JobReport) (<-chan error, error) {
	return t.a.outbox.report(t.job.JobID, t.job.Attempt, r)
}

func (t *task) stopReasonText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopReason
}
