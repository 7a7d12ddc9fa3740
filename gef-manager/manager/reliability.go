package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eudat-gef/gef"
)

// Reliability holds the retry rules and the limit of every state that is
// not final, so that no job can stay unfinished forever. The zero value of
// each field means the default stated beside it; docs/operations.md lists
// them all with their flags.
type Reliability struct {
	// DefaultMaxAttempts is how often a job that meets system errors runs
	// when its request does not say. Default 3.
	DefaultMaxAttempts int
	// MaxAttemptsLimit bounds what a request may ask for. Default 10.
	MaxAttemptsLimit int
	// RetryAvoid keeps a retried job off the node it failed on for this
	// long, when another ready node holds its data. Default 1 min.
	RetryAvoid time.Duration
	// QueueTimeout ends a job no node took, as a system error. Default 7 days.
	QueueTimeout time.Duration
	// AssignedTimeout fails an attempt whose node did not start it.
	// Default 5 min.
	AssignedTimeout time.Duration
	// FetchTimeout fails an attempt whose node did not fetch the image.
	// Default 30 min.
	FetchTimeout time.Duration
	// MaxRunTime is the wall time of a job whose service sets none.
	// Default 7 days, the nodes' largest wall time by default.
	MaxRunTime time.Duration
	// RunGrace is the time beyond a job's wall time that its node has to
	// stop it and report, before the attempt is failed. Default 15 min.
	RunGrace time.Duration
	// StagingStallTimeout fails an attempt in staging whose node said
	// nothing of it for this long; nodes report staging progress every
	// minute. Default 30 min.
	StagingStallTimeout time.Duration
	// StagingTimeout fails an attempt still staging this long after it
	// began, even if its node keeps waiting for the object store.
	// Default 24 h.
	StagingTimeout time.Duration
	// CancelTimeout ends as canceled a job whose node did not confirm a
	// cancel. Default 5 min.
	CancelTimeout time.Duration
	// SweepInterval is how often the limits are enforced. Default 15 s.
	SweepInterval time.Duration
}

func (r *Reliability) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if r.DefaultMaxAttempts == 0 {
		r.DefaultMaxAttempts = 3
	}
	if r.MaxAttemptsLimit == 0 {
		r.MaxAttemptsLimit = 10
	}
	def(&r.RetryAvoid, time.Minute)
	def(&r.QueueTimeout, 7*24*time.Hour)
	def(&r.AssignedTimeout, 5*time.Minute)
	def(&r.FetchTimeout, 30*time.Minute)
	def(&r.MaxRunTime, 7*24*time.Hour)
	def(&r.RunGrace, 15*time.Minute)
	def(&r.StagingStallTimeout, 30*time.Minute)
	def(&r.StagingTimeout, 24*time.Hour)
	def(&r.CancelTimeout, 5*time.Minute)
	def(&r.SweepInterval, 15*time.Second)
}

func (r Reliability) validate() error {
	switch {
	case r.DefaultMaxAttempts < 1 || r.DefaultMaxAttempts > r.MaxAttemptsLimit:
		return fmt.Errorf("manager: the default max attempts %d must be between 1 and the limit %d", r.DefaultMaxAttempts, r.MaxAttemptsLimit)
	case r.MaxAttemptsLimit > 100:
		return errors.New("manager: the max attempts limit must be at most 100")
	case r.StagingTimeout < r.StagingStallTimeout:
		return fmt.Errorf("manager: the staging timeout %s must not be below the staging stall timeout %s", r.StagingTimeout, r.StagingStallTimeout)
	}
	for name, d := range map[string]time.Duration{"retry avoid": r.RetryAvoid, "queue timeout": r.QueueTimeout,
		"assigned timeout": r.AssignedTimeout, "fetch timeout": r.FetchTimeout, "max run time": r.MaxRunTime,
		"run grace": r.RunGrace, "staging stall timeout": r.StagingStallTimeout, "staging timeout": r.StagingTimeout,
		"cancel timeout": r.CancelTimeout, "sweep interval": r.SweepInterval} {
		if d < 0 {
			return fmt.Errorf("manager: the %s must not be negative", name)
		}
	}
	return nil
}

// wakeChannel carries wakeups between managers sharing a database:
// "<replica> <node>,<node>…" or "<replica> *" for every node.
const wakeChannel = "gef_wake"

// reliability is the manager's background work: wakeups across replicas,
// the node reaper and the sweeper of overdue jobs.
type reliability struct {
	m       *Manager
	replica string // tells this manager's own notifications apart
	// notifying is true while wakeups from other managers arrive; when it
	// is false, held polls re-check the database every second instead.
	notifying atomic.Bool
	// healthySince is when the database last came back (unix nanos), or 0
	// while it fails. Nodes could not reach a manager that could not reach
	// its database, so none is reaped until it has been back a node timeout.
	healthySince atomic.Int64
	lastPass     atomic.Int64

	// Wakeups for other managers wait here while one NOTIFY is under way,
	// so that a burst of submissions costs a few notifications, not one
	// each: PostgreSQL serialises the commits of notifying transactions.
	wakeMu   sync.Mutex
	wakeTo   map[string]bool // nodes; "*" for all
	wakeBusy bool

	retries  prometheus.Counter
	overdue  *prometheus.CounterVec
	nodeLoss prometheus.Counter
	wakeups  prometheus.Counter
}

