package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/internal/testenv"
	"github.com/eudat-gef/gef/internal/testimages"
	"github.com/eudat-gef/gef/volumes"
)

// fakeManager is the manager's side of the node protocol, in process, so
// that the agent's session code runs under the race detector. The engine
// is real.
type fakeManager struct {
	mu       sync.Mutex
	give     []gef.SessionAssignment
	stop     []string
	lastPoll gef.PollRequest
	reports  map[string][]gef.SessionReport
	wake     chan struct{}
	tunnels  chan net.Conn // the manager's end of each tunnel the node opens
}

func newFake() *fakeManager {
	return &fakeManager{reports: map[string][]gef.SessionReport{}, wake: make(chan struct{}, 1), tunnels: make(chan net.Conn, 4)}
}

func (f *fakeManager) nudge() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeManager) Register(context.Context, gef.NodeRegistration) error { return nil }

func (f *fakeManager) Poll(ctx context.Context, req gef.PollRequest) (gef.PollResponse, error) {
	f.mu.Lock()
	f.lastPoll = req
	f.mu.Unlock()
	select {
	case <-f.wake:
	case <-time.After(time.Duration(req.WaitMS) * time.Millisecond):
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := gef.PollResponse{Sessions: f.give, StopSessions: f.stop}
	f.give, f.stop = nil, nil
	return resp, nil
}

func (f *fakeManager) Report(context.Context, string, gef.JobReport) (gef.Job, error) {
	return gef.Job{}, nil
}
func (f *fakeManager) AppendLog(context.Context, string, int, int, string, []byte) error {
	return nil
}
func (f *fakeManager) UploadURLs(context.Context, string, int, []gef.OutputFile) (map[string]string, error) {
	return nil, nil
}

func (f *fakeManager) ReportSession(_ context.Context, id string, r gef.SessionReport) (gef.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[id] = append(f.reports[id], r)
	return gef.Session{ID: id, State: r.State}, nil
}

// Tunnel connects the node to the fake over loopback TCP.
func (f *fakeManager) Tunnel(ctx context.Context) (net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return nil, err
	}
	select {
	case f.tunnels <- s:
		return c, nil
	case <-ctx.Done():
		s.Close()
		c.Close()
		return nil, ctx.Err()
	}
}

func (f *fakeManager) final(id string) (gef.SessionReport, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.reports[id] {
		if r.State.Final() {
			return r, true
		}
	}
	return gef.SessionReport{}, false
}

