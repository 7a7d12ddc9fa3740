package manager

import (
	"context"
	"fmt"

	"github.com/eudat-gef/gef"
)

// NodeAssignment returns the assignment of a job a node holds, for an agent
// that restarted and found the job's container: it adopts the container if
// the job is still its own, at the attempt the container runs, and removes
// it otherwise. A job the node no longer holds is a gef.ErrConflict.
func (m *Manager) NodeAssignment(ctx context.Context, p Principal, id string) (gef.Assignment, error) {
	if err := requireNode(p, ""); err != nil {
		return gef.Assignment{}, err
	}
	if !gef.ValidID(id) {
		return gef.Assignment{}, gef.Invalid("id", "%q is not a job id", id)
	}
	j, err := m.store.Job(ctx, id)
	if err != nil {
		return gef.Assignment{}, err
	}
	if j.Node != p.Name || j.State.Final() || j.State == gef.JobQueued {
		return gef.Assignment{}, fmt.Errorf("job %s is not held by node %q; it is %s: %w", id, p.Name, j.State, gef.ErrConflict)
	}
	return m.store.Assignment(ctx, id)
}
