// Package agent is the gef-node agent: it dials out to the manager,
// registers the datasets it holds, long-polls for jobs, runs each in a
// sandboxed container through a Runtime with the datasets mounted
// read-only, stages the outputs into the object store through presigned
// URLs, and reports every step.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// Config is a node's configuration. Zero fields take the defaults stated.
type Config struct {
	// Name is the node's name; its credential must be for this name.
	Name string
	// Manager identifies the manager the node serves (its URL). Containers
	// are labelled with it, so nodes of different managers that share an
	// engine and a name never touch each other's containers.
	Manager string
	// Datasets are the datasets this node holds.
	Datasets []volumes.Dataset
	// WorkDir holds each job's output directories until they are staged.
	WorkDir string
	// Capacity is how many jobs run at once. Default: the number of CPUs.
	Capacity int
	// PollWait is how long the manager may hold a poll. Default 10 s.
	PollWait time.Duration
	// Limits applied to every container unless the service asks for less
	// (or, within MaxMemoryBytes and MaxCPUs, for more).
	DefaultMemoryBytes int64         // default 2 GiB
	MaxMemoryBytes     int64         // default 16 GiB
	DefaultCPUs        float64       // default 1
	MaxCPUs            float64       // default: the number of CPUs
	PidsLimit          int64         // default 512
	DefaultTimeout     time.Duration // default 24 h
	MaxTimeout         time.Duration // default 7 days
	// User runs containers whose image would run as root. Default 65534:65534.
	User string
	// LogLimitBytes caps the output kept of one job. Default 64 MiB.
	LogLimitBytes int64
	// OutputLimitBytes caps what one job may write to its outputs; a job
	// that writes more is killed. Default 10 GiB.
	OutputLimitBytes int64
	// StopGrace is the time between SIGTERM and SIGKILL. Default 10 s.
	StopGrace time.Duration
	// UploadConcurrency is how many files are uploaded at once. Default 4.
	UploadConcurrency int
	// RescanInterval is how often the datasets are digested again, so the
	// manager learns when their content changed. Default 1 min; negative
	// scans once, at start (a job still digests its data as it starts).
	RescanInterval time.Duration
	// FetchTimeout bounds fetching one image the node lacks. Default 30 min.
	FetchTimeout time.Duration
	// Sessions tunes long-lived service sessions.
	Sessions SessionConfig
}

func (c *Config) setDefaults() {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Capacity == 0 {
		c.Capacity = runtime.NumCPU()
	}
	if c.PollWait == 0 {
		c.PollWait = 10 * time.Second
	}
	def(&c.DefaultMemoryBytes, 2<<30)
	def(&c.MaxMemoryBytes, 16<<30)
	def(&c.PidsLimit, 512)
	def(&c.LogLimitBytes, 64<<20)
	def(&c.OutputLimitBytes, 10<<30)
	if c.DefaultCPUs == 0 {
		c.DefaultCPUs = 1
	}
	if c.MaxCPUs == 0 {
		c.MaxCPUs = float64(runtime.NumCPU())
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 24 * time.Hour
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 7 * 24 * time.Hour
	}
	if c.User == "" {
		c.User = "65534:65534"
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.UploadConcurrency == 0 {
		c.UploadConcurrency = 4
	}
	if c.RescanInterval == 0 {
		c.RescanInterval = time.Minute
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 30 * time.Minute
	}
	c.Sessions.setDefaults()
}

// Validate reports a configuration the agent cannot run with.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Name == "":
		return errors.New("agent: a node name is required")
	case c.WorkDir == "":
		return errors.New("agent: a work directory is required")
	case c.Capacity < 1:
		return errors.New("agent: capacity must be at least 1")
	case c.DefaultMemoryBytes > c.MaxMemoryBytes || c.DefaultCPUs > c.MaxCPUs || c.DefaultTimeout > c.MaxTimeout:
		return errors.New("agent: a default limit is above its maximum")
	}
	if err := c.Sessions.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, d := range c.Datasets {
		if seen[d.Name] {
			return fmt.Errorf("agent: dataset %q is given twice", d.Name)
		}
		seen[d.Name] = true
		if err := d.Check(); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	return nil
}

