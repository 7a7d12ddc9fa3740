package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/volumes"
)

// jobOverhead measures a GEF job of the trivial service against the same
// container run directly on the engine, interleaved run by run, and reads
// off the job's own timestamps where GEF spends the difference and how
// long it takes from a submission to its container's start (figures 1
// and 2).
func jobOverhead(ctx context.Context, b *bench) error {
	const name = "overhead"
	dir, err := b.stack.Dataset(name, benchDatasetFiles())
	if err != nil {
		return err
	}
	node, err := b.stack.StartNode(ctx, name, map[string]string{name: dir}, 4)
	if err != nil {
		return err
	}
	defer b.stack.StopNode(node)
	outs, err := b.stack.Dir(name + "-direct")
	if err != nil {
		return err
	}
	d, err := newDirect(ctx, b, name, dir, outs)
	if err != nil {
		return err
	}
	defer d.close()

	req := gef.JobRequest{Service: b.stack.Service.Name, Dataset: name, Reuse: new(bool)}
	for range 2 { // warm both paths: the node's first job, the engine's caches
		if _, err := runGEFJob(ctx, b, req); err != nil {
			return err
		}
		if _, err := d.run(ctx); err != nil {
			return err
		}
	}

	var (
		gefWall, gefFinal, dockWall, createStart                []float64
		rtt, toQueued, queueWait, toRunning, running, stageTime []float64
		lag, dispatch                                           []float64
	)
	for range b.cfg.Runs {
		g, err := runGEFJob(ctx, b, req)
		if err != nil {
			return err
		}
		r, err := d.run(ctx)
		if err != nil {
			return err
		}
		ts := g.job.Timestamps
		gefWall = append(gefWall, ms(g.learned.Sub(g.sent)))
		gefFinal = append(gefFinal, ms(ts.Finished.Sub(ts.Queued)))
		rtt = append(rtt, ms(g.answered.Sub(g.sent)))
		toQueued = append(toQueued, ms(ts.Queued.Sub(g.sent)))
		queueWait = append(queueWait, ms(ts.Assigned.Sub(ts.Queued)))
		toRunning = append(toRunning, ms(ts.Running.Sub(*ts.Assigned)))
		running = append(running, ms(ts.Staging.Sub(*ts.Running)))
		stageTime = append(stageTime, ms(ts.Finished.Sub(*ts.Staging)))
		lag = append(lag, ms(g.learned.Sub(*ts.Finished)))
		// The node stamps running right after the engine's start call
		// returns, as the baseline's create-and-start ends.
		dispatch = append(dispatch, ms(ts.Running.Sub(g.sent)))
		dockWall = append(dockWall, ms(r.wall))
		createStart = append(createStart, ms(r.createStart))
	}
	engine := median(createStart)
	for i := range dispatch {
		dispatch[i] -= engine
	}

	gm, dm := median(gefWall), median(dockWall)
	ratio, over := gm/dm, gm-dm
	p50, p99 := median(dispatch), quantile(dispatch, 0.99)
	set(&b.res.JobOverheadRatio, ratio)
	set(&b.res.JobOverheadMS, over)
	set(&b.res.DispatchP50MS, p50)
	set(&b.res.DispatchP99MS, p99)
	r := b.res
	r.detail("overhead_runs", float64(b.cfg.Runs))
	r.detail("overhead_gef_median_ms", gm)
	r.detail("overhead_gef_p95_ms", quantile(gefWall, 0.95))
	r.detail("overhead_gef_queued_to_finished_median_ms", median(gefFinal))
	r.detail("overhead_gef_queued_to_finished_p95_ms", quantile(gefFinal, 0.95))
	r.detail("overhead_docker_median_ms", dm)
	r.detail("overhead_docker_p95_ms", quantile(dockWall, 0.95))
	r.detail("overhead_phase_submit_rtt_median_ms", median(rtt))
	r.detail("overhead_phase_send_to_queued_median_ms", median(toQueued))
	r.detail("overhead_phase_queue_wait_median_ms", median(queueWait))
	r.detail("overhead_phase_assigned_to_running_median_ms", median(toRunning))
	r.detail("overhead_phase_running_to_staging_median_ms", median(running))
	r.detail("overhead_phase_staging_to_finished_median_ms", median(stageTime))
	r.detail("overhead_phase_notify_lag_median_ms", median(lag))
	r.detail("dispatch_engine_create_start_median_ms", engine)
	r.detail("dispatch_engine_create_start_p99_ms", quantile(createStart, 0.99))

	b.log.Info("job overhead", "gef_ms", round(gm), "docker_ms", round(dm), "ratio", round(ratio),
		"dispatch_p50_ms", round(p50), "dispatch_p99_ms", round(p99))
	r.add(row{Figure: "job wall time (median)", GEF: fmtMS(gm), Baseline: fmtMS(dm),
		Result: fmt.Sprintf("%s, +%s", fmtRatio(ratio), fmtMS(over)), Target: "≤ 1.10, ≤ 100 ms",
		Met: ratio <= 1.10 && over <= 100})
	r.add(row{Figure: "job wall time (p95)", GEF: fmtMS(quantile(gefWall, 0.95)), Baseline: fmtMS(quantile(dockWall, 0.95)),
		Result: fmtRatio(quantile(gefWall, 0.95) / quantile(dockWall, 0.95)), Target: "-", Met: true})
	r.add(row{Figure: "  queue, to running, container, staging", GEF: fmt.Sprintf("%s, %s, %s, %s",
		fmtMS(median(queueWait)), fmtMS(median(toRunning)), fmtMS(median(running)), fmtMS(median(stageTime))),
		Baseline: "-", Result: "medians", Target: "-", Met: true})
	r.add(row{Figure: "  submit round trip, notification lag", GEF: fmt.Sprintf("%s, %s", fmtMS(median(rtt)), fmtMS(median(lag))),
		Baseline: "-", Result: "medians", Target: "-", Met: true})
	// With a few dozen runs the p99 is close to the slowest run.
	r.add(row{Figure: "dispatch beyond engine p50/p99", GEF: fmt.Sprintf("%s / %s", fmtMS(p50), fmtMS(p99)),
		Baseline: fmt.Sprintf("engine %s", fmtMS(engine)), Result: fmt.Sprintf("%s / %s", fmtMS(p50), fmtMS(p99)),
		Target: "≤ 20 ms / ≤ 100 ms", Met: p50 <= 20 && p99 <= 100})
	return nil
}

