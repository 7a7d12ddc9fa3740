package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/internal/testimages"
)

// heavyCapacity is the capacity of each node of the heavy tests: four
// nodes on one engine start at most eight containers at once, about what
// two cores keep up with.
const heavyCapacity = 2

// replicaJobs is how many jobs TestFaultTwoManagers runs; GEF_E2E_REPLICA_JOBS
// changes it.
func replicaJobs(t *testing.T) int {
	if v := os.Getenv("GEF_E2E_REPLICA_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GEF_E2E_REPLICA_JOBS=%q", v)
		}
		return n
	}
	return 1000
}

// TestFaultTwoManagers runs two managers on one PostgreSQL, with half the
// nodes polling each: a job submitted to one manager reaches a node held
// by the other at once, and 1,000 jobs run exactly once each.
//
// It is not parallel: the heavy tests take the engine one at a time.
func TestFaultTwoManagers(t *testing.T) {
	// Polls are held long, so a job reaching a node held by the other
	// manager in well under the wait shows the wakeup crossed over.
	s := newStackWith(t, stackConfig{args: []string{"-poll-wait", "20s", "-node-timeout", "30s"}})
	imageID := image(t, s.rt, testimages.TestService)
	m2 := s.startManager("gef-manager-2", "admin2.token")
	shared := dataset(t, map[string]string{"a.txt": "a"})
	var nodes []*proc
	var only2 string
	for i := range 4 {
		name := randomName(fmt.Sprintf("rep%d-", i))
		url, ds := s.url, map[string]string{"shared": shared}
		if i >= 2 {
			url = m2.url
		}
		if i == 3 {
			only2 = name
			ds["only-on-2"] = shared
		}
		nodes = append(nodes, s.nodeVia(url, name, ds, heavyCapacity))
	}
	svc := s.publish(imageID)
	ctx := context.Background()

	// Submitted to the first manager, for a node whose poll the second
	// holds.
	for i := range 5 {
		j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Inputs: map[string]string{"data": "only-on-2"}})
		if err != nil {
			t.Fatal(err)
		}
		j = waitJob(t, s.admin, j.ID, time.Minute, "the job ends", final)
		wait := j.Timestamps.Assigned.Sub(j.Timestamps.Queued)
		if j.State != gef.JobSucceeded || j.Node != only2 || wait > 5*time.Second {
			t.Fatalf("job %d: %s on %s, assigned %s after queueing; polls are held 20 s", i, j.State, j.Node, wait)
		}
		t.Logf("job for a node held by the other manager assigned after %s", wait.Round(time.Millisecond))
	}
	if n := metric(t, m2.url, "gef_wakeups_received_total"); n < 5 {
		t.Fatalf("the second manager received %v wakeups from the first", n)
	}

	managers := []*client.Client{s.admin, client.New(m2.url, s.token)}
	total := replicaJobs(t)
	ids := make([]string, total)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	start := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				j, err := managers[i%2].Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "shared",
					Params: map[string]any{"message": fmt.Sprintf("job %d", i)}})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = j.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	done := waitAll(t, s.admin, ids, 20*time.Minute)
	elapsed := time.Since(start)

	// Exactly once: one attempt each, one container run each.
	perNode := map[string]int{}
	for _, j := range done {
		once(t, j)
		perNode[j.Node]++
	}
	finished := map[string]int{}
	re := regexp.MustCompile(`msg="job finished" .*job=(\w+) attempt=(\d+)`)
	for _, n := range nodes {
		sc := bufio.NewScanner(strings.NewReader(n.output()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				finished[m[1]]++
			}
		}
	}
	for _, id := range ids {
		if finished[id] != 1 {
			t.Fatalf("job %s finished %d times on the nodes", id, finished[id])
		}
	}
	checkStored(t, s, done)
	t.Logf("%d jobs on two managers and four nodes in %s (%.1f jobs/s); per node %v", total, elapsed.Round(time.Second),
		float64(total)/elapsed.Seconds(), perNode)
}

// waitAll waits until every job is final and returns them.
func waitAll(t *testing.T, c *client.Client, ids []string, timeout time.Duration) map[string]gef.Job {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	done := map[string]gef.Job{}
	deadline := time.Now().Add(timeout)
	for len(done) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d of %d jobs are final", timeout, len(done), len(want))
		}
		for _, j := range allJobs(t, c) {
			if want[j.ID] && j.State.Final() {
				done[j.ID] = j
			}
		}
		if len(done) < len(want) {
			time.Sleep(time.Second)
		}
	}
	return done
}

// allJobs lists every job, retrying while the manager is away.
func allJobs(t *testing.T, c *client.Client) []gef.Job {
	t.Helper()
	var out []gef.Job
	token := ""
	for {
		var page gef.Page[gef.Job]
		var err error
		for try := 0; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			page, err = c.Jobs(ctx, gef.JobFilter{Limit: 1000, PageToken: token})
			cancel()
			if err == nil || try == 60 || !client.IsRetryable(err) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		out = append(out, page.Items...)
		if page.NextPageToken == "" {
			return out
		}
		token = page.NextPageToken
	}
}

// checkStored checks that every output of every succeeded job is in the
// object store with its recorded size and sha256, and returns how many
// files it checked.
func checkStored(t *testing.T, s *stack, jobs map[string]gef.Job) int {
	t.Helper()
	ctx := context.Background()
	type file struct {
		key string
		o   gef.OutputFile
	}
	var files []file
	for _, j := range jobs {
		if j.State != gef.JobSucceeded {
			continue
		}
		if len(j.Outputs) == 0 {
			t.Fatalf("succeeded job %s has no outputs", j.ID)
		}
		for _, o := range j.Outputs {
			files = append(files, file{gef.AttemptOutputKey(j.ID, j.Attempt, o.Name, o.Path), o})
		}
	}
	sort.Slice(files, func(a, b int) bool { return files[a].key < files[b].key })
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	work := make(chan file)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				sum, size, err := objectSHA(ctx, s, f.key)
				if err != nil || sum != f.o.SHA256 || size != f.o.Size {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %d bytes sha256 %s, recorded %d %s (%v)", f.key, size, sum, f.o.Size, f.o.SHA256, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d stored outputs do not match their record, e.g. %s", len(bad), bad[0])
	}
	return len(files)
}

// sha256Of hashes what r holds.
func sha256Of(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func objectSHA(ctx context.Context, s *stack, key string) (string, int64, error) {
	obj, err := s.s3.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", 0, err
	}
	defer obj.Close()
	return sha256Of(obj)
}

// metric reads a counter from a manager's /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
