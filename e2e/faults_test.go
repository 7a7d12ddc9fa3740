package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testimages"
)

// The fault-injection suite: real processes, killed, cut off and starved
// of their dependencies while jobs run.

// waitJob polls a job until cond holds, and returns it.
func waitJob(t *testing.T, c *client.Client, id string, timeout time.Duration, what string, cond func(gef.Job) bool) gef.Job {
	t.Helper()
	var j gef.Job
	eventually(t, timeout, what, func() bool {
		var err error
		j, err = c.Job(context.Background(), id)
		return err == nil && cond(j)
	})
	return j
}

func final(j gef.Job) bool { return j.State.Final() }

// jobLog reads a job's whole log.
func jobLog(t *testing.T, c *client.Client, id string) string {
	t.Helper()
	b, err := c.Logs(context.Background(), id)
	if err != nil {
		t.Fatalf("logs of %s: %v", id, err)
	}
	return string(b)
}

// checkLog checks the testsvc's log of a job printing n lines: every line
// is there exactly once, in order, with the start and the end.
func checkLog(t *testing.T, log string, n int) {
	t.Helper()
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	want = append(want, "testsvc: started", "testsvc: done")
	var got []string
	for l := range strings.Lines(log) {
		got = append(got, strings.TrimSuffix(l, "\n"))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the log is not each line exactly once, in order:\n%s", log)
	}
}

// running waits until a job's container runs and its first output is
// stored, and returns the job.
func running(t *testing.T, s *stack, id string) gef.Job {
	t.Helper()
	j := waitJob(t, s.admin, id, time.Minute, "job "+id+" runs", func(j gef.Job) bool { return j.State == gef.JobRunning })
	eventually(t, 30*time.Second, "the job's first output is stored", func() bool {
		b, err := s.admin.Logs(context.Background(), id)
		return err == nil && strings.Contains(string(b), "testsvc: started")
	})
	return j
}

// containerOf returns the job's container, once there is exactly one.
func containerOf(t *testing.T, s *stack, id string) agent.ContainerInfo {
	t.Helper()
	var c agent.ContainerInfo
	eventually(t, 30*time.Second, "the job has one container", func() bool {
		cs, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelJob: id})
		if err != nil || len(cs) != 1 {
			return false
		}
		c = cs[0]
		return true
	})
	return c
}

// noContainers waits until no container of the job is left.
func noContainers(t *testing.T, s *stack, id string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the job's containers are removed", func() bool {
		cs, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelJob: id})
		return err == nil && len(cs) == 0
	})
}

// emptyDir waits until dir holds no entries.
func emptyDir(t *testing.T, dir string, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what+" is empty", func() bool {
		entries, err := os.ReadDir(dir)
		return err == nil && len(entries) == 0
	})
}

// once checks that a job succeeded in one attempt.
func once(t *testing.T, j gef.Job) {
	t.Helper()
	if j.State != gef.JobSucceeded || j.Attempt != 1 || len(j.Attempts) != 1 || j.Attempts[0].State != gef.JobSucceeded {
		t.Fatalf("job %s: %s after %d attempts %+v: %s", j.ID, j.State, j.Attempt, j.Attempts, j.Reason)
	}
}

