package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/images"
	"github.com/eudat-gef/gef/services"
)

// Publishing. An image reaches the catalog as a `docker save` tarball:
// uploaded, pulled from a registry, or built on a node. Whichever way, the
// tarball is spooled to a temporary file, checked entry by entry, and kept
// in the object store under a key derived from the image ID, so that nodes
// can fetch it without a registry.

// TooLargeError is an upload over its limit.
type TooLargeError struct {
	Field string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than the %d bytes allowed", e.Field, e.Limit)
}

// UploadLimits returns the largest image tarball and build context the
// manager takes, in bytes.
func (m *Manager) UploadLimits() (image, context int64) {
	return m.cfg.MaxImageBytes, m.cfg.MaxContextBytes
}

// spool copies r to an unlinked temporary file, refusing more than limit
// bytes, and returns it rewound with its size. Closing it frees the space.
func (m *Manager) spool(r io.Reader, limit int64, field string) (*os.File, int64, error) {
	f, err := os.CreateTemp(m.cfg.TempDir, "gef-spool-*")
	if err != nil {
		return nil, 0, fmt.Errorf("manager: spool: %w", err)
	}
	// Unlinked at once: the space is freed when f is closed, whatever happens.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("manager: spool: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = &TooLargeError{Field: field, Limit: limit}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// PublishTarball publishes the image in a `docker save` tarball. It answers
// as PublishImage does.
func (m *Manager) PublishTarball(ctx context.Context, p Principal, r io.Reader) (gef.Service, bool, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Service{}, false, err
	}
	f, size, err := m.spool(r, m.cfg.MaxImageBytes, "image")
	if err != nil {
		return gef.Service{}, false, err
	}
	defer f.Close()
	img, err := images.Inspect(f, images.Limits{Field: "image"})
	if err != nil {
		return gef.Service{}, false, err
	}
	return m.publishTarball(ctx, p, f, size, img, "")
}

// PublishRef publishes an image from a registry. ref names a tag or a
// digest; it is resolved to a digest now, and the image is copied into
// the object store, so that nodes never need the registry.
func (m *Manager) PublishRef(ctx context.Context, p Principal, ref string) (gef.Service, bool, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Service{}, false, err
	}
	f, err := os.CreateTemp(m.cfg.TempDir, "gef-pull-*")
	if err != nil {
		return gef.Service{}, false, fmt.Errorf("manager: spool: %w", err)
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return gef.Service{}, false, fmt.Errorf("manager: spool: %w", err)
	}
	pulled, err := images.Pull(ctx, ref, f, images.PullOptions{MaxBytes: m.cfg.MaxImageBytes, Transport: m.cfg.RegistryTransport})
	if err != nil {
		return gef.Service{}, false, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return gef.Service{}, false, fmt.Errorf("manager: spool: %w", err)
	}
	img, err := images.Inspect(f, images.Limits{Field: "image_ref"})
	if err != nil {
		return gef.Service{}, false, err
	}
	if img.ID != pulled.ID {
		return gef.Service{}, false, fmt.Errorf("manager: %s resolved to image %s but its tarball holds %s", ref, pulled.ID, img.ID)
	}
	m.log.Info("image pulled", "ref", ref, "repo_digest", pulled.RepoDigest, "image", img.ID, "bytes", size)
	return m.publishTarball(ctx, p, f, size, img, pulled.RepoDigest)
}

// serviceOf reads a service from an image's labels and command.
func serviceOf(id string, labels map[string]string, entrypoint, cmd []string) (*gef.Service, error) {
	svc, err := services.Parse(labels)
	if err != nil {
		return nil, err
	}
	svc.Digest, svc.Entrypoint, svc.Cmd = id, entrypoint, cmd
	if len(svc.Entrypoint)+len(svc.Cmd) == 0 {
		return nil, gef.Invalid("entrypoint", "the image sets neither ENTRYPOINT nor CMD, so there is nothing to run")
	}
	return svc, nil
}

