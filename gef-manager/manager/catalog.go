package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/eudat-gef/gef"
)

// Services lists the catalog: every version of every service, or of one.
func (m *Manager) Services(ctx context.Context, p Principal, name string) ([]gef.Service, error) {
	if p.Anonymous() {
		return nil, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	return m.store.Services(ctx, name)
}

// Service returns one version of a service; an empty version means the
// newest that is not deprecated.
func (m *Manager) Service(ctx context.Context, p Principal, name, version string) (gef.Service, error) {
	if p.Anonymous() {
		return gef.Service{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	return m.resolveService(ctx, name, version)
}

func (m *Manager) resolveService(ctx context.Context, name, version string) (gef.Service, error) {
	if version != "" {
		return m.store.Service(ctx, name, version)
	}
	all, err := m.store.Services(ctx, name)
	if err != nil {
		return gef.Service{}, err
	}
	best, ok := Newest(all)
	if !ok {
		if len(all) > 0 {
			return gef.Service{}, fmt.Errorf("service %q has only deprecated versions; name one: %w", name, gef.ErrNotFound)
		}
		return gef.Service{}, fmt.Errorf("no service %q is published: %w", name, gef.ErrNotFound)
	}
	return best, nil
}

// Newest returns the version a run that names no version gets: the newest
// of list that is not deprecated. list holds the versions of one service.
func Newest(list []gef.Service) (gef.Service, bool) {
	var best *gef.Service
	for i := range list {
		if list[i].Deprecated {
			continue
		}
		if best == nil || newerVersion(list[i].Version, best.Version) {
			best = &list[i]
		}
	}
	if best == nil {
		return gef.Service{}, false
	}
	return *best, true
}

// newerVersion compares dotted versions part by part, numerically where both
// parts are numbers: 1.10 is newer than 1.9.
func newerVersion(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.ParseUint(pa[i], 10, 64)
		nb, eb := strconv.ParseUint(pb[i], 10, 64)
		switch {
		case ea == nil && eb == nil && na != nb:
			return na > nb
		case (ea != nil || eb != nil) && pa[i] != pb[i]:
			return pa[i] > pb[i]
		}
	}
	return len(pa) > len(pb)
}

// RegisterService publishes an image that a node already has, by image ID,
// reading its labels from what the node reported.
func (m *Manager) RegisterService(ctx context.Context, p Principal, imageID string) (gef.Service, bool, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Service{}, false, err
	}
	if !validImageID(imageID) {
		return gef.Service{}, false, gef.Invalid("image_id", "must be sha256: followed by 64 hex digits, got %q", imageID)
	}
	img, err := m.store.NodeImage(ctx, imageID)
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Service{}, false, gef.Invalid("image_id", "no node has image %s with GEF labels", imageID)
	}
	if err != nil {
		return gef.Service{}, false, err
	}
	return m.PublishImage(ctx, p, img)
}

// PublishImage publishes a service from an image's ID, labels and command.
func (m *Manager) PublishImage(ctx context.Context, p Principal, img gef.NodeImage) (gef.Service, bool, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Service{}, false, err
	}
	svc, err := serviceOf(img.ID, img.Labels, img.Entrypoint, img.Cmd)
	if err != nil {
		return gef.Service{}, false, err
	}
	svc.Publisher, svc.CreatedAt = p.Name, m.now().UTC()
	if err := m.mayMaintain(ctx, p, svc.Name); err != nil {
		return gef.Service{}, false, err
	}
	stored, created, err := m.store.PublishService(ctx, *svc)
	if err != nil {
		return gef.Service{}, false, err
	}
	if created {
		m.log.Info("service published", "service", stored.Name, "version", stored.Version, "digest", stored.Digest, "by", p.Name)
	}
	return stored, created, nil
}

// DeprecateService hides a version from new runs; reruns still work.
func (m *Manager) DeprecateService(ctx context.Context, p Principal, name, version string, deprecated bool) (gef.Service, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer); err != nil {
		return gef.Service{}, err
	}
	if err := m.mayMaintain(ctx, p, name); err != nil {
		return gef.Service{}, err
	}
	if err := m.store.DeprecateService(ctx, name, version, deprecated); err != nil {
		return gef.Service{}, err
	}
	return m.store.Service(ctx, name, version)
}

// mayMaintain checks that p may publish or deprecate versions of the named
// service: a maintainer looks after the services they first published, and
// versions an admin adds do not take a service from its maintainer.
func (m *Manager) mayMaintain(ctx context.Context, p Principal, name string) error {
	if p.Is(gef.RoleAdmin) {
		return nil
	}
	existing, err := m.store.Services(ctx, name)
	if err != nil || len(existing) == 0 {
		return err
	}
	first := existing[0]
	for _, s := range existing[1:] {
		if s.CreatedAt.Before(first.CreatedAt) {
			first = s
		}
	}
	if first.Publisher != p.Name {
		return fmt.Errorf("service %q is maintained by %s: %w", name, first.Publisher, gef.ErrForbidden)
	}
	return nil
}

func validImageID(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Datasets lists the datasets the caller may use.
func (m *Manager) Datasets(ctx context.Context, p Principal) ([]gef.Dataset, error) {
	if p.Anonymous() {
		return nil, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	all, err := m.store.Datasets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]gef.Dataset, 0, len(all))
	for _, d := range all {
		ok, err := m.mayUse(ctx, p, d)
		if err != nil {
			return nil, err
		}
		if ok || p.Is(gef.RoleNode) && slices.Contains(d.Nodes, p.Name) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Dataset returns one dataset the caller may use; others are not found.
func (m *Manager) Dataset(ctx context.Context, p Principal, name string) (gef.Dataset, error) {
	if p.Anonymous() {
		return gef.Dataset{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	d, err := m.store.Dataset(ctx, name)
	if err != nil {
		return gef.Dataset{}, err
	}
	if ok, err := m.mayUse(ctx, p, d); err != nil {
		return gef.Dataset{}, err
	} else if !ok {
		return gef.Dataset{}, fmt.Errorf("dataset %q: %w", name, gef.ErrNotFound)
	}
	return d, nil
}

// Nodes lists the nodes, for operators (admins).
func (m *Manager) Nodes(ctx context.Context, p Principal) ([]gef.Node, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return nil, err
	}
	return m.store.Nodes(ctx)
}

// Node returns one node, for operators (admins).
func (m *Manager) Node(ctx context.Context, p Principal, name string) (gef.Node, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return gef.Node{}, err
	}
	return m.store.Node(ctx, name)
}

// SetNodeState drains a node, or makes it ready again (admins only).
func (m *Manager) SetNodeState(ctx context.Context, p Principal, name string, state gef.NodeState) (gef.Node, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return gef.Node{}, err
	}
	if state != gef.NodeReady && state != gef.NodeDraining {
		return gef.Node{}, gef.Invalid("state", "must be ready or draining")
	}
	if err := m.store.SetNodeState(ctx, name, state); err != nil {
		return gef.Node{}, err
	}
	if state == gef.NodeReady {
		m.wake(ctx, name)
	}
	return m.store.Node(ctx, name)
}

// AllowNetwork lets a service version's containers reach the network, or
// takes that away (admins only). Without it they run with no network.
func (m *Manager) AllowNetwork(ctx context.Context, p Principal, name, version string, allow bool) (gef.Service, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return gef.Service{}, err
	}
	if err := m.store.SetServiceNetwork(ctx, name, version, allow); err != nil {
		return gef.Service{}, err
	}
	m.log.Info("service network", "service", name, "version", version, "allowed", allow, "by", p.Name)
	return m.store.Service(ctx, name, version)
}
