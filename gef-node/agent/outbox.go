package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
)

// The outbox keeps what the node must tell the manager, its reports and
// the chunks of its jobs' output, on local disk until the manager has
// taken each, so that neither a manager restart nor an agent crash loses
// any. Each entry is one file, written whole before it counts, and synced
// unless losing it to a crash of the machine would do no harm.
// Entries of one job are delivered in order, in two lanes: reports, and
// output. A job's final report waits until its output is all delivered,
// so its log is complete once the job is final. Every delivery is
// idempotent on the manager's side, so an entry sent twice (the agent died
// before deleting it) is applied once.

// Delivery settings.
const (
	outboxParallel   = 8                // deliveries in flight at once
	outboxSendLimit  = 30 * time.Second // one delivery
	outboxBackoffMin = 200 * time.Millisecond
	outboxBackoffMax = 5 * time.Second
)

// envelope is one entry as stored: a report, or a chunk of output.
type envelope struct {
	Job     string         `json:"job"`
	Attempt int            `json:"attempt"`
	Report  *gef.JobReport `json:"report,omitempty"`
	Seq     int            `json:"seq,omitempty"`
	Stream  string         `json:"stream,omitempty"`
	Data    []byte         `json:"data,omitempty"`
}

func (e envelope) isLog() bool   { return e.Report == nil }
func (e envelope) isFinal() bool { return e.Report != nil && e.Report.State.Final() }

// durable reports whether the entry must survive a crash of the machine.
// A report that only says a job is fetching its image or staging need not:
// the next report moves the job on all the same, and the job waits on no
// more disk flushes than the ones that matter.
func (e envelope) durable() bool {
	return e.Report == nil || (e.Report.State != gef.JobFetchingImage && e.Report.State != gef.JobStaging)
}

type entry struct {
	file string
	env  envelope
	done chan error // gets the delivery's outcome once: nil, or the refusal
}

type laneKey struct {
	job  string
	logs bool
}

type lane struct {
	entries []*entry
	running bool
}

type outbox struct {
	dir string
	mgr Manager
	log *slog.Logger

	putMu sync.Mutex // keeps each lane in the order entries were put

	mu      sync.Mutex
	next    uint64
	lanes   map[laneKey]*lane
	changed chan struct{} // closed and replaced whenever an entry leaves
	kick    chan struct{} // closed and replaced to retry at once
	ctx     context.Context
	sem     chan struct{}
	wg      sync.WaitGroup
}

// openOutbox loads what an earlier run left in dir. Nothing is delivered
// until start.
func openOutbox(dir string, mgr Manager, log *slog.Logger) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	o := &outbox{dir: dir, mgr: mgr, log: log, lanes: map[laneKey]*lane{}, changed: make(chan struct{}),
		kick: make(chan struct{}), sem: make(chan struct{}, outboxParallel)}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	var files []string
	for _, d := range names {
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(dir, name)) // never made it in
		case strings.HasSuffix(name, ".json"):
			files = append(files, name)
		}
	}
	sort.Strings(files)
	for _, name := range files {
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		if err != nil {
			continue
		}
		o.next = max(o.next, n+1)
		b, err := os.ReadFile(filepath.Join(dir, name))
		var env envelope
		if err == nil {
			err = json.Unmarshal(b, &env)
		}
		if err != nil || env.Job == "" {
			log.Warn("dropping an unreadable outbox entry", "file", name, "err", err)
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		o.append(&entry{file: name, env: env, done: make(chan error, 1)})
	}
	if len(files) > 0 {
		log.Info("outbox loaded", "entries", len(files))
	}
	return o, nil
}

func (o *outbox) append(e *entry) *lane {
	k := laneKey{e.env.Job, e.env.isLog()}
	l, ok := o.lanes[k]
	if !ok {
		l = &lane{}
		o.lanes[k] = l
	}
	l.entries = append(l.entries, e)
	return l
}

// start delivers entries until ctx ends.
func (o *outbox) start(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ctx = ctx
	for k, l := range o.lanes {
		o.run(k, l)
	}
}

// run starts a lane's delivery if it is not running; o.mu is held.
func (o *outbox) run(k laneKey, l *lane) {
	if l.running || o.ctx == nil || o.ctx.Err() != nil {
		return
	}
	l.running = true
	o.wg.Add(1)
	go o.drain(o.ctx, k)
}

