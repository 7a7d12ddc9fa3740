package manager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/services"
)

// Sessions are long-lived HTTP service containers. A session is started
// like a job, on a node that holds its data and with the same sandbox, but
// it runs until it is stopped, idle for longer than its idle timeout, or at
// its maximum lifetime. Nodes end idle and expired sessions themselves,
// since all of a session's traffic passes through its node; the manager
// records and serves them.

// SessionConfig tunes sessions. The zero value of each field means the
// default stated beside it.
type SessionConfig struct {
	// PublicURL, such as https://gef.example.org, begins session URLs.
	// Empty: session URLs are paths, /s/….
	PublicURL string
	// OwnHost serves sessions only on PublicURL's host, a host name apart
	// from the API's and the GUI's, so that a session's pages do not share
	// their origin: requests for /s/ on other hosts are redirected there.
	OwnHost bool
	// DefaultIdle is the idle timeout of a session that names none. Default 1 h.
	DefaultIdle time.Duration
	// DefaultLifetime is the maximum lifetime of a session that names
	// none. Default 24 h.
	DefaultLifetime time.Duration
	// MaxLifetime bounds what a session may ask for. Default 30 days.
	MaxLifetime time.Duration
	// AccessTTL is how long a browser stays signed in to one session after
	// following a link to it. Default 12 h.
	AccessTTL time.Duration
	// LinkTTL is how long a link made by SessionLink may be followed.
	// Default 5 min.
	LinkTTL time.Duration
}

func (c *SessionConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DefaultIdle, time.Hour)
	def(&c.DefaultLifetime, 24*time.Hour)
	def(&c.MaxLifetime, 30*24*time.Hour)
	def(&c.AccessTTL, 12*time.Hour)
	def(&c.LinkTTL, 5*time.Minute)
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
}

func (c SessionConfig) validate() error {
	c.setDefaults()
	if u, err := url.Parse(c.PublicURL); c.OwnHost && (err != nil || u.Host == "") {
		return fmt.Errorf("manager: sessions on a host of their own need a URL naming it, not %q", c.PublicURL)
	}
	if c.DefaultIdle < time.Second || c.DefaultLifetime < time.Second || c.MaxLifetime < c.DefaultLifetime ||
		c.DefaultIdle > c.MaxLifetime {
		return fmt.Errorf("manager: session defaults (idle %s, lifetime %s) must be at least 1s and within the maximum lifetime %s",
			c.DefaultIdle, c.DefaultLifetime, c.MaxLifetime)
	}
	return nil
}

// maxSessionUsers bounds the users one session may be shared with.
const maxSessionUsers = 100

// sessionName is a friendly name: a lower-case DNS label, so it reads well
// in a URL and never looks like a session id, which is upper case.
var sessionName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

type sessionMetrics struct {
	started prometheus.Counter
	ended   *prometheus.CounterVec
	tunnels prometheus.Gauge
}

func newSessionMetrics(reg *prometheus.Registry) *sessionMetrics {
	m := &sessionMetrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_sessions_started_total", Help: "Sessions accepted."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gef_sessions_ended_total", Help: "Sessions that ended, by final state."}, []string{"state"}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gef_node_tunnels", Help: "Nodes with a tunnel open to this manager."}),
	}
	reg.MustRegister(m.started, m.ended, m.tunnels)
	return m
}

