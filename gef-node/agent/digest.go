package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// digests computes the content digests of the node's datasets, one scan of
// a dataset at a time, keeping a hash cache per dataset under the work
// directory so that a rescan of unchanged data reads only metadata.
type digests struct {
	dir string

	mu       sync.Mutex
	locks    map[string]*sync.Mutex
	cache    map[string]*volumes.DigestCache
	current  map[string]string // the digest last computed
	reported map[string]string // the digest the manager was last told
}

func newDigests(workDir string) *digests {
	return &digests{dir: filepath.Join(workDir, "digests"), locks: map[string]*sync.Mutex{},
		cache: map[string]*volumes.DigestCache{}, current: map[string]string{}, reported: map[string]string{}}
}

// known returns the digest last computed for a dataset, or "" before the
// first scan has finished.
func (d *digests) known(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current[name]
}

func (d *digests) lockFor(name string) (*sync.Mutex, *volumes.DigestCache) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.locks[name]
	if !ok {
		l = &sync.Mutex{}
		d.locks[name] = l
		d.cache[name] = volumes.OpenDigestCache(filepath.Join(d.dir, name+".cache"))
	}
	return l, d.cache[name]
}

// digest scans one dataset.
func (a *Agent) digest(ctx context.Context, ds volumes.Dataset) (volumes.DigestInfo, error) {
	lock, cache := a.digests.lockFor(ds.Name)
	lock.Lock()
	defer lock.Unlock()
	start := time.Now()
	info, err := ds.Digest(ctx, cache)
	if err != nil {
		return volumes.DigestInfo{}, fmt.Errorf("agent: %w", err)
	}
	// A cache that cannot be written costs a re-hash next time, not a
	// wrong digest.
	if err := cache.Save(); err != nil {
		a.log.Warn("saving the dataset hash cache", "dataset", ds.Name, "err", err)
	}
	a.digests.mu.Lock()
	a.digests.current[ds.Name] = info.Digest
	a.digests.mu.Unlock()
	if info.Hashed > 0 || len(info.Skipped) > 0 {
		a.log.Info("dataset scanned", "dataset", ds.Name, "digest", info.Digest, "files", info.Files, "bytes", info.Bytes,
			"hashed", info.Hashed, "skipped_special_files", len(info.Skipped), "took", time.Since(start).Round(time.Millisecond))
	}
	return info, nil
}

// inputDigests digests the datasets a job binds, just before its container
// starts, and checks those the manager pinned: a rerun must run on the
// bytes its original ran on.
func (a *Agent) inputDigests(ctx context.Context, job gef.Assignment) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range job.Mounts {
		dir, ok := a.datasets[m.Dataset]
		if !ok {
			return nil, fmt.Errorf("dataset %q is not on node %s", m.Dataset, a.cfg.Name)
		}
		info, err := a.digest(ctx, volumes.Dataset{Name: m.Dataset, Dir: dir})
		if err != nil {
			return nil, err
		}
		out[m.Input] = info.Digest
		if want := job.DatasetDigests[m.Input]; want != "" && want != info.Digest {
			return nil, fmt.Errorf("dataset %s on node %s changed: the job must run on %s, the node holds %s now",
				m.Dataset, a.cfg.Name, want, info.Digest)
		}
	}
	// The running report tells the manager these digests.
	a.digests.mu.Lock()
	for _, m := range job.Mounts {
		a.digests.reported[m.Dataset] = out[m.Input]
	}
	a.digests.mu.Unlock()
	return out, nil
}

// rescan digests the datasets at once, then every interval (never again if
// every is not positive), and registers again when a digest is not what
// the manager was told, so that it knows which bytes the node holds. The
// node registers before its first scan: hashing a large dataset the first
// time takes as long as reading it, and the node need not be absent
// meanwhile. A job that starts meanwhile waits for the scan of its data.
func (a *Agent) rescan(ctx context.Context, every time.Duration) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
		changed := false
		for _, ds := range a.cfg.Datasets {
			info, err := a.digest(ctx, ds)
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("rescanning a dataset", "dataset", ds.Name, "err", err)
				}
				continue
			}
			a.digests.mu.Lock()
			if a.digests.reported[ds.Name] != info.Digest {
				changed = true
			}
			a.digests.mu.Unlock()
		}
		if !changed {
			continue
		}
		if err := a.Refresh(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("registering changed datasets", "err", err)
		}
	}
}

// remember records the digests a registration reported.
func (d *digests) remember(reg gef.NodeRegistration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ds := range reg.Datasets {
		d.reported[ds.Name] = ds.Digest
	}
}

// limits are the limits the container runs under, for its provenance.
func (s spec) limits() *gef.Limits {
	return &gef.Limits{MemoryBytes: s.MemoryBytes, CPUs: float64(s.NanoCPUs) / 1e9, Pids: s.PidsLimit,
		TimeoutSeconds: int64(s.timeout / time.Second), Network: s.Network != "none"}
}
