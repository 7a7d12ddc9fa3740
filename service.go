package gef

import "time"

// Service is one published version of a service image. (Name, Version) is
// bound to Digest forever; a new image is a new version.
type Service struct {
	Name        string            `json:"name"`  // URL-safe slug derived from Title
	Title       string            `json:"title"` // the display name from the image labels
	Version     string            `json:"version"`
	Digest      string            `json:"digest"` // image ID: sha256 of the image config
	RepoDigest  string            `json:"repo_digest,omitempty"`
	Description string            `json:"description"`
	Inputs      []Input           `json:"inputs"`
	Outputs     []Output          `json:"outputs"`
	Params      []Param           `json:"params"`
	Resources   Resources         `json:"resources"`
	HTTP        *HTTPPort         `json:"http,omitempty"` // set for long-lived HTTP services
	OCI         OCI               `json:"oci"`
	Entrypoint  []string          `json:"entrypoint"`
	Cmd         []string          `json:"cmd"`
	Labels      map[string]string `json:"labels,omitempty"`
	Deprecated  bool              `json:"deprecated"`
	// Network is set when an admin allowed the service's containers to
	// reach the network; otherwise they run with none.
	Network   bool      `json:"network"`
	Publisher string    `json:"publisher,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Input kinds.
const (
	InputURL    = "url"    // binds a dataset, mounted read-only
	InputString = "string" // literal text from the request, written to Path/Filename
)

// Input is a declared input of a service.
type Input struct {
	Name     string `json:"name"`
	Path     string `json:"path"` // absolute path in the container
	Type     string `json:"type"` // InputURL or InputString
	Filename string `json:"filename,omitempty"`
}

// Output is a declared output directory of a service.
type Output struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Parameter types.
const (
	ParamStr   = "str"
	ParamInt   = "int"
	ParamFloat = "float"
	ParamBool  = "bool"
	ParamEnum  = "enum"
)

// Param is a typed parameter, passed to the container as argv.
type Param struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Default     any      `json:"default,omitempty"`
	Required    bool     `json:"required"`
	Values      []string `json:"values,omitempty"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
}

// Resources are a service's resource hints; zero means the node default.
type Resources struct {
	CPUs           float64 `json:"cpus,omitempty"`
	MemoryBytes    int64   `json:"memory_bytes,omitempty"`
	TimeoutSeconds int64   `json:"timeout_seconds,omitempty"`
}

// HTTPPort marks a long-lived service that answers HTTP inside the container.
type HTTPPort struct {
	Port int    `json:"port"`
	Path string `json:"path,omitempty"`
}

// OCI holds the standard org.opencontainers.image.* annotations.
type OCI struct {
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Version     string `json:"version,omitempty"`
	Source      string `json:"source,omitempty"`
	Licenses    string `json:"licenses,omitempty"`
	Authors     string `json:"authors,omitempty"`
	Revision    string `json:"revision,omitempty"`
}

// DatasetInputs returns the inputs that bind datasets.
func (s *Service) DatasetInputs() []Input {
	var in []Input
	for _, i := range s.Inputs {
		if i.Type == "" || i.Type == InputURL {
			in = append(in, i)
		}
	}
	return in
}