// StartSession validates a session request as Submit validates a job, and
// queues the session for a node that holds its data.
func (m *Manager) StartSession(ctx context.Context, p Principal, req gef.SessionRequest) (gef.Session, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser); err != nil {
		return gef.Session{}, err
	}
	opts, err := m.sessionOptions(ctx, p, req)
	if err != nil {
		return gef.Session{}, err
	}
	if req.Service == "" {
		return gef.Session{}, gef.Invalid("service", "is required")
	}
	svc, err := m.resolveService(ctx, req.Service, req.Version)
	if errors.Is(err, gef.ErrNotFound) {
		if req.Version != "" {
			return gef.Session{}, gef.Invalid("version", "service %q has no version %q", req.Service, req.Version)
		}
		return gef.Session{}, gef.Invalid("service", "%s", strings.TrimSuffix(err.Error(), ": "+gef.ErrNotFound.Error()))
	}
	if err != nil {
		return gef.Session{}, err
	}
	if svc.HTTP == nil {
		return gef.Session{}, gef.Invalid("service", "%s %s is not a long-lived HTTP service: its image has no %shttp.port label",
			svc.Name, svc.Version, services.LabelPrefix)
	}
	bindings, files, err := m.bindInputs(ctx, p, svc, req.JobRequest)
	if err != nil {
		return gef.Session{}, err
	}
	params, err := services.ValidateParams(&svc, req.Params)
	if err != nil {
		return gef.Session{}, err
	}
	argv := append(append(append([]string{}, svc.Entrypoint...), svc.Cmd...), services.Argv(&svc, params)...)
	datasets := make([]string, 0, len(bindings))
	for _, ds := range bindings {
		datasets = append(datasets, ds)
	}
	holders, err := m.store.NodesHolding(ctx, datasets)
	if err != nil {
		return gef.Session{}, err
	}
	if len(holders) == 0 && len(datasets) > 0 {
		sort.Strings(datasets)
		return gef.Session{}, gef.Invalid("inputs", "no node holds all of the datasets %s together", strings.Join(datasets, ", "))
	}

	s := opts
	s.ID, s.State, s.Service, s.Version, s.ImageDigest = gef.NewID(), gef.SessionQueued, svc.Name, svc.Version, svc.Digest
	s.Inputs, s.Params, s.Argv, s.Owner, s.Path = bindings, params, argv, p.Name, svc.HTTP.Path
	s.Timestamps = gef.SessionTimestamps{Created: m.now().UTC()}
	spec := gef.SessionAssignment{ImageDigest: svc.Digest, Argv: argv, Files: files, Outputs: svc.Outputs,
		Resources: svc.Resources, Port: svc.HTTP.Port, IdleTimeoutSeconds: s.IdleTimeoutSeconds,
		MaxLifetimeSeconds: s.MaxLifetimeSeconds}
	for _, in := range svc.DatasetInputs() {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in.Name, Dataset: bindings[in.Name], Path: in.Path})
	}
	if err := m.store.CreateSession(ctx, s, spec); err != nil {
		if errors.Is(err, gef.ErrConflict) {
			return gef.Session{}, fmt.Errorf("the session name %q belongs to another user; choose another: %w", s.Name, gef.ErrConflict)
		}
		return gef.Session{}, err
	}
	m.sessionMetrics.started.Inc()
	m.log.Info("session queued", "session", s.ID, "name", s.Name, "service", s.Service, "owner", s.Owner, "access", s.Access)
	m.hub.wake(holders...)
	if len(datasets) == 0 {
		m.hub.wakeAll()
	}
	return m.decorateSession(s), nil
}