func newReliability(m *Manager) *reliability {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	r := &reliability{m: m, replica: hex.EncodeToString(b),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_job_retries_total", Help: "Attempts that ended in a system error (or an asked-for failure) and were retried."}),
		overdue: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gef_jobs_overdue_total", Help: "Jobs that passed the limit of a state, by limit."}, []string{"limit"}),
		nodeLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_nodes_lost_total", Help: "Nodes marked down after missing their heartbeats."}),
		wakeups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_wakeups_received_total", Help: "Wakeups of held polls received from other managers."}),
	}
	m.metrics.Registry.MustRegister(r.retries, r.overdue, r.nodeLoss, r.wakeups)
	r.healthySince.Store(m.now().UnixNano())
	return r
}

func (r *reliability) run(ctx context.Context) error {
	var wg sync.WaitGroup
	if r.m.store.CanNotify() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.listen(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.loop(ctx, r.m.cfg.SweepInterval, "sweeping overdue jobs", r.sweep)
	}()
	r.loop(ctx, r.m.cfg.NodeTimeout/5, "reaping silent nodes", r.reap)
	wg.Wait()
	return nil
}

// loop runs pass every interval until ctx ends.
func (r *reliability) loop(ctx context.Context, interval time.Duration, what string, pass func(context.Context) error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := pass(ctx); err != nil && ctx.Err() == nil {
				r.m.log.Warn(what, "err", err)
			}
		}
	}
}

// listen turns other managers' notifications into wakeups of the polls
// this manager holds.
func (r *reliability) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.m.store.Listen(ctx, wakeChannel, r.m.log, func(payload string) {
			from, nodes, _ := strings.Cut(payload, " ")
			switch {
			case payload == "*":
				r.m.hub.wakeAll()
			case from == r.replica:
			case nodes == "*":
				r.wakeups.Inc()
				r.m.hub.wakeAll()
			default:
				r.wakeups.Inc()
				r.m.hub.wake(strings.Split(nodes, ",")...)
			}
		}, func(up bool) {
			if up && !r.notifying.Load() {
				r.m.hub.wakeAll() // catch up on what was missed
			}
			r.notifying.Store(up)
		})
		r.notifying.Store(false)
		if err != nil {
			r.m.log.Warn("listening for wakeups", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// recheck returns a channel that fires when a held poll must look at the
// database again by itself: every second while wakeups from other
// managers cannot arrive; never on a database only this process uses.
func (r *reliability) recheck() <-chan time.Time {
	if !r.m.store.CanNotify() || r.notifying.Load() {
		return nil
	}
	return time.After(time.Second)
}

// wake nudges the named nodes' polls, on this manager and on every other
// manager sharing the database.
func (m *Manager) wake(ctx context.Context, nodes ...string) {
	if len(nodes) == 0 {
		return
	}
	m.hub.wake(nodes...)
	m.notifyWake(ctx, strings.Join(nodes, ","))
}

// wakeAll nudges every node's poll, here and on every other manager.
func (m *Manager) wakeAll(ctx context.Context) {
	m.hub.wakeAll()
	m.notifyWake(ctx, "*")
}

func (m *Manager) notifyWake(ctx context.Context, nodes string) {
	if !m.store.CanNotify() {
		return
	}
	r := m.rel
	r.wakeMu.Lock()
	if r.wakeTo == nil {
		r.wakeTo = map[string]bool{}
	}
	for _, n := range strings.Split(nodes, ",") {
		r.wakeTo[n] = true
	}
	if r.wakeBusy { // the sender under way takes these along
		r.wakeMu.Unlock()
		return
	}
	r.wakeBusy = true
	r.wakeMu.Unlock()
	// The wakeup must go out even if the request that caused it ends now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for {
		r.wakeMu.Lock()
		batch := r.wakeTo
		r.wakeTo = map[string]bool{}
		if len(batch) == 0 {
			r.wakeBusy = false
			r.wakeMu.Unlock()
			return
		}
		r.wakeMu.Unlock()
		m.sendWake(ctx, batch)
	}
}

// sendWake notifies other managers of the nodes to wake, in payloads
// PostgreSQL takes.
func (m *Manager) sendWake(ctx context.Context, batch map[string]bool) {
	if batch["*"] {
		m.notifyOne(ctx, "*")
		return
	}
	names := make([]string, 0, len(batch))
	for n := range batch {
		names = append(names, n)
	}
	sort.Strings(names)
	nodes := strings.Join(names, ",")
	const max = 7000 // pg_notify payloads stay under 8000 bytes
	for len(nodes) > max {
		cut := strings.LastIndexByte(nodes[:max], ',')
		m.notifyOne(ctx, nodes[:cut])
		nodes = nodes[cut+1:]
	}
	m.notifyOne(ctx, nodes)
}

func (m *Manager) notifyOne(ctx context.Context, nodes string) {
	if err := m.store.Notify(ctx, wakeChannel, m.rel.replica+" "+nodes); err != nil {
		// Polls elsewhere still re-check when their wait ends.
		m.log.Warn("sending a wakeup to other managers", "err", err)
	}
}

// observe records whether a pass could reach the database.
func (r *reliability) observe(err error, now time.Time) {
	if errors.Is(err, gef.ErrUnavailable) {
		r.healthySince.Store(0)
		return
	}
	// A pass that did not run for a while (the process was stopped, or
	// every call hung) counts as an outage too.
	last := r.lastPass.Swap(now.UnixNano())
	if r.healthySince.Load() == 0 || (last != 0 && now.Sub(time.Unix(0, last)) > 3*(r.m.cfg.NodeTimeout/5)) {
		r.healthySince.Store(now.UnixNano())
	}
}

// mayReap reports whether nodes may be judged by their silence: only once
// the database has been reachable for a whole node timeout.
func (r *reliability) mayReap(now time.Time) bool {
	since := r.healthySince.Load()
	return since != 0 && now.Sub(time.Unix(0, since)) >= r.m.cfg.NodeTimeout
}
