package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// Sessions are long-lived HTTP service containers. A node runs each one
// with the same mounts and sandbox as a job, except that the container
// joins an internal bridge network (no route out, no traffic between
// containers) on which the agent reaches its port. Their traffic arrives
// through the agent's tunnel to the manager, so the agent sees all of it:
// it ends a session that has been idle for longer than its idle timeout,
// and one that reaches its maximum lifetime.

// SessionConfig tunes the sessions a node runs. Zero fields take the
// defaults stated.
type SessionConfig struct {
	// Capacity is how many sessions run at once, apart from jobs.
	// Default 8; negative means the node runs no sessions.
	Capacity int
	// Network names the internal bridge network that session containers
	// join, shared by the agents on one engine. Default gef-sessions.
	Network string
	// LogFileBytes and LogFiles cap what the engine keeps of a session's
	// output: it rotates through LogFiles files of LogFileBytes each, so a
	// session that runs for weeks cannot fill a disk. Default 3 × 10 MiB.
	LogFileBytes int64
	LogFiles     int
	// StartTimeout bounds how long a session's container may take to
	// answer on its port. Default 2 min.
	StartTimeout time.Duration
}

func (c *SessionConfig) setDefaults() {
	if c.Capacity == 0 {
		c.Capacity = 8
	}
	if c.Network == "" {
		c.Network = "gef-sessions"
	}
	if c.LogFileBytes == 0 {
		c.LogFileBytes = 10 << 20
	}
	if c.LogFiles == 0 {
		c.LogFiles = 3
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
}

func (c SessionConfig) validate() error {
	c.setDefaults()
	switch {
	case c.LogFileBytes < 64<<10 || c.LogFiles < 1 || c.LogFiles > 100:
		return errors.New("agent: session logs need files of at least 64 KiB, and 1 to 100 of them")
	case c.StartTimeout < time.Second:
		return errors.New("agent: the session start timeout must be at least 1s")
	}
	return nil
}

// LabelSession names the session a container runs.
const LabelSession = "org.eudat.gef.session"

// sessionSet is the sessions a node runs.
type sessionSet struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessionSet() *sessionSet { return &sessionSet{m: map[string]*session{}} }

func (ss *sessionSet) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[id]
}

// session runs one session on this node.
type session struct {
	a      *Agent
	s      gef.SessionAssignment
	dir    string
	stopCh chan struct{}
	log    *slog.Logger

	mu         sync.Mutex
	stopReason string // empty when the manager asked
	isStopping bool
	container  string
	addr       string // host:port of the container's service, once it answers

	lastActive atomic.Int64 // unix nanoseconds of the last traffic
}

// prepareSessions makes sure the sessions network exists.
func (a *Agent) prepareSessions(ctx context.Context) error {
	if a.cfg.Sessions.Capacity < 0 {
		return nil
	}
	if _, err := a.rt.EnsureNetwork(ctx, a.sessionNetwork()); err != nil {
		return fmt.Errorf("agent: sessions network: %w", err)
	}
	return nil
}

func (a *Agent) sessionNetwork() NetworkSpec {
	return NetworkSpec{Name: a.cfg.Sessions.Network, Internal: true, Isolated: true,
		Labels: map[string]string{"org.eudat.gef.network": "sessions"}}
}

// sessionStatus is what the node's poll says of its sessions.
func (a *Agent) sessionStatus() (free int, list []gef.NodeSession) {
	ss := a.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, x := range ss.m {
		ns := gef.NodeSession{ID: id, Stopping: x.stopping()}
		if t := x.lastActive.Load(); t > 0 {
			ns.LastActive = time.Unix(0, t).UTC()
		}
		list = append(list, ns)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return max(0, a.cfg.Sessions.Capacity-len(ss.m)), list
}

func (a *Agent) startSession(ctx context.Context, s gef.SessionAssignment) {
	ss := a.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.m[s.SessionID]; ok {
		return
	}
	x := &session{a: a, s: s, stopCh: make(chan struct{}), log: a.log.With("session", s.SessionID),
		dir: filepath.Join(a.cfg.WorkDir, "sessions", s.SessionID)}
	ss.m[s.SessionID] = x
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		x.run(context.WithoutCancel(ctx))
		ss.mu.Lock()
		delete(ss.m, s.SessionID)
		ss.mu.Unlock()
	}()
}

