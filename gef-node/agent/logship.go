package agent

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"
)

// Output is shipped to the manager in chunks: every chunkBytes, or every
// flushEvery while output trickles, so a follower sees it live. Each chunk
// goes through the outbox, and how far the output was read is saved with
// it, so a node that dies loses none and, once restarted, ships none twice.
const (
	chunkBytes = 64 << 10
	flushEvery = 200 * time.Millisecond
)

type segment struct {
	stream string
	data   []byte
}

// shipper puts one job attempt's output in the outbox in order, stdout
// and stderr interleaved as they were read.
type shipper struct {
	a        *Agent
	job      string
	attempt  int
	progress string // the file saving how far the output was read
	// deliver, if set, sends chunks straight to the manager instead of
	// through the outbox: for a build's output, which is not resumed.
	deliver func(ctx context.Context, seq int, stream string, data []byte) error

	mu       sync.Mutex
	pending  []segment
	size     int
	total    int64
	cut      bool
	closed   bool
	kick     chan struct{}
	done     chan struct{}
	space    *sync.Cond
	seq      int
	consumed map[string]int64 // bytes read of each stream, shipped or cut
	from     shipProgress
}

func newShipper(a *Agent, job string, attempt int, dir string, from shipProgress) *shipper {
	s := &shipper{a: a, job: job, attempt: attempt, progress: filepath.Join(dir, shipFile),
		kick: make(chan struct{}, 1), done: make(chan struct{}), seq: from.Seq, total: from.Total, cut: from.Cut,
		consumed: map[string]int64{"stdout": from.Stdout, "stderr": from.Stderr}, from: from}
	s.space = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// newShipperTo ships output through deliver, e.g. a build's rather than a
// job's.
func newShipperTo(a *Agent, job string, attempt int, deliver func(ctx context.Context, seq int, stream string, data []byte) error) *shipper {
	s := &shipper{a: a, job: job, attempt: attempt, deliver: deliver, kick: make(chan struct{}, 1), done: make(chan struct{}),
		consumed: map[string]int64{}}
	s.space = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

type streamWriter struct {
	s      *shipper
	stream string
}

// writer takes a stream read from the container's start, and skips what
// an earlier run of the agent shipped.
func (s *shipper) writer(stream string) io.Writer {
	skip := s.from.Stdout
	if stream == "stderr" {
		skip = s.from.Stderr
	}
	return &skipWriter{w: streamWriter{s, stream}, n: skip}
}

// Write queues output. It blocks while chunks wait to be written to disk,
// so a flood cannot fill memory.
func (w streamWriter) Write(p []byte) (int, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.size >= 4*chunkBytes && !s.closed {
		s.space.Wait()
	}
	n := len(p)
	s.consumed[w.stream] += int64(n)
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
		p := shipProgress{Stdout: s.consumed["stdout"], Stderr: s.consumed["stderr"], Total: s.total, Cut: s.cut}
		s.pending, s.size = nil, 0
		s.space.Broadcast()
		s.mu.Unlock()
		if len(segs) > 0 {
			for _, seg := range segs {
				for len(seg.data) > 0 {
					n := min(len(seg.data), chunkBytes)
					s.put(seg.stream, seg.data[:n])
					seg.data = seg.data[n:]
				}
			}
			p.Seq = s.seq
			if s.progress == "" {
				// Nothing to resume: the output went straight out.
			} else if err := saveJSON(s.progress, p); err != nil {
				s.a.log.Error("saving how far the output was shipped", "job", s.job, "err", err)
			}
		}
		if closed {
			return
		}
	}
}

// put queues one chunk in the outbox, or delivers it when the shipper was
// given a delivery of its own.
func (s *shipper) put(stream string, data []byte) {
	seq := s.seq
	s.seq++
	if s.deliver != nil {
		s.send(seq, stream, data)
		return
	}
	env := envelope{Job: s.job, Attempt: s.attempt, Seq: seq, Stream: stream, Data: data}
	if _, err := s.a.outbox.put(env); err != nil {
		s.a.log.Error("log chunk lost: the outbox cannot be written", "job", s.job, "seq", seq, "err", err)
	}
}

// close writes what is left and waits until it is in the outbox.
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

// send delivers one chunk, retrying while the manager is away. A refusal
// drops the chunk: the build is no longer this node's.
func (s *shipper) send(seq int, stream string, data []byte) {
	ctx := context.Background()
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for attempt := 0; ; attempt++ {
		err := s.deliver(ctx, seq, stream, data)
		if err == nil || !retryable(err) || attempt >= 30 {
			if err != nil {
				s.a.log.Warn("log chunk dropped", "id", s.job, "seq", seq, "err", err)
			}
			return
		}
		b.wait(ctx)
	}
}
