package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
)

// stagingWorkers is the node's default of files uploaded at once (see
// agent.Config.UploadConcurrency); the baseline uses as many workers.
const stagingWorkers = 4

// staging measures figure 5: a job's output of mixed file sizes, one large
// file and many small ones, staged by the node against the same files put
// with minio-go by a pool of as many workers as the node uploads with, to
// the same bucket, interleaved.
func staging(ctx context.Context, b *bench) error {
	plan := newStagingPlan(b.cfg.StagingBytes)
	pin, err := b.stack.Dataset("bench-staging", map[string][]byte{"README": []byte("pins the staging jobs to their node\n")})
	if err != nil {
		return err
	}
	// The container memory limit is the node's default: the page cache of
	// what a container writes counts against it, and the stack's smaller
	// limit would push most of a 1 GiB output out to disk before it is
	// staged, while the baseline's files stay cached.
	node, err := b.stack.StartNode(ctx, "staging", map[string]string{"bench-staging": pin}, 1, "-memory", "2048")
	if err != nil {
		return err
	}
	defer b.stack.StopNode(node)

	// The baseline's files: the same sizes and bytes as the job writes,
	// checked against the job's manifest below.
	dir, err := b.stack.Dir("staging-files")
	if err != nil {
		return err
	}
	sums, err := plan.write(dir)
	if err != nil {
		return err
	}

	// Interleaved runs of each side; the median is reported.
	runs := 3
	if b.cfg.Short {
		runs = 2
	}
	var gefRates, rawRates []float64
	var diskRead int64
	for run := range runs {
		before, err := readProcStat(node.Pid())
		if err != nil {
			return err
		}
		j, d, err := stagingJob(ctx, b, plan, sums)
		if err != nil {
			return err
		}
		after, err := readProcStat(node.Pid())
		if err != nil {
			return err
		}
		// The outputs a container wrote may have left the page cache (it
		// is charged to the container's memory limit), so the node may
		// read them from disk; the baseline's files are cached.
		diskRead = max(diskRead, after.ReadBytes-before.ReadBytes)
		gefRates = append(gefRates, float64(plan.total)/d.Seconds())
		b.log.Info("staging", "run", run, "side", "gef", "took", d.Round(time.Millisecond), "rate", fmtMiBs(plan.total, d))
		if err := dataRemovePrefix(ctx, b, "jobs/"+j.ID+"/"); err != nil {
			return err
		}

		prefix := fmt.Sprintf("bench-raw/%d/", run)
		d, err = stagingRawUpload(ctx, b, dir, plan.paths, prefix)
		if err != nil {
			return err
		}
		rawRates = append(rawRates, float64(plan.total)/d.Seconds())
		b.log.Info("staging", "run", run, "side", "minio-go", "took", d.Round(time.Millisecond), "rate", fmtMiBs(plan.total, d))
		if err := dataRemovePrefix(ctx, b, prefix); err != nil {
			return err
		}
	}
	gefRate, rawRate := median(gefRates), median(rawRates)
	ratio := gefRate / rawRate
	set(&b.res.StagingRatio, ratio)
	b.res.detail("staging_bytes", float64(plan.total))
	b.res.detail("staging_files", float64(len(plan.paths)))
	b.res.detail("staging_gef_mib_s", gefRate/(1<<20))
	b.res.detail("staging_raw_mib_s", rawRate/(1<<20))
	b.res.detail("staging_workers", stagingWorkers)
	b.res.detail("staging_runs", float64(runs))
	b.res.detail("staging_node_disk_read_bytes", float64(diskRead))
	b.res.add(row{
		Figure:   fmt.Sprintf("staging %s in %d files against minio-go", dataFmtBytes(plan.total), len(plan.paths)),
		GEF:      fmt.Sprintf("%.0f MiB/s", gefRate/(1<<20)),
		Baseline: fmt.Sprintf("%.0f MiB/s", rawRate/(1<<20)),
		Result:   fmtRatio(ratio),
		Target:   "≥ 0.9",
		Met:      ratio >= 0.9,
	})
	return nil
}

// stagingPlan is the output of a staging job: one large file and n small
// ones from 4 KiB to smallMax, as testsvc writes them for its bytes, files
// and file_max parameters.
type stagingPlan struct {
	big      int64
	n        int
	smallMax int
	total    int64
	paths    []string // relative to the output, in the order the node walks them
	sizes    map[string]int64
}

// newStagingPlan puts about half of total into small files of 4 KiB to
// 1 MiB, the rest into one file.
func newStagingPlan(total int64) stagingPlan {
	p := stagingPlan{smallMax: 1 << 20, sizes: map[string]int64{}}
	mean := int64(4<<10+p.smallMax) / 2
	p.n = int(max(total/2/mean, 1))
	var small int64
	for k := range p.n {
		path := fmt.Sprintf("files/%05d.bin", k)
		p.sizes[path] = testsvcSmallSize(k, p.n, p.smallMax)
		p.paths = append(p.paths, path)
		small += p.sizes[path]
	}
	p.big = max(total-small, 0)
	p.paths = append(p.paths, "nested/deep/data.bin")
	p.sizes["nested/deep/data.bin"] = p.big
	p.total = small + p.big
	return p
}

