package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

type containerAPI interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerWait(ctx context.Context, id string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerKill(ctx context.Context, id, signal string) error
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
}

// imageID is the only image reference Create accepts: a tag can move, an
// ID cannot.
var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Create makes a container from spec without starting it.
func (r *Runtime) Create(ctx context.Context, spec agent.ContainerSpec) (string, error) {
	cfg, host, err := containerConfig(spec, r.api.ClientVersion())
	if err != nil {
		return "", fmt.Errorf("docker: create container %s: %w", spec.Name, err)
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	resp, err := r.api.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
	if err != nil {
		return "", wrap(err, "create container %s", cmp.Or(spec.Name, spec.Image))
	}
	return resp.ID, nil
}

// containerConfig translates spec for an engine speaking apiVersion.
func containerConfig(spec agent.ContainerSpec, apiVersion string) (*container.Config, *container.HostConfig, error) {
	if !imageID.MatchString(spec.Image) {
		return nil, nil, gef.Invalid("image", "%q is not an image ID (sha256:<64 hex>); images are never run by tag", spec.Image)
	}
	if len(spec.Entrypoint)+len(spec.Cmd) == 0 {
		// The engine would fall back to the image's own command.
		return nil, nil, gef.Invalid("entrypoint", "no command to run")
	}
	netMode := cmp.Or(spec.Network, string(network.NetworkNone))
	if spec.ExposePort != 0 && netMode == string(network.NetworkNone) {
		return nil, nil, gef.Invalid("expose_port", "port %d cannot be published without a network", spec.ExposePort)
	}

	cfg := &container.Config{
		Image: spec.Image,
		// Non-nil empty slices are sent as [], which the engine takes
		// literally; nil would let it fill in the image's ENTRYPOINT/CMD.
		Entrypoint: append([]string{}, spec.Entrypoint...),
		Cmd:        append([]string{}, spec.Cmd...),
		Env:        spec.Env,
		User:       spec.User,
		Labels:     spec.Labels,
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(netMode),
		ReadonlyRootfs: spec.ReadOnlyRootfs,
		Tmpfs:          maps.Clone(spec.Tmpfs),
	}
	for _, m := range spec.Mounts {
		host.Mounts = append(host.Mounts, mount.Mount{
			Type:        mount.TypeBind,
			Source:      m.Source,
			Target:      m.Target,
			ReadOnly:    m.ReadOnly,
			BindOptions: bindOptions(m.ReadOnly, apiVersion),
		})
	}
	if spec.DropAllCaps {
		host.CapDrop = []string{"ALL"}
	}
	if spec.NoNewPrivileges {
		host.SecurityOpt = []string{"no-new-privileges:true"}
	}
	if spec.MemoryBytes > 0 {
		host.Memory = spec.MemoryBytes
		host.MemorySwap = spec.MemoryBytes // memory+swap: no swap beyond the limit
	}
	host.NanoCPUs = spec.NanoCPUs
	if spec.PidsLimit > 0 {
		host.PidsLimit = &spec.PidsLimit
	}
	if spec.LogMaxBytes > 0 {
		host.LogConfig = container.LogConfig{
			Type: "json-file",
			Config: map[string]string{
				"max-size": strconv.FormatInt(spec.LogMaxBytes, 10),
				"max-file": strconv.Itoa(max(1, spec.LogMaxFiles)),
			},
		}
	}
	if spec.ExposePort != 0 {
		port := nat.Port(fmt.Sprintf("%d/tcp", spec.ExposePort))
		cfg.ExposedPorts = nat.PortSet{port: {}}
		// An empty HostPort asks the engine for a free one.
		host.PortBindings = nat.PortMap{port: {{HostIP: "127.0.0.1"}}}
	}
	return cfg, host, nil
}

// bindOptions keeps a read-only bind's submounts from being writable.
// Since API 1.44 the engine can make the whole tree read-only, and must
// fail if it cannot. Older engines (20.10 speaks 1.41) only make the top
// mount read-only, so there the submounts are left out instead.
func bindOptions(readOnly bool, apiVersion string) *mount.BindOptions {
	switch {
	case !readOnly:
		return nil
	case versions.GreaterThanOrEqualTo(apiVersion, "1.44"):
		return &mount.BindOptions{ReadOnlyForceRecursive: true}
	default:
		return &mount.BindOptions{NonRecursive: true}
	}
}

// Start starts a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	if err := r.api.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return wrap(err, "start container %s", id)
	}
	return nil
}

// Wait blocks until the container is not running, with no timeout of its
// own. Call it after Start: a container that was never started counts as
// not running. If the follow-up inspect fails, the status is returned with
// the error.
func (r *Runtime) Wait(ctx context.Context, id string) (agent.ExitStatus, error) {
	resC, errC := r.api.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var res container.WaitResponse
	select {
	case res = <-resC:
	case err := <-errC:
		return agent.ExitStatus{}, wrap(err, "wait container %s", id)
	case <-ctx.Done():
		return agent.ExitStatus{}, fmt.Errorf("docker: wait container %s: %w", id, ctx.Err())
	}
	st := agent.ExitStatus{Code: int(res.StatusCode)}
	if res.Error != nil {
		st.Error = res.Error.Message
	}
	// The wait response does not say why the process ended.
	ictx, cancel := r.call(ctx)
	defer cancel()
	c, err := r.api.ContainerInspect(ictx, id)
	if err != nil {
		return st, wrap(err, "inspect container %s after wait", id)
	}
	if c.State != nil {
		st.OOMKilled = c.State.OOMKilled
		st.Error = cmp.Or(st.Error, c.State.Error)
	}
	// The engine learns of an OOM kill from an event that can come just
	// after the exit: a SIGKILL's 137 is looked at again, briefly, so the
	// job's record says it ran out of memory rather than that it was killed.
	for wait := 10 * time.Millisecond; st.Code == 137 && !st.OOMKilled && wait <= 640*time.Millisecond; wait *= 2 {
		select {
		case <-ctx.Done():
			return st, nil
		case <-time.After(wait):
		}
		c, err := r.api.ContainerInspect(ictx, id)
		if err != nil || c.State == nil {
			break
		}
		st.OOMKilled = c.State.OOMKilled
	}
	return st, nil
}