// put stores env durably and queues it. The channel gets the outcome of
// its delivery.
func (o *outbox) put(env envelope) (<-chan error, error) {
	o.putMu.Lock()
	defer o.putMu.Unlock()
	o.mu.Lock()
	n := o.next
	o.next++
	o.mu.Unlock()
	name := fmt.Sprintf("%020d.json", n)
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	if err := writeFile(filepath.Join(o.dir, name), b, env.durable()); err != nil {
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	e := &entry{file: name, env: env, done: make(chan error, 1)}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run(laneKey{env.Job, env.isLog()}, o.append(e))
	return e.done, nil
}

// report queues a report of a job's attempt.
func (o *outbox) report(job string, attempt int, r gef.JobReport) (<-chan error, error) {
	r.Attempt = attempt
	if r.At.IsZero() {
		r.At = time.Now()
	}
	return o.put(envelope{Job: job, Attempt: attempt, Report: &r})
}

// final returns the outcome channel of a final report of the job's attempt
// that waits in the outbox.
func (o *outbox) final(job string, attempt int) (<-chan error, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l, ok := o.lanes[laneKey{job, false}]; ok {
		for _, e := range l.entries {
			if e.env.Attempt == attempt && e.env.isFinal() {
				return e.done, true
			}
		}
	}
	return nil, false
}

// finals lists the jobs whose final report waits in the outbox.
func (o *outbox) finals() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	for k, l := range o.lanes {
		for _, e := range l.entries {
			if !k.logs && e.env.isFinal() {
				ids = append(ids, k.job)
				break
			}
		}
	}
	return ids
}

// dropLogs forgets the output chunks of a job's attempt numbered from seq
// on, which an adopted job ships again. Call it before start.
func (o *outbox) dropLogs(job string, attempt, seq int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.lanes[laneKey{job, true}]
	if !ok {
		return
	}
	kept := l.entries[:0]
	for _, e := range l.entries {
		if e.env.Attempt == attempt && e.env.Seq >= seq {
			_ = os.Remove(filepath.Join(o.dir, e.file))
			continue
		}
		kept = append(kept, e)
	}
	l.entries = kept
}

// retryNow ends every lane's backoff, e.g. once the manager answers again.
func (o *outbox) retryNow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.kick)
	o.kick = make(chan struct{})
}

// pending counts the entries not yet delivered.
func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, l := range o.lanes {
		n += len(l.entries)
	}
	return n
}

// flush waits until every entry is delivered or ctx ends.
func (o *outbox) flush(ctx context.Context) {
	for {
		o.mu.Lock()
		n := 0
		for _, l := range o.lanes {
			n += len(l.entries)
		}
		changed := o.changed
		o.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// wait waits for the lanes to stop once the ctx given to start ended.
func (o *outbox) wait() { o.wg.Wait() }

// drain delivers a lane's entries in order.
func (o *outbox) drain(ctx context.Context, k laneKey) {
	defer o.wg.Done()
	b := newBackoff(outboxBackoffMin, outboxBackoffMax)
	for {
		o.mu.Lock()
		l := o.lanes[k]
		if len(l.entries) == 0 || ctx.Err() != nil {
			l.running = false
			if len(l.entries) == 0 {
				delete(o.lanes, k)
			}
			o.mu.Unlock()
			return
		}
		e, kick := l.entries[0], o.kick
		o.mu.Unlock()
		if e.env.isFinal() && !o.waitLogs(ctx, e.env.Job) {
			continue
		}
		err := o.send(ctx, e.env)
		if err != nil && retryable(err) {
			if ctx.Err() == nil {
				o.log.Debug("outbox delivery failed; retrying", "job", e.env.Job, "err", err)
			}
			t := time.NewTimer(b.cur)
			b.cur = min(b.cur*2, b.max)
			select {
			case <-t.C:
			case <-kick:
				b.reset()
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		b.reset()
		if err != nil {
			// The manager refused it for good: the job is no longer this
			// node's, or the entry is bad. Resending cannot help.
			o.log.Warn("the manager refused an outbox entry; dropping it", "job", e.env.Job, "attempt", e.env.Attempt,
				"report", e.env.Report != nil, "err", err)
		}
		if rmErr := os.Remove(filepath.Join(o.dir, e.file)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			o.log.Warn("removing a delivered outbox entry", "file", e.file, "err", rmErr)
		}
		o.mu.Lock()
		l.entries = l.entries[1:]
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
		e.done <- err
	}
}

// waitLogs waits until the job has no output left to deliver; false if
// ctx ended first.
func (o *outbox) waitLogs(ctx context.Context, job string) bool {
	for {
		o.mu.Lock()
		l, ok := o.lanes[laneKey{job, true}]
		busy := ok && len(l.entries) > 0
		changed := o.changed
		o.mu.Unlock()
		if !busy {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

func (o *outbox) send(ctx context.Context, env envelope) error {
	o.sem <- struct{}{}
	defer func() { <-o.sem }()
	ctx, cancel := context.WithTimeout(ctx, outboxSendLimit)
	defer cancel()
	if env.Report != nil {
		_, err := o.mgr.Report(ctx, env.Job, *env.Report)
		return err
	}
	return o.mgr.AppendLog(ctx, env.Job, env.Attempt, env.Seq, env.Stream, env.Data)
}

// writeFileSynced writes a file whole: to a temporary name, synced, then
// renamed into place, with the directory synced so the rename lasts.
func writeFileSynced(path string, b []byte) error { return writeFile(path, b, true) }

// writeFile writes a file whole: to a temporary name, then renamed into
// place, so a reader never sees part of it. synced flushes the file and
// the rename to disk, so that they outlast a crash of the machine, not
// only of the process.
func writeFile(path string, b []byte, synced bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if synced {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if !synced {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
