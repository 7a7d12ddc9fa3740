package ui

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
)

// BenchmarkJobsPage serves the jobs list, as an admin, over HTTP, with many
// jobs in the store (GEF_BENCH_JOBS, default 100000): the newest page, a
// page nine tenths down the list, and a filter that matches one job in two
// thousand. Pages follow the store's keyset on job ids, so all three should
// cost about the same however many jobs there are. Results are in
// docs/performance.md.
func BenchmarkJobsPage(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("GEF_BENCH_JOBS")); err == nil && v > 0 {
		n = v
	}
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			dsn := ""
			if db == "postgres" {
				dsn = testenv.Postgres(b)
			}
			bu := setupOn(b, dsn)
			svc := bu.publish(b)
			start := time.Now()
			ids := fillJobs(b, bu, svc, n)
			b.Logf("%s: %d jobs stored in %s", db, n, time.Since(start).Round(time.Millisecond))
			br := bu.user(b, "root", gef.RoleAdmin)
			for _, tc := range []struct{ name, path string }{
				{"newest", "/jobs"},
				{"deep", "/jobs?page=" + ids[n/10]},
				{"rare-owner", "/jobs?owner=rare"},
				{"rare-owner-deep", "/jobs?owner=rare&page=" + ids[n/2]},
			} {
				b.Run(tc.name, func(b *testing.B) {
					for b.Loop() {
						if a := br.get(tc.path); a.status != http.StatusOK {
							b.Fatalf("%s: %d", tc.path, a.status)
						}
					}
				})
			}
		})
	}
}

// fillJobs stores n queued jobs of svc, oldest first, and returns their ids.
// One in 2000 belongs to the user "rare", the rest to "ada".
func fillJobs(b *testing.B, bu *bundle, svc gef.Service, n int) []string {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: []string{"/stats", "--column", "c"},
		Mounts: []gef.Mount{{Input: "tables", Dataset: "tables", Path: "/data"}}, Outputs: svc.Outputs}
	for i := range ids {
		owner := "ada"
		if i%2000 == 0 {
			owner = "rare"
		}
		j := gef.Job{ID: gef.NewID(), State: gef.JobQueued, Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest,
			Inputs: map[string]string{"tables": "tables"}, Params: map[string]any{"column": "c", "bins": 10},
			Argv: spec.Argv, Owner: owner, Timestamps: gef.Timestamps{Queued: time.Now().UTC()}}
		if err := bu.st.CreateJob(ctx, j, spec); err != nil {
			b.Fatal(err)
		}
		ids[i] = j.ID
	}
	return ids
}
