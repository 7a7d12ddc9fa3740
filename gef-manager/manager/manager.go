// Package manager is the manager's core: it accepts jobs, hands them to the
// nodes that hold their data, applies the nodes' reports, and keeps logs and
// results in the object store. The HTTP API and the web GUI are thin layers
// over it.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// Config tunes the manager's core. The zero value of each field means the
// default stated beside it.
type Config struct {
	// NodeTimeout is how long a node may stay silent before it is marked
	// down and its jobs end as lost. Default 25 s; it must exceed PollWait.
	NodeTimeout time.Duration
	// PollWait is the longest a node's poll is held open. Default 10 s.
	PollWait time.Duration
	// UploadURLTTL is how long a presigned upload URL stays valid. Default 1 h.
	UploadURLTTL time.Duration
	// LogTailBytes bounds the live log kept in memory per job. Default 64 KiB.
	LogTailBytes int
	// SessionTTL is the lifetime of browser session tokens. Default 12 h.
	SessionTTL time.Duration
	// PublicURL is the manager's address as users reach it, e.g.
	// https://gef.example.org; jobs are cited at PublicURL/jobs/ID.
	PublicURL string
	// MaxImageBytes bounds an image tarball, uploaded, pulled from a
	// registry or built. Default 8 GiB.
	MaxImageBytes int64
	// MaxContextBytes bounds a build context. Default 512 MiB.
	MaxContextBytes int64
	// TempDir holds image tarballs and build contexts while they are
	// checked. Default: the system's temporary directory.
	TempDir string
	// RegistryTransport, if set, carries requests to image registries.
	RegistryTransport http.RoundTripper
	// Sessions tunes service sessions.
	Sessions SessionConfig
	// Retries and the limits of the states that are not final; see
	// reliability.go and docs/operations.md.
	Reliability
}

func (c *Config) setDefaults() {
	if c.NodeTimeout == 0 {
		c.NodeTimeout = 25 * time.Second
	}
	if c.PollWait == 0 {
		c.PollWait = 10 * time.Second
	}
	if c.UploadURLTTL == 0 {
		c.UploadURLTTL = time.Hour
	}
	if c.LogTailBytes == 0 {
		c.LogTailBytes = 64 << 10
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.MaxImageBytes == 0 {
		c.MaxImageBytes = 8 << 30
	}
	if c.MaxContextBytes == 0 {
		c.MaxContextBytes = 512 << 20
	}
	c.Sessions.setDefaults()
	c.Reliability.setDefaults()
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c.setDefaults()
	if c.NodeTimeout <= c.PollWait {
		return fmt.Errorf("manager: node timeout %s must exceed the poll wait %s", c.NodeTimeout, c.PollWait)
	}
	if c.LogTailBytes < 1024 {
		return errors.New("manager: log tail must be at least 1 KiB")
	}
	if c.MaxImageBytes < 1<<20 || c.MaxContextBytes < 1<<10 {
		return errors.New("manager: the image limit must be at least 1 MiB and the build context limit at least 1 KiB")
	}
	if err := c.Sessions.validate(); err != nil {
		return err
	}
	return c.Reliability.validate()
}

// Manager is the manager's core.
type Manager struct {
	cfg     Config
	store   *store.Store
	objects gef.ObjectStore
	issuer  *auth.Issuer
	log     *slog.Logger
	hub     *hub
	logs    *liveLogs
	metrics *Metrics
	now     func() time.Time
	// tunnels are the nodes' open tunnels, for reaching sessions.
	tunnels        *tunnels
	sessionMetrics *sessionMetrics
	rel            *reliability
	tokens         tokenCache
}

// New assembles a manager. Run must be called for node liveness to work.
func New(cfg Config, st *store.Store, objects gef.ObjectStore, issuer *auth.Issuer, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	m := &Manager{
		cfg: cfg, store: st, objects: retain(objects, st), issuer: issuer, log: log,
		hub: newHub(), logs: newLiveLogs(cfg.LogTailBytes), metrics: newMetrics(), now: time.Now,
		tunnels: newTunnels(),
	}
	m.sessionMetrics = newSessionMetrics(m.metrics.Registry)
	m.rel = newReliability(m)
	return m, nil
}

// Metrics returns the manager's Prometheus metrics.
func (m *Manager) Metrics() *Metrics { return m.metrics }

// Objects returns the object store holding results and logs.
func (m *Manager) Objects() gef.ObjectStore { return m.objects }

// Ready checks the manager's dependencies answer.
func (m *Manager) Ready(ctx context.Context) error {
	if err := m.store.Ping(ctx); err != nil {
		return err
	}
	if err := m.objects.Ping(ctx); err != nil {
		return fmt.Errorf("manager: object store: %w: %w", gef.ErrUnavailable, err)
	}
	return nil
}

// Run does the manager's background work until ctx ends: it listens for
// wakeups sent by other managers on the same database, marks silent nodes
// down and retries or ends the jobs they held, ends or retries jobs that
// stayed too long in a state, ends the builds of silent nodes, and keeps
// sessions to their limits.
func (m *Manager) Run(ctx context.Context) error {
	go m.runSessions(ctx)
	go m.rel.loop(ctx, m.cfg.NodeTimeout/5, "ending builds of silent nodes", m.reapBuilds)
	return m.rel.run(ctx)
}

// Shutdown releases the nodes' held polls and tunnels so that the HTTP
// server can stop.
func (m *Manager) Shutdown() {
	m.hub.closeAll()
	m.tunnels.closeAll()
}
