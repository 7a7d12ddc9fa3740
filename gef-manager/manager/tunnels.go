package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/eudat-gef/gef"
)

// A node's tunnel is a connection the node opens to the manager and keeps
// open, carrying a yamux session. The manager opens one yamux stream per
// connection it proxies to a session, so the manager never dials a node,
// and a node behind a firewall needs no inbound port.

// TunnelWindow is the most a tunnel stream buffers before its sender
// waits; it bounds the memory each proxied connection can take.
const TunnelWindow = 1 << 20

// TunnelConfig is the yamux configuration both ends of a tunnel use.
func TunnelConfig(log *slog.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.MaxStreamWindowSize = TunnelWindow
	cfg.KeepAliveInterval = 15 * time.Second
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return cfg
}

// tunnels holds the open tunnel of each node.
type tunnels struct {
	mu    sync.Mutex
	nodes map[string]*yamux.Session
}

func newTunnels() *tunnels { return &tunnels{nodes: map[string]*yamux.Session{}} }

// put makes sess the node's tunnel, closing the one it replaces: a node
// that reconnects is done with its old connection.
func (t *tunnels) put(node string, sess *yamux.Session) {
	t.mu.Lock()
	old := t.nodes[node]
	t.nodes[node] = sess
	t.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (t *tunnels) drop(node string, sess *yamux.Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes[node] == sess {
		delete(t.nodes, node)
	}
}

func (t *tunnels) get(node string) *yamux.Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nodes[node]
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.nodes {
		s.Close()
	}
}

// AttachTunnel serves a node's tunnel over conn, a connection the node
// opened, until it closes, ctx ends or the manager shuts down.
func (m *Manager) AttachTunnel(ctx context.Context, p Principal, conn net.Conn) error {
	if err := requireNode(p, ""); err != nil {
		return err
	}
	sess, err := yamux.Client(conn, TunnelConfig(m.log))
	if err != nil {
		return fmt.Errorf("manager: tunnel of node %s: %w", p.Name, err)
	}
	m.tunnels.put(p.Name, sess)
	m.sessionMetrics.tunnels.Inc()
	m.log.Info("node tunnel open", "node", p.Name, "remote", conn.RemoteAddr().String())
	select {
	case <-sess.CloseChan():
	case <-ctx.Done():
	case <-m.hub.closed:
	}
	sess.Close()
	m.tunnels.drop(p.Name, sess)
	m.sessionMetrics.tunnels.Dec()
	m.log.Info("node tunnel closed", "node", p.Name)
	return nil
}

// HasTunnel reports whether a node has a tunnel open to this manager.
func (m *Manager) HasTunnel(node string) bool { return m.tunnels.get(node) != nil }

// maxTunnelReply bounds a node's answer to a stream request.
const maxTunnelReply = 4096

// tunnelHandshake bounds how long a node may take to connect a stream.
const tunnelHandshake = 15 * time.Second

// DialSession opens a connection to a running session's container, through
// its node's tunnel.
func (m *Manager) DialSession(ctx context.Context, id string) (net.Conn, error) {
	s, err := m.store.Session(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.State != gef.SessionRunning {
		return nil, fmt.Errorf("session %s is %s, not running: %w", id, s.State, gef.ErrUnavailable)
	}
	tun := m.tunnels.get(s.Node)
	if tun == nil {
		return nil, fmt.Errorf("node %s of session %s has no tunnel open: %w", s.Node, id, gef.ErrUnavailable)
	}
	st, err := tun.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("manager: open a stream to node %s: %w: %w", s.Node, gef.ErrUnavailable, err)
	}
	deadline := time.Now().Add(tunnelHandshake)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	reply, err := handshake(st, gef.TunnelRequest{Session: id})
	if err == nil && reply.Error != "" {
		err = fmt.Errorf("node %s: %s: %w", s.Node, reply.Error, gef.ErrUnavailable)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

// handshake sends a stream's request line and reads the node's reply line,
// byte by byte so that no byte of the connection after it is consumed.
func handshake(st net.Conn, req gef.TunnelRequest) (gef.TunnelReply, error) {
	b, _ := json.Marshal(req)
	if _, err := st.Write(append(b, '\n')); err != nil {
		return gef.TunnelReply{}, fmt.Errorf("manager: tunnel request: %w: %w", gef.ErrUnavailable, err)
	}
	line, err := readLine(st, maxTunnelReply)
	if err != nil {
		return gef.TunnelReply{}, fmt.Errorf("manager: tunnel reply: %w: %w", gef.ErrUnavailable, err)
	}
	var reply gef.TunnelReply
	if err := json.Unmarshal(line, &reply); err != nil {
		return gef.TunnelReply{}, fmt.Errorf("manager: tunnel reply: %w", err)
	}
	return reply, nil
}

// readLine reads up to a newline, at most max bytes.
func readLine(r net.Conn, max int) ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < max {
		if _, err := r.Read(b); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
	return nil, errors.New("line too long")
}
