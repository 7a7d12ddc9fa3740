package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/eudat-gef/gef"
)

// The tunnel carries the sessions' traffic over a connection the node opens
// to the manager, so the node needs no inbound port: the manager opens a
// yamux stream per connection it proxies, and the node pipes each stream
// to the container of the session it names.

// tunnelWindow is the most a tunnel stream buffers before its sender
// waits, as on the manager's side.
const tunnelWindow = 1 << 20

func tunnelConfig(log *slog.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.MaxStreamWindowSize = tunnelWindow
	cfg.KeepAliveInterval = 15 * time.Second
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return cfg
}

// stableTunnel is how long a tunnel must have lived for its loss to be
// retried at once rather than after a growing wait.
const stableTunnel = 10 * time.Second

// runTunnel keeps the node's tunnel open until ctx ends.
func (a *Agent) runTunnel(ctx context.Context) {
	backoff := newBackoff(200*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		conn, err := a.mgr.Tunnel(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("opening the tunnel failed; retrying", "err", err)
				backoff.wait(ctx)
			}
			continue
		}
		opened := time.Now()
		err = a.serveTunnel(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("tunnel closed; reopening", "err", err, "open_for", time.Since(opened).Round(time.Millisecond))
		if time.Since(opened) > stableTunnel {
			backoff.reset()
		}
		backoff.wait(ctx)
	}
}

// serveTunnel serves streams from one tunnel connection until it closes.
func (a *Agent) serveTunnel(ctx context.Context, conn net.Conn) error {
	sess, err := yamux.Server(conn, tunnelConfig(a.log))
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	a.log.Info("tunnel open")
	go func() {
		select {
		case <-ctx.Done():
			sess.Close()
		case <-sess.CloseChan():
		}
	}()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		go a.serveStream(st)
	}
}

// streamHandshake bounds how long the manager may take to name a stream's
// session, and the node to connect it.
const streamHandshake = 15 * time.Second

// maxTunnelRequest bounds the line that opens a stream.
const maxTunnelRequest = 4096

// serveStream connects one stream to the container of the session it
// names, and pipes bytes both ways until both sides are done.
func (a *Agent) serveStream(st net.Conn) {
	st.SetDeadline(time.Now().Add(streamHandshake))
	reply := func(msg string) error {
		b, _ := json.Marshal(gef.TunnelReply{Error: msg})
		_, err := st.Write(append(b, '\n'))
		return err
	}
	line, err := readLine(st, maxTunnelRequest)
	if err != nil {
		st.Close()
		return
	}
	var req gef.TunnelRequest
	if err := json.Unmarshal(line, &req); err != nil {
		reply("the stream request is not JSON")
		st.Close()
		return
	}
	x := a.sessions.get(req.Session)
	addr := ""
	if x != nil {
		addr = x.address()
	}
	if addr == "" {
		reply("session " + req.Session + " is not running on this node")
		st.Close()
		return
	}
	c, err := net.DialTimeout("tcp", addr, streamHandshake)
	if err != nil {
		reply("the session's service does not answer: " + err.Error())
		st.Close()
		return
	}
	if err := reply(""); err != nil {
		c.Close()
		st.Close()
		return
	}
	st.SetDeadline(time.Time{})
	x.touch()
	pipe(st, c.(*net.TCPConn), x.touch)
}

// lingerAfterClose bounds how long one direction of a piped connection
// may stay open after the other has finished.
const lingerAfterClose = time.Minute

// pipe copies a stream to a container's connection and back. When one
// side is done sending, the other learns of it by a half-close.
func pipe(st net.Conn, c *net.TCPConn, touch func()) {
	done := make(chan struct{}, 2)
	go func() {
		copyTouching(c, st, touch)
		c.CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		copyTouching(st, c, touch)
		st.Close() // a yamux stream closes for writing only
		done <- struct{}{}
	}()
	<-done
	deadline := time.Now().Add(lingerAfterClose)
	st.SetReadDeadline(deadline)
	c.SetReadDeadline(deadline)
	<-done
	st.Close()
	c.Close()
}

// copyTouching copies src to dst, recording traffic as it goes.
func copyTouching(dst io.Writer, src io.Reader, touch func()) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			touch()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// readLine reads up to a newline, at most max bytes, byte by byte so that
// nothing after it is consumed.
func readLine(r io.Reader, max int) ([]byte, error) {
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
	return nil, errors.New("agent: tunnel request line too long")
}
