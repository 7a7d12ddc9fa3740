package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
)

// stagingHeartbeat is how often a node tells the manager how a staging
// job is going. The manager fails a staging attempt it hears nothing of
// for its -staging-stall-timeout (30 min by default).
const stagingHeartbeat = time.Minute

// stagingStatus tells the manager how staging goes: what is uploaded, or
// that the object store cannot be reached. It says so at once when the
// store stops or starts answering, and every stagingHeartbeat meanwhile.
type stagingStatus struct {
	t    *task
	quit chan struct{}
	once sync.Once

	mu        sync.Mutex
	files     int
	doneFiles int
	bytes     int64
	doneBytes int64
	waiting   string // why the store cannot be reached; "" while it can
}

func newStagingStatus(t *task) *stagingStatus {
	s := &stagingStatus{t: t, quit: make(chan struct{})}
	go func() {
		tick := time.NewTicker(stagingHeartbeat)
		defer tick.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-tick.C:
				s.send()
			}
		}
	}()
	return s
}

func (s *stagingStatus) stop() { s.once.Do(func() { close(s.quit) }) }

func (s *stagingStatus) start(files int, bytes int64, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files, s.bytes, s.doneFiles = files, bytes, done
}

func (s *stagingStatus) uploaded(n int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doneFiles++
	s.doneBytes += n
}

// unreachable records that an upload could not reach the store.
func (s *stagingStatus) unreachable(err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	first := s.waiting == ""
	s.waiting = err.Error()
	s.mu.Unlock()
	if first {
		s.send()
	}
}

// reachable records that an upload went through.
func (s *stagingStatus) reachable() {
	if s == nil {
		return
	}
	s.mu.Lock()
	was := s.waiting != ""
	s.waiting = ""
	s.mu.Unlock()
	if was {
		s.send()
	}
}

func (s *stagingStatus) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting != "" {
		return "waiting for the object store: " + s.waiting + "; outputs stay on node " + s.t.a.cfg.Name + " until they are stored"
	}
	return fmt.Sprintf("uploading outputs: %d of %d files, %d of %d bytes", s.doneFiles, s.files, s.doneBytes, s.bytes)
}

func (s *stagingStatus) send() {
	s.t.report(context.Background(), gef.JobReport{State: gef.JobStaging, Status: s.text()})
}
