package agent

import (
	"context"
	"io"
	"time"
)

// Runtime is the node's view of a container engine. Every engine call the
// agent makes goes through it, so a change of engine or SDK touches only the
// package that implements it (gef-node/docker). Any error a Runtime returns
// is an engine failure: a system error, never the service's own failure,
// which shows up as a non-zero ExitStatus instead.
type Runtime interface {
	// Info describes the engine, logged at start-up and kept in provenance.
	Info(ctx context.Context) (EngineInfo, error)

	// Image describes a local image by ID; the error wraps gef.ErrNotFound
	// when the engine does not have it.
	Image(ctx context.Context, id string) (ImageInfo, error)
	// Images lists local images that carry the label key.
	Images(ctx context.Context, labelKey string) ([]ImageInfo, error)
	// LoadImage loads a `docker save` tarball and returns the IDs it held.
	LoadImage(ctx context.Context, tarball io.Reader) ([]string, error)
	// Build builds an image from a context tarball holding a Dockerfile,
	// streaming the build output to log, and returns the image ID.
	Build(ctx context.Context, contextTar io.Reader, tag string, log io.Writer) (string, error)
	// SaveImage writes the image with ID id to w as a `docker save`
	// tarball, which LoadImage on any engine loads as the same ID.
	SaveImage(ctx context.Context, id string, w io.Writer) error
	// RemoveImage deletes a local image.
	RemoveImage(ctx context.Context, id string) error

	// Create makes a container from spec without starting it.
	Create(ctx context.Context, spec ContainerSpec) (string, error)
	// Start starts a created container.
	Start(ctx context.Context, id string) error
	// Wait blocks until the container exits, and must not time out by itself.
	Wait(ctx context.Context, id string) (ExitStatus, error)
	// Logs copies the container's output from its start, following it until
	// the container exits or ctx ends.
	Logs(ctx context.Context, id string, stdout, stderr io.Writer) error
	// Stop sends SIGTERM, then SIGKILL after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove deletes a container, stopping it first if it runs.
	Remove(ctx context.Context, id string) error
	// Inspect describes one container.
	Inspect(ctx context.Context, id string) (ContainerInfo, error)
	// Containers lists containers, running or not, carrying all labels.
	Containers(ctx context.Context, labels map[string]string) ([]ContainerInfo, error)

	// EnsureNetwork makes sure a network named spec.Name exists as spec
	// says, creating it if need be, and returns its ID. A network of that
	// name made differently is an error wrapping gef.ErrConflict.
	EnsureNetwork(ctx context.Context, spec NetworkSpec) (string, error)
}

// NetworkSpec is a network for long-lived service containers: a bridge the
// node reaches their ports on.
type NetworkSpec struct {
	Name string
	// Internal cuts the network off from the outside: its containers
	// reach nothing beyond it, and are reached only from the host.
	Internal bool
	// Isolated stops containers on the network from reaching each other.
	Isolated bool
	Labels   map[string]string
}

// EngineInfo names the engine and the API version spoken with it.
type EngineInfo struct {
	Version    string // e.g. 20.10.24+dfsg1
	APIVersion string // negotiated, e.g. 1.41
	OS         string
	Arch       string
	Runtime    string // the OCI runtime, e.g. runc
}

// ImageInfo describes a local image.
type ImageInfo struct {
	ID         string // sha256:… of the image config
	RepoTags   []string
	Labels     map[string]string
	Entrypoint []string
	Cmd        []string
	User       string
	Size       int64
}

// ContainerSpec is everything the agent decides about a container. The
// sandbox defaults are filled in by the agent, not by the runtime.
type ContainerSpec struct {
	Name            string
	Image           string   // an image ID; never a tag
	Entrypoint      []string // argv[0:1]
	Cmd             []string // argv[1:]
	Env             []string
	User            string // uid:gid
	Labels          map[string]string
	Mounts          []BindMount
	Tmpfs           map[string]string // path → mount options
	ReadOnlyRootfs  bool
	Network         string // "none" unless network is allowed; a name or ID
	DropAllCaps     bool
	NoNewPrivileges bool
	MemoryBytes     int64
	NanoCPUs        int64
	PidsLimit       int64
	// LogMaxBytes caps each file the engine keeps of the container's
	// output, and LogMaxFiles the number of files it rotates through (0
	// means 1), so the engine keeps at most their product.
	LogMaxBytes int64
	LogMaxFiles int
	// ExposePort publishes a container port on the host's loopback, for
	// long-lived HTTP services; zero means none.
	ExposePort int
}

// BindMount binds a host path into the container.
type BindMount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code      int
	OOMKilled bool
	Error     string // set by the engine when the process could not run
}

// ContainerInfo describes a container.
type ContainerInfo struct {
	ID         string
	Name       string
	Image      string
	Labels     map[string]string
	Running    bool
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	// HostPort is the loopback port that ExposePort was published on.
	HostPort int
	// IPAddress is the container's address on its network, if it has one.
	IPAddress string
}
