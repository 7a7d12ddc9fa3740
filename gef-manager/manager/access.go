package manager

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eudat-gef/gef"
)

// mayUse reports whether p may run jobs on dataset d: admins always, other
// people as d's access list says, nodes and anonymous callers never.
func (m *Manager) mayUse(ctx context.Context, p Principal, d gef.Dataset) (bool, error) {
	return m.allowed(ctx, p, d.Access)
}

func (m *Manager) allowed(ctx context.Context, p Principal, a gef.DatasetAccess) (bool, error) {
	switch {
	case p.Is(gef.RoleAdmin):
		return true, nil
	case p.Anonymous() || p.Is(gef.RoleNode):
		return false, nil
	case !a.Restricted:
		return true, nil
	}
	groups, err := m.store.UserGroups(ctx, p.Name)
	if err != nil {
		return false, err
	}
	return a.Allows(p.Name, groups), nil
}

// mayUseDataset is mayUse for a dataset known by name; a dataset that does
// not exist is ErrNotFound. It reads only the dataset's access list, as it
// runs for each submission and each claimed job.
func (m *Manager) mayUseDataset(ctx context.Context, p Principal, name string) (bool, error) {
	a, err := m.store.DatasetAccess(ctx, name)
	if err != nil {
		return false, err
	}
	return m.allowed(ctx, p, a)
}

// ownerMayUse checks, when a node claims a job, that its owner may still
// use every dataset it binds; access can be withdrawn while a job waits.
func (m *Manager) ownerMayUse(ctx context.Context, j gef.Job) (string, error) {
	u, _, err := m.store.UserByName(ctx, j.Owner)
	if err != nil {
		return "", err
	}
	p := Principal{UserID: u.ID, Name: u.Name, Role: u.Role}
	for _, ds := range j.Inputs {
		ok, err := m.mayUseDataset(ctx, p, ds)
		if err != nil {
			return "", err
		}
		if !ok {
			return ds, nil
		}
	}
	return "", nil
}

// SetDatasetAccess replaces who may use a dataset (admins only).
func (m *Manager) SetDatasetAccess(ctx context.Context, p Principal, name string, a gef.DatasetAccess) (gef.Dataset, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return gef.Dataset{}, err
	}
	for _, n := range slices.Concat(a.Users, a.Groups) {
		if !validName(n) {
			return gef.Dataset{}, gef.Invalid("access", "%q is not a user or group name", n)
		}
	}
	if err := m.store.SetDatasetAccess(ctx, name, a); err != nil {
		return gef.Dataset{}, err
	}
	return m.store.Dataset(ctx, name)
}

// Groups lists the groups (admins only).
func (m *Manager) Groups(ctx context.Context, p Principal) ([]gef.Group, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return nil, err
	}
	return m.store.Groups(ctx)
}

// CreateGroup adds a group (admins only).
func (m *Manager) CreateGroup(ctx context.Context, p Principal, name string) error {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return err
	}
	if !validName(name) {
		return gef.Invalid("name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return m.store.CreateGroup(ctx, name, m.now())
}

// SetGroupMember adds a user to a group or removes it (admins only).
func (m *Manager) SetGroupMember(ctx context.Context, p Principal, group, user string, member bool) error {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return err
	}
	if _, _, err := m.store.UserByName(ctx, user); err != nil {
		return fmt.Errorf("user %q: %w", user, err)
	}
	return m.store.SetGroupMember(ctx, group, user, member)
}

// withdrawn ends claimed jobs whose owner lost access to their data, and
// returns the rest.
func (m *Manager) withdrawn(ctx context.Context, node string, jobs []gef.Assignment, now time.Time) ([]gef.Assignment, error) {
	kept := jobs[:0]
	for _, a := range jobs {
		j, err := m.store.Job(ctx, a.JobID)
		if err != nil {
			return nil, err
		}
		ds, err := m.ownerMayUse(ctx, j)
		if err != nil {
			return nil, err
		}
		if ds == "" {
			kept = append(kept, a)
			continue
		}
		ended, err := m.store.EndJobs(ctx, node, []string{a.JobID}, gef.JobCanceled,
			fmt.Sprintf("%s may no longer use dataset %q; the job was not started", j.Owner, ds), now)
		if err != nil {
			return nil, err
		}
		for range ended {
			if j, err := m.store.Job(ctx, a.JobID); err == nil {
				m.finished(j)
			}
		}
	}
	return kept, nil
}
