package manager

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
)

// Logs are kept whole in the object store, one object per chunk as the node
// sends it (a node keeps each chunk on its disk until it is stored), and
// the database never holds log bytes. The manager keeps only a bounded tail of
// each running job in memory, to serve followers live.

// LogChunk is a piece of a job's output.
type LogChunk struct {
	Attempt int    `json:"attempt"`
	Seq     int    `json:"seq"`
	Stream  string `json:"stream"` // stdout or stderr
	Data    []byte `json:"data"`
}

// maxLogChunk bounds one chunk a node sends.
const maxLogChunk = 1 << 20

func (c LogChunk) key(job string) string {
	return fmt.Sprintf("logs/%s/%04d-%010d.%s", job, c.Attempt, c.Seq, c.Stream)
}

// order sorts chunks the way their keys sort.
func (c LogChunk) order() string { return fmt.Sprintf("%04d-%010d", c.Attempt, c.Seq) }

func parseChunkKey(key string) (LogChunk, bool) {
	base := key[strings.LastIndexByte(key, '/')+1:]
	num, stream, ok := strings.Cut(base, ".")
	a, s, ok2 := strings.Cut(num, "-")
	if !ok || !ok2 || (stream != "stdout" && stream != "stderr") {
		return LogChunk{}, false
	}
	attempt, err1 := strconv.Atoi(a)
	seq, err2 := strconv.Atoi(s)
	if err1 != nil || err2 != nil {
		return LogChunk{}, false
	}
	return LogChunk{Attempt: attempt, Seq: seq, Stream: stream}, true
}

// AppendLog stores a chunk of a job's output sent by the node running it.
// Sending the same chunk twice stores it once.
func (m *Manager) AppendLog(ctx context.Context, p Principal, id string, c LogChunk) error {
	if err := requireNode(p, ""); err != nil {
		return err
	}
	switch {
	case !gef.ValidID(id):
		return gef.Invalid("id", "%q is not a job id", id)
	case c.Stream != "stdout" && c.Stream != "stderr":
		return gef.Invalid("stream", "must be stdout or stderr")
	case c.Attempt < 1 || c.Attempt > 9999 || c.Seq < 0 || c.Seq > 9_999_999_999:
		return gef.Invalid("seq", "attempt and seq are out of range")
	case len(c.Data) > maxLogChunk:
		return gef.Invalid("data", "a chunk must be at most %d bytes", maxLogChunk)
	}
	j, err := m.store.JobHead(ctx, id)
	if err != nil {
		return err
	}
	if j.Node != p.Name || c.Attempt != j.Attempt {
		return fmt.Errorf("job %s attempt %d is not held by node %q: %w", id, c.Attempt, p.Name, gef.ErrConflict)
	}
	if err := m.objects.Put(ctx, c.key(id), bytes.NewReader(c.Data), int64(len(c.Data))); err != nil {
		return fmt.Errorf("manager: store log chunk: %w: %w", gef.ErrUnavailable, err)
	}
	m.metrics.logBytes.Add(float64(len(c.Data)))
	m.logs.push(id, c)
	return nil
}

