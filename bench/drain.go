package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// queueDrain drains cfg.DrainJobs trivial jobs through GEF, submitted all
// at once to a node of cfg.Concurrency slots, against as many of the same
// containers run directly by cfg.Concurrency workers (figure 3). Each side
// runs in two halves, in the order GEF, direct, direct, GEF, so that a
// drift in the machine's load falls on both alike.
func queueDrain(ctx context.Context, b *bench) error {
	const name = "drain"
	dir, err := b.stack.Dataset(name, benchDatasetFiles())
	if err != nil {
		return err
	}
	node, err := b.stack.StartNode(ctx, name, map[string]string{name: dir}, b.cfg.Concurrency)
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

	n, conc := b.cfg.DrainJobs, b.cfg.Concurrency
	h1, h2 := n/2, n-n/2
	plan := []struct {
		side string
		jobs int
	}{{"gef", h1}, {"direct", h1}, {"direct", h2}, {"gef", h2}}
	var gefTime, directTime, managerCPU, nodeCPU time.Duration
	var xacts int64
	for _, p := range plan {
		side, jobs := p.side, p.jobs
		switch side {
		case "gef":
			m0, err0 := readProcStat(b.stack.Manager.Pid())
			n0, err1 := readProcStat(node.Pid())
			x0, err4 := drainXacts(ctx, b)
			took, err := drainGEF(ctx, b, name, jobs)
			if err != nil {
				return err
			}
			m1, err2 := readProcStat(b.stack.Manager.Pid())
			n1, err3 := readProcStat(node.Pid())
			x1, err5 := drainXacts(ctx, b)
			if err := errors.Join(err0, err1, err2, err3, err4, err5); err != nil {
				return err
			}
			xacts += x1 - x0
			managerCPU += m1.CPU - m0.CPU
			nodeCPU += n1.CPU - n0.CPU
			gefTime += took
		case "direct":
			took, err := drainDirect(ctx, d, jobs, conc)
			if err != nil {
				return err
			}
			directTime += took
		}
		b.log.Info("drain half", "side", side, "jobs", jobs, "gef_s", gefTime.Seconds(), "direct_s", directTime.Seconds())
	}
	gefRate := float64(n) / gefTime.Seconds()
	directRate := float64(n) / directTime.Seconds()
	ratio := gefRate / directRate
	set(&b.res.DrainRatio, ratio)
	b.res.detail("drain_jobs", float64(n))
	b.res.detail("drain_concurrency", float64(conc))
	b.res.detail("drain_gef_jobs_per_s", gefRate)
	b.res.detail("drain_direct_jobs_per_s", directRate)
	b.res.detail("drain_gef_s", gefTime.Seconds())
	b.res.detail("drain_direct_s", directTime.Seconds())
	// What GEF's own processes spent per job, beside the engine's work.
	b.res.detail("drain_manager_cpu_ms_per_job", ms(managerCPU)/float64(n))
	b.res.detail("drain_node_cpu_ms_per_job", ms(nodeCPU)/float64(n))
	b.res.detail("drain_db_transactions_per_job", float64(xacts)/float64(n))
	b.log.Info("queue drain", "gef_per_s", round(gefRate), "direct_per_s", round(directRate), "ratio", round(ratio))
	b.res.add(row{Figure: fmt.Sprintf("queue drain (%d jobs, conc %d)", n, conc),
		GEF: fmt.Sprintf("%.2f jobs/s", gefRate), Baseline: fmt.Sprintf("%.2f jobs/s", directRate),
		Result: fmtRatio(ratio), Target: "≥ 0.90", Met: ratio >= 0.9})
	return nil
}

// drainGEF submits jobs trivial jobs on the dataset name from a few
// concurrent clients and waits until all have ended. It returns the time
// from the first submission to the last job's end, as the manager recorded
// it.
func drainGEF(ctx context.Context, b *bench, name string, jobs int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := gef.JobRequest{Service: b.stack.Service.Name, Dataset: name, Reuse: new(bool)}
	ids := make([]string, jobs)
	start := time.Now()
	err := parallel(ctx, 8, jobs, func(i int) error {
		j, err := b.stack.Admin.Submit(ctx, req)
		if err != nil {
			cancel()
			return err
		}
		ids[i] = j.ID
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	mine := map[string]bool{}
	for _, id := range ids {
		mine[id] = true
	}
	if err := drainWait(ctx, b.stack.Admin, name); err != nil {
		return 0, err
	}

	// Every job must have succeeded; the last end is the manager's record.
	var last time.Time
	failed, found := 0, 0
	var firstFailure string
	f := gef.JobFilter{Node: name, Limit: 1000}
	for {
		page, err := b.stack.Admin.Jobs(ctx, f)
		if err != nil {
			return 0, fmt.Errorf("list jobs: %w", err)
		}
		for _, j := range page.Items {
			if !mine[j.ID] {
				continue
			}
			found++
			if j.State != gef.JobSucceeded {
				if failed++; failed == 1 {
					firstFailure = fmt.Sprintf("job %s ended %s: %s", j.ID, j.State, j.Reason)
				}
				continue
			}
			if t := j.Timestamps.Finished; t != nil && t.After(last) {
				last = *t
			}
		}
		if page.NextPageToken == "" {
			break
		}
		f.PageToken = page.NextPageToken
	}
	switch {
	case failed > 0:
		return 0, fmt.Errorf("%d of %d jobs did not succeed; the first: %s", failed, jobs, firstFailure)
	case found != jobs:
		return 0, fmt.Errorf("listed %d of the %d jobs submitted", found, jobs)
	}
	return last.Sub(start), nil
}

// drainWait waits until no job of the node name is left unfinished. It asks
// the manager for one job in each state that is not final, stopping at the
// first state that has any: while the queue is long that is a single list
// call. It asks once a second: the drain's end is read off the jobs' own
// timestamps, so asking more often would gain nothing and only load the
// manager it measures.
func drainWait(ctx context.Context, c *client.Client, name string) error {
	open := []gef.JobState{gef.JobQueued, gef.JobAssigned, gef.JobFetchingImage, gef.JobRunning, gef.JobStaging}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		left := false
		for _, s := range open {
			// Queued jobs have no node yet; figures run one at a time,
			// so any queued job is this figure's.
			f := gef.JobFilter{State: s, Node: name, Limit: 1}
			if s == gef.JobQueued {
				f.Node = ""
			}
			page, err := c.Jobs(ctx, f)
			if err != nil {
				return fmt.Errorf("list %s jobs: %w", s, err)
			}
			if len(page.Items) > 0 {
				left = true
				break
			}
		}
		if !left {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// drainDirect runs jobs direct containers with conc workers and returns the
// time from the first create to the last removal.
func drainDirect(ctx context.Context, d *direct, jobs, conc int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	err := parallel(ctx, conc, jobs, func(int) error {
		if _, err := d.run(ctx); err != nil {
			cancel()
			return err
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	return took, nil
}

// drainXacts counts the transactions committed in the stack's database so
// far: every statement outside a transaction counts as one. PostgreSQL
// gathers the count lazily, so it is a measure over many jobs, not one.
func drainXacts(ctx context.Context, b *bench) (int64, error) {
	db, err := sql.Open("postgres", b.stack.DSN)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRowContext(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("database statistics: %w", err)
	}
	return n, nil
}
