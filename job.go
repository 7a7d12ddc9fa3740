package gef

import (
	"strconv"
	"time"
)

// JobState is where a job is in its life. The order of the non-final states
// is the order a job moves through them; a job never moves backwards.
type JobState string

// The states a job moves through. Exactly one of the last four ends it.
const (
	JobQueued        JobState = "queued"
	JobAssigned      JobState = "assigned"
	JobFetchingImage JobState = "fetching_image"
	JobRunning       JobState = "running"
	JobStaging       JobState = "staging"
	JobSucceeded     JobState = "succeeded"
	JobFailed        JobState = "failed"       // the service exited non-zero, ran out of memory or time
	JobSystemError   JobState = "system_error" // GEF, the engine or the node failed, not the service
	JobCanceled      JobState = "canceled"
)

// JobStates lists every state in life order.
var JobStates = []JobState{JobQueued, JobAssigned, JobFetchingImage, JobRunning, JobStaging,
	JobSucceeded, JobFailed, JobSystemError, JobCanceled}

// Final reports whether s ends a job.
func (s JobState) Final() bool {
	switch s {
	case JobSucceeded, JobFailed, JobSystemError, JobCanceled:
		return true
	}
	return false
}

// Valid reports whether s is a known state.
func (s JobState) Valid() bool { return s.rank() >= 0 }

func (s JobState) rank() int {
	switch s {
	case JobQueued:
		return 0
	case JobAssigned:
		return 1
	case JobFetchingImage:
		return 2
	case JobRunning:
		return 3
	case JobStaging:
		return 4
	case JobSucceeded, JobFailed, JobSystemError, JobCanceled:
		return 5
	}
	return -1
}

// CanMoveTo reports whether a job in state s may move to next. Reports from
// nodes can arrive twice or late; only forward moves are applied.
func (s JobState) CanMoveTo(next JobState) bool {
	if s.Final() || !next.Valid() {
		return false
	}
	return next.rank() > s.rank()
}

// Job is one run of one service version on bound datasets.
type Job struct {
	ID          string            `json:"id"`
	State       JobState          `json:"state"`
	Reason      string            `json:"reason,omitempty"` // why it ended, when not plain success
	ExitCode    *int              `json:"exit_code"`
	Service     string            `json:"service"`
	Version     string            `json:"version"`
	ImageDigest string            `json:"image_digest"`
	Node        string            `json:"node"`
	Inputs      map[string]string `json:"inputs"` // input name → dataset name
	Params      map[string]any    `json:"params"`
	Argv        []string          `json:"argv"`
	Outputs     []OutputFile      `json:"outputs"`
	Owner       string            `json:"owner"`
	// Readers may see the job besides its owner and the admins.
	Readers Readers `json:"readers"`
	// Attempt counts the runs of the job; the job's state is its last
	// attempt's.
	Attempt int `json:"attempt"`
	// MaxAttempts bounds the runs: a system error (a lost node, an engine
	// or staging failure) is retried on a node holding the data until this
	// many attempts have ended.
	MaxAttempts int `json:"max_attempts"`
	// RetryFailed retries the service's own failures (a non-zero exit, out
	// of memory or time) too, within MaxAttempts.
	RetryFailed bool `json:"retry_failed,omitempty"`
	// Status says what a job that is not final waits for, e.g. "waiting for
	// the object store: …" while its outputs cannot be stored.
	Status string `json:"status,omitempty"`
	// Attempts lists every run of the job, the last one last.
	Attempts []Attempt `json:"attempts"`
	// CancelRequested is set when a cancel reached a job that a node holds;
	// the job turns canceled once the node has stopped its container.
	CancelRequested bool       `json:"cancel_requested"`
	Timestamps      Timestamps `json:"timestamps"`

	// Reproducibility; see docs/reproducibility.md.

	// DatasetDigests maps each dataset input to the digest of the dataset
	// at the moment the container started (or, for a reused job, of the
	// run it reused).
	DatasetDigests map[string]string `json:"dataset_digests"`
	RerunOf        *string           `json:"rerun_of"` // the job this one reran
	ReuseOf        *string           `json:"reuse_of"` // the job whose results this one reused
	// AcceptChangedData records that a rerun was asked to run although its
	// data changed since the original ran.
	AcceptChangedData bool `json:"accept_changed_data"`
	// Verdict compares a rerun's outputs with the original's, once the
	// rerun has ended; Differences lists what differs.
	Verdict     *Verdict     `json:"verdict"`
	Differences []Difference `json:"differences"`
	Visibility  Visibility   `json:"visibility"`
	// URL is the job's stable address, for citation.
	URL string `json:"url,omitempty"`
}