// storedChunks lists a job's stored chunks after the one ordered at after.
func (m *Manager) storedChunks(ctx context.Context, id, after string) ([]LogChunk, error) {
	objs, err := m.objects.List(ctx, "logs/"+id+"/")
	if err != nil {
		return nil, fmt.Errorf("manager: list logs: %w", err)
	}
	var out []LogChunk
	for _, o := range objs {
		c, ok := parseChunkKey(o.Key)
		if !ok || c.order() <= after {
			continue
		}
		rc, _, err := m.objects.Get(ctx, o.Key)
		if err != nil {
			return nil, fmt.Errorf("manager: read log chunk: %w", err)
		}
		c.Data, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("manager: read log chunk: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Logs writes a job's whole output so far to w. stream may be stdout,
// stderr or empty for both, interleaved as they were produced.
func (m *Manager) Logs(ctx context.Context, p Principal, id, stream string, w io.Writer) error {
	if _, err := m.Job(ctx, p, id); err != nil {
		return err
	}
	chunks, err := m.storedChunks(ctx, id, "")
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if stream != "" && c.Stream != stream {
			continue
		}
		if _, err := w.Write(c.Data); err != nil {
			return err
		}
	}
	return nil
}

// followRecheck is how often a follower re-reads the store, to pick up
// chunks that reached another manager replica. Live chunks arrive at once.
const followRecheck = 2 * time.Second

// FollowLogs emits a job's output from the start and then live, until the
// job ends and its last chunk is out, or ctx ends.
func (m *Manager) FollowLogs(ctx context.Context, p Principal, id string, emit func(LogChunk) error) error {
	if _, err := m.Job(ctx, p, id); err != nil {
		return err
	}
	return m.follow(ctx, id, func(ctx context.Context) (bool, error) {
		j, err := m.store.JobHead(ctx, id)
		return j.State.Final(), err
	}, emit)
}

// follow emits the output stored under id from the start and then live,
// until final reports that its producer has ended and the last chunk is
// out, or ctx ends.
func (m *Manager) follow(ctx context.Context, id string, final func(context.Context) (bool, error), emit func(LogChunk) error) error {
	live, ended, cancel := m.logs.subscribe(id)
	defer cancel()
	last := ""
	catchUp := func() (bool, error) {
		// Read the state first: chunks stored before a job ends are all
		// there by the time its final state is.
		done, err := final(ctx)
		if err != nil {
			return false, err
		}
		chunks, err := m.storedChunks(ctx, id, last)
		if err != nil {
			return false, err
		}
		for _, c := range chunks {
			if err := emit(c); err != nil {
				return false, err
			}
			last = c.order()
		}
		return done, nil
	}
	tick := time.NewTicker(followRecheck)
	defer tick.Stop()
	for {
		final, err := catchUp()
		if err != nil || final {
			return err
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case c := <-live:
				if c.order() > last {
					if err := emit(c); err != nil {
						return err
					}
					last = c.order()
				}
			case <-ended:
				ended = nil
				break wait
			case <-tick.C:
				break wait
			}
		}
	}
}

// liveLogs keeps a bounded tail of each running job's output in memory and
// fans new chunks out to followers.
type liveLogs struct {
	mu       sync.Mutex
	maxBytes int
	jobs     map[string]*liveLog
}

type liveLog struct {
	tail  []LogChunk
	bytes int
	subs  map[chan LogChunk]struct{}
	ended chan struct{}
}

func newLiveLogs(maxBytes int) *liveLogs {
	return &liveLogs{maxBytes: maxBytes, jobs: map[string]*liveLog{}}
}

func (l *liveLogs) get(id string) *liveLog {
	j, ok := l.jobs[id]
	if !ok {
		j = &liveLog{subs: map[chan LogChunk]struct{}{}, ended: make(chan struct{})}
		l.jobs[id] = j
	}
	return j
}

func (l *liveLogs) push(id string, c LogChunk) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := l.get(id)
	j.tail = append(j.tail, c)
	j.bytes += len(c.Data)
	for j.bytes > l.maxBytes && len(j.tail) > 1 {
		j.bytes -= len(j.tail[0].Data)
		j.tail = j.tail[1:]
	}
	for ch := range j.subs {
		select {
		case ch <- c:
		default: // a slow follower catches up from the store
		}
	}
}

// Tail returns the bounded in-memory tail of a running job's output.
func (l *liveLogs) Tail(id string) []LogChunk {
	l.mu.Lock()
	defer l.mu.Unlock()
	if j, ok := l.jobs[id]; ok {
		return append([]LogChunk(nil), j.tail...)
	}
	return nil
}

func (l *liveLogs) subscribe(id string) (<-chan LogChunk, <-chan struct{}, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := l.get(id)
	ch := make(chan LogChunk, 256)
	j.subs[ch] = struct{}{}
	return ch, j.ended, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(j.subs, ch)
		if cur, ok := l.jobs[id]; ok && cur == j && len(j.subs) == 0 && isClosed(j.ended) {
			delete(l.jobs, id)
		}
	}
}

// end wakes the job's followers and drops its tail.
func (l *liveLogs) end(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := l.get(id)
	if !isClosed(j.ended) {
		close(j.ended)
	}
	if len(j.subs) == 0 {
		delete(l.jobs, id)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
