package gef

import (
	"encoding/json"
	"time"
)

// Provenance is the record of what a job ran, on what, where and with what
// result. The manager seals it when the job ends; it never changes after.
// GET /api/v1/jobs/{id}/provenance serves it as a Workflow Run RO-Crate.
type Provenance struct {
	JobID        string `json:"job_id"`
	URL          string `json:"url"`
	Service      string `json:"service"`
	ServiceTitle string `json:"service_title"`
	Version      string `json:"version"`
	ImageDigest  string `json:"image_digest"`
	// Params are the validated parameters as canonical JSON
	// (services.CanonicalParams), so equal runs have equal bytes here.
	Params json.RawMessage `json:"params"`
	Argv   []string        `json:"argv"`
	// Inputs are the datasets bound, with the digest each had when the
	// container started, and the literal text inputs.
	Inputs     []ProvenanceInput `json:"inputs"`
	TextInputs []ProvenanceText  `json:"text_inputs,omitempty"`
	Outputs    []OutputFile      `json:"outputs"`
	// Where it ran: the node and the software between the service and the
	// hardware.
	Node           string `json:"node"`
	EngineVersion  string `json:"engine_version"`
	EngineAPI      string `json:"engine_api_version"`
	Runtime        string `json:"runtime"`
	AgentVersion   string `json:"agent_version"`
	ManagerVersion string `json:"manager_version"`
	// Resources are the service's hints; Limits what the node applied.
	Resources  Resources  `json:"resources"`
	Limits     *Limits    `json:"limits,omitempty"`
	Timestamps Timestamps `json:"timestamps"`
	State      JobState   `json:"state"`
	Reason     string     `json:"reason,omitempty"`
	ExitCode   *int       `json:"exit_code"`
	Owner      string     `json:"owner"`
	RerunOf    *string    `json:"rerun_of"`
	ReuseOf    *string    `json:"reuse_of"`
	// AcceptChangedData records a rerun that ran on data that had changed.
	AcceptChangedData bool      `json:"accept_changed_data"`
	SealedAt          time.Time `json:"sealed_at"`
}

// ProvenanceInput is a dataset a job read.
type ProvenanceInput struct {
	Input   string `json:"input"`
	Dataset string `json:"dataset"`
	Digest  string `json:"digest"`
}

// ProvenanceText is a literal text input, by its sha256.
type ProvenanceText struct {
	Input  string `json:"input"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Text   string `json:"text"`
}
