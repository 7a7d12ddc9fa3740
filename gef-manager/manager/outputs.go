package manager

import (
	"context"
	"fmt"
	"io"

	"github.com/eudat-gef/gef"
)

// Output opens one staged output file of a job the caller may see. Only
// files in the job's manifest are served.
func (m *Manager) Output(ctx context.Context, p Principal, id, name, path string) (io.ReadCloser, gef.OutputFile, error) {
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return nil, gef.OutputFile{}, err
	}
	// A job that reused another's results serves that job's objects, which
	// its last attempt wrote.
	from, attempt := j.ID, j.Attempt
	if j.ReuseOf != nil {
		orig, err := m.store.Job(ctx, *j.ReuseOf)
		if err != nil {
			return nil, gef.OutputFile{}, err
		}
		from, attempt = orig.ID, orig.Attempt
	}
	for _, o := range j.Outputs {
		if o.Name == name && o.Path == path {
			rc, _, err := m.objects.Get(ctx, gef.AttemptOutputKey(from, attempt, name, path))
			if err != nil {
				return nil, gef.OutputFile{}, fmt.Errorf("manager: output %s/%s of job %s: %w", name, path, id, err)
			}
			return rc, o, nil
		}
	}
	return nil, gef.OutputFile{}, fmt.Errorf("job %s has no output %s/%s: %w", id, name, path, gef.ErrNotFound)
}