// sessionOptions checks a request's session options and returns a session
// holding them, with defaults filled in.
func (m *Manager) sessionOptions(ctx context.Context, p Principal, req gef.SessionRequest) (gef.Session, error) {
	cfg := m.cfg.Sessions
	s := gef.Session{Name: req.Name, Access: req.Access, Users: []string{}, Groups: []string{}}
	if s.Name != "" {
		if !sessionName.MatchString(s.Name) || gef.ValidID(strings.ToUpper(s.Name)) {
			return s, gef.Invalid("name", "must be 1-63 lower-case letters, digits or '-', not starting or ending with '-', and not shaped like a session id")
		}
		owner, err := m.store.SessionNameOwner(ctx, s.Name)
		switch {
		case err == nil && owner != p.Name:
			return s, fmt.Errorf("the session name %q belongs to another user; choose another: %w", s.Name, gef.ErrConflict)
		case err != nil && !errors.Is(err, gef.ErrNotFound):
			return s, err
		}
	}
	if s.Access == "" {
		s.Access = gef.AccessOwner
	}
	if !s.Access.Valid() {
		return s, gef.Invalid("access", "must be owner, users or public, not %q", s.Access)
	}
	if len(req.Users) > 0 && s.Access != gef.AccessUsers {
		return s, gef.Invalid("users", "name users only with access \"users\"")
	}
	if len(req.Groups) > 0 && s.Access != gef.AccessUsers {
		return s, gef.Invalid("groups", "name groups only with access \"users\"")
	}
	if s.Access == gef.AccessUsers && len(req.Users)+len(req.Groups) == 0 {
		return s, gef.Invalid("users", "access \"users\" needs at least one user or group name")
	}
	if len(req.Users) > maxSessionUsers || len(req.Groups) > maxSessionUsers {
		return s, gef.Invalid("users", "at most %d users and %d groups", maxSessionUsers, maxSessionUsers)
	}
	if len(req.Groups) > 0 {
		known, err := m.store.Groups(ctx)
		if err != nil {
			return s, err
		}
		for _, g := range req.Groups {
			if !slices.ContainsFunc(known, func(k gef.Group) bool { return k.Name == g }) {
				return s, gef.Invalid("groups", "no group is named %q", g)
			}
			if !slices.Contains(s.Groups, g) {
				s.Groups = append(s.Groups, g)
			}
		}
		sort.Strings(s.Groups)
	}
	for _, u := range req.Users {
		if _, _, err := m.store.UserByName(ctx, u); errors.Is(err, gef.ErrNotFound) {
			return s, gef.Invalid("users", "no user is named %q", u)
		} else if err != nil {
			return s, err
		}
		if !slices.Contains(s.Users, u) && u != p.Name {
			s.Users = append(s.Users, u)
		}
	}
	sort.Strings(s.Users)
	seconds := func(field string, v int64, def time.Duration) (int64, error) {
		if v == 0 {
			return int64(def / time.Second), nil
		}
		if v < 1 || v > int64(cfg.MaxLifetime/time.Second) {
			return 0, gef.Invalid(field, "must be between 1 and %d seconds (%s)", int64(cfg.MaxLifetime/time.Second), cfg.MaxLifetime)
		}
		return v, nil
	}
	var err error
	if s.IdleTimeoutSeconds, err = seconds("idle_timeout_seconds", req.IdleTimeoutSeconds, cfg.DefaultIdle); err != nil {
		return s, err
	}
	if s.MaxLifetimeSeconds, err = seconds("max_lifetime_seconds", req.MaxLifetimeSeconds, cfg.DefaultLifetime); err != nil {
		return s, err
	}
	return s, nil
}

// decorateSession fills in what is derived rather than stored: the session's URL.
func (m *Manager) decorateSession(s gef.Session) gef.Session {
	ref := s.ID
	if s.Name != "" {
		ref = s.Name
	}
	s.URL = m.cfg.Sessions.PublicURL + SessionPath(ref) + strings.TrimPrefix(s.Path, "/")
	return s
}

// PublicURL is the manager's public URL, as sessions use it; empty if not
// configured.
func (m *Manager) PublicURL() string { return m.cfg.Sessions.PublicURL }

// SessionHost is the host name sessions are served on when they have one of
// their own, else empty.
func (m *Manager) SessionHost() string {
	if !m.cfg.Sessions.OwnHost {
		return ""
	}
	u, err := url.Parse(m.cfg.Sessions.PublicURL)
	if err != nil {
		return ""
	}
	return u.Host
}

// SessionPath is where a session is served: /s/REF/, REF its id or name.
func SessionPath(ref string) string { return "/s/" + ref + "/" }

