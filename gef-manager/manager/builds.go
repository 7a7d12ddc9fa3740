package manager

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/images"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// Builds run on nodes through the same dispatch path as jobs: a node's poll
// claims queued builds beside jobs, each taking one of its slots. The node
// fetches the context through a presigned URL, builds, saves the image and
// uploads the tarball through another; the manager then checks it like an
// uploaded tarball and publishes the service its labels declare.

// BuildRequest starts a build: either a spec, or a build context.
type BuildRequest struct {
	Spec *gef.BuildSpec
	// Context is a tar archive, gzipped or not, with a Dockerfile at its
	// root.
	Context io.Reader
}

func contextKey(id string) string    { return "builds/" + id + "/context.tar" }
func buildImageKey(id string) string { return "builds/" + id + "/image.tar" }

// SubmitBuild queues a build and returns it at once. A request identical
// to an earlier successful build, whose service is still published,
// returns that build instead, with reused true, and builds nothing.
func (m *Manager) SubmitBuild(ctx context.Context, p Principal, req BuildRequest) (b gef.Build, reused bool, err error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Build{}, false, err
	}
	if (req.Spec == nil) == (req.Context == nil) {
		return gef.Build{}, false, gef.Invalid("spec", "give either a build spec or a build context with a Dockerfile")
	}
	nb := store.NewBuild{Build: gef.Build{ID: gef.NewID(), State: gef.BuildQueued, Owner: p.Name,
		Timestamps: gef.BuildTimestamps{Queued: m.now().UTC()}}}
	var ctxTar io.Reader
	var ctxSize int64
	var publishes *baseImage
	if req.Spec != nil {
		spec, base, err := m.resolveSpec(ctx, *req.Spec)
		if err != nil {
			return gef.Build{}, false, err
		}
		j, _ := json.Marshal(spec)
		nb.Kind, nb.Spec, nb.Hash = gef.BuildFromSpec, &spec, "spec:"+images.Digest([]string{string(j)})
		nb.BaseImage, publishes = base.ID, &base
		if !base.stored {
			nb.NeedsImage = base.ID
		}
		tarball, err := renderSpec(spec)
		if err != nil {
			return gef.Build{}, false, err
		}
		ctxTar, ctxSize = bytes.NewReader(tarball), int64(len(tarball))
	} else {
		f, size, err := m.spool(req.Context, m.cfg.MaxContextBytes, "context")
		if err != nil {
			return gef.Build{}, false, err
		}
		defer f.Close()
		checked, err := images.CheckContext(f, images.Limits{Field: "context"})
		if err != nil {
			return gef.Build{}, false, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return gef.Build{}, false, fmt.Errorf("manager: %w", err)
		}
		nb.Kind, nb.Hash = gef.BuildDockerfile, "dockerfile:"+checked.Digest
		// A Dockerfile FROM a published image ID can build on any node:
		// a node that lacks the image fetches it like a job's.
		for _, id := range images.ImageIDsFrom(checked.Dockerfile) {
			if base, err := m.resolveBase(ctx, id); err == nil {
				nb.BaseImage = base.ID
				if !base.stored {
					nb.NeedsImage = base.ID
				}
				break
			}
		}
		ctxTar, ctxSize = f, size
	}

	if earlier, ok, err := m.reusableBuild(ctx, nb.Hash); err != nil || ok {
		if ok {
			m.log.Info("build reused", "build", earlier.ID, "service", earlier.Service, "version", earlier.Version, "by", p.Name)
		}
		return earlier, ok, err
	}
	if publishes != nil {
		if _, err := m.store.Service(ctx, publishes.service, publishes.version); err == nil {
			return gef.Build{}, false, fmt.Errorf("service %s %s is already published, and a build makes a new image; change the version label: %w",
				publishes.service, publishes.version, gef.ErrConflict)
		} else if !errors.Is(err, gef.ErrNotFound) {
			return gef.Build{}, false, err
		}
	}
	if err := m.objects.Put(ctx, contextKey(nb.ID), ctxTar, ctxSize); err != nil {
		return gef.Build{}, false, fmt.Errorf("manager: store build context: %w: %w", gef.ErrUnavailable, err)
	}
	if err := m.store.CreateBuild(ctx, nb); err != nil {
		return gef.Build{}, false, err
	}
	m.log.Info("build queued", "build", nb.ID, "kind", nb.Kind, "hash", nb.Hash, "by", p.Name)
	m.hub.wakeAll()
	return nb.Build, false, nil
}

