// Package docker implements agent.Runtime on the local Docker engine through
// the Docker Engine Go SDK. It negotiates the API version, so it works with
// engines as old as 20.10 (API 1.41), and gives every call its own timeout
// except Wait and Logs, which last as long as the container does.
package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

// Defaults for Options.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultBuildTimeout = 10 * time.Minute
)

var _ agent.Runtime = (*Runtime)(nil)

// Options configures New. The zero value talks to the engine named by the
// DOCKER_* environment variables with the default timeouts.
type Options struct {
	// Host overrides DOCKER_HOST, e.g. unix:///var/run/docker.sock.
	Host string
	// Timeout bounds each engine call; Wait and Logs are not bounded.
	Timeout time.Duration
	// BuildTimeout bounds Build and LoadImage, which move whole images.
	BuildTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BuildTimeout <= 0 {
		o.BuildTimeout = DefaultBuildTimeout
	}
}

// engine is the part of *client.Client this package uses, kept narrow so
// that tests can fake the engine's failures.
type engine interface {
	systemAPI
	imageAPI
	containerAPI
	networkAPI
	Close() error
}

type systemAPI interface {
	ClientVersion() string
	ServerVersion(ctx context.Context) (types.Version, error)
	Info(ctx context.Context) (system.Info, error)
}

// Runtime is an agent.Runtime backed by a Docker engine. It is safe for
// concurrent use.
type Runtime struct {
	api   engine
	opts  Options
	netMu sync.Mutex // EnsureNetwork
}

// New connects to the engine, pings it and settles the API version.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	opts.setDefaults()
	clientOpts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(opts.Host))
	}
	cli, err := client.NewClientWithOpts(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	ping, err := cli.Ping(pctx)
	if err != nil {
		cli.Close()
		return nil, wrap(err, "ping %s", cli.DaemonHost())
	}
	// Negotiate now rather than on the first call, so Info reports the
	// version actually spoken. A DOCKER_API_VERSION override wins.
	cli.NegotiateAPIVersionPing(ping)
	return newRuntime(cli, opts), nil
}

func newRuntime(api engine, opts Options) *Runtime {
	opts.setDefaults()
	return &Runtime{api: api, opts: opts}
}

// Close releases the client's connections.
func (r *Runtime) Close() error {
	if err := r.api.Close(); err != nil {
		return fmt.Errorf("docker: close: %w", err)
	}
	return nil
}

// call bounds one engine call.
func (r *Runtime) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.Timeout)
}

// long bounds a call that moves whole images.
func (r *Runtime) long(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.BuildTimeout)
}

// Info describes the engine. OS and Arch are Go-style (linux, amd64), as
// in image platforms.
func (r *Runtime) Info(ctx context.Context) (agent.EngineInfo, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	v, err := r.api.ServerVersion(ctx)
	if err != nil {
		return agent.EngineInfo{}, wrap(err, "version")
	}
	info, err := r.api.Info(ctx)
	if err != nil {
		return agent.EngineInfo{}, wrap(err, "info")
	}
	rtName := info.DefaultRuntime
	// The commit of runc is the version that matters for provenance.
	if id := info.RuncCommit.ID; id != "" && rtName == "runc" {
		rtName += " " + id
	}
	return agent.EngineInfo{
		Version:    v.Version,
		APIVersion: r.api.ClientVersion(),
		OS:         v.Os,
		Arch:       v.Arch,
		Runtime:    rtName,
	}, nil
}

// wrap prefixes an engine error with "docker: " and what was being done,
// and adds the gef sentinel matching the engine's error class, keeping the
// original in the chain.
func wrap(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var kind error
	switch {
	case cerrdefs.IsNotFound(err):
		kind = gef.ErrNotFound
	case cerrdefs.IsConflict(err):
		kind = gef.ErrConflict
	case client.IsErrConnectionFailed(err):
		kind = gef.ErrUnavailable
	}
	if kind == nil {
		return fmt.Errorf("docker: %s: %w", what, err)
	}
	return fmt.Errorf("docker: %s: %w: %w", what, kind, err)
}

func isNotFound(err error) bool { return errors.Is(err, gef.ErrNotFound) }