// publishTarball publishes a checked tarball: the blob first, then the
// catalog entry, so a published service always has its blob.
func (m *Manager) publishTarball(ctx context.Context, p Principal, f io.ReadSeeker, size int64, img images.Image, repoDigest string) (gef.Service, bool, error) {
	publisher := p.Name
	svc, err := serviceOf(img.ID, img.Labels, img.Entrypoint, img.Cmd)
	if err != nil {
		return gef.Service{}, false, err
	}
	if err := m.mayMaintain(ctx, p, svc.Name); err != nil {
		return gef.Service{}, false, err
	}
	svc.RepoDigest = repoDigest
	// Refuse a rebinding before storing anything.
	if old, err := m.store.Service(ctx, svc.Name, svc.Version); err == nil && old.Digest != svc.Digest {
		return gef.Service{}, false, fmt.Errorf("service %s %s is already bound to image %s; publish the new image as a new version: %w",
			svc.Name, svc.Version, old.Digest, gef.ErrConflict)
	} else if err != nil && !errors.Is(err, gef.ErrNotFound) {
		return gef.Service{}, false, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return gef.Service{}, false, fmt.Errorf("manager: %w", err)
	}
	// Always written, even if a blob is there: a verified copy replaces a
	// damaged one.
	if err := m.objects.Put(ctx, gef.ImageKey(img.ID), f, size); err != nil {
		return gef.Service{}, false, fmt.Errorf("manager: store image %s: %w: %w", img.ID, gef.ErrUnavailable, err)
	}
	// The store keeps microseconds; answer with what a later read returns.
	svc.Publisher, svc.CreatedAt = publisher, m.now().UTC().Truncate(time.Microsecond)
	stored, created, err := m.store.PublishService(ctx, *svc)
	if err != nil {
		return gef.Service{}, false, err
	}
	if created {
		m.log.Info("service published", "service", stored.Name, "version", stored.Version, "digest", stored.Digest,
			"repo_digest", repoDigest, "bytes", size, "by", publisher)
	}
	return stored, created, nil
}

// DeleteService removes a version that no job references. Its image blob
// goes too, unless another version uses the same image.
func (m *Manager) DeleteService(ctx context.Context, p Principal, name, version string) error {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return err
	}
	svc, err := m.store.Service(ctx, name, version)
	if err != nil {
		return err
	}
	if err := m.mayMaintain(ctx, p, name); err != nil {
		return err
	}
	if err := m.store.DeleteService(ctx, name, version); err != nil {
		return err
	}
	m.log.Info("service deleted", "service", name, "version", version, "digest", svc.Digest, "by", p.Name)
	others, err := m.store.ServicesWithDigest(ctx, svc.Digest)
	if err != nil {
		return err
	}
	if len(others) == 0 {
		if err := m.objects.Delete(ctx, gef.ImageKey(svc.Digest)); err != nil {
			m.log.Warn("image blob left behind", "digest", svc.Digest, "err", err)
		}
	}
	return nil
}

// ImageDownload gives a node a URL to fetch a published image's tarball
// from, so it never needs a registry or the store's credentials.
func (m *Manager) ImageDownload(ctx context.Context, p Principal, digest string) (gef.ImageDownload, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.ImageDownload{}, err
	}
	if !validImageID(digest) {
		return gef.ImageDownload{}, gef.Invalid("digest", "must be sha256: followed by 64 hex digits, got %q", digest)
	}
	svcs, err := m.store.ServicesWithDigest(ctx, digest)
	if err != nil {
		return gef.ImageDownload{}, err
	}
	if len(svcs) == 0 {
		return gef.ImageDownload{}, fmt.Errorf("image %s is not published: %w", digest, gef.ErrNotFound)
	}
	info, err := m.objects.Stat(ctx, gef.ImageKey(digest))
	if errors.Is(err, gef.ErrNotFound) {
		return gef.ImageDownload{}, fmt.Errorf("GEF keeps no copy of image %s (it was published from a node's engine): %w", digest, gef.ErrNotFound)
	}
	if err != nil {
		return gef.ImageDownload{}, fmt.Errorf("manager: image %s: %w: %w", digest, gef.ErrUnavailable, err)
	}
	u, err := m.objects.PresignGet(ctx, gef.ImageKey(digest), m.cfg.UploadURLTTL)
	if err != nil {
		return gef.ImageDownload{}, fmt.Errorf("manager: presign: %w", err)
	}
	return gef.ImageDownload{URL: u, Size: info.Size}, nil
}