// Session returns a session its caller may see: its owner's, or any for
// admins. A session the caller may not see is not found.
func (m *Manager) Session(ctx context.Context, p Principal, id string) (gef.Session, error) {
	if p.Anonymous() {
		return gef.Session{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !gef.ValidID(id) {
		return gef.Session{}, gef.Invalid("id", "%q is not a session id", id)
	}
	s, err := m.store.Session(ctx, id)
	if err != nil {
		return gef.Session{}, err
	}
	if !p.Is(gef.RoleAdmin) && s.Owner != p.Name {
		return gef.Session{}, fmt.Errorf("session %s: %w", id, gef.ErrNotFound)
	}
	return m.decorateSession(s), nil
}

// Sessions lists the sessions the caller may see, newest first.
func (m *Manager) Sessions(ctx context.Context, p Principal, f gef.SessionFilter) (gef.Page[gef.Session], error) {
	if p.Anonymous() {
		return gef.Page[gef.Session]{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if f.State != "" && !f.State.Valid() {
		return gef.Page[gef.Session]{}, gef.Invalid("state", "unknown state %q", f.State)
	}
	if f.PageToken != "" && !gef.ValidID(f.PageToken) {
		return gef.Page[gef.Session]{}, gef.Invalid("page_token", "is not a page token")
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return gef.Page[gef.Session]{}, gef.Invalid("limit", "must be between 1 and 1000")
	}
	if !p.Is(gef.RoleAdmin) {
		if f.Owner != "" && f.Owner != p.Name {
			return gef.Page[gef.Session]{Items: []gef.Session{}}, nil
		}
		f.Owner = p.Name
	}
	page, err := m.store.Sessions(ctx, f)
	for i := range page.Items {
		page.Items[i] = m.decorateSession(page.Items[i])
	}
	return page, err
}

// StopSession stops a session: a queued one at once, a running one once its
// node has stopped its container, gracefully.
func (m *Manager) StopSession(ctx context.Context, p Principal, id string) (gef.Session, error) {
	s, err := m.Session(ctx, p, id)
	if err != nil {
		return gef.Session{}, err
	}
	s, err = m.store.StopSession(ctx, s.ID, "stopped by "+p.Name, m.now().UTC())
	if err != nil {
		return gef.Session{}, err
	}
	if s.State.Final() {
		m.sessionEnded(s)
	} else if s.Node != "" {
		m.hub.wake(s.Node)
	}
	return m.decorateSession(s), nil
}

// ReportSession applies a node's report on one of its sessions.
func (m *Manager) ReportSession(ctx context.Context, p Principal, id string, r gef.SessionReport) (gef.Session, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.Session{}, err
	}
	if !gef.ValidID(id) {
		return gef.Session{}, gef.Invalid("id", "%q is not a session id", id)
	}
	if r.At.IsZero() || r.At.After(m.now().Add(time.Minute)) {
		r.At = m.now()
	}
	r.At = r.At.UTC()
	if len(r.Reason) > 4096 {
		r.Reason = r.Reason[:4096]
	}
	s, applied, err := m.store.ReportSession(ctx, p.Name, id, r)
	if err != nil {
		return gef.Session{}, err
	}
	if applied {
		if s.State.Final() {
			m.sessionEnded(s)
		} else {
			m.log.Info("session running", "session", s.ID, "name", s.Name, "node", s.Node)
		}
	}
	return m.decorateSession(s), nil
}

func (m *Manager) sessionEnded(s gef.Session) {
	m.sessionMetrics.ended.WithLabelValues(string(s.State)).Inc()
	m.log.Info("session ended", "session", s.ID, "name", s.Name, "state", s.State, "node", s.Node, "reason", s.Reason)
}

// pollSessions adds to a node's poll answer the sessions it must start and
// those it must stop, ends the sessions it lost, and records their
// activity.
func (m *Manager) pollSessions(ctx context.Context, node string, req gef.PollRequest, resp *gef.PollResponse) error {
	if err := m.store.TouchSessions(ctx, node, req.Sessions); err != nil {
		return err
	}
	active, stops, err := m.store.NodeSessions(ctx, node)
	if err != nil {
		return err
	}
	runs := map[string]gef.NodeSession{}
	for _, ns := range req.Sessions {
		runs[ns.ID] = ns
	}
	var lost []string
	for _, id := range active {
		if _, ok := runs[id]; !ok {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		ended, err := m.store.EndLostSessions(ctx, node, lost,
			"node "+node+" no longer runs the session (its agent restarted or never received it)", m.now().UTC())
		if err != nil {
			return err
		}
		for _, id := range ended {
			if s, err := m.store.Session(ctx, id); err == nil {
				m.sessionEnded(s)
			}
		}
		active = slices.DeleteFunc(active, func(id string) bool { return slices.Contains(ended, id) })
	}
	for _, ns := range req.Sessions {
		if ns.Stopping {
			continue
		}
		if !slices.Contains(active, ns.ID) || slices.Contains(stops, ns.ID) {
			resp.StopSessions = append(resp.StopSessions, ns.ID)
		}
	}
	if req.SessionFree <= 0 {
		return nil
	}
	claimed, err := m.store.ClaimSessions(ctx, node, req.SessionFree, m.now().UTC())
	if err != nil {
		return err
	}
	resp.Sessions = append(resp.Sessions, claimed...)
	return nil
}

// sessionSweep is how often the manager looks for sessions to end, and
// accessSweeps how many sweeps apart it checks that their owners may still
// use their data.
const (
	sessionSweep = 2 * time.Second
	accessSweeps = 5
)

// runSessions ends the sessions of nodes that went silent, and asks nodes
// to stop sessions that outlived their lifetime, until ctx ends.
func (m *Manager) runSessions(ctx context.Context) {
	tick := time.NewTicker(sessionSweep)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n%accessSweeps == 0 {
			if err := m.stopWithdrawnSessions(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("checking the access of sessions to their data", "err", err)
			}
		}
		now := m.now().UTC()
		ended, err := m.store.EndSessionsOfDownNodes(ctx, now)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("ending the sessions of silent nodes", "err", err)
		}
		for _, id := range ended {
			if s, err := m.store.Session(ctx, id); err == nil {
				m.sessionEnded(s)
			}
		}
		// The node stops a session at its lifetime; allow it a minute
		// and its stop grace before stepping in.
		nodes, err := m.store.StopOverdueSessions(ctx, now, time.Minute)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("stopping overdue sessions", "err", err)
		}
		m.hub.wake(nodes...)
	}
}

// stopWithdrawnSessions stops the live sessions whose owner may no longer
// use one of their datasets: a session serves its data for as long as it
// runs, so access withdrawn from its owner must end it.
func (m *Manager) stopWithdrawnSessions(ctx context.Context) error {
	for _, state := range []gef.SessionState{gef.SessionStarting, gef.SessionRunning} {
		page, err := m.store.Sessions(ctx, gef.SessionFilter{State: state, Limit: 1000})
		if err != nil {
			return err
		}
		for _, s := range page.Items {
			if len(s.Inputs) == 0 {
				continue
			}
			ds, err := m.ownerMayUse(ctx, gef.Job{Owner: s.Owner, Inputs: s.Inputs})
			if err != nil || ds == "" {
				if err != nil {
					m.log.Warn("checking a session's access to its data", "session", s.ID, "err", err)
				}
				continue
			}
			s, err = m.store.StopSession(ctx, s.ID, fmt.Sprintf("%s may no longer use dataset %q", s.Owner, ds), m.now().UTC())
			if err != nil {
				continue // it ended meanwhile
			}
			m.log.Info("session stopped: its owner lost access to its data", "session", s.ID, "dataset", ds)
			m.hub.wake(s.Node)
		}
	}
	return nil
}