// Manager is the part of the manager's API a node uses; *client.Client
// implements it.
type Manager interface {
	Register(ctx context.Context, reg gef.NodeRegistration) error
	Poll(ctx context.Context, req gef.PollRequest) (gef.PollResponse, error)
	Report(ctx context.Context, id string, r gef.JobReport) (gef.Job, error)
	AppendLog(ctx context.Context, id string, attempt, seq int, stream string, data []byte) error
	UploadURLs(ctx context.Context, id string, attempt int, files []gef.OutputFile) (map[string]string, error)
	Assignment(ctx context.Context, id string) (gef.Assignment, error)
	// Image distribution and builds.
	ImageDownload(ctx context.Context, digest string) (gef.ImageDownload, error)
	ReportBuild(ctx context.Context, id string, r gef.BuildReport) (gef.Build, error)
	AppendBuildLog(ctx context.Context, id string, attempt, seq int, stream string, data []byte) error
	BuildUploadURL(ctx context.Context, id string) (string, error)
	ReportSession(ctx context.Context, id string, r gef.SessionReport) (gef.Session, error)
	// Tunnel opens a connection to the manager that carries the
	// sessions' traffic; it lives until ctx ends or it breaks.
	Tunnel(ctx context.Context) (net.Conn, error)
}

// Agent runs a node.
type Agent struct {
	cfg      Config
	rt       Runtime
	mgr      Manager
	log      *slog.Logger
	http     *http.Client // for presigned uploads
	datasets map[string]string
	engine   EngineInfo
	digests  *digests

	outbox   *outbox
	instance string // see LabelInstance

	mu       sync.Mutex
	tasks    map[string]*task
	builds   map[string]*buildTask
	sessions *sessionSet
	// fetches makes concurrent jobs needing one image fetch it once.
	fetches singleflight.Group
	// next holds a later attempt of a job whose earlier attempt still
	// stops here; it starts when that one is gone.
	next map[string]gef.Assignment
	// shutdownReason ends the jobs still running when the agent stops.
	shutdownReason string
	registered     chan struct{}
	wg             sync.WaitGroup
	// detached is closed when the agent stops waiting for the manager:
	// what is left is taken up by the next run (see adopt.go).
	detached chan struct{}
	stopping bool
}

// Label keys set on every container the agent makes.
const (
	LabelJob     = "org.eudat.gef.job"
	LabelAttempt = "org.eudat.gef.attempt"
	LabelNode    = "org.eudat.gef.node"
	LabelManager = "org.eudat.gef.manager"
	// LabelInstance names the work directory the node keeps the job's
	// state in, so that two agents of one name on one engine (two
	// deployments, or tests) never take each other's containers.
	LabelInstance = "org.eudat.gef.instance"
)

// New makes an agent.
func New(cfg Config, rt Runtime, mgr Manager, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	ds := map[string]string{}
	for _, d := range cfg.Datasets {
		ds[d.Name] = d.Dir
	}
	return &Agent{cfg: cfg, rt: rt, mgr: mgr, log: log, http: bulkClient(cfg.UploadConcurrency), datasets: ds, tasks: map[string]*task{},
		builds:  map[string]*buildTask{},
		digests: newDigests(cfg.WorkDir), sessions: newSessionSet(),
		next: map[string]gef.Assignment{}, shutdownReason: "the node agent shut down", registered: make(chan struct{}),
		detached: make(chan struct{})}, nil
}

// bulkClient is the HTTP client for object store transfers: outputs,
// images, build results. Net/http's defaults write a request body 4 KiB at
// a time and keep two idle connections per host, so parallel uploads of
// big files would cost a syscall per 4 KiB and a new connection per file.
func bulkClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 64<<10
	tr.MaxIdleConnsPerHost = 2 * conns
	return &http.Client{Transport: tr}
}

// shutdownGrace bounds how long a stopping agent waits for the manager to
// take its last reports; the next run delivers what is left.
const shutdownGrace = 15 * time.Second