// reusableBuild finds an earlier successful build with hash whose result
// is still in the catalog.
func (m *Manager) reusableBuild(ctx context.Context, hash string) (gef.Build, bool, error) {
	earlier, err := m.store.DoneBuildByHash(ctx, hash)
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Build{}, false, nil
	}
	if err != nil {
		return gef.Build{}, false, err
	}
	svc, err := m.store.Service(ctx, earlier.Service, earlier.Version)
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Build{}, false, nil // deleted since: build it again
	}
	if err != nil {
		return gef.Build{}, false, err
	}
	return earlier, svc.Digest == earlier.ImageDigest, nil
}

// baseImage is what GEF knows of the image a spec builds on.
type baseImage struct {
	ID         string
	Labels     map[string]string
	Entrypoint []string
	Cmd        []string
	stored     bool // GEF keeps its tarball, so any node can fetch it
	// service and version are what a spec built on it will publish.
	service, version string
}

// resolveBase finds a spec's base: a published service (NAME or
// NAME:VERSION) or an image ID that is published or on some node.
func (m *Manager) resolveBase(ctx context.Context, ref string) (baseImage, error) {
	var svc gef.Service
	switch {
	case ref == "":
		return baseImage{}, gef.Invalid("base", "is required: a published service (NAME or NAME:VERSION) or an image ID")
	case strings.HasPrefix(ref, "sha256:"):
		if !validImageID(ref) {
			return baseImage{}, gef.Invalid("base", "%q is not an image ID (sha256: and 64 hex digits)", ref)
		}
		svcs, err := m.store.ServicesWithDigest(ctx, ref)
		if err != nil {
			return baseImage{}, err
		}
		if len(svcs) == 0 {
			img, err := m.store.NodeImage(ctx, ref)
			if errors.Is(err, gef.ErrNotFound) {
				return baseImage{}, gef.Invalid("base", "image %s is neither published nor on any node; nothing is pulled from registries", ref)
			}
			if err != nil {
				return baseImage{}, err
			}
			return baseImage{ID: img.ID, Labels: img.Labels, Entrypoint: img.Entrypoint, Cmd: img.Cmd}, nil
		}
		svc = svcs[0]
	default:
		name, version, _ := strings.Cut(ref, ":")
		var err error
		svc, err = m.resolveService(ctx, name, version)
		if errors.Is(err, gef.ErrNotFound) {
			if version != "" {
				return baseImage{}, gef.Invalid("base", "service %q has no version %q", name, version)
			}
			return baseImage{}, gef.Invalid("base", "%s", strings.TrimSuffix(err.Error(), ": "+gef.ErrNotFound.Error()))
		}
		if err != nil {
			return baseImage{}, err
		}
	}
	_, err := m.objects.Stat(ctx, gef.ImageKey(svc.Digest))
	if err != nil && !errors.Is(err, gef.ErrNotFound) {
		return baseImage{}, fmt.Errorf("manager: image %s: %w: %w", svc.Digest, gef.ErrUnavailable, err)
	}
	return baseImage{ID: svc.Digest, Labels: svc.Labels, Entrypoint: svc.Entrypoint, Cmd: svc.Cmd, stored: err == nil}, nil
}

var (
	aptPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{0,127}(=[A-Za-z0-9.+:~_-]{1,64})?$`)
	pipPackage = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(\[[A-Za-z0-9,._-]{1,128}\])?((==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]{1,64})?$`)
)

