package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// How the simulated agents behave: the production poll wait, two slots
// each, and a job that "runs" this long between its running and staging
// reports.
const (
	scaleCapacity = 2
	scalePollWait = 10 * time.Second
	scaleRunTime  = 500 * time.Millisecond
)

// scale runs cfg.ScaleNodes simulated nodes in this process, each with its
// own node credential and dataset, speaking the node protocol over HTTP as
// gef-node does: register, long-poll, report running, staging and
// succeeded (with no container and no outputs). cfg.ScaleJobs jobs are
// submitted on their datasets at a steady pace while they poll. It
// measures the manager's CPU and peak RSS over the run and the dispatch
// latency: from a job's queued time to its node receiving it.
func scale(ctx context.Context, b *bench) error {
	n, jobs := b.cfg.ScaleNodes, b.cfg.ScaleJobs
	// Submissions spread over this window, so the figure is of a site at
	// work rather than of the submit rate, which has its own figure.
	window := 60 * time.Second
	if b.cfg.Short {
		window = 5 * time.Second
	}

	t0 := time.Now()
	secrets := make([]string, n)
	if err := parallel(ctx, 16, n, func(i int) error {
		s, err := b.stack.NodeToken(ctx, scaleNodeName(i))
		secrets[i] = s
		return err
	}); err != nil {
		return err
	}
	setup := time.Since(t0)
	b.log.Info("scale: node credentials made", "nodes", n, "took", setup.Round(time.Millisecond))
	b.res.detail("scale_credentials_s", setup.Seconds())

	// One connection pool for all agents, big enough for every held poll
	// and the reports beside them.
	t := apiTransport(n*2 + 16)
	defer t.CloseIdleConnections()
	sim := &scaleSim{received: map[string]time.Time{}}
	agents := make([]*scaleAgent, n)
	t1 := time.Now()
	if err := parallel(ctx, 16, n, func(i int) error {
		a := &scaleAgent{name: scaleNodeName(i), c: apiClient(b, secrets[i], t), sim: sim, held: map[string]bool{}}
		agents[i] = a
		return a.c.Register(ctx, gef.NodeRegistration{Name: a.name, Capacity: scaleCapacity, AgentVersion: "bench",
			EngineVersion: "simulated", Datasets: []gef.NodeDataset{{Name: a.name, Size: 1, Files: 1}}})
	}); err != nil {
		return err
	}
	b.res.detail("scale_register_s", time.Since(t1).Seconds())

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); a.run(runCtx) }()
	}
	defer func() { stop(); wg.Wait() }()

	// Sample the manager while the jobs flow.
	pid := b.stack.Manager.Pid()
	start, err := readProcStat(pid)
	if err != nil {
		return err
	}
	peak := atomic.Int64{}
	peak.Store(start.RSSBytes)
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				if st, err := readProcStat(pid); err == nil && st.RSSBytes > peak.Load() {
					peak.Store(st.RSSBytes)
				}
			}
		}
	}()
	wallStart := time.Now()

	// Submit at a steady pace, each job on the dataset of one node.
	queued := make([]time.Time, jobs)
	ids := make([]string, jobs)
	// Enough clients that the pace holds when a submission waits on the
	// load; the pace, not the clients, sets the rate.
	submitters := 32
	interval := window / time.Duration(jobs)
	admin := apiClient(b, b.stack.Token, t)
	noReuse := false
	var next atomic.Int64
	if err := parallel(ctx, submitters, submitters, func(int) error {
		for {
			i := int(next.Add(1)) - 1
			if i >= jobs {
				return nil
			}
			if wait := time.Until(wallStart.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			j, err := admin.Submit(ctx, gef.JobRequest{Service: b.stack.Service.Name, Dataset: scaleNodeName(i % n),
				Reuse: &noReuse, Params: map[string]any{"lines": i % 100}})
			if err != nil {
				return fmt.Errorf("submission %d: %w", i, err)
			}
			ids[i], queued[i] = j.ID, j.Timestamps.Queued
		}
	}); err != nil {
		return err
	}
	submitted := time.Since(wallStart)

	// Wait for every job to end.
	err = waitFor(ctx, 5*time.Minute, "every scale job ended", func() bool { return sim.ended.Load() >= int64(jobs) })
	wall := time.Since(wallStart)
	end, err2 := readProcStat(pid)
	if err != nil {
		return fmt.Errorf("%w (%d of %d ended; %d report errors, last: %v)", err, sim.ended.Load(), jobs, sim.errs.Load(), sim.lastErr())
	}
	if err2 != nil {
		return err2
	}
	stop()
	wg.Wait()
	<-sampleDone

	var lat []float64
	sim.mu.Lock()
	for i, id := range ids {
		if r, ok := sim.received[id]; ok {
			lat = append(lat, ms(r.Sub(queued[i])))
		}
	}
	sim.mu.Unlock()
	if len(lat) != jobs {
		return fmt.Errorf("%d of %d jobs reached their node", len(lat), jobs)
	}
	var down []string
	nodes, err := b.stack.Admin.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, nd := range nodes {
		if nd.State == gef.NodeDown && len(nd.Name) > len("bench-scale-") && nd.Name[:len("bench-scale-")] == "bench-scale-" {
			down = append(down, nd.Name)
		}
	}
	sort.Strings(down)
	if sim.errs.Load() > 0 {
		return fmt.Errorf("%d reports failed, last: %v", sim.errs.Load(), sim.lastErr())
	}

	cores := (end.CPU - start.CPU).Seconds() / wall.Seconds()
	rssMiB := float64(peak.Load()) / (1 << 20)
	set(&b.res.ScaleManagerCPUCores, cores)
	set(&b.res.ScaleManagerRSSMiB, rssMiB)
	b.res.detail("scale_nodes", float64(n))
	b.res.detail("scale_jobs", float64(jobs))
	b.res.detail("scale_seconds", wall.Seconds())
	b.res.detail("scale_submit_seconds", submitted.Seconds())
	b.res.detail("scale_polls", float64(sim.polls.Load()))
	b.res.detail("scale_nodes_down", float64(len(down)))
	b.res.detail("scale_dispatch_p50_ms", quantile(lat, 0.5))
	b.res.detail("scale_dispatch_p99_ms", quantile(lat, 0.99))
	if len(down) > 0 {
		b.log.Warn("scale: the manager declared simulated nodes down", "count", len(down), "first", down[0])
	}
	b.res.add(row{
		Figure: fmt.Sprintf("scale: manager CPU / RSS (%d nodes, %d jobs)", n, jobs),
		GEF: fmt.Sprintf("%d jobs in %.0f s, dispatch p50 %s p99 %s, %d nodes down", jobs, wall.Seconds(),
			fmtMS(quantile(lat, 0.5)), fmtMS(quantile(lat, 0.99)), len(down)),
		Result: fmt.Sprintf("%.2f cores, %.0f MiB", cores, rssMiB),
		Target: "< 1 core, < 512 MiB",
		Met:    cores < 1 && rssMiB < 512 && len(down) == 0,
	})
	return nil
}