func (p stagingPlan) params() map[string]any {
	return map[string]any{"bytes": p.big, "files": p.n, "file_max": p.smallMax}
}

// testsvcSmallSize is testsvc's smallSize.
func testsvcSmallSize(k, n, max int) int64 {
	const least = 4 << 10
	if n == 1 || max <= least {
		return int64(max)
	}
	return least + int64(max-least)*int64(k)/int64(n-1)
}

// write writes the plan's files under dir with testsvc's bytes and returns
// their sha256.
func (p stagingPlan) write(dir string) (map[string]string, error) {
	sums := map[string]string{}
	for k, path := range p.paths {
		shift := byte(k)
		if path == "nested/deep/data.bin" {
			shift = 0
		}
		f := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
		sum, err := stagingWritePattern(f, p.sizes[path], shift)
		if err != nil {
			return nil, fmt.Errorf("staging files: %w", err)
		}
		sums[path] = sum
	}
	return sums, nil
}

// stagingWritePattern writes testsvc's bytes, the i-th being byte(i*7)+shift, and
// returns their sha256.
func stagingWritePattern(path string, size int64, shift byte) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i*7) + shift
	}
	h := sha256.New()
	for size > 0 {
		n := min(size, int64(len(buf)))
		h.Write(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return "", err
		}
		size -= n
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

// stagingJob runs a job writing the plan's output and returns it and how
// long the node took to stage it, from the node's own timestamps: staging
// begins after the container exits and ends when the manifest is ready.
func stagingJob(ctx context.Context, b *bench, plan stagingPlan, sums map[string]string) (gef.Job, time.Duration, error) {
	j, err := dataRunJob(ctx, b, gef.JobRequest{Service: b.stack.Service.Name, Version: b.stack.Service.Version,
		Dataset: "bench-staging", Params: plan.params(), Reuse: new(false)})
	if err != nil {
		return j, 0, err
	}
	got := map[string]gef.OutputFile{}
	for _, f := range j.Outputs {
		got[f.Path] = f
	}
	for path, sum := range sums {
		if f := got[path]; f.Size != plan.sizes[path] || f.SHA256 != sum {
			return j, 0, fmt.Errorf("staging: job %s staged %s as %d bytes, sha256 %s; the baseline has %d bytes, sha256 %s",
				j.ID, path, f.Size, f.SHA256, plan.sizes[path], sum)
		}
	}
	ts := j.Timestamps
	if ts.Staging == nil || ts.Finished == nil {
		return j, 0, fmt.Errorf("staging: job %s has no staging or finished time", j.ID)
	}
	return j, ts.Finished.Sub(*ts.Staging), nil
}

// dataRunJob submits a job, waits for it and requires that it succeeded.
func dataRunJob(ctx context.Context, b *bench, req gef.JobRequest) (gef.Job, error) {
	j, err := b.stack.Admin.Submit(ctx, req)
	if err != nil {
		return j, fmt.Errorf("submit: %w", err)
	}
	return dataWaitSucceeded(ctx, b, j.ID)
}

func dataWaitSucceeded(ctx context.Context, b *bench, id string) (gef.Job, error) {
	j, err := b.stack.Admin.Wait(ctx, id, nil)
	if err != nil {
		return j, fmt.Errorf("job %s: %w", id, err)
	}
	if j.State != gef.JobSucceeded {
		return j, fmt.Errorf("job %s ended %s: %s", id, j.State, j.Reason)
	}
	return j, nil
}

// stagingRawUpload puts the files under dir to prefix with minio-go, from a pool
// of stagingWorkers workers taking the files in the node's order, and
// returns how long it took.
func stagingRawUpload(ctx context.Context, b *bench, dir string, paths []string, prefix string) (time.Duration, error) {
	work := make(chan string)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range stagingWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				_, err := b.stack.S3.FPutObject(ctx, b.stack.Bucket, prefix+p, filepath.Join(dir, filepath.FromSlash(p)), minio.PutObjectOptions{})
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("minio-go: put %s: %w", p, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return time.Since(start), first
}

// dataRemovePrefix deletes what the figure put in the bucket, so the store
// does not grow with each run.
func dataRemovePrefix(ctx context.Context, b *bench, prefix string) error {
	objs := b.stack.S3.ListObjects(ctx, b.stack.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	var errs []error
	for e := range b.stack.S3.RemoveObjects(ctx, b.stack.Bucket, objs, minio.RemoveObjectsOptions{}) {
		errs = append(errs, e.Err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove %s: %w", prefix, err)
	}
	return nil
}

func dataFmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/(1<<20)), ".0") + " MiB"
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