// Bounds of a build spec.
const (
	maxPackages       = 200
	maxSpecFiles      = 1000
	maxSpecFile       = 1 << 20
	maxSpecFilesBytes = 16 << 20
	maxLabelValue     = 64 << 10
	maxSpecArgv       = 256
	maxSpecArgBytes   = 4096
)

// resolveSpec checks a spec, resolves its base to an image ID and returns
// the spec in canonical form (packages sorted, base an image ID). It also
// checks the labels the image will have, base labels included, so a spec
// that could not publish is refused before it is built.
func (m *Manager) resolveSpec(ctx context.Context, spec gef.BuildSpec) (gef.BuildSpec, baseImage, error) {
	base, err := m.resolveBase(ctx, spec.Base)
	if err != nil {
		return gef.BuildSpec{}, baseImage{}, err
	}
	out := gef.BuildSpec{Base: base.ID, Entrypoint: spec.Entrypoint, Cmd: spec.Cmd}
	var errs []error
	pkgs := func(field string, list []string, re *regexp.Regexp) []string {
		if len(list) > maxPackages {
			errs = append(errs, gef.Invalid(field, "at most %d packages", maxPackages))
			return nil
		}
		var ok []string
		for _, p := range list {
			if !re.MatchString(p) {
				errs = append(errs, gef.Invalid(field, "%q is not a package name (with an optional version)", p))
				continue
			}
			ok = append(ok, p)
		}
		sort.Strings(ok)
		return slices.Compact(ok)
	}
	out.Apt = pkgs("apt", spec.Apt, aptPackage)
	out.Pip = pkgs("pip", spec.Pip, pipPackage)

	if len(spec.Files) > maxSpecFiles {
		errs = append(errs, gef.Invalid("files", "at most %d files", maxSpecFiles))
	}
	total := 0
	for p, content := range spec.Files {
		field := "files." + p
		total += len(content)
		switch {
		case !path.IsAbs(p) || path.Clean(p) != p || p == "/" || len(p) > 1024:
			errs = append(errs, gef.Invalid(field, "the path must be absolute, clean and not /"))
		case !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0 || strings.Contains(p, "\\"):
			errs = append(errs, gef.Invalid(field, "the path has control characters, a backslash or invalid UTF-8"))
		case len(content) > maxSpecFile:
			errs = append(errs, gef.Invalid(field, "at most %d bytes", maxSpecFile))
		}
	}
	if total > maxSpecFilesBytes {
		errs = append(errs, gef.Invalid("files", "at most %d bytes in all", maxSpecFilesBytes))
	}
	if len(spec.Files) > 0 {
		out.Files = spec.Files
	}
	for field, argv := range map[string][]string{"entrypoint": spec.Entrypoint, "cmd": spec.Cmd} {
		if len(argv) > maxSpecArgv {
			errs = append(errs, gef.Invalid(field, "at most %d arguments", maxSpecArgv))
		}
		for _, a := range argv {
			if len(a) > maxSpecArgBytes || strings.ContainsRune(a, 0) || !utf8.ValidString(a) {
				errs = append(errs, gef.Invalid(field, "arguments are at most %d bytes of UTF-8 without NUL", maxSpecArgBytes))
				break
			}
		}
	}
	for k, v := range spec.Labels {
		field := "labels." + k
		switch {
		case k == "" || len(k) > 256 || strings.IndexFunc(k, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0:
			errs = append(errs, gef.Invalid(field, "a label key is 1-256 characters without spaces or control characters"))
		case len(v) > maxLabelValue || strings.IndexFunc(v, unicode.IsControl) >= 0 || !utf8.ValidString(v):
			errs = append(errs, gef.Invalid(field, "a label value is at most %d bytes of UTF-8 without control characters", maxLabelValue))
		}
	}
	if len(spec.Labels) > 0 {
		out.Labels = spec.Labels
	}
	if len(errs) > 0 {
		return gef.BuildSpec{}, baseImage{}, errors.Join(errs...)
	}

	// What the image will declare: the base's labels and command, as the
	// spec changes them. A Dockerfile ENTRYPOINT resets an inherited CMD.
	labels := map[string]string{}
	for k, v := range base.Labels {
		labels[k] = v
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	entrypoint, cmd := base.Entrypoint, base.Cmd
	if len(spec.Entrypoint) > 0 {
		entrypoint, cmd = spec.Entrypoint, nil
	}
	if len(spec.Cmd) > 0 {
		cmd = spec.Cmd
	}
	svc, err := serviceOf("", labels, entrypoint, cmd)
	if err != nil {
		return gef.BuildSpec{}, baseImage{}, err
	}
	base.service, base.version = svc.Name, svc.Version
	return out, base, nil
}

// renderSpec writes the build context of a resolved spec: a Dockerfile and
// the spec's files under files/. Packages are passed to the shell as
// arguments, never spliced into a command line.
func renderSpec(spec gef.BuildSpec) ([]byte, error) {
	var df strings.Builder
	fmt.Fprintf(&df, "# Generated by GEF from a build spec.\nFROM %s\n", spec.Base)
	// JSON arrays, as exec-form instructions take them, without the HTML
	// escapes (&& as \u0026\u0026) that a reader would trip over.
	jsonArray := func(list []string) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(list)
		return strings.TrimSuffix(b.String(), "\n")
	}
	run := func(script string, args []string) {
		fmt.Fprintf(&df, "RUN %s\n", jsonArray(append([]string{"/bin/sh", "-c", script, "sh"}, args...)))
	}
	if len(spec.Apt) > 0 {
		run(`export DEBIAN_FRONTEND=noninteractive && apt-get update && apt-get install -y --no-install-recommends "$@" && rm -rf /var/lib/apt/lists/*`, spec.Apt)
	}
	if len(spec.Pip) > 0 {
		run(`PIP_BREAK_SYSTEM_PACKAGES=1 pip install --no-cache-dir "$@"`, spec.Pip)
	}
	if len(spec.Files) > 0 {
		df.WriteString("COPY files/ /\n")
	}
	if len(spec.Entrypoint) > 0 {
		fmt.Fprintf(&df, "ENTRYPOINT %s\n", jsonArray(spec.Entrypoint))
	}
	if len(spec.Cmd) > 0 {
		fmt.Fprintf(&df, "CMD %s\n", jsonArray(spec.Cmd))
	}
	keys := make([]string, 0, len(spec.Labels))
	for k := range spec.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&df, "LABEL %s=%s\n", dockerQuote(k), dockerQuote(spec.Labels[k]))
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) error {
		h := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", 0o644, []byte(df.String())); err != nil {
		return nil, fmt.Errorf("manager: render build: %w", err)
	}
	paths := make([]string, 0, len(spec.Files))
	for p := range spec.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		mode := int64(0o644)
		if strings.HasPrefix(spec.Files[p], "#!") {
			mode = 0o755
		}
		if err := add("files"+p, mode, []byte(spec.Files[p])); err != nil {
			return nil, fmt.Errorf("manager: render build: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("manager: render build: %w", err)
	}
	return buf.Bytes(), nil
}