// Run serves jobs until ctx ends, then stops the running containers and
// waits for their reports.
func (a *Agent) Run(ctx context.Context) error {
	info, err := a.rt.Info(ctx)
	if err != nil {
		return fmt.Errorf("agent: engine: %w", err)
	}
	a.engine = info
	a.log.Info("container engine", "version", info.Version, "api_version", info.APIVersion, "os", info.OS,
		"arch", info.Arch, "runtime", info.Runtime)
	if err := os.MkdirAll(filepath.Join(a.cfg.WorkDir, "jobs"), 0o755); err != nil {
		return fmt.Errorf("agent: work dir: %w", err)
	}
	if a.instance, err = instanceID(a.cfg.WorkDir); err != nil {
		return err
	}
	if err := a.prepareSessions(ctx); err != nil {
		return err
	}
	if a.outbox, err = openOutbox(filepath.Join(a.cfg.WorkDir, "outbox"), a.mgr, a.log); err != nil {
		return err
	}
	outboxCtx, stopOutbox := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopOutbox()
		a.outbox.wait()
	}()
	reg, err := a.registration(ctx)
	if err != nil {
		return err
	}
	if err := a.register(ctx, reg); err != nil {
		return err
	}
	a.log.Info("node registered", "node", a.cfg.Name, "datasets", len(reg.Datasets), "capacity", a.cfg.Capacity)
	// Take up what an earlier run left before the first poll, whose list
	// of running jobs tells the manager which jobs this node still holds.
	if err := a.adopt(ctx); err != nil {
		return err
	}
	a.outbox.start(outboxCtx)
	close(a.registered)
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.rescan(ctx, a.cfg.RescanInterval) }()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runTunnel(ctx)
	}()
	go a.reconcileLoop(ctx)

	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	failing := false
	for ctx.Err() == nil {
		resp, err := a.poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, gef.ErrConflict) { // the manager forgot us
				if err := a.register(ctx, reg); err != nil {
					break
				}
				continue
			}
			a.log.Warn("poll failed", "err", err)
			failing = true
			backoff.wait(ctx)
			continue
		}
		if failing {
			// The manager is back: deliver what waited for it now.
			failing = false
			a.outbox.retryNow()
		}
		backoff.reset()
		for _, id := range resp.Cancel {
			a.cancel(id)
		}
		for _, job := range resp.Jobs {
			a.start(job)
		}
		for _, b := range resp.Builds {
			a.startBuild(ctx, b)
		}
		for _, id := range resp.StopSessions {
			a.stopSession(id, "")
		}
		for _, s := range resp.Sessions {
			a.startSession(ctx, s)
		}
	}
	a.stopAllSessions(a.shutdownReason)
	a.mu.Lock()
	a.stopping = true
	for _, t := range a.tasks {
		t.stop(a.shutdownReason)
	}
	a.mu.Unlock()
	grace := time.AfterFunc(shutdownGrace, func() { close(a.detached) })
	defer grace.Stop()
	a.wg.Wait()
	return nil
}

// Registered is closed once the manager has taken the node's first
// registration.
func (a *Agent) Registered() <-chan struct{} { return a.registered }

func (a *Agent) registration(ctx context.Context) (gef.NodeRegistration, error) {
	reg := gef.NodeRegistration{Name: a.cfg.Name, Capacity: a.cfg.Capacity, EngineVersion: a.engine.Version,
		EngineAPI: a.engine.APIVersion, Runtime: a.engine.Runtime, AgentVersion: gef.Version, Datasets: []gef.NodeDataset{},
		Images: []gef.NodeImage{}}
	for _, d := range a.cfg.Datasets {
		files, size, err := d.Stat(ctx)
		if err != nil {
			return reg, fmt.Errorf("agent: %w", err)
		}
		reg.Datasets = append(reg.Datasets, gef.NodeDataset{Name: d.Name, Files: files, Size: size, Digest: a.digests.known(d.Name)})
	}
	imgs, err := a.rt.Images(ctx, "eudat.gef.service.name")
	if err != nil {
		return reg, fmt.Errorf("agent: list images: %w", err)
	}
	for _, img := range imgs {
		reg.Images = append(reg.Images, gef.NodeImage{ID: img.ID, Labels: img.Labels, Entrypoint: img.Entrypoint, Cmd: img.Cmd})
	}
	return reg, nil
}