// TestFaultNodeKilled kills a node agent with SIGKILL while its job runs,
// and again while no agent watches a job end: the restarted agent adopts
// both containers, and each job completes once, with its whole log and
// its outputs intact.
func TestFaultNodeKilled(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	site := randomName("site-a-")
	node := s.node(site, map[string]string{"d": dataset(t, map[string]string{"a.txt": "a"})})
	svc := s.publish(imageID)
	ctx := context.Background()

	// Killed while the container runs.
	j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d",
		Params: map[string]any{"lines": 200, "sleep": 4, "bytes": 300000}})
	if err != nil {
		t.Fatal(err)
	}
	running(t, s, j.ID)
	before := containerOf(t, s, j.ID)
	node.kill()
	node = node.restart(t)
	j = waitJob(t, s.admin, j.ID, 2*time.Minute, "the job ends", final)
	once(t, j)
	checkLog(t, jobLog(t, s.admin, j.ID), 200)
	if files := outputs(t, s, j); len(files["nested/deep/data.bin"]) != 300000 {
		t.Fatalf("data.bin has %d bytes", len(files["nested/deep/data.bin"]))
	}
	if !strings.Contains(node.output(), "adopting a job") {
		t.Fatalf("the restarted agent did not adopt container %s", before.ID)
	}

	// Killed, and the container ends while no agent runs.
	j, err = s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d",
		Params: map[string]any{"lines": 3, "sleep": 1, "exit": 0}})
	if err != nil {
		t.Fatal(err)
	}
	running(t, s, j.ID)
	c := containerOf(t, s, j.ID)
	node.kill()
	eventually(t, 30*time.Second, "the container exits with no agent", func() bool {
		info, err := s.rt.Inspect(ctx, c.ID)
		return err == nil && !info.Running
	})
	node = node.restart(t)
	j = waitJob(t, s.admin, j.ID, time.Minute, "the job ends", final)
	once(t, j)
	checkLog(t, jobLog(t, s.admin, j.ID), 3)
	outputs(t, s, j)

	// Killed for longer than the node timeout: the attempt is lost and
	// queued again; the restarted agent removes the container the manager
	// no longer gives it, and runs the retry.
	j, err = s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d", Params: map[string]any{"sleep": 30}})
	if err != nil {
		t.Fatal(err)
	}
	running(t, s, j.ID)
	stale := containerOf(t, s, j.ID)
	node.kill()
	waitJob(t, s.admin, j.ID, time.Minute, "the attempt is lost", func(j gef.Job) bool { return j.State == gef.JobQueued })
	node = node.restart(t)
	eventually(t, time.Minute, "the unwanted container is removed", func() bool {
		_, err := s.rt.Inspect(ctx, stale.ID)
		return errors.Is(err, gef.ErrNotFound)
	})
	waitJob(t, s.admin, j.ID, time.Minute, "the retry runs", func(j gef.Job) bool {
		return j.Attempt == 2 && j.State == gef.JobRunning
	})
	if _, err := s.admin.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, s.admin, j.ID, time.Minute, "the retry is canceled", final)
	if j.State != gef.JobCanceled || len(j.Attempts) != 2 || j.Attempts[0].State != gef.JobSystemError ||
		!strings.Contains(j.Attempts[0].Reason, "stopped responding") {
		t.Fatalf("job: %s %+v", j.State, j.Attempts)
	}

	// Cleaned up: no container, no job directory, nothing left to send.
	noContainers(t, s, j.ID, 30*time.Second)
	emptyDir(t, filepath.Join(s.workDir(site), "jobs"), "the node's job directory")
	emptyDir(t, filepath.Join(s.workDir(site), "outbox"), "the node's outbox")
}

// TestFaultManagerKilled kills the manager with SIGKILL while a job runs
// and keeps it down past the job's end; restarted on the same database
// and address, it completes the job, with its log and outputs whole.
func TestFaultManagerKilled(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	site := randomName("site-a-")
	s.node(site, map[string]string{"d": dataset(t, map[string]string{"a.txt": "a"})})
	svc := s.publish(imageID)
	ctx := context.Background()

	j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d",
		Params: map[string]any{"lines": 500, "sleep": 2, "bytes": 500000}})
	if err != nil {
		t.Fatal(err)
	}
	running(t, s, j.ID)
	c := containerOf(t, s, j.ID)
	s.killManager()
	// The job ends, and its node buffers the rest, while no manager runs.
	eventually(t, 30*time.Second, "the container exits while the manager is down", func() bool {
		info, err := s.rt.Inspect(ctx, c.ID)
		return err == nil && !info.Running
	})
	eventually(t, 30*time.Second, "the node holds the final report", func() bool {
		entries, _ := os.ReadDir(filepath.Join(s.workDir(site), "outbox"))
		return len(entries) > 0
	})
	s.restartManager()
	j = waitJob(t, s.admin, j.ID, time.Minute, "the job ends", final)
	once(t, j)
	checkLog(t, jobLog(t, s.admin, j.ID), 500)
	if files := outputs(t, s, j); len(files["nested/deep/data.bin"]) != 500000 {
		t.Fatalf("data.bin has %d bytes", len(files["nested/deep/data.bin"]))
	}
	emptyDir(t, filepath.Join(s.workDir(site), "outbox"), "the node's outbox")
	noContainers(t, s, j.ID, 30*time.Second)
}