// dockerQuote quotes s for a Dockerfile LABEL, where backslash escapes and
// $ would expand a variable.
func dockerQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)
	return `"` + r.Replace(s) + `"`
}

// Build returns a build its caller may see: their own, or any for admins.
func (m *Manager) Build(ctx context.Context, p Principal, id string) (gef.Build, error) {
	if p.Anonymous() {
		return gef.Build{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !gef.ValidID(id) {
		return gef.Build{}, gef.Invalid("id", "%q is not a build id", id)
	}
	b, err := m.store.Build(ctx, id)
	if err != nil {
		return gef.Build{}, err
	}
	if !p.Is(gef.RoleAdmin) && b.Owner != p.Name {
		return gef.Build{}, fmt.Errorf("build %s: %w", id, gef.ErrNotFound)
	}
	return b, nil
}

// Builds lists the builds the caller may see, newest first.
func (m *Manager) Builds(ctx context.Context, p Principal, f store.BuildFilter) (gef.Page[gef.Build], error) {
	if p.Anonymous() {
		return gef.Page[gef.Build]{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if f.State != "" && !slices.Contains([]gef.BuildState{gef.BuildQueued, gef.BuildBuilding, gef.BuildPublishing, gef.BuildDone, gef.BuildFailed}, f.State) {
		return gef.Page[gef.Build]{}, gef.Invalid("state", "unknown state %q", f.State)
	}
	if f.PageToken != "" && !gef.ValidID(f.PageToken) {
		return gef.Page[gef.Build]{}, gef.Invalid("page_token", "is not a page token")
	}
	if !p.Is(gef.RoleAdmin) {
		if f.Owner != "" && f.Owner != p.Name {
			return gef.Page[gef.Build]{Items: []gef.Build{}}, nil
		}
		f.Owner = p.Name
	}
	return m.store.Builds(ctx, f)
}

// BuildLogs writes a build's output so far to w.
func (m *Manager) BuildLogs(ctx context.Context, p Principal, id string, w io.Writer) error {
	if _, err := m.Build(ctx, p, id); err != nil {
		return err
	}
	chunks, err := m.storedChunks(ctx, id, "")
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if _, err := w.Write(c.Data); err != nil {
			return err
		}
	}
	return nil
}

// FollowBuildLogs emits a build's output from the start and then live,
// until the build ends or ctx does.
func (m *Manager) FollowBuildLogs(ctx context.Context, p Principal, id string, emit func(LogChunk) error) error {
	if _, err := m.Build(ctx, p, id); err != nil {
		return err
	}
	return m.follow(ctx, id, func(ctx context.Context) (bool, error) {
		b, err := m.store.Build(ctx, id)
		return b.State.Final(), err
	}, emit)
}

// The node's side.

// heldBuilds fails the builds the manager gave node that the node no
// longer runs, and returns how many it still runs.
func (m *Manager) heldBuilds(ctx context.Context, node string, req gef.PollRequest) (int, error) {
	active, err := m.store.ActiveBuilds(ctx, node)
	if err != nil {
		return 0, err
	}
	var lost []string
	for _, id := range active {
		if !slices.Contains(req.Builds, id) {
			lost = append(lost, id)
		}
	}
	if len(lost) == 0 {
		return len(active), nil
	}
	ended, err := m.store.EndLostBuilds(ctx, node, lost,
		"node "+node+" no longer runs the build (its agent restarted or never received it)", m.now().UTC())
	if err != nil {
		return 0, err
	}
	for _, id := range ended {
		m.logs.end(id)
		m.log.Warn("build lost", "build", id, "node", node)
	}
	return len(active) - len(ended), nil
}

// claimBuilds gives node up to n queued builds.
func (m *Manager) claimBuilds(ctx context.Context, node string, n int) ([]gef.BuildAssignment, error) {
	claimed, err := m.store.ClaimBuilds(ctx, node, n, m.now().UTC())
	if err != nil {
		return nil, err
	}
	var out []gef.BuildAssignment
	for _, b := range claimed {
		u, err := m.objects.PresignGet(ctx, contextKey(b.ID), m.cfg.UploadURLTTL)
		if err != nil {
			m.failBuild(ctx, b.ID, fmt.Sprintf("the manager could not hand out the build context: %v", err))
			continue
		}
		out = append(out, gef.BuildAssignment{BuildID: b.ID, ContextURL: u, BaseImage: b.BaseImage})
		m.log.Info("build assigned", "build", b.ID, "node", node)
	}
	return out, nil
}

// failBuild ends a build as failed, whoever holds it.
func (m *Manager) failBuild(ctx context.Context, id, reason string) {
	if _, applied, err := m.store.FinishBuild(ctx, "", id, store.BuildResult{State: gef.BuildFailed, Reason: reason, At: m.now().UTC()}); err != nil {
		m.log.Error("ending a build failed", "build", id, "err", err)
	} else if applied {
		m.logs.end(id)
		m.log.Info("build failed", "build", id, "reason", reason)
	}
}

// reapBuilds fails the builds of nodes that went down.
func (m *Manager) reapBuilds(ctx context.Context) error {
	ended, err := m.store.EndBuildsOfDownNodes(ctx, m.now().UTC())
	for _, id := range ended {
		m.logs.end(id)
		m.log.Warn("build lost with its node", "build", id)
	}
	return err
}

// BuildUploadURL hands the node running a build a URL to upload the built
// image's tarball to, and moves the build to publishing.
func (m *Manager) BuildUploadURL(ctx context.Context, p Principal, id string) (string, error) {
	if err := requireNode(p, ""); err != nil {
		return "", err
	}
	if !gef.ValidID(id) {
		return "", gef.Invalid("id", "%q is not a build id", id)
	}
	if _, err := m.store.StartPublishing(ctx, p.Name, id, m.now().UTC()); err != nil {
		return "", err
	}
	u, err := m.objects.PresignPut(ctx, buildImageKey(id), m.cfg.UploadURLTTL)
	if err != nil {
		return "", fmt.Errorf("manager: presign: %w", err)
	}
	return u, nil
}

// maxReason bounds a failure reason a node reports.
const maxReason = 8 << 10

// ReportBuild applies a node's report on a build it runs: failed ends it;
// publishing, with the ID of the image the node uploaded, has the manager
// check and publish the image, and ends the build done or failed.
// Reports are idempotent: a report on an ended build returns it unchanged.
func (m *Manager) ReportBuild(ctx context.Context, p Principal, id string, r gef.BuildReport) (gef.Build, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.Build{}, err
	}
	if !gef.ValidID(id) {
		return gef.Build{}, gef.Invalid("id", "%q is not a build id", id)
	}
	b, err := m.store.Build(ctx, id)
	if err != nil {
		return gef.Build{}, err
	}
	if b.Node != p.Name {
		return gef.Build{}, fmt.Errorf("build %s is not held by node %q: %w", id, p.Name, gef.ErrConflict)
	}
	if b.State.Final() {
		return b, nil
	}
	switch r.State {
	case gef.BuildBuilding:
		return b, nil
	case gef.BuildFailed:
		reason := r.Reason
		if len(reason) > maxReason {
			reason = reason[:maxReason] + "…"
		}
		if reason == "" {
			reason = "the build failed on node " + p.Name
		}
		b, applied, err := m.store.FinishBuild(ctx, p.Name, id, store.BuildResult{State: gef.BuildFailed, Reason: reason, At: m.now().UTC()})
		if applied {
			m.logs.end(id)
			m.log.Info("build failed", "build", id, "node", p.Name, "reason", reason)
		}
		return b, err
	case gef.BuildPublishing:
		if !validImageID(r.ImageID) {
			return gef.Build{}, gef.Invalid("image_id", "must be sha256: followed by 64 hex digits, got %q", r.ImageID)
		}
		if _, err := m.store.StartPublishing(ctx, p.Name, id, m.now().UTC()); err != nil {
			return gef.Build{}, err
		}
		return m.publishBuild(ctx, b, r.ImageID)
	}
	return gef.Build{}, gef.Invalid("state", "a node reports a build building, publishing or failed, not %q", r.State)
}

// publishBuild checks the tarball a node uploaded for a build and publishes
// it. The build's failures (a bad tarball, bad labels, a taken version)
// end it as failed; only the manager's own failures are returned, so the
// node reports again.
func (m *Manager) publishBuild(ctx context.Context, b gef.Build, imageID string) (gef.Build, error) {
	rc, _, err := m.objects.Get(ctx, buildImageKey(b.ID))
	if errors.Is(err, gef.ErrNotFound) {
		return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildFailed, Reason: "the node reported the image built but uploaded no tarball"})
	}
	if err != nil {
		return gef.Build{}, fmt.Errorf("manager: build %s: %w: %w", b.ID, gef.ErrUnavailable, err)
	}
	f, size, err := m.spool(rc, m.cfg.MaxImageBytes, "image")
	rc.Close()
	var tooBig *TooLargeError
	if errors.As(err, &tooBig) {
		return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildFailed, Reason: "the built image is " + strings.TrimPrefix(err.Error(), "image: ")})
	}
	if err != nil {
		return gef.Build{}, fmt.Errorf("manager: build %s: %w", b.ID, err)
	}
	defer f.Close()
	img, err := images.Inspect(f, images.Limits{Field: "image"})
	if err != nil {
		return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildFailed, Reason: "the built image's tarball is unusable: " + err.Error()})
	}
	if img.ID != imageID {
		return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildFailed,
			Reason: fmt.Sprintf("the node built image %s but uploaded a tarball of %s", imageID, img.ID)})
	}
	owner, _, err := m.store.UserByName(ctx, b.Owner)
	if err != nil {
		return gef.Build{}, fmt.Errorf("manager: build %s: owner %q: %w", b.ID, b.Owner, err)
	}
	svc, _, err := m.publishTarball(ctx, Principal{UserID: owner.ID, Name: owner.Name, Role: owner.Role}, f, size, img, "")
	if errors.Is(err, gef.ErrInvalid) || errors.Is(err, gef.ErrConflict) || errors.Is(err, gef.ErrForbidden) {
		reason := "the image was built but not published: " + strings.TrimSuffix(strings.TrimSuffix(err.Error(), ": "+gef.ErrConflict.Error()), ": "+gef.ErrForbidden.Error())
		return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildFailed, Reason: reason, ImageDigest: img.ID})
	}
	if err != nil {
		return gef.Build{}, err
	}
	if err := m.objects.Delete(ctx, buildImageKey(b.ID)); err != nil {
		m.log.Warn("build upload left behind", "build", b.ID, "err", err)
	}
	return m.endBuild(ctx, b, store.BuildResult{State: gef.BuildDone, ImageDigest: svc.Digest, Service: svc.Name, Version: svc.Version})
}