// Verdict is the outcome of comparing a rerun's outputs with the original's.
type Verdict string

// Verdicts.
const (
	VerdictIdentical Verdict = "identical" // every output file has the same path, size and sha256
	VerdictDiffers   Verdict = "differs"
)

// Difference is one output file that differs between a run and its rerun.
// Path is the output's name, a slash, and the file's path in that output.
type Difference struct {
	Path   string `json:"path"`
	Change Change `json:"change"`
}

// Change says how a file differs.
type Change string

// Changes.
const (
	ChangeAdded   Change = "added"   // only the rerun has it
	ChangeRemoved Change = "removed" // only the original has it
	ChangeChanged Change = "changed" // both have it, with other bytes
)

// Visibility says who may read a job.
type Visibility string

// Visibilities. A public job can be read by anyone, without signing in: its
// record, provenance, citation, logs and outputs.
const (
	Private Visibility = "private"
	Public  Visibility = "public"
)

// Timestamps records when a job entered each phase, so queue wait, image
// fetch, run and staging times can be read off every job.
type Timestamps struct {
	Queued        time.Time  `json:"queued"`
	Assigned      *time.Time `json:"assigned,omitempty"`
	FetchingImage *time.Time `json:"fetching_image,omitempty"`
	Running       *time.Time `json:"running,omitempty"`
	Staging       *time.Time `json:"staging,omitempty"`
	Finished      *time.Time `json:"finished,omitempty"`
}

// Readers names the users and groups who may read a job.
type Readers struct {
	Users  []string `json:"users"`
	Groups []string `json:"groups"`
}

// Includes reports whether user, in groups, is one of the readers.
func (r Readers) Includes(user string, groups []string) bool {
	return DatasetAccess{Restricted: true, Users: r.Users, Groups: r.Groups}.Allows(user, groups)
}

// Attempt is one run of a job on one node.
type Attempt struct {
	Attempt  int        `json:"attempt"`
	Node     string     `json:"node"`
	State    JobState   `json:"state"`
	Reason   string     `json:"reason,omitempty"`
	ExitCode *int       `json:"exit_code,omitempty"`
	Assigned *time.Time `json:"assigned,omitempty"`
	Running  *time.Time `json:"running,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
}

// OutputFile is one staged result file.
type OutputFile struct {
	Name   string `json:"name"` // the service's declared output
	Path   string `json:"path"` // relative to that output's directory, slash-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// OutputKey is where an output file of a job's first attempt lives in the
// object store.
func OutputKey(jobID, output, path string) string {
	return "jobs/" + jobID + "/" + output + "/" + path
}

// AttemptOutputKey is where an output file of one attempt lives. A later
// attempt writes under a prefix of its own, so a node that lost its job
// but still holds upload URLs cannot overwrite the result that was kept.
// Output names cannot hold '~', so the prefix never meets an output's.
func AttemptOutputKey(jobID string, attempt int, output, path string) string {
	if attempt <= 1 {
		return OutputKey(jobID, output, path)
	}
	return "jobs/" + jobID + "/~" + strconv.Itoa(attempt) + "/" + output + "/" + path
}

// JobRequest asks for a run. See the contract in api/openapi.yaml.
type JobRequest struct {
	Service string            `json:"service"`
	Version string            `json:"version,omitempty"`
	Inputs  map[string]string `json:"inputs,omitempty"`
	Dataset string            `json:"dataset,omitempty"` // shorthand for a single-input service
	Params  map[string]any    `json:"params,omitempty"`
	// Reuse, on by default, lets the manager answer with the results of an
	// earlier succeeded job of the same image, parameters and data, at once
	// and without running anything. false always runs the job.
	Reuse *bool `json:"reuse,omitempty"`
	// MaxAttempts bounds the runs of the job when it meets system errors;
	// 0 means the manager's default.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// RetryFailed retries a non-zero exit of the service too.
	RetryFailed bool `json:"retry_failed,omitempty"`
}

// JobFilter selects jobs for a list. Empty fields match everything.
type JobFilter struct {
	State     JobState
	Service   string
	Dataset   string
	Node      string
	Owner     string
	Limit     int
	PageToken string // an id: list jobs older than it
}

// Page is one page of a list.
type Page[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token"`
}