// benchDatasetFiles is the small dataset the trivial jobs read.
func benchDatasetFiles() map[string][]byte {
	return map[string][]byte{
		"README.txt":        []byte("a small dataset for the benchmark\n"),
		"samples/a.csv":     []byte("x,y\n1,2\n3,4\n"),
		"samples/b.csv":     []byte("x,y\n5,6\n7,8\n"),
		"samples/blob.bin":  make([]byte, 4096),
		"meta/about.json":   []byte(`{"name":"bench"}` + "\n"),
		"meta/licence.text": []byte("CC0\n"),
	}
}

// gefRun is one job, timed by the client: sent is just before the submit
// request, answered when its answer came, learned when the client knew the
// job had ended.
type gefRun struct {
	job                     gef.Job
	sent, answered, learned time.Time
}

// runGEFJob submits req and waits for the job with the client's Wait,
// which learns of the end as the manager records it.
func runGEFJob(ctx context.Context, b *bench, req gef.JobRequest) (gefRun, error) {
	var g gefRun
	g.sent = time.Now()
	j, err := b.stack.Admin.Submit(ctx, req)
	if err != nil {
		return g, fmt.Errorf("submit: %w", err)
	}
	g.answered = time.Now()
	if j, err = b.stack.Admin.Wait(ctx, j.ID, nil); err != nil {
		return g, fmt.Errorf("wait for job %s: %w", j.ID, err)
	}
	g.learned, g.job = time.Now(), j
	if j.State != gef.JobSucceeded {
		return g, fmt.Errorf("job %s ended %s: %s", j.ID, j.State, j.Reason)
	}
	ts := j.Timestamps
	if ts.Assigned == nil || ts.Running == nil || ts.Staging == nil || ts.Finished == nil {
		return g, fmt.Errorf("job %s lacks phase timestamps: %+v", j.ID, ts)
	}
	return g, nil
}