func (a *Agent) stopSession(id, reason string) {
	if x := a.sessions.get(id); x != nil {
		x.stop(reason)
	}
}

func (a *Agent) stopAllSessions(reason string) {
	a.sessions.mu.Lock()
	defer a.sessions.mu.Unlock()
	for _, x := range a.sessions.m {
		x.stop(reason)
	}
}

// stop asks the session to end; reason is empty when the manager asked.
func (x *session) stop(reason string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.isStopping {
		x.isStopping, x.stopReason = true, reason
		close(x.stopCh)
	}
}

func (x *session) stopping() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.isStopping
}

// address is where the container answers, once it does.
func (x *session) address() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.addr
}

// touch records traffic.
func (x *session) touch() { x.lastActive.Store(time.Now().UnixNano()) }

func (x *session) idleFor() time.Duration {
	return time.Since(time.Unix(0, x.lastActive.Load()))
}

// shutdownReport bounds the final report of a session the agent stops as it
// shuts down; a manager that misses it ends the session as lost.
const shutdownReport = 30 * time.Second

func (x *session) run(ctx context.Context) {
	final := x.execute(ctx)
	final.At = time.Now()
	if t := x.lastActive.Load(); t > 0 {
		final.LastActive = time.Unix(0, t)
	}
	rctx := ctx
	x.mu.Lock()
	if x.stopReason != "" {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, shutdownReport)
		defer cancel()
	}
	x.mu.Unlock()
	if err := x.report(rctx, final); err != nil {
		x.log.Error("final session report failed", "state", final.State, "err", err)
	} else {
		x.log.Info("session ended", "state", final.State, "reason", final.Reason)
	}
	x.mu.Lock()
	id := x.container
	x.mu.Unlock()
	if id != "" {
		if err := x.a.rt.Remove(ctx, id); err != nil {
			x.log.Warn("removing session container", "container", id, "err", err)
		}
	}
	if err := volumes.RemoveAll(x.dir); err != nil {
		x.log.Warn("removing session directory", "dir", x.dir, "err", err)
	}
}

func failed(format string, args ...any) gef.SessionReport {
	return gef.SessionReport{State: gef.SessionFailed, Reason: fmt.Sprintf(format, args...)}
}

// exit is how a container ended, once it has: done is closed then, and
// st and err are set, for any number of readers.
type exit struct {
	done chan struct{}
	st   ExitStatus
	err  error
}

func (x *session) waitExit(ctx context.Context, id string) *exit {
	e := &exit{done: make(chan struct{})}
	go func() {
		e.st, e.err = x.a.rt.Wait(ctx, id)
		close(e.done)
	}()
	return e
}

