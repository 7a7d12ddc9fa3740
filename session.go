package gef

import "time"

// SessionState is where a session is in its life. Like a job, a session
// never moves backwards; exactly one of the last two ends it.
type SessionState string

// The states a session moves through.
const (
	SessionQueued   SessionState = "queued"   // waiting for a node that holds its data
	SessionStarting SessionState = "starting" // a node is starting its container
	SessionRunning  SessionState = "running"  // answering at its URL
	SessionStopping SessionState = "stopping" // asked to stop; its node is stopping it
	SessionStopped  SessionState = "stopped"  // stopped, idle too long, at its lifetime, or exited cleanly
	SessionFailed   SessionState = "failed"   // could not start, exited with an error, or its node was lost
)

// SessionStates lists every state in life order.
var SessionStates = []SessionState{SessionQueued, SessionStarting, SessionRunning, SessionStopping,
	SessionStopped, SessionFailed}

// Final reports whether s ends a session.
func (s SessionState) Final() bool { return s == SessionStopped || s == SessionFailed }

// Valid reports whether s is a known state.
func (s SessionState) Valid() bool { return s.rank() >= 0 }

func (s SessionState) rank() int {
	switch s {
	case SessionQueued:
		return 0
	case SessionStarting:
		return 1
	case SessionRunning:
		return 2
	case SessionStopping:
		return 3
	case SessionStopped, SessionFailed:
		return 4
	}
	return -1
}

// CanMoveTo reports whether a session in state s may move to next.
func (s SessionState) CanMoveTo(next SessionState) bool {
	if s.Final() || !next.Valid() {
		return false
	}
	return next.rank() > s.rank()
}

// SessionAccess says who may reach a session through its URL.
type SessionAccess string

// Access modes. The owner may always reach their session.
const (
	AccessOwner  SessionAccess = "owner"  // the owner only
	AccessUsers  SessionAccess = "users"  // the owner, the users named in Users and the members of Groups
	AccessPublic SessionAccess = "public" // anyone, signed in or not
)

// Valid reports whether a is a known access mode.
func (a SessionAccess) Valid() bool {
	return a == AccessOwner || a == AccessUsers || a == AccessPublic
}

// Session is a long-lived HTTP service container running next to its data,
// reached through the manager at URL.
type Session struct {
	ID    string       `json:"id"`
	Name  string       `json:"name,omitempty"` // friendly name: the session is also at /s/NAME/
	State SessionState `json:"state"`
	// Reason says why the session ended, or is ending.
	Reason      string            `json:"reason,omitempty"`
	ExitCode    *int              `json:"exit_code"`
	Service     string            `json:"service"`
	Version     string            `json:"version"`
	ImageDigest string            `json:"image_digest"`
	Node        string            `json:"node"`
	Inputs      map[string]string `json:"inputs"`
	Params      map[string]any    `json:"params"`
	Argv        []string          `json:"argv"`
	Owner       string            `json:"owner"`
	Access      SessionAccess     `json:"access"`
	// With access "users": who besides the owner may reach it.
	Users  []string `json:"users"`
	Groups []string `json:"groups"`
	// IdleTimeoutSeconds ends the session after this long with no traffic.
	IdleTimeoutSeconds int64 `json:"idle_timeout_seconds"`
	// MaxLifetimeSeconds ends the session this long after it started.
	MaxLifetimeSeconds int64 `json:"max_lifetime_seconds"`
	// Path is the service's initial path (label eudat.gef.service.http.path).
	Path string `json:"path,omitempty"`
	// URL is where the session answers: /s/NAME/ if it has a name, else
	// /s/ID/, followed by Path.
	URL           string            `json:"url"`
	StopRequested bool              `json:"stop_requested"`
	Timestamps    SessionTimestamps `json:"timestamps"`
	// ExpiresAt is when the session reaches its maximum lifetime.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// SessionTimestamps records when a session entered each phase and when it
// last carried traffic.
type SessionTimestamps struct {
	Created    time.Time  `json:"created"`
	Assigned   *time.Time `json:"assigned,omitempty"`
	Started    *time.Time `json:"started,omitempty"`
	LastActive *time.Time `json:"last_active,omitempty"`
	Ended      *time.Time `json:"ended,omitempty"`
}

// SessionRequest starts a session. It is shaped like a job request, plus
// the session's own options. See the contract in api/openapi.yaml.
type SessionRequest struct {
	JobRequest
	Name               string        `json:"name,omitempty"`
	Access             SessionAccess `json:"access,omitempty"` // default owner
	Users              []string      `json:"users,omitempty"`
	Groups             []string      `json:"groups,omitempty"`
	IdleTimeoutSeconds int64         `json:"idle_timeout_seconds,omitempty"` // 0: the manager's default
	MaxLifetimeSeconds int64         `json:"max_lifetime_seconds,omitempty"` // 0: the manager's default
}

// SessionFilter selects sessions for a list. Empty fields match everything.
type SessionFilter struct {
	State     SessionState
	Service   string
	Name      string
	Node      string
	Owner     string
	Limit     int
	PageToken string // an id: list sessions older than it
}

// The node protocol for sessions. Sessions travel in the same long poll as
// jobs; their traffic travels in the node's tunnel, a connection the node
// opens to the manager, so a session needs no inbound port on the node.

// SessionAssignment is everything a node needs to run one session.
type SessionAssignment struct {
	SessionID   string      `json:"session_id"`
	ImageDigest string      `json:"image_digest"`
	Argv        []string    `json:"argv"`
	Mounts      []Mount     `json:"mounts"`
	Files       []InputFile `json:"files,omitempty"`
	// Outputs are scratch directories only: a session's files are not staged.
	Outputs            []Output  `json:"outputs,omitempty"`
	Resources          Resources `json:"resources"`
	Port               int       `json:"port"` // the port the container answers HTTP on
	IdleTimeoutSeconds int64     `json:"idle_timeout_seconds"`
	MaxLifetimeSeconds int64     `json:"max_lifetime_seconds"`
}

// NodeSession is a session a node runs, as it reports it in each poll.
type NodeSession struct {
	ID       string `json:"id"`
	Stopping bool   `json:"stopping,omitempty"`
	// LastActive is when the session last carried traffic; zero if never.
	LastActive time.Time `json:"last_active"`
}

// SessionReport moves a session forward. Like job reports, session
// reports are idempotent.
type SessionReport struct {
	State    SessionState `json:"state"`
	At       time.Time    `json:"at"`
	ExitCode *int         `json:"exit_code,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	// LastActive is when the session last carried traffic, if it has.
	LastActive time.Time `json:"last_active,omitzero"`
}

// TunnelRequest opens one stream of a node's tunnel: the manager sends it
// as one JSON line, asking the node to connect the stream to a session's
// container. The node answers with one TunnelReply line; after that the
// stream carries the connection's bytes both ways.
type TunnelRequest struct {
	Session string `json:"session"`
}

// TunnelReply accepts a tunnel stream (Error empty) or refuses it.
type TunnelReply struct {
	Error string `json:"error,omitempty"`
}