// TestFaultPartition cuts a node agent, running in a container on a
// private network, off from the manager and the object store while its
// job runs. The manager marks the node down within its timeout and runs
// the job again on the other node holding the data; when the network
// heals, the cut-off node stops the orphan, and the job has one result.
func TestFaultPartition(t *testing.T) {
	t.Parallel()
	n := newDockerNet(t)
	store := startMinIO(t, n.gateway)
	s := newStackWith(t, stackConfig{host: n.gateway, minio: &store.cfg, args: []string{"-retry-avoid", "5m"}})
	imageID := image(t, s.rt, testimages.TestService)
	nodeImg := nodeImage(t, s)
	data := dataset(t, map[string]string{"shared.txt": "both nodes hold this"})
	cutName, otherName := randomName("site-cut-"), randomName("site-b-")
	cut := s.nodeInContainer(n, nodeImg, cutName, map[string]string{"shared": data}, 2)
	svc := s.publish(imageID)
	ctx := context.Background()

	j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "shared",
		Params: map[string]any{"lines": 5, "sleep": 10}})
	if err != nil {
		t.Fatal(err)
	}
	j = running(t, s, j.ID)
	if j.Node != cutName {
		t.Fatalf("the job runs on %s", j.Node)
	}
	orphan := containerOf(t, s, j.ID)
	// The other holder of the data joins only now, so the first attempt
	// surely ran on the node about to be cut off.
	s.node(otherName, map[string]string{"shared": data})

	n.disconnect(cut.id)
	cutAt := time.Now()
	// Lost within the node timeout (6 s), plus one reaper tick (1.2 s).
	const limit = 6*time.Second + 1200*time.Millisecond
	j = waitJob(t, s.admin, j.ID, time.Minute, "the attempt on the cut-off node is lost", func(j gef.Job) bool {
		return len(j.Attempts) >= 1 && j.Attempts[0].State == gef.JobSystemError
	})
	lostAfter := time.Since(cutAt)
	if lostAfter > limit+3*time.Second {
		t.Fatalf("the attempt was lost %s after the cut; the limit is %s", lostAfter, limit)
	}
	if a := j.Attempts[0]; a.Node != cutName || !strings.Contains(a.Reason, "stopped responding") {
		t.Fatalf("first attempt: %+v", a)
	}
	t.Logf("the attempt on the cut-off node was lost %s after the cut", lostAfter.Round(100*time.Millisecond))

	// The retry runs on the other node.
	j = waitJob(t, s.admin, j.ID, time.Minute, "the retry runs", func(j gef.Job) bool {
		return j.Attempt == 2 && j.State == gef.JobRunning
	})
	if j.Node != otherName {
		t.Fatalf("the retry runs on %s, want %s", j.Node, otherName)
	}
	// Heal while both run: the cut-off node learns the job is not its own.
	n.connect(cut.id)
	eventually(t, time.Minute, "the orphan container is removed", func() bool {
		_, err := s.rt.Inspect(ctx, orphan.ID)
		return errors.Is(err, gef.ErrNotFound)
	})
	j = waitJob(t, s.admin, j.ID, time.Minute, "the job ends", final)
	if j.State != gef.JobSucceeded || j.Attempt != 2 || len(j.Attempts) != 2 || j.Attempts[1].Node != otherName {
		t.Fatalf("job: %s attempt %d %+v: %s", j.State, j.Attempt, j.Attempts, j.Reason)
	}
	outputs(t, s, j)
	// One result: every object under the job is the kept attempt's, each
	// listed once in its record.
	listed := map[string]bool{}
	for _, o := range j.Outputs {
		listed[gef.AttemptOutputKey(j.ID, j.Attempt, o.Name, o.Path)] = true
	}
	for o := range s.s3.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "jobs/" + j.ID + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if !listed[o.Key] {
			t.Fatalf("object %s is not in the job's record", o.Key)
		}
		delete(listed, o.Key)
	}
	if len(listed) != 0 {
		t.Fatalf("recorded outputs missing from the store: %v", listed)
	}
	waitNodeState(t, s, cutName, gef.NodeReady)
	noContainers(t, s, j.ID, 30*time.Second)
}

func waitNodeState(t *testing.T, s *stack, name string, state gef.NodeState) {
	t.Helper()
	eventually(t, time.Minute, "node "+name+" is "+string(state), func() bool {
		n, err := s.node1(context.Background(), name)
		return err == nil && n.State == state
	})
}