func scaleNodeName(i int) string { return fmt.Sprintf("bench-scale-%04d", i) }

// scaleSim is what the simulated agents share: when each job reached its
// node, how many ended, and the errors met.
type scaleSim struct {
	mu       sync.Mutex
	received map[string]time.Time
	last     error
	ended    atomic.Int64
	polls    atomic.Int64
	errs     atomic.Int64
}

func (s *scaleSim) fail(err error) {
	s.errs.Add(1)
	s.mu.Lock()
	s.last = err
	s.mu.Unlock()
}

func (s *scaleSim) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// scaleAgent is one simulated gef-node.
type scaleAgent struct {
	name string
	c    *client.Client
	sim  *scaleSim
	mu   sync.Mutex
	held map[string]bool // the jobs it runs, listed in each poll
}

func (a *scaleAgent) run(ctx context.Context) {
	for ctx.Err() == nil {
		a.mu.Lock()
		req := gef.PollRequest{Free: scaleCapacity - len(a.held), WaitMS: int(scalePollWait / time.Millisecond), Running: []string{}}
		for id := range a.held {
			req.Running = append(req.Running, id)
		}
		a.mu.Unlock()
		sort.Strings(req.Running)
		resp, err := a.c.Poll(ctx, req)
		a.sim.polls.Add(1)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.sim.fail(fmt.Errorf("poll %s: %w", a.name, err))
			select { // as the agent does, back off before polling again
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		now := time.Now()
		a.sim.mu.Lock()
		for _, j := range resp.Jobs {
			a.sim.received[j.JobID] = now
		}
		a.sim.mu.Unlock()
		a.mu.Lock()
		for _, j := range resp.Jobs {
			a.held[j.JobID] = true
		}
		a.mu.Unlock()
		for _, j := range resp.Jobs {
			go a.job(ctx, j)
		}
	}
}

// job reports an assignment through the states the agent reports for a
// job that runs and stages nothing.
func (a *scaleAgent) job(ctx context.Context, j gef.Assignment) {
	defer func() {
		a.mu.Lock()
		delete(a.held, j.JobID)
		a.mu.Unlock()
	}()
	report := func(r gef.JobReport) bool {
		r.Attempt, r.At = j.Attempt, time.Now()
		if _, err := a.c.Report(ctx, j.JobID, r); err != nil {
			if ctx.Err() == nil {
				a.sim.fail(fmt.Errorf("report %s %s: %w", j.JobID, r.State, err))
			}
			return false
		}
		return true
	}
	limits := &gef.Limits{MemoryBytes: j.Resources.MemoryBytes, CPUs: j.Resources.CPUs, TimeoutSeconds: j.Resources.TimeoutSeconds}
	if !report(gef.JobReport{State: gef.JobRunning, ImageDigest: j.ImageDigest, Limits: limits}) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(scaleRunTime):
	}
	if !report(gef.JobReport{State: gef.JobStaging}) {
		return
	}
	zero := 0
	if report(gef.JobReport{State: gef.JobSucceeded, ExitCode: &zero, Outputs: []gef.OutputFile{}}) {
		a.sim.ended.Add(1)
	}
}

// parallel runs fn(0..n-1) on up to workers goroutines and returns the
// first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
