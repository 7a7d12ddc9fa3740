package gef

import "time"

// NodeState is what the scheduler knows of a node.
type NodeState string

// Node states. Only ready nodes are given new jobs.
const (
	NodeReady    NodeState = "ready"
	NodeDraining NodeState = "draining" // finishes what it runs, takes nothing new
	NodeDown     NodeState = "down"     // missed its heartbeats
)

// Node is a gef-node agent that sits beside some datasets.
type Node struct {
	Name          string    `json:"name"`
	State         NodeState `json:"state"`
	Capacity      int       `json:"capacity"`
	Running       int       `json:"running"`
	Datasets      []string  `json:"datasets"`
	EngineVersion string    `json:"engine_version"`
	EngineAPI     string    `json:"engine_api_version"`
	Runtime       string    `json:"runtime"` // the OCI runtime, e.g. "runc 1.1.5"
	AgentVersion  string    `json:"agent_version"`
	RegisteredAt  time.Time `json:"registered_at"`
	LastSeen      time.Time `json:"last_seen"`
}

// Dataset is named data that one or more nodes hold on local disk.
type Dataset struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Nodes       []string      `json:"nodes"`
	Size        int64         `json:"size"`
	Files       int64         `json:"files"`
	Access      DatasetAccess `json:"access"`
	CreatedAt   time.Time     `json:"created_at"`
	// Digests are the content digests the nodes hold now: one, unless the
	// nodes' copies differ. See docs/reproducibility.md.
	Digests []string `json:"digests"`
	// Versions is every content digest the dataset was ever seen with,
	// newest first; given for one dataset, not in lists.
	Versions []DatasetVersion `json:"versions,omitempty"`
}

// DatasetVersion is one content of a dataset, as its digest.
type DatasetVersion struct {
	Digest    string    `json:"digest"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// GoneSince is set once no node holds these bytes any more: a rerun
	// on this version can no longer run as it did.
	GoneSince *time.Time `json:"gone_since,omitempty"`
}

// DatasetAccess says who may run jobs on a dataset. An unrestricted dataset
// may be used by every signed-in user; a restricted one only by the users
// and groups listed, and by admins.
type DatasetAccess struct {
	Restricted bool     `json:"restricted"`
	Users      []string `json:"users"`
	Groups     []string `json:"groups"`
}

// Allows reports whether a user in groups may use a dataset with access a.
func (a DatasetAccess) Allows(user string, groups []string) bool {
	if !a.Restricted {
		return true
	}
	for _, u := range a.Users {
		if u == user {
			return true
		}
	}
	for _, g := range a.Groups {
		for _, mine := range groups {
			if g == mine {
				return true
			}
		}
	}
	return false
}

// Group is a named set of users, for access lists.
type Group struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
}

// The node protocol: a node dials out to the manager, registers, then
// long-polls for work. Nothing here needs an inbound port on the node.

// NodeRegistration is what a node says of itself when it (re)connects.
type NodeRegistration struct {
	Name          string        `json:"name"`
	Capacity      int           `json:"capacity"`
	Datasets      []NodeDataset `json:"datasets"`
	Images        []NodeImage   `json:"images"`
	EngineVersion string        `json:"engine_version"`
	EngineAPI     string        `json:"engine_api_version"`
	Runtime       string        `json:"runtime,omitempty"`
	AgentVersion  string        `json:"agent_version"`
}

// NodeDataset is a dataset as a node sees it on disk.
type NodeDataset struct {
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	Files int64  `json:"files"`
	// Digest is the dataset's content digest (docs/reproducibility.md).
	Digest string `json:"digest,omitempty"`
}

// NodeImage is a GEF service image present on a node's engine.
type NodeImage struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels"`
	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd"`
}