// Logs copies the container's stdout and stderr from its start, following
// them until the container exits (nil) or ctx ends (ctx's error).
func (r *Runtime) Logs(ctx context.Context, id string, stdout, stderr io.Writer) error {
	rc, err := r.api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return wrap(err, "logs of container %s", id)
	}
	defer rc.Close()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if _, err := stdcopy.StdCopy(stdout, stderr, rc); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("docker: logs of container %s: %w", id, err)
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL after grace (rounded up to a second, the
// engine's unit), and returns once the container is no longer running.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := max(0, int((grace+time.Second-1)/time.Second))
	// The engine waits out the grace period inside the call.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+r.opts.Timeout)
	defer cancel()
	stopErr := r.api.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs})
	if cerrdefs.IsNotFound(stopErr) {
		return wrap(stopErr, "stop container %s", id)
	}
	// The engine may give up waiting for the exit after its SIGKILL, so
	// check, and kill again if need be.
	c, err := r.api.ContainerInspect(ctx, id)
	if err != nil {
		return wrap(errors.Join(stopErr, err), "stop container %s", id)
	}
	if c.State == nil || !c.State.Running {
		return nil
	}
	if err := r.api.ContainerKill(ctx, id, "KILL"); err != nil && !cerrdefs.IsConflict(err) {
		return wrap(errors.Join(stopErr, err), "kill container %s", id)
	}
	resC, errC := r.api.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-resC:
		return nil
	case err := <-errC:
		return wrap(errors.Join(stopErr, err), "stop container %s", id)
	}
}

// Remove deletes a container, killing it if it runs, with its anonymous
// volumes. A container that is already gone is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	err := r.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return wrap(err, "remove container %s", id)
	}
	return nil
}

// Inspect describes one container.
func (r *Runtime) Inspect(ctx context.Context, id string) (agent.ContainerInfo, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	return r.inspect(ctx, id)
}

func (r *Runtime) inspect(ctx context.Context, id string) (agent.ContainerInfo, error) {
	c, err := r.api.ContainerInspect(ctx, id)
	if err != nil {
		return agent.ContainerInfo{}, wrap(err, "inspect container %s", id)
	}
	return containerInfo(c)
}

func containerInfo(c container.InspectResponse) (agent.ContainerInfo, error) {
	if c.ContainerJSONBase == nil || c.State == nil {
		return agent.ContainerInfo{}, errors.New("docker: inspect container: the engine sent no state")
	}
	info := agent.ContainerInfo{
		ID:        c.ID,
		Name:      strings.TrimPrefix(c.Name, "/"),
		Image:     c.Image,
		Running:   c.State.Running,
		ExitCode:  c.State.ExitCode,
		OOMKilled: c.State.OOMKilled,
	}
	if c.Config != nil {
		info.Labels = c.Config.Labels
	}
	var err error
	if info.StartedAt, err = parseTime(c.State.StartedAt); err != nil {
		return agent.ContainerInfo{}, fmt.Errorf("docker: inspect container %s: started at: %w", c.ID, err)
	}
	if info.FinishedAt, err = parseTime(c.State.FinishedAt); err != nil {
		return agent.ContainerInfo{}, fmt.Errorf("docker: inspect container %s: finished at: %w", c.ID, err)
	}
	if c.NetworkSettings != nil {
		info.HostPort = hostPort(c.NetworkSettings.Ports)
		info.IPAddress = ipAddress(c.NetworkSettings.Networks)
	}
	return info, nil
}

// parseTime reads the engine's timestamps, which are the zero time
// ("0001-01-01T00:00:00Z") for what has not happened.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return time.Time{}, err
	}
	return t, nil
}

// hostPort is the first published host port; Create publishes at most one.
func hostPort(ports nat.PortMap) int {
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		for _, b := range ports[p] {
			if n, err := strconv.Atoi(b.HostPort); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// ipAddress is the container's address on the first of its networks that
// gave it one; the agent attaches a container to one network at most.
func ipAddress(nets map[string]*network.EndpointSettings) string {
	for _, name := range slices.Sorted(maps.Keys(nets)) {
		if n := nets[name]; n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

// Containers lists containers, running or not, carrying all labels.
func (r *Runtime) Containers(ctx context.Context, labels map[string]string) ([]agent.ContainerInfo, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	list, err := r.api.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, wrap(err, "list containers")
	}
	infos := make([]agent.ContainerInfo, 0, len(list))
	for _, s := range list {
		// The summary lacks exit code, OOM and times, so inspect.
		info, err := r.inspect(ctx, s.ID)
		if isNotFound(err) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}
