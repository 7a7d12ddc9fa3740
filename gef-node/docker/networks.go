package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

type networkAPI interface {
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkRemove(ctx context.Context, networkID string) error
}

// iccOption is the bridge driver's switch for traffic between containers.
const iccOption = "com.docker.network.bridge.enable_icc"

// EnsureNetwork makes sure a bridge network named spec.Name exists as spec
// says and returns its ID. Several agents on one engine may ask at once:
// the engine's duplicate check is best effort, so if two networks of the
// name appear, every caller settles on the oldest and removes the others.
// A caller that raced may so hold the ID of a network that was removed;
// calling again, before each use, settles it.
func (r *Runtime) EnsureNetwork(ctx context.Context, spec agent.NetworkSpec) (string, error) {
	if spec.Name == "" {
		return "", gef.Invalid("network", "a network needs a name")
	}
	// Callers in this process take turns; other processes may still race.
	r.netMu.Lock()
	defer r.netMu.Unlock()
	ctx, cancel := r.call(ctx)
	defer cancel()
	nets, err := r.networks(ctx, spec.Name)
	if err != nil {
		return "", err
	}
	if len(nets) == 0 {
		opts := network.CreateOptions{Driver: "bridge", Internal: spec.Internal, Labels: spec.Labels,
			Options: map[string]string{iccOption: strconv.FormatBool(!spec.Isolated)}}
		if _, err := r.api.NetworkCreate(ctx, spec.Name, opts); err != nil && !cerrdefs.IsConflict(err) {
			return "", wrap(err, "create network %s", spec.Name)
		}
		if nets, err = r.networks(ctx, spec.Name); err != nil {
			return "", err
		}
		if len(nets) == 0 {
			return "", fmt.Errorf("docker: network %s vanished after it was created", spec.Name)
		}
	}
	keep := nets[0]
	for _, n := range nets[1:] {
		// A loser of the race may be in use already; then it stays.
		_ = r.api.NetworkRemove(ctx, n.ID)
	}
	if err := sameNetwork(keep, spec); err != nil {
		return "", err
	}
	return keep.ID, nil
}

// networks lists the networks named exactly name, oldest first. The
// engine's name filter also matches parts of names.
func (r *Runtime) networks(ctx context.Context, name string) ([]network.Summary, error) {
	list, err := r.api.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return nil, wrap(err, "list networks")
	}
	list = slices.DeleteFunc(list, func(n network.Summary) bool { return n.Name != name })
	slices.SortFunc(list, func(a, b network.Summary) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmpString(a.ID, b.ID)
	})
	return list, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sameNetwork refuses a network that exists under the name but would not
// give the isolation asked for.
func sameNetwork(n network.Summary, spec agent.NetworkSpec) error {
	icc := n.Options[iccOption] != "false"
	switch {
	case n.Driver != "bridge":
		return fmt.Errorf("docker: network %s exists with driver %s, not bridge: %w", n.Name, n.Driver, gef.ErrConflict)
	case n.Internal != spec.Internal:
		return fmt.Errorf("docker: network %s exists with internal=%v, want %v; remove it or name another: %w",
			n.Name, n.Internal, spec.Internal, gef.ErrConflict)
	case icc == spec.Isolated:
		return fmt.Errorf("docker: network %s exists with %s=%v, want %v; remove it or name another: %w",
			n.Name, iccOption, icc, !spec.Isolated, gef.ErrConflict)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		if n.Labels[k] != spec.Labels[k] {
			return fmt.Errorf("docker: network %s exists without label %s=%s; remove it or name another: %w",
				n.Name, k, spec.Labels[k], gef.ErrConflict)
		}
	}
	return nil
}