// PollRequest is a node's long poll. It doubles as its heartbeat.
type PollRequest struct {
	Free    int      `json:"free"`    // slots the node can fill now
	Running []string `json:"running"` // ids of the jobs the node holds
	// Stopping lists jobs the node is already stopping, so the manager
	// does not answer at once with the same cancel again.
	Stopping []string `json:"stopping,omitempty"`
	WaitMS   int      `json:"wait_ms"` // how long the manager may hold the poll
	// Builds lists the ids of the builds the node runs; each takes a slot.
	Builds []string `json:"builds,omitempty"`
	// SessionFree is how many more sessions the node can start now.
	SessionFree int `json:"session_free,omitempty"`
	// Sessions lists the sessions the node runs.
	Sessions []NodeSession `json:"sessions,omitempty"`
}

// PollResponse hands a node new work and the jobs it must stop.
type PollResponse struct {
	Jobs   []Assignment      `json:"jobs"`
	Cancel []string          `json:"cancel"`
	Builds []BuildAssignment `json:"builds,omitempty"`
	// Sessions are new sessions to start; StopSessions those to stop.
	Sessions     []SessionAssignment `json:"sessions,omitempty"`
	StopSessions []string            `json:"stop_sessions,omitempty"`
}

// Empty reports whether the response gives the node nothing to do.
func (r PollResponse) Empty() bool {
	return len(r.Jobs)+len(r.Cancel)+len(r.Builds)+len(r.Sessions)+len(r.StopSessions) == 0
}

// Assignment is everything a node needs to run one job.
type Assignment struct {
	JobID       string      `json:"job_id"`
	Attempt     int         `json:"attempt"`
	ImageDigest string      `json:"image_digest"`
	Argv        []string    `json:"argv"` // the whole argv: entrypoint, cmd, then parameters
	Mounts      []Mount     `json:"mounts"`
	Files       []InputFile `json:"files,omitempty"`
	Outputs     []Output    `json:"outputs"`
	Resources   Resources   `json:"resources"`
	Network     bool        `json:"network"`
	// DatasetDigests, when set, pins inputs to exact dataset contents: a
	// rerun must not run on data that changed since. The node checks them
	// before it starts the container.
	DatasetDigests map[string]string `json:"dataset_digests,omitempty"`
}

// Mount binds a dataset read-only at Path in the container.
type Mount struct {
	Input   string `json:"input"`
	Dataset string `json:"dataset"`
	Path    string `json:"path"`
}

// InputFile is literal text written read-only into the container.
type InputFile struct {
	Input   string `json:"input"`
	Path    string `json:"path"` // the full path in the container
	Content string `json:"content"`
}

// JobReport moves a job forward. Reports are idempotent: a report of a state
// the job already passed is accepted and ignored.
type JobReport struct {
	State       JobState     `json:"state"`
	Attempt     int          `json:"attempt"`
	At          time.Time    `json:"at"`
	ImageDigest string       `json:"image_digest,omitempty"`
	ExitCode    *int         `json:"exit_code,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Outputs     []OutputFile `json:"outputs,omitempty"`
	// DatasetDigests maps each dataset input to the digest of its dataset
	// when the container started; sent with the running report.
	DatasetDigests map[string]string `json:"dataset_digests,omitempty"`
	// Limits are the limits the container ran under; sent with the running
	// report.
	Limits *Limits `json:"limits,omitempty"`
	// Status says what the job waits for in its current state. A report
	// of the state the job is in with a status updates only the status;
	// each such report also shows the job is still making progress.
	Status string `json:"status,omitempty"`
}

// Limits are the resource limits a container actually ran under.
type Limits struct {
	MemoryBytes    int64   `json:"memory_bytes"`
	CPUs           float64 `json:"cpus"`
	Pids           int64   `json:"pids"`
	TimeoutSeconds int64   `json:"timeout_seconds"`
	Network        bool    `json:"network"`
}

// UploadRequest asks for upload URLs for a job's output files.
type UploadRequest struct {
	Files []OutputFile `json:"files"` // Name and Path are used
	// Attempt is the attempt the node runs; URLs are refused for an
	// attempt that is no longer the job's. 0 skips the check.
	Attempt int `json:"attempt,omitempty"`
}

// UploadResponse maps each requested file, as Name+"/"+Path, to a URL that
// accepts one PUT of its bytes.
type UploadResponse struct {
	URLs map[string]string `json:"urls"`
}
