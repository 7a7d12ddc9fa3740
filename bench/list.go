package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
	"github.com/oklog/ulid/v2"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// listPages measures pages of GET /api/v1/jobs with cfg.ListJobs jobs in
// the table: the first page, pages deep in the list reached by the cursor
// the API returns, and pages filtered by state, service, dataset and owner,
// all at the default page size, one request at a time.
func listPages(ctx context.Context, b *bench) error {
	db, err := sql.Open("postgres", b.stack.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := submitHolder(ctx, b); err != nil {
		return err
	}
	var have int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs`).Scan(&have); err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	if have == 0 { // run on its own: the history copies a real submission
		if _, _, err := submitJobs(ctx, b, 50, b.cfg.Submitters); err != nil {
			return err
		}
		have = 50
	}
	t0 := time.Now()
	added, err := fillHistory(ctx, db, b.cfg.ListJobs-have)
	if err != nil {
		return err
	}
	b.log.Info("history filled", "submitted", have, "inserted", added, "took", time.Since(t0).Round(time.Millisecond))
	b.res.detail("list_jobs", float64(have+added))
	b.res.detail("list_jobs_inserted_by_sql", float64(added))

	userTok, err := benchUser(ctx, b, "bench-user-1")
	if err != nil {
		return err
	}
	t := apiTransport(2)
	defer t.CloseIdleConnections()
	admin, user := apiClient(b, b.stack.Token, t), apiClient(b, userTok, t)

	// Cursors deep in the list, as the API hands them out: walk it in
	// pages of the largest size and keep the tokens met on the way.
	var deep []string
	for tok := ""; len(deep) < 20; {
		p, err := admin.Jobs(ctx, gef.JobFilter{Limit: 1000, PageToken: tok})
		if err != nil {
			return err
		}
		if p.NextPageToken == "" {
			break
		}
		tok = p.NextPageToken
		if len(deep)*1000 < (have+added)/2 || len(deep) < 2 { // keep the deep ones
			deep = append(deep, tok)
		}
	}

	kinds := []struct {
		name string
		c    *client.Client
		f    func(i int) gef.JobFilter
	}{
		{"first", admin, func(int) gef.JobFilter { return gef.JobFilter{} }},
		{"deep", admin, func(i int) gef.JobFilter { return gef.JobFilter{PageToken: deep[i%len(deep)]} }},
		{"state", admin, func(i int) gef.JobFilter {
			return gef.JobFilter{State: []gef.JobState{gef.JobSucceeded, gef.JobQueued, gef.JobFailed, gef.JobCanceled}[i%4]}
		}},
		{"service", admin, func(int) gef.JobFilter { return gef.JobFilter{Service: b.stack.Service.Name} }},
		{"dataset", admin, func(i int) gef.JobFilter {
			return gef.JobFilter{Dataset: []string{submitDataset, historyA, historyB}[i%3]}
		}},
		{"owner", user, func(int) gef.JobFilter { return gef.JobFilter{} }}, // a user's own jobs
	}
	if len(deep) == 0 {
		kinds = append(kinds[:1], kinds[2:]...)
	}
	var all []float64
	per := map[string][]float64{}
	next := map[string]string{} // each kind follows its own cursor a few pages
	for i := range b.cfg.ListPages {
		k := kinds[i%len(kinds)]
		round := i / len(kinds)
		f := k.f(round)
		if tok := next[k.name]; tok != "" && round%4 != 0 {
			f.PageToken = tok
		}
		t0 := time.Now()
		p, err := k.c.Jobs(ctx, f)
		if err != nil {
			return fmt.Errorf("list %s: %w", k.name, err)
		}
		d := ms(time.Since(t0))
		next[k.name] = p.NextPageToken
		all = append(all, d)
		per[k.name] = append(per[k.name], d)
	}
	p50, p99 := quantile(all, 0.5), quantile(all, 0.99)
	set(&b.res.ListP99MS, p99)
	b.res.detail("list_p50_ms", p50)
	b.res.detail("list_pages", float64(len(all)))
	for name, xs := range per {
		b.res.detail("list_"+name+"_p50_ms", quantile(xs, 0.5))
		b.res.detail("list_"+name+"_p99_ms", quantile(xs, 0.99))
	}
	// The submitted jobs wait on a node that never polls. Left queued,
	// they would slow every other node's claim (the claim query walks the
	// queue oldest first and they are oldest), so the figures after this
	// one would measure that backlog: they are canceled, through the API.
	t1 := time.Now()
	canceled, err := cancelQueued(ctx, b)
	if err != nil {
		return err
	}
	b.log.Info("queued jobs canceled", "jobs", canceled, "took", time.Since(t1).Round(time.Millisecond))
	b.res.add(row{
		Figure: fmt.Sprintf("list page p99 (%d jobs)", have+added),
		GEF:    fmt.Sprintf("%d pages, p50 %s", len(all), fmtMS(p50)),
		Result: fmtMS(p99),
		Target: "≤ 50 ms",
		Met:    p99 <= 50,
	})
	return nil
}

// fillHistory inserts n finished and queued jobs older than every job in
// the table, in the shape the store writes (the job row copied from a real
// submission, its input, its record, its attempt and outputs), so the list
// figure meets a long history without waiting for n submissions.
func fillHistory(ctx context.Context, db *sql.DB, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	var oldest string
	if err := db.QueryRowContext(ctx, `SELECT MIN(id) FROM jobs`).Scan(&oldest); err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	first, err := ulid.ParseStrict(oldest)
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	// A month of history before the oldest real job, oldest first.
	end := ulid.Time(first.Time()).Add(-time.Second)
	start := end.Add(-30 * 24 * time.Hour)
	step := end.Sub(start) / time.Duration(n)
	states := []gef.JobState{gef.JobSucceeded, gef.JobSucceeded, gef.JobSucceeded, gef.JobSucceeded, gef.JobSucceeded,
		gef.JobSucceeded, gef.JobSucceeded, gef.JobFailed, gef.JobCanceled, gef.JobSystemError}
	datasets := []string{historyA, historyA, historyB, submitDataset}
	const batch = 5000
	for done := 0; done < n; done += batch {
		m := min(batch, n-done)
		ids, st, owners, dss, nodes := make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		queued, finished := make([]int64, m), make([]int64, m)
		for i := range m {
			k := done + i
			at := start.Add(time.Duration(k) * step)
			id, err := ulid.New(ulid.Timestamp(at), rand.Reader)
			if err != nil {
				return done, err
			}
			ids[i], st[i] = id.String(), string(states[k%len(states)])
			owners[i] = fmt.Sprintf("bench-user-%d", k%submitUsers)
			dss[i] = datasets[k%len(datasets)]
			nodes[i] = fmt.Sprintf("bench-history-node-%d", k%10)
			queued[i], finished[i] = at.UnixMicro(), at.Add(3*time.Second).UnixMicro()
		}
		if err := insertHistory(ctx, db, ids, st, owners, dss, nodes, queued, finished); err != nil {
			return done, err
		}
	}
	// What autovacuum does soon after on a real site, done now so the
	// planner knows the table it plans for.
	if _, err := db.ExecContext(ctx, `ANALYZE jobs, job_inputs, job_outputs, job_repro, job_attempts`); err != nil {
		return n, fmt.Errorf("history: analyze: %w", err)
	}
	return n, nil
}

func insertHistory(ctx context.Context, db *sql.DB, ids, states, owners, datasets, nodes []string, queued, finished []int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer tx.Rollback()
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO jobs (id, state, reason, exit_code, service, version, image_digest, node, owner, params, argv, spec,
			attempt, queued_at, assigned_at, running_at, staging_at, finished_at, max_attempts, retry_failed)
		SELECT h.id, h.state, CASE h.state WHEN 'system_error' THEN 'the node was lost' ELSE '' END,
			CASE h.state WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 END,
			t.service, t.version, t.image_digest, h.node, h.owner, t.params, t.argv, t.spec,
			1, h.queued, h.queued + 20000, h.queued + 200000, h.finished - 500000, h.finished, t.max_attempts, t.retry_failed
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS h(id, state, owner, node, queued, finished),
			(SELECT * FROM jobs ORDER BY id LIMIT 1) t`,
			[]any{pq.Array(ids), pq.Array(states), pq.Array(owners), pq.Array(nodes), pq.Array(queued), pq.Array(finished)}},
		{`INSERT INTO job_inputs (job_id, input, dataset)
		SELECT h.id, t.input, h.dataset FROM unnest($1::text[], $2::text[]) AS h(id, dataset),
			(SELECT input FROM job_inputs ORDER BY job_id DESC LIMIT 1) t`,
			[]any{pq.Array(ids), pq.Array(datasets)}},
		{`INSERT INTO job_repro (job_id, visibility) SELECT id, 'private' FROM unnest($1::text[]) AS id`,
			[]any{pq.Array(ids)}},
		{`INSERT INTO job_attempts (job_id, attempt, node, state, exit_code, assigned_at, running_at, finished_at)
		SELECT h.id, 1, h.node, h.state, CASE h.state WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 END,
			h.queued + 20000, h.queued + 200000, h.finished
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS h(id, state, node, queued, finished)`,
			[]any{pq.Array(ids), pq.Array(states), pq.Array(nodes), pq.Array(queued), pq.Array(finished)}},
		{`INSERT INTO job_outputs (job_id, output, path, size, sha256)
		SELECT h.id, 'result', f.path, f.size, md5(h.id || f.path) || md5(f.path || h.id)
		FROM unnest($1::text[], $2::text[]) AS h(id, state),
			(VALUES ('argv.json', 120), ('listing.txt', 300), ('nested/deep/data.bin', 1024)) AS f(path, size)
		WHERE h.state = 'succeeded'`,
			[]any{pq.Array(ids), pq.Array(states)}},
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	return tx.Commit()
}

// cancelQueued cancels the queued jobs on submitDataset, from several
// clients at once, and returns how many it canceled.
func cancelQueued(ctx context.Context, b *bench) (int, error) {
	t := apiTransport(b.cfg.Submitters)
	defer t.CloseIdleConnections()
	admin := apiClient(b, b.stack.Token, t)
	var ids []string
	for tok := ""; ; {
		p, err := admin.Jobs(ctx, gef.JobFilter{State: gef.JobQueued, Dataset: submitDataset, Limit: 1000, PageToken: tok})
		if err != nil {
			return 0, fmt.Errorf("queued jobs: %w", err)
		}
		for _, j := range p.Items {
			ids = append(ids, j.ID)
		}
		if tok = p.NextPageToken; tok == "" {
			break
		}
	}
	err := parallel(ctx, b.cfg.Submitters, len(ids), func(i int) error {
		if _, err := admin.Cancel(ctx, ids[i]); err != nil {
			return fmt.Errorf("cancel %s: %w", ids[i], err)
		}
		return nil
	})
	return len(ids), err
}