// direct runs the trivial service's container on the engine without GEF,
// as `docker run --rm` does: create, start, wait, remove. The container is
// the one the node makes for the same job: the spec is built as the node
// builds it (same argv, user, sandbox and limits, read off a job the node
// ran) and made by the stack's gef-node/docker runtime, so the engine gets
// the same configuration. Create, Start and Remove are one SDK call each;
// the wait is the SDK's own, without the runtime's follow-up inspect. The
// container's output is not read, so the baseline is if anything cheaper
// than `docker run`, which attaches to it.
type direct struct {
	b      *bench
	sdk    *dockerclient.Client
	spec   agent.ContainerSpec
	outs   string
	prefix string
	n      atomic.Int64
}

// directRun is one direct container: its whole time, and the part from
// before the create call to the return of the start call.
type directRun struct {
	wall, createStart time.Duration
}

// newDirect learns the node's container for the trivial job on the dataset
// named name from one GEF job, and prepares to run it directly with
// outputs under outs.
func newDirect(ctx context.Context, b *bench, name, dataset, outs string) (*direct, error) {
	g, err := runGEFJob(ctx, b, gef.JobRequest{Service: b.stack.Service.Name, Dataset: name, Reuse: new(bool)})
	if err != nil {
		return nil, err
	}
	prov, err := b.stack.Admin.ProvenanceRecord(ctx, g.job.ID)
	if err != nil {
		return nil, fmt.Errorf("provenance of job %s: %w", g.job.ID, err)
	}
	if prov.Limits == nil {
		return nil, fmt.Errorf("job %s: the node reported no limits", g.job.ID)
	}
	sdk, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("the Docker engine: %w", err)
	}
	argv := g.job.Argv
	// The node's defaults (gef-node -container-user, -log-limit) and the
	// sandbox it applies to every job; see agent.task.containerSpec.
	spec := agent.ContainerSpec{
		Image:      g.job.ImageDigest,
		Entrypoint: argv[:1],
		Cmd:        argv[1:],
		Env:        []string{"GEF_JOB_ID=direct"},
		User:       "65534:65534",
		Labels:     map[string]string{"org.eudat.gef.bench": name},
		Mounts: []agent.BindMount{
			{Source: dataset, Target: "/data", ReadOnly: true},
			{Target: "/out"},
		},
		Tmpfs:           map[string]string{"/tmp": "rw,nosuid,nodev,size=256m"},
		ReadOnlyRootfs:  true,
		Network:         "none",
		DropAllCaps:     true,
		NoNewPrivileges: true,
		MemoryBytes:     prov.Limits.MemoryBytes,
		NanoCPUs:        int64(prov.Limits.CPUs * 1e9),
		PidsLimit:       prov.Limits.Pids,
		LogMaxBytes:     64 << 20,
	}
	return &direct{b: b, sdk: sdk, spec: spec, outs: outs, prefix: "gef-bench-" + name + "-" + randomHex(4)}, nil
}

func (d *direct) close() { d.sdk.Close() }

// run runs one container to its end and removes it. It is safe for
// concurrent use.
func (d *direct) run(ctx context.Context) (directRun, error) {
	rt := d.b.stack.Docker
	spec := d.spec
	spec.Name = fmt.Sprintf("%s-%d", d.prefix, d.n.Add(1))
	spec.Mounts = append([]agent.BindMount(nil), d.spec.Mounts...)
	out := filepath.Join(d.outs, spec.Name)
	spec.Mounts[1].Source = out
	var r directRun
	t0 := time.Now()
	// A fresh output directory the container's user can write, as a user
	// of `docker run` would make.
	if err := volumes.MakeWritable(out); err != nil {
		return r, err
	}
	t1 := time.Now()
	id, err := rt.Create(ctx, spec)
	if err != nil {
		return r, err
	}
	if err := rt.Start(ctx, id); err != nil {
		_ = rt.Remove(context.WithoutCancel(ctx), id)
		return r, err
	}
	r.createStart = time.Since(t1)
	resC, errC := d.sdk.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var code int64
	select {
	case res := <-resC:
		code = res.StatusCode
	case err = <-errC:
	}
	if rerr := rt.Remove(context.WithoutCancel(ctx), id); err == nil {
		err = rerr
	}
	r.wall = time.Since(t0)
	switch {
	case err != nil:
		return r, fmt.Errorf("direct container %s: %w", spec.Name, err)
	case code != 0:
		return r, fmt.Errorf("direct container %s exited with code %d", spec.Name, code)
	}
	return r, nil
}