// execute runs the session's container until the session ends, and
// returns the report that ends it.
func (x *session) execute(ctx context.Context) gef.SessionReport {
	a, s, rt := x.a, x.s, x.a.rt
	if len(s.Argv) == 0 {
		return failed("the session has no command to run")
	}
	if s.Port < 1 || s.Port > 65535 {
		return failed("the service declares no valid HTTP port")
	}
	img, err := rt.Image(ctx, s.ImageDigest)
	if errors.Is(err, gef.ErrNotFound) {
		return failed("image %s is not on node %s", s.ImageDigest, a.cfg.Name)
	}
	if err != nil {
		return failed("engine: %v", err)
	}
	spec, err := x.containerSpec(ctx, img)
	if err != nil {
		return failed("%v", err)
	}
	id, err := rt.Create(ctx, spec)
	if err != nil {
		// A create that timed out may still have made the container.
		if rerr := rt.Remove(ctx, spec.Name); rerr != nil {
			x.log.Warn("removing a container whose creation failed", "container", spec.Name, "err", rerr)
		}
		return failed("engine: %v", err)
	}
	x.mu.Lock()
	x.container = id
	x.mu.Unlock()
	if err := rt.Start(ctx, id); err != nil {
		return failed("engine: %v", err)
	}
	exited := x.waitExit(ctx, id)
	info, err := rt.Inspect(ctx, id)
	if err == nil && info.IPAddress == "" && !info.Running {
		// It exited already, and left its network with it.
		select {
		case <-exited.done:
			return x.end(ctx, id, exited, x.exitReport(ctx, exited, "before it answered on port "+strconv.Itoa(s.Port)))
		case <-time.After(10 * time.Second):
		}
	}
	if err != nil || info.IPAddress == "" {
		return x.end(ctx, id, exited, failed("engine: the container has no address on network %s (%v)", a.cfg.Sessions.Network, err))
	}
	addr := net.JoinHostPort(info.IPAddress, strconv.Itoa(s.Port))
	if r, ok := x.awaitPort(ctx, addr, exited); !ok {
		return x.end(ctx, id, exited, r)
	}
	x.mu.Lock()
	x.addr = addr
	x.mu.Unlock()
	x.touch() // idle time counts from the start
	if err := x.report(ctx, gef.SessionReport{State: gef.SessionRunning, At: time.Now()}); err != nil {
		return x.end(ctx, id, exited, failed("reporting the start: %v", err))
	}
	x.log.Info("session running", "container", id, "address", addr)
	return x.watch(ctx, id, exited)
}

// containerSpec is a job's container spec, sandbox and all, on the
// sessions network, with its logs rotated.
func (x *session) containerSpec(ctx context.Context, img ImageInfo) (ContainerSpec, error) {
	a, s := x.a, x.s
	t := newTask(a, gef.Assignment{JobID: s.SessionID, Attempt: 1, ImageDigest: s.ImageDigest, Argv: s.Argv,
		Mounts: s.Mounts, Files: s.Files, Outputs: s.Outputs, Resources: s.Resources})
	t.dir = x.dir
	sp, err := t.containerSpec(img)
	if err != nil {
		return ContainerSpec{}, err
	}
	spec := sp.ContainerSpec
	// Another agent on the engine may have settled the network anew.
	if spec.Network, err = a.rt.EnsureNetwork(ctx, a.sessionNetwork()); err != nil {
		return ContainerSpec{}, fmt.Errorf("engine: sessions network: %w", err)
	}
	spec.Name = "gef-session-" + strings.ToLower(s.SessionID)
	spec.Env = []string{"GEF_SESSION_ID=" + s.SessionID}
	spec.Labels = map[string]string{LabelSession: s.SessionID, LabelNode: a.cfg.Name}
	spec.LogMaxBytes, spec.LogMaxFiles = a.cfg.Sessions.LogFileBytes, a.cfg.Sessions.LogFiles
	spec.ExposePort = 0
	return spec, nil
}

// awaitPort waits until the container accepts connections on addr. It
// returns false, with the report that ends the session, if the container
// exits, the session is stopped, or the start timeout passes first.
func (x *session) awaitPort(ctx context.Context, addr string, exited *exit) (gef.SessionReport, bool) {
	deadline := time.NewTimer(x.a.cfg.Sessions.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return gef.SessionReport{}, true
		}
		select {
		case <-exited.done:
			return x.exitReport(ctx, exited, "before it answered on port "+strconv.Itoa(x.s.Port)), false
		case <-x.stopCh:
			return x.stoppedReport(), false
		case <-deadline.C:
			return failed("the service did not answer on port %d within %s", x.s.Port, x.a.cfg.Sessions.StartTimeout), false
		case <-tick.C:
		}
	}
}

