package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/eudat-gef/gef"
)

// PullOptions tune Pull. The zero value pulls linux/amd64 images with the
// credentials of the default Docker keychain (~/.docker/config.json).
type PullOptions struct {
	// Platform picks the image from a multi-platform index.
	Platform v1.Platform
	// Keychain supplies registry credentials.
	Keychain authn.Keychain
	// Transport is the HTTP transport to the registry.
	Transport http.RoundTripper
	// MaxBytes bounds the tarball written; 0 means no bound.
	MaxBytes int64
}

// Pulled describes an image fetched from a registry.
type Pulled struct {
	// ID is the image ID: the digest of its config.
	ID string
	// RepoDigest pins what was fetched: REGISTRY/REPO@sha256:… of the
	// manifest (or of the index, for a multi-platform image) that the
	// reference resolved to.
	RepoDigest string
}

// errTooBig marks a tarball that outgrew PullOptions.MaxBytes.
var errTooBig = errors.New("image too big")

// Pull resolves ref in its registry and writes the image to w as a
// `docker save` tarball (with gzipped layers), which Inspect reads and
// `docker load` loads. ref must name a tag or a digest explicitly:
// REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:…. Registries on loopback and
// private addresses are reached over plain HTTP, others over HTTPS.
// Errors that the reference causes (malformed, unknown, refused) are
// *gef.InvalidError on the field "image_ref".
func Pull(ctx context.Context, ref string, w io.Writer, opts PullOptions) (Pulled, error) {
	const field = "image_ref"
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return Pulled{}, gef.Invalid(field, "%q is not a full image reference; give REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:… (%v)", ref, err)
	}
	if opts.Platform.OS == "" {
		opts.Platform = v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(opts.Keychain),
		remote.WithPlatform(opts.Platform),
		// A typo in a host name should fail in seconds, not after retries.
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 2})}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return Pulled{}, registryError(ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Pulled{}, registryError(ref, err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return Pulled{}, registryError(ref, err)
	}
	var out io.Writer = w
	if opts.MaxBytes > 0 {
		out = &limitWriter{w: w, left: opts.MaxBytes}
	}
	if err := tarball.Write(r, img, out); err != nil {
		if errors.Is(err, errTooBig) {
			return Pulled{}, gef.Invalid(field, "%s is larger than the %d bytes an image may have", ref, opts.MaxBytes)
		}
		return Pulled{}, registryError(ref, err)
	}
	return Pulled{ID: cfg.String(), RepoDigest: r.Context().Name() + "@" + desc.Digest.String()}, nil
}

// registryError says what went wrong with a reference, in its terms.
func registryError(ref string, err error) error {
	const field = "image_ref"
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return gef.Invalid(field, "%s is not in its registry", ref)
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return gef.Invalid(field, "the registry refused access to %s (%d); the manager needs credentials for it", ref, terr.StatusCode)
		}
		return gef.Invalid(field, "the registry answered %s with an error: %v", ref, terr)
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &oerr) || errors.As(err, &nerr) || strings.Contains(err.Error(), "connection refused") {
		return gef.Invalid(field, "the registry of %s could not be reached: %v", ref, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("images: pull %s: %w", ref, err)
	}
	return gef.Invalid(field, "fetching %s: %v", ref, err)
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// limitWriter fails once more than left bytes are written.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooBig
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}
