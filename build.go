package gef

import "time"

// BuildState is where a build is in its life.
type BuildState string

// The states a build moves through; done and failed end it.
const (
	BuildQueued     BuildState = "queued"
	BuildBuilding   BuildState = "building"   // a node runs the build
	BuildPublishing BuildState = "publishing" // the image is saved, uploaded, checked and published
	BuildDone       BuildState = "done"
	BuildFailed     BuildState = "failed"
)

// Final reports whether s ends a build.
func (s BuildState) Final() bool { return s == BuildDone || s == BuildFailed }

// Build kinds.
const (
	BuildDockerfile = "dockerfile" // a Dockerfile with its context
	BuildFromSpec   = "spec"       // a BuildSpec
)

// Build is one image build run on a node; a successful build publishes the
// service its labels declare.
type Build struct {
	ID     string     `json:"id"`
	State  BuildState `json:"state"`
	Reason string     `json:"reason,omitempty"` // why it failed
	Kind   string     `json:"kind"`             // BuildDockerfile or BuildFromSpec
	// Spec is the request of a spec build, with Base resolved to an image ID.
	Spec *BuildSpec `json:"spec,omitempty"`
	// Hash identifies what was built: the spec, or the context's content.
	// A request with the hash of an earlier successful build gets that
	// build back instead of a new one.
	Hash  string `json:"hash"`
	Node  string `json:"node,omitempty"`
	Owner string `json:"owner"`
	// ImageDigest, Service and Version are set once the image is published.
	ImageDigest string          `json:"image_digest,omitempty"`
	Service     string          `json:"service,omitempty"`
	Version     string          `json:"version,omitempty"`
	Timestamps  BuildTimestamps `json:"timestamps"`
}

// BuildTimestamps records when a build entered each phase.
type BuildTimestamps struct {
	Queued     time.Time  `json:"queued"`
	Building   *time.Time `json:"building,omitempty"`
	Publishing *time.Time `json:"publishing,omitempty"`
	Finished   *time.Time `json:"finished,omitempty"`
}

// BuildSpec describes an image as a small spec rather than a Dockerfile:
// a base image, packages to install, files to add, the entrypoint and the
// labels. See docs/service-labels.md.
type BuildSpec struct {
	// Base is a published service, "NAME" (its newest version) or
	// "NAME:VERSION", or an image ID "sha256:…" published or present on
	// a node. Nothing is pulled from a registry.
	Base string `json:"base"`
	// Apt lists Debian packages, installed with apt-get in one layer.
	Apt []string `json:"apt,omitempty"`
	// Pip lists Python packages, installed with pip in one layer.
	Pip []string `json:"pip,omitempty"`
	// Files maps absolute paths in the image to their content. A file whose
	// content starts with "#!" is made executable.
	Files map[string]string `json:"files,omitempty"`
	// Entrypoint and Cmd replace the base image's, if given.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Labels are added to the base image's labels, replacing any with the
	// same key.
	Labels map[string]string `json:"labels,omitempty"`
}

// BuildAssignment is everything a node needs to run one build.
type BuildAssignment struct {
	BuildID string `json:"build_id"`
	// ContextURL serves the build context (a tar with a Dockerfile) by GET.
	ContextURL string `json:"context_url"`
	// BaseImage is the image ID the build starts from, if GEF knows it; the
	// node fetches it like a job's image when it lacks it.
	BaseImage string `json:"base_image,omitempty"`
}

// BuildReport moves a build forward. A node reports failed, or publishing
// with ImageID once it has uploaded the image; the manager then checks and
// publishes it.
type BuildReport struct {
	State   BuildState `json:"state"`
	Reason  string     `json:"reason,omitempty"`
	ImageID string     `json:"image_id,omitempty"`
}

// ImageDownload tells a node where to fetch a published image's
// `docker save` tarball from, without store credentials.
type ImageDownload struct {
	URL  string `json:"url"`
	Size int64  `json:"size"`
}

// ImageKey is where the `docker save` tarball of the image with ID
// sha256:<hex> is kept in the object store.
func ImageKey(imageID string) string {
	hex := imageID
	if len(hex) > 7 && hex[:7] == "sha256:" {
		hex = hex[7:]
	}
	return "images/" + hex + ".tar"
}
