package agent

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Output is shipped to the manager in chunks: every chunkBytes, or every
// flushEvery while output trickles, so a follower sees it live and a node
// that dies loses at most the chunk in flight.
const (
	chunkBytes = 64 << 10
	flushEvery = 200 * time.Millisecond
)

type segment struct {
	stream string
	data   []byte
}

// shipper sends one job attempt's output in order, stdout and stderr
// interleaved as they were read.
type shipper struct {
	a       *Agent
	job     string
	attempt int
	deliver func(ctx context.Context, seq int, stream string, data []byte) error

	mu      sync.Mutex
	pending []segment
	size    int
	total   int64
	cut     bool
	closed  bool
	kick    chan struct{}
	done    chan struct{}
	space   *sync.Cond
	seq     int
}

func newShipper(a *Agent, job string, attempt int) *shipper {
	return newShipperTo(a, job, attempt, func(ctx context.Context, seq int, stream string, data []byte) error {
		return a.mgr.AppendLog(ctx, job, attempt, seq, stream, data)
	})
}

// newShipperTo ships output through deliver, e.g. a build's rather than a
// job's.
func newShipperTo(a *Agent, job string, attempt int, deliver func(ctx context.Context, seq int, stream string, data []byte) error) *shipper {
	s := &shipper{a: a, job: job, attempt: attempt, deliver: deliver, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.space = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

type streamWriter struct {
	s      *shipper
	stream string
}

func (s *shipper) writer(stream string) io.Writer { return streamWriter{s, stream} }

// Write queues output. It blocks while a full chunk waits to be sent, so a
// flood is slowed to what the manager takes instead of filling memory.
func (w streamWriter) Write(p []byte) (int, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.size >= 4*chunkBytes && !s.closed {
		s.space.Wait()
	}
	n := len(p)
	if room := s.a.cfg.LogLimitBytes - s.total; int64(len(p)) > room {
		if !s.cut {
			s.cut = true
			note := fmt.Sprintf("\n[gef: output truncated after %d bytes]\n", s.a.cfg.LogLimitBytes)
			p = append(append([]byte{}, p[:max(room, 0)]...), note...)
		} else {
			p = nil
		}
	}
	if len(p) > 0 {
		s.total += int64(len(p))
		if k := len(s.pending); k > 0 && s.pending[k-1].stream == w.stream {
			s.pending[k-1].data = append(s.pending[k-1].data, p...)
		} else {
			s.pending = append(s.pending, segment{w.stream, append([]byte{}, p...)})
		}
		s.size += len(p)
	}
	if s.size >= chunkBytes {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return n, nil
}

func (s *shipper) truncated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

func (s *shipper) loop() {
	defer close(s.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-s.kick:
		}
		s.mu.Lock()
		segs, closed := s.pending, s.closed
		s.pending, s.size = nil, 0
		s.space.Broadcast()
		s.mu.Unlock()
		for _, seg := range segs {
			for len(seg.data) > 0 {
				n := min(len(seg.data), chunkBytes)
				s.send(seg.stream, seg.data[:n])
				seg.data = seg.data[n:]
			}
		}
		if closed {
			return
		}
	}
}

// send delivers one chunk, retrying while the manager is away. A refusal
// drops the chunk: the job is no longer this node's.
func (s *shipper) send(stream string, data []byte) {
	seq := s.seq
	s.seq++
	ctx := context.Background()
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for attempt := 0; ; attempt++ {
		err := s.deliver(ctx, seq, stream, data)
		if err == nil || !retryable(err) || attempt >= 30 {
			if err != nil {
				s.a.log.Warn("log chunk dropped", "job", s.job, "seq", seq, "err", err)
			}
			return
		}
		b.wait(ctx)
	}
}

// close flushes what is left and waits until it is sent.
func (s *shipper) close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.space.Broadcast()
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}
