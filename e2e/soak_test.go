package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testimages"
)

// soakSettings are the soak's size and time bound; GEF_SOAK_JOBS and
// GEF_SOAK_TIMEOUT change them.
func soakSettings(t *testing.T) (jobs int, bound time.Duration) {
	jobs, bound = 2000, 30*time.Minute
	if v := os.Getenv("GEF_SOAK_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GEF_SOAK_JOBS=%q", v)
		}
		jobs = n
	}
	if v := os.Getenv("GEF_SOAK_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("GEF_SOAK_TIMEOUT=%q", v)
		}
		bound = d
	}
	return jobs, bound
}

// soak is the state of one soak run: its processes, which faults replace.
type soak struct {
	t     *testing.T
	s     *stack
	store *minioServer
	mu    sync.Mutex
	nodes []*proc
	log   []string
}

func (k *soak) note(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

// TestSoak runs 2,000 short jobs on four nodes while faults strike at
// random: nodes killed and restarted, sometimes after they were declared
// lost; the manager killed and restarted; MinIO frozen. Then it checks
// that every job the manager accepted ended in one final state, and that
// every succeeded job's outputs are stored with their recorded sha256.
//
// It is not parallel: the heavy tests take the engine one at a time.
func TestSoak(t *testing.T) {
	total, bound := soakSettings(t)
	store := startMinIO(t, "127.0.0.1")
	s := newStackWith(t, stackConfig{minio: &store.cfg, args: []string{"-retry-avoid", "10s", "-max-attempts-limit", "10"}})
	imageID := image(t, s.rt, testimages.TestService)
	k := &soak{t: t, s: s, store: store}
	shared := dataset(t, map[string]string{"a.txt": "a", "b/c.txt": "c"})
	for i := range 4 {
		k.nodes = append(k.nodes, s.nodeVia(s.url, randomName(fmt.Sprintf("soak%d-", i)), map[string]string{"shared": shared}, heavyCapacity))
	}
	svc := s.publish(imageID)
	deadline := time.Now().Add(bound)
	start := time.Now()

	// Faults strike from the first submission to the last job's end.
	stop := make(chan struct{})
	faultsDone := make(chan int)
	go func() { faultsDone <- k.inject(stop) }()

	accepted := k.submit(svc.Name, total, deadline)
	var jobs map[string]gef.Job
	for {
		all := allJobs(t, s.admin)
		jobs = map[string]gef.Job{}
		open := 0
		for _, j := range all {
			jobs[j.ID] = j
			if !j.State.Final() {
				open++
			}
		}
		if open == 0 && len(jobs) >= len(accepted) {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			<-faultsDone
			states := map[gef.JobState]int{}
			for _, j := range jobs {
				states[j.State]++
			}
			t.Fatalf("after %s, %d of %d jobs are not final %v; faults:\n%s", bound, open, len(jobs), states, strings.Join(k.log, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
	close(stop)
	faults := <-faultsDone
	elapsed := time.Since(start)

	// The invariants.
	lost := 0
	states := map[gef.JobState]int{}
	retried := 0
	for _, id := range accepted {
		if _, ok := jobs[id]; !ok {
			lost++
			t.Errorf("accepted job %s is gone", id)
		}
	}
	for _, j := range jobs {
		states[j.State]++
		n := len(j.Attempts)
		switch {
		case !j.State.Final():
			lost++
			t.Errorf("job %s is %s", j.ID, j.State)
		case n == 0 || n != j.Attempt || n > j.MaxAttempts || j.Attempts[n-1].State != j.State:
			lost++
			t.Errorf("job %s: %s after attempt %d of %d, attempts %+v", j.ID, j.State, j.Attempt, j.MaxAttempts, j.Attempts)
		case j.State != gef.JobSucceeded:
			lost++
			t.Errorf("job %s ended %s: %s", j.ID, j.State, j.Reason)
		}
		for i, a := range j.Attempts {
			if a.Attempt != i+1 || (i < n-1 && a.State != gef.JobSystemError) {
				lost++
				t.Errorf("job %s attempt %d: %+v", j.ID, i+1, a)
			}
		}
		if n > 1 {
			retried++
		}
	}
	files := checkStored(t, s, jobs)
	k.leftNothing()
	if t.Failed() {
		t.Logf("faults:\n%s", strings.Join(k.log, "\n"))
	}
	t.Logf("soak: %d jobs (%v), %d retried, %d output files checked, %d faults, in %s", len(jobs), states, retried, files, faults,
		elapsed.Round(time.Second))
	fmt.Printf("soak: jobs=%d faults=%d lost=%d\n", len(jobs), faults, lost)
	if lost != 0 || len(jobs) < total {
		t.Fatalf("lost %d jobs; %d of %d were accepted", lost, len(jobs), total)
	}
}

// submit submits total jobs, retrying refusals the faults cause, and
// returns the ids of those the manager accepted.
func (k *soak) submit(service string, total int, deadline time.Time) []string {
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 4 {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					j, err := k.s.admin.Submit(ctx, gef.JobRequest{Reuse: noReuse(), Service: service, Dataset: "shared", MaxAttempts: 10,
						Params: map[string]any{"message": fmt.Sprintf("soak job %d", i), "bytes": 2048 + i}})
					cancel()
					if err == nil {
						mu.Lock()
						accepted = append(accepted, j.ID)
						mu.Unlock()
						break
					}
					if !client.IsRetryable(err) || time.Now().After(deadline) {
						k.t.Errorf("submit job %d: %v", i, err)
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return accepted
}

// inject strikes a random fault every few seconds until stop, and returns
// how many it struck. Every process it stops is running again when it
// returns.
func (k *soak) inject(stop <-chan struct{}) int {
	faults := 0
	pause := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	for pause(time.Duration(4000+rand.IntN(4000)) * time.Millisecond) {
		faults++
		switch r := rand.IntN(100); {
		case r < 50: // a node crashes and comes back at once
			i := rand.IntN(len(k.nodes))
			k.note("kill node %s; restart it after 0.5-3 s", k.nodes[i].name)
			k.nodes[i].kill()
			pause(time.Duration(500+rand.IntN(2500)) * time.Millisecond)
			k.nodes[i] = k.nodes[i].restart(k.t)
		case r < 65: // a node is gone past its timeout: its jobs are retried
			i := rand.IntN(len(k.nodes))
			k.note("kill node %s; restart it after 9 s, when it is lost", k.nodes[i].name)
			k.nodes[i].kill()
			time.Sleep(9 * time.Second)
			k.nodes[i] = k.nodes[i].restart(k.t)
		case r < 85: // the manager crashes
			k.note("kill the manager; restart it after 0.5-2 s")
			k.s.killManager()
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
			k.s.restartManager()
		default: // the object store freezes
			d := time.Duration(2000+rand.IntN(4000)) * time.Millisecond
			k.note("freeze MinIO for %s", d)
			k.store.pause()
			time.Sleep(d)
			k.store.resume()
		}
	}
	return faults
}

// leftNothing checks the nodes left no container, job directory or
// undelivered report behind.
func (k *soak) leftNothing() {
	t, s := k.t, k.s
	t.Helper()
	for _, n := range k.nodes {
		name := strings.TrimPrefix(n.name, "gef-node ")
		eventually(t, time.Minute, "node "+name+" removed its containers", func() bool {
			cs, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelNode: name})
			return err == nil && len(cs) == 0
		})
		for _, dir := range []string{"jobs", "outbox"} {
			emptyDir(t, filepath.Join(s.workDir(name), dir), "node "+name+"'s "+dir)
		}
	}
	sort.Strings(k.log)
}