func (f *fakeManager) reported(id string, state gef.SessionState) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.reports[id] {
		if r.State == state {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dial opens a tunnel stream to a session, as the manager does.
func dial(t *testing.T, tun *yamux.Session, id string) (net.Conn, gef.TunnelReply) {
	t.Helper()
	st, err := tun.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(gef.TunnelRequest{Session: id})
	if _, err := st.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(io.LimitReader(st, 4096)).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var reply gef.TunnelReply
	if err := json.Unmarshal(line, &reply); err != nil {
		t.Fatal(err)
	}
	return st, reply
}

func TestSessionsThroughTheTunnel(t *testing.T) {
	testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	imageID, err := testimages.Build(ctx, rt, testimages.WebService)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	f := newFake()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	name := "agent-test-" + strings.ToLower(gef.NewID())
	a, err := agent.New(agent.Config{Name: name, WorkDir: t.TempDir(),
		Datasets: []volumes.Dataset{{Name: "d", Dir: data}}, Capacity: 1, PollWait: 100 * time.Millisecond,
		StopGrace: 2 * time.Second, Sessions: agent.SessionConfig{Capacity: 3}}, rt, f, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A loaded engine may finish making a container after the call
		// that asked for it gave up; an agent removes those when it
		// starts again, which this one never does.
		ctx := context.Background()
		cs, _ := rt.Containers(ctx, map[string]string{agent.LabelNode: name})
		for _, c := range cs {
			rt.Remove(ctx, c.ID)
		}
	})
	runCtx, stopAgent := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(runCtx) }()
	defer func() {
		stopAgent()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	spec := func(idle int64) gef.SessionAssignment {
		return gef.SessionAssignment{SessionID: gef.NewID(), ImageDigest: imageID, Argv: []string{"/websvc"},
			Mounts: []gef.Mount{{Input: "data", Dataset: "d", Path: "/data"}}, Port: 8080,
			IdleTimeoutSeconds: idle, MaxLifetimeSeconds: 600}
	}
	idle, stopped, broken := spec(2), spec(600), spec(600)
	broken.Argv = []string{"/websvc", "-listen", "nowhere"}
	f.mu.Lock()
	f.give = []gef.SessionAssignment{idle, stopped, broken}
	f.mu.Unlock()
	f.nudge()
	waitFor(t, "both sessions run", 3*time.Minute, func() bool {
		return f.reported(idle.SessionID, gef.SessionRunning) && f.reported(stopped.SessionID, gef.SessionRunning)
	})

	// One that exits as it starts says why.
	waitFor(t, "the broken session ends", 30*time.Second, func() bool { _, ok := f.final(broken.SessionID); return ok })
	if r, _ := f.final(broken.SessionID); r.State != gef.SessionFailed || r.ExitCode == nil || *r.ExitCode != 1 ||
		!strings.Contains(r.Reason, "exited with code 1 before it answered on port 8080; its output ended with: ") ||
		!strings.Contains(r.Reason, "websvc: listen tcp") {
		t.Fatalf("broken session ended: %+v", r)
	}

	var conn net.Conn
	select {
	case conn = <-f.tunnels:
	case <-time.After(30 * time.Second):
		t.Fatal("the node opened no tunnel")
	}
	tun, err := yamux.Client(conn, yamux.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	// HTTP reaches the container through a stream.
	st, reply := dial(t, tun, stopped.SessionID)
	if reply.Error != "" {
		t.Fatalf("the node refused the stream: %s", reply.Error)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://session/echo?via=tunnel", nil)
	if err := req.Write(st); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(st), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	st.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"query":"via=tunnel"`) {
		t.Fatalf("through the tunnel: %d %s", resp.StatusCode, body)
	}
	if _, reply := dial(t, tun, gef.NewID()); !strings.Contains(reply.Error, "not running on this node") {
		t.Fatalf("a stream for an unknown session: %+v", reply)
	}

	// The poll reports the sessions, their traffic and the room left.
	f.nudge()
	waitFor(t, "a poll reports the traffic", 10*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, ns := range f.lastPoll.Sessions {
			if ns.ID == stopped.SessionID && !ns.LastActive.IsZero() {
				return f.lastPoll.SessionFree == 1 && len(f.lastPoll.Sessions) == 2
			}
		}
		return false
	})

	// The quiet one ends once idle; the other when the manager says so.
	waitFor(t, "the idle session ends", 30*time.Second, func() bool { _, ok := f.final(idle.SessionID); return ok })
	r, _ := f.final(idle.SessionID)
	if r.State != gef.SessionStopped || r.Reason != "idle for more than 2s" || r.ExitCode == nil || *r.ExitCode != 0 || r.LastActive.IsZero() {
		t.Fatalf("idle session ended: %+v", r)
	}
	f.mu.Lock()
	f.stop = []string{stopped.SessionID}
	f.mu.Unlock()
	f.nudge()
	waitFor(t, "the stopped session ends", 30*time.Second, func() bool { _, ok := f.final(stopped.SessionID); return ok })
	r, _ = f.final(stopped.SessionID)
	if r.State != gef.SessionStopped || r.Reason != "" || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Fatalf("stopped session ended: %+v", r)
	}
	waitFor(t, "the containers are removed", 30*time.Second, func() bool {
		cs, err := rt.Containers(ctx, map[string]string{agent.LabelNode: name})
		return err == nil && len(cs) == 0
	})
}

// The session tests run no images or builds.
func (f *fakeManager) ImageDownload(context.Context, string) (gef.ImageDownload, error) {
	return gef.ImageDownload{}, gef.ErrNotFound
}
func (f *fakeManager) ReportBuild(context.Context, string, gef.BuildReport) (gef.Build, error) {
	return gef.Build{}, gef.ErrNotFound
}
func (f *fakeManager) AppendBuildLog(context.Context, string, int, int, string, []byte) error {
	return gef.ErrNotFound
}
func (f *fakeManager) BuildUploadURL(context.Context, string) (string, error) {
	return "", gef.ErrNotFound
}
func (f *fakeManager) Assignment(context.Context, string) (gef.Assignment, error) {
	return gef.Assignment{}, gef.ErrNotFound
}
