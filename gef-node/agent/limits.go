package agent

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"
)

// outputCheckEvery is how often a running job's outputs are measured.
const outputCheckEvery = 2 * time.Second

// watchOutputs closes the returned channel when the job's output
// directories grow past the node's limit, so a runaway job cannot fill the
// node's disk. It stops when ctx ends.
func (t *task) watchOutputs(ctx context.Context) <-chan struct{} {
	over := make(chan struct{})
	go func() {
		tick := time.NewTicker(outputCheckEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if t.outputBytes() > t.a.cfg.OutputLimitBytes {
					close(over)
					return
				}
			}
		}
	}()
	return over
}

// outputBytes sums the sizes of the regular files in the job's outputs.
func (t *task) outputBytes() int64 {
	var total int64
	for _, o := range t.job.Outputs {
		_ = filepath.WalkDir(t.outputDir(o.Name), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}
