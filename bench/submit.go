package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// submitDataset is held only by a registered node that never polls, so the
// jobs of the submit figure stay queued for the list figure and no other
// figure's node can take them.
const submitDataset = "bench-submit"

// submitUsers own the submitted jobs, so lists by owner have a choice.
const submitUsers = 4

// historyDatasets are the other datasets of the list figure's history; the
// holder registers them too, so they are real datasets to filter by.
const historyA, historyB = "bench-history-a", "bench-history-b"

// apiTransport keeps connections open as a real client would; the default
// keeps two per host, and a benchmark of many clients would measure TCP
// handshakes instead.
func apiTransport(conns int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = conns, conns
	return t
}

func apiClient(b *bench, token string, t *http.Transport) *client.Client {
	return client.New(b.stack.URL, token, client.WithHTTPClient(&http.Client{Transport: t}))
}

// submitHolder registers, through the node protocol, a node that holds the
// submit figure's dataset and then stays silent: submissions are accepted
// and their jobs wait, as they would for a busy or absent node.
func submitHolder(ctx context.Context, b *bench) error {
	const name = "bench-submit-holder"
	secret, err := b.stack.NodeToken(ctx, name)
	if err != nil {
		return err
	}
	c := client.New(b.stack.URL, secret)
	return c.Register(ctx, gef.NodeRegistration{Name: name, Capacity: 1, AgentVersion: "bench",
		Datasets: []gef.NodeDataset{{Name: submitDataset, Size: 1, Files: 1},
			{Name: historyA, Size: 1, Files: 1}, {Name: historyB, Size: 1, Files: 1}}})
}

// benchUser makes a user and a token for it, and returns the token.
func benchUser(ctx context.Context, b *bench, name string) (string, error) {
	if _, err := b.stack.Admin.CreateUser(ctx, name, gef.RoleUser, ""); err != nil {
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
			return "", fmt.Errorf("user %s: %w", name, err)
		}
	}
	tok, err := b.stack.Admin.CreateToken(ctx, name, "bench", 0)
	if err != nil {
		return "", fmt.Errorf("user %s: %w", name, err)
	}
	return tok.Secret, nil
}

// submitJobs submits n jobs on submitDataset from clients concurrent
// clients, each signed in as one of the bench users, and returns each
// submission's latency and the wall time of the whole.
func submitJobs(ctx context.Context, b *bench, n, clients int) ([]float64, time.Duration, error) {
	t := apiTransport(clients)
	defer t.CloseIdleConnections()
	cs := make([]*client.Client, submitUsers)
	for i := range cs {
		tok, err := benchUser(ctx, b, fmt.Sprintf("bench-user-%d", i))
		if err != nil {
			return nil, 0, err
		}
		cs[i] = apiClient(b, tok, t)
	}
	noReuse := false
	lat := make([]float64, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[w%len(cs)]
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				req := gef.JobRequest{Service: b.stack.Service.Name, Dataset: submitDataset, Reuse: &noReuse,
					Params: map[string]any{"lines": i % 100}}
				t0 := time.Now()
				if _, err := c.Submit(ctx, req); err != nil {
					errs <- fmt.Errorf("submission %d: %w", i, err)
					return
				}
				lat[i] = ms(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return nil, 0, err
	}
	return lat, wall, nil
}

// submitRate measures how many jobs per second the manager accepts:
// validated, stored and queued, answered 201 to the client. Nothing drains
// the queue meanwhile; the jobs stay for the list figure.
func submitRate(ctx context.Context, b *bench) error {
	if err := submitHolder(ctx, b); err != nil {
		return err
	}
	// A short warm-up, so connection set-up and first queries are not in
	// the figure; its jobs count towards the list figure's table.
	if _, _, err := submitJobs(ctx, b, max(b.cfg.Submitters*10, 50), b.cfg.Submitters); err != nil {
		return err
	}
	cpu0, err := stackCPU(ctx, b)
	if err != nil {
		return err
	}
	lat, wall, err := submitJobs(ctx, b, b.cfg.SubmitJobs, b.cfg.Submitters)
	if err != nil {
		return err
	}
	cpu1, err := stackCPU(ctx, b)
	if err != nil {
		return err
	}
	perJob := func(d time.Duration) float64 { return ms(d) / float64(len(lat)) }
	b.res.detail("submit_manager_cpu_ms_per_job", perJob(cpu1.manager-cpu0.manager))
	b.res.detail("submit_db_cpu_ms_per_job", perJob(cpu1.db-cpu0.db))
	rate := float64(len(lat)) / wall.Seconds()
	set(&b.res.SubmitPerS, rate)
	b.res.detail("submit_jobs", float64(len(lat)))
	b.res.detail("submit_clients", float64(b.cfg.Submitters))
	b.res.detail("submit_seconds", wall.Seconds())
	b.res.detail("submit_p50_ms", quantile(lat, 0.5))
	b.res.detail("submit_p99_ms", quantile(lat, 0.99))
	b.res.add(row{
		Figure: fmt.Sprintf("accepted submissions (%d clients)", b.cfg.Submitters),
		GEF:    fmt.Sprintf("%d jobs in %.1f s", len(lat), wall.Seconds()),
		Result: fmt.Sprintf("%.0f jobs/s (p50 %s, p99 %s)", rate, fmtMS(quantile(lat, 0.5)), fmtMS(quantile(lat, 0.99))),
		Target: "≥ 2,000 jobs/s",
		Met:    rate >= 2000,
	})
	return nil
}

// cpuSplit is the CPU time used so far by the manager process and by the
// database's server processes for its connections.
type cpuSplit struct{ manager, db time.Duration }

// stackCPU reads the manager's CPU time, and that of the PostgreSQL backends
// serving our database, when they run on this machine (the test servers
// do); a backend that ended since is not counted, so db is a lower bound.
func stackCPU(ctx context.Context, b *bench) (cpuSplit, error) {
	var c cpuSplit
	st, err := readProcStat(b.stack.Manager.Pid())
	if err != nil {
		return c, err
	}
	c.manager = st.CPU
	rows, err := b.stack.db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, b.stack.dbName)
	if err != nil {
		return c, fmt.Errorf("database backends: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return c, err
		}
		if st, err := readProcStat(pid); err == nil {
			c.db += st.CPU
		}
	}
	return c, rows.Err()
}