// watch waits for the session to end: stopped, idle, at its lifetime, or
// by its container's exit.
func (x *session) watch(ctx context.Context, id string, exited *exit) gef.SessionReport {
	idle := time.Duration(x.s.IdleTimeoutSeconds) * time.Second
	lifetime := time.Duration(x.s.MaxLifetimeSeconds) * time.Second
	end := time.NewTimer(lifetime)
	defer end.Stop()
	tick := time.NewTicker(min(max(idle/10, 100*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-exited.done:
			return x.exitReport(ctx, exited, "")
		case <-x.stopCh:
			return x.end(ctx, id, exited, x.stoppedReport())
		case <-end.C:
			return x.end(ctx, id, exited, gef.SessionReport{State: gef.SessionStopped,
				Reason: fmt.Sprintf("reached its maximum lifetime of %s", lifetime)})
		case <-tick.C:
			if idle > 0 && x.idleFor() >= idle {
				return x.end(ctx, id, exited, gef.SessionReport{State: gef.SessionStopped,
					Reason: fmt.Sprintf("idle for more than %s", idle)})
			}
		}
	}
}

func (x *session) stoppedReport() gef.SessionReport {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.stopReason != "" {
		return failed("the session was stopped because %s", x.stopReason)
	}
	return gef.SessionReport{State: gef.SessionStopped} // the manager keeps why it asked
}

// end stops the container gracefully, SIGTERM then SIGKILL after the
// grace period, and returns r with the exit code.
func (x *session) end(ctx context.Context, id string, exited *exit, r gef.SessionReport) gef.SessionReport {
	x.mu.Lock()
	x.addr = "" // no new connections
	x.mu.Unlock()
	if err := x.a.rt.Stop(ctx, id, x.a.cfg.StopGrace); err != nil {
		x.log.Warn("stopping session container", "container", id, "err", err)
		return r
	}
	<-exited.done
	if exited.err == nil && r.ExitCode == nil {
		code := exited.st.Code
		r.ExitCode = &code
	}
	return r
}

// exitReport is the report of a container that exited by itself, with the
// end of its output, which often says why.
func (x *session) exitReport(ctx context.Context, e *exit, when string) gef.SessionReport {
	if e.err != nil {
		return failed("engine: %v", e.err)
	}
	code := e.st.Code
	r := gef.SessionReport{State: gef.SessionStopped, ExitCode: &code, Reason: "the service exited"}
	switch {
	case e.st.Error != "":
		r = failed("engine: %s", e.st.Error)
	case e.st.OOMKilled:
		r = failed("killed: out of memory")
	case code != 0:
		r = failed("exited with code %d", code)
	}
	r.ExitCode = &code
	if when != "" {
		r.Reason += " " + when
	}
	if r.State == gef.SessionFailed {
		if tail := x.outputTail(ctx); tail != "" {
			r.Reason += "; its output ended with: " + tail
		}
	}
	return r
}

// maxTail bounds the output quoted in a failed session's reason.
const maxTail = 1024

// outputTail is the end of an exited container's output.
func (x *session) outputTail(ctx context.Context) string {
	x.mu.Lock()
	id := x.container
	x.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var t tailBuffer
	if err := x.a.rt.Logs(ctx, id, &t, &t); err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(t.b), ""))
}

// tailBuffer keeps the last maxTail bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > maxTail {
		t.b = append(t.b[:0], t.b[len(t.b)-maxTail:]...)
	}
	return len(p), nil
}

var _ io.Writer = (*tailBuffer)(nil)

// report sends a session report, retrying while the manager is away. A
// refusal means the session is no longer this node's.
func (x *session) report(ctx context.Context, r gef.SessionReport) error {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		_, err := x.a.mgr.ReportSession(ctx, x.s.SessionID, r)
		switch {
		case err == nil:
			return nil
		case !retryable(err):
			return err
		}
		x.log.Warn("session report failed; retrying", "state", r.State, "err", err)
		if !b.wait(ctx) {
			return ctx.Err()
		}
	}
}