// register retries until the manager takes the registration or ctx ends.
func (a *Agent) register(ctx context.Context, reg gef.NodeRegistration) error {
	backoff := newBackoff(200*time.Millisecond, 10*time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, callLimit)
		err := a.mgr.Register(cctx, reg)
		cancel()
		if err == nil {
			a.digests.remember(reg)
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("agent: register: %w", err)
		}
		a.log.Warn("register failed; retrying", "err", err)
		if !backoff.wait(ctx) {
			return ctx.Err()
		}
	}
}

// Refresh re-registers, e.g. after an image was loaded.
func (a *Agent) Refresh(ctx context.Context) error {
	reg, err := a.registration(ctx)
	if err != nil {
		return err
	}
	return a.register(ctx, reg)
}

// callLimit bounds one call to the manager, so that a connection a network
// partition cut is given up in time rather than waited on for good.
const callLimit = 30 * time.Second

// pollSlack is how much longer than its wait a poll may take before the
// node gives up on it and polls again.
const pollSlack = 10 * time.Second

// poll sends one long poll, bounded by the wait it asks for plus pollSlack.
func (a *Agent) poll(ctx context.Context) (gef.PollResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PollWait+pollSlack)
	defer cancel()
	return a.mgr.Poll(ctx, a.pollRequest())
}

func (a *Agent) pollRequest() gef.PollRequest {
	finals := a.outbox.finals()
	a.mu.Lock()
	defer a.mu.Unlock()
	req := gef.PollRequest{Free: a.cfg.Capacity - len(a.tasks) - len(a.builds), WaitMS: int(a.cfg.PollWait / time.Millisecond),
		Running: []string{}}
	for id := range a.builds {
		req.Builds = append(req.Builds, id)
	}
	sort.Strings(req.Builds)
	for id, t := range a.tasks {
		req.Running = append(req.Running, id)
		if t.stopping() {
			req.Stopping = append(req.Stopping, id)
		}
	}
	// A job whose final report waits in the outbox is still this node's.
	for _, id := range finals {
		if _, ok := a.tasks[id]; !ok {
			req.Running = append(req.Running, id)
		}
	}
	sort.Strings(req.Running)
	sort.Strings(req.Stopping)
	if a.cfg.Sessions.Capacity >= 0 {
		req.SessionFree, req.Sessions = a.sessionStatus()
	}
	return req
}

func (a *Agent) start(job gef.Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.startLocked(newTask(a, job))
}

// startLocked runs t unless its job is already here; a.mu is held. A later
// attempt of a job whose earlier attempt is still here (the manager gave
// the job up and handed it back) waits for the earlier one to stop.
func (a *Agent) startLocked(t *task) {
	id := t.job.JobID
	if cur, ok := a.tasks[id]; ok {
		if t.job.Attempt > cur.job.Attempt {
			a.next[id] = t.job
			cur.stop("")
		}
		return
	}
	a.tasks[id] = t
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t.run(context.Background())
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.tasks, id)
		if nxt, ok := a.next[id]; ok {
			delete(a.next, id)
			if !a.stopping {
				a.startLocked(newTask(a, nxt))
			}
		}
	}()
}

func (a *Agent) cancel(id string) {
	a.mu.Lock()
	t, ok := a.tasks[id]
	a.mu.Unlock()
	if ok {
		t.stop("")
	}
}

// retryable reports whether an error from the manager may pass: anything
// but a refusal of the request itself.
func retryable(err error) bool {
	for _, permanent := range []error{gef.ErrInvalid, gef.ErrNotFound, gef.ErrConflict, gef.ErrForbidden, gef.ErrUnauthorized} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	return true
}

// backoff is a capped exponential wait that ends early when ctx does.
type backoff struct{ min, max, cur time.Duration }

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, cur: min} }

func (b *backoff) reset() { b.cur = b.min }

// wait sleeps for the current delay and doubles it; false if ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	b.cur = min(b.cur*2, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