func (m *Manager) endBuild(ctx context.Context, b gef.Build, r store.BuildResult) (gef.Build, error) {
	r.At = m.now().UTC()
	done, applied, err := m.store.FinishBuild(ctx, b.Node, b.ID, r)
	if err != nil {
		return gef.Build{}, err
	}
	if applied {
		m.logs.end(b.ID)
		m.log.Info("build ended", "build", b.ID, "state", done.State, "service", done.Service, "version", done.Version,
			"digest", done.ImageDigest, "reason", done.Reason)
	}
	return done, nil
}

// AppendBuildLog stores a chunk of a build's output sent by the node
// running it.
func (m *Manager) AppendBuildLog(ctx context.Context, p Principal, id string, c LogChunk) error {
	if err := requireNode(p, ""); err != nil {
		return err
	}
	switch {
	case !gef.ValidID(id):
		return gef.Invalid("id", "%q is not a build id", id)
	case c.Stream != "stdout" && c.Stream != "stderr":
		return gef.Invalid("stream", "must be stdout or stderr")
	case c.Attempt < 1 || c.Attempt > 9999 || c.Seq < 0 || c.Seq > 9_999_999_999:
		return gef.Invalid("seq", "attempt and seq are out of range")
	case len(c.Data) > maxLogChunk:
		return gef.Invalid("data", "a chunk must be at most %d bytes", maxLogChunk)
	}
	b, err := m.store.Build(ctx, id)
	if err != nil {
		return err
	}
	if b.Node != p.Name {
		return fmt.Errorf("build %s is not held by node %q: %w", id, p.Name, gef.ErrConflict)
	}
	if err := m.objects.Put(ctx, c.key(id), bytes.NewReader(c.Data), int64(len(c.Data))); err != nil {
		return fmt.Errorf("manager: store log chunk: %w: %w", gef.ErrUnavailable, err)
	}
	m.metrics.logBytes.Add(float64(len(c.Data)))
	m.logs.push(id, c)
	return nil
}