// TestFaultObjectStoreDown stops MinIO for 30 s while a job stages: the job
// waits in staging and says why, keeps its outputs on the node, and
// completes once MinIO is back, every sha256 matching.
func TestFaultObjectStoreDown(t *testing.T) {
	t.Parallel()
	store := startMinIO(t, "127.0.0.1")
	s := newStackWith(t, stackConfig{minio: &store.cfg})
	imageID := image(t, s.rt, testimages.TestService)
	site := randomName("site-a-")
	node := s.node(site, map[string]string{"d": dataset(t, map[string]string{"a.txt": "a"})})
	svc := s.publish(imageID)
	ctx := context.Background()

	j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d",
		Params: map[string]any{"lines": 20, "sleep": 3, "bytes": 8 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	running(t, s, j.ID)
	store.stop()
	stopped := time.Now()
	j = waitJob(t, s.admin, j.ID, time.Minute, "the job waits in staging for the object store", func(j gef.Job) bool {
		return j.State == gef.JobStaging && strings.Contains(j.Status, "waiting for the object store")
	})
	t.Logf("status while MinIO is down: %s", j.Status)
	// The outputs wait on the node's disk.
	jobDir := filepath.Join(s.workDir(site), "jobs", fmt.Sprintf("%s-%d", j.ID, j.Attempt))
	if fi, err := os.Stat(filepath.Join(jobDir, "out", "result", "nested", "deep", "data.bin")); err != nil || fi.Size() != 8<<20 {
		t.Fatalf("the outputs are not on the node while the store is down: %v", err)
	}
	resp, err := http.Get(s.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz answered %d with the object store down", resp.StatusCode)
	}
	// The agent dies while it waits; the next one takes the upload up.
	node.kill()
	node = node.restart(t)
	waitJob(t, s.admin, j.ID, time.Minute, "the restarted agent waits for the store", func(j gef.Job) bool {
		return strings.Contains(node.output(), "adopting a job") && strings.Contains(j.Status, "waiting for the object store")
	})
	// Down for 30 s in all.
	for time.Since(stopped) < 30*time.Second {
		if cur, err := s.admin.Job(ctx, j.ID); err != nil || cur.State != gef.JobStaging {
			t.Fatalf("with the store down the job left staging: %s %v", cur.State, err)
		}
		time.Sleep(time.Second)
	}
	store.restart()
	j = waitJob(t, s.admin, j.ID, 2*time.Minute, "the job ends", final)
	once(t, j)
	if j.Status != "" {
		t.Fatalf("a finished job still says %q", j.Status)
	}
	if files := outputs(t, s, j); len(files["nested/deep/data.bin"]) != 8<<20 {
		t.Fatalf("data.bin has %d bytes", len(files["nested/deep/data.bin"]))
	}
	checkLog(t, jobLog(t, s.admin, j.ID), 20)
	emptyDir(t, filepath.Join(s.workDir(site), "jobs"), "the node's job directory")
}

// TestFaultDatabaseRestart crashes and restarts PostgreSQL while jobs are
// submitted and run: the API answers 503 saying the database is down and
// /readyz fails meanwhile; afterwards every job that was accepted is there
// and completes, with no help.
func TestFaultDatabaseRestart(t *testing.T) {
	t.Parallel()
	pg := startPostgres(t)
	s := newStackWith(t, stackConfig{dsn: pg.dsn()})
	imageID := image(t, s.rt, testimages.TestService)
	s.node(randomName("site-a-"), map[string]string{"d": dataset(t, map[string]string{"a.txt": "a"})})
	svc := s.publish(imageID)

	var (
		mu       sync.Mutex
		accepted []string
		refused  []*client.Error
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				j, err := s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: svc.Name, Dataset: "d",
					Params: map[string]any{"message": fmt.Sprintf("w%d-%d", w, i)}})
				cancel()
				mu.Lock()
				var e *client.Error
				switch {
				case err == nil:
					accepted = append(accepted, j.ID)
				case errors.As(err, &e):
					refused = append(refused, e)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	eventually(t, time.Minute, "jobs are being accepted", func() bool { return count() >= 20 })
	pg.crash()
	down := time.Now()
	// While it is down: a clear 503, and not ready.
	eventually(t, 30*time.Second, "the API answers 503", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(refused) > 0
	})
	resp, err := http.Get(s.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz answered %d with the database down", resp.StatusCode)
	}
	for time.Since(down) < 5*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	pg.start()
	n := count()
	eventually(t, time.Minute, "jobs are accepted again", func() bool { return count() >= n+20 })
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, e := range refused {
		if e.Status != http.StatusServiceUnavailable || !strings.Contains(e.Message, "database is unavailable") {
			t.Fatalf("a refusal during the outage: %d %s: %s", e.Status, e.Code, e.Message)
		}
	}
	t.Logf("%d jobs accepted, %d refused with 503 during the outage", len(accepted), len(refused))
	for _, id := range accepted {
		j := waitJob(t, s.admin, id, 3*time.Minute, "accepted job "+id+" ends", final)
		if j.State != gef.JobSucceeded {
			t.Fatalf("accepted job %s: %s after %d attempts: %s", id, j.State, j.Attempt, j.Reason)
		}
	}
}
