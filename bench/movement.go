package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"

	"github.com/eudat-gef/gef"
)

// movementSleep is how long the figure's job runs: long enough for the
// node, rescanning every second, to digest its datasets again meanwhile.
const movementSleep = 2.5

// dataMovement measures figure 6: the dataset bytes GEF itself reads or
// copies for a job. A node only mounts a dataset into the container, so
// with the dataset evicted from the page cache, the node's and the
// manager's storage reads during a job must stay at 0, no copy may appear
// in the node's work directory or the object store, and no page of the
// dataset may be brought back into memory. The one read GEF does make, the
// node's digest of its datasets at start, is reported apart.
func dataMovement(ctx context.Context, b *bench) error {
	dir, err := b.stack.Dir("movement-dataset")
	if err != nil {
		return err
	}
	files, size, err := movementDataset(dir, b.cfg.DatasetBytes)
	if err != nil {
		return err
	}
	written := time.Now()
	if err := evict(files); err != nil {
		return err
	}
	// A cached hash is trusted only for files written 2 s before a scan
	// began (volumes.DigestCache): start the node after that, so its first
	// scan is the only one that reads the data.
	if err := waitFor(ctx, time.Minute, "the dataset is old enough to be cached", func() bool {
		return time.Since(written) > 2500*time.Millisecond
	}); err != nil {
		return err
	}

	const name = "movement"
	node, err := b.stack.StartNode(ctx, name, map[string]string{"bench-movement": dir}, 1,
		"-rescan", "1s", "-log-level", "info")
	if err != nil {
		return err
	}
	defer b.stack.StopNode(node)
	if err := waitFor(ctx, 5*time.Minute, "the node has digested its dataset", func() bool {
		return strings.Contains(node.output(), `msg="dataset scanned"`)
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, node.output())
	}
	atStart, err := readProcStat(node.Pid())
	if err != nil {
		return err
	}

	// From here on, any byte of the dataset read by anyone comes from the
	// disk, and shows.
	if err := evict(files); err != nil {
		return err
	}
	work := filepath.Join(b.stack.dir, "work-"+name)
	cache := filepath.Join(work, "digests", "bench-movement.cache")
	workBefore, err := dirBytes(work)
	if err != nil {
		return err
	}
	hashedBefore := strings.Count(node.output(), `msg="dataset scanned"`)
	n0, err := readProcStat(node.Pid())
	if err != nil {
		return err
	}
	m0, err := readProcStat(b.stack.Manager.Pid())
	if err != nil {
		return err
	}

	j, err := b.stack.Admin.Submit(ctx, gef.JobRequest{Service: b.stack.Service.Name, Version: b.stack.Service.Version,
		Dataset: "bench-movement", Params: map[string]any{"sleep": movementSleep}, Reuse: new(false)})
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	// While the job runs: how large the work directory grows, and when the
	// node saves its hash cache, which it does on every scan.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		workPeak int64
		saves    []time.Time
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if n, err := dirBytes(work); err == nil {
				workPeak = max(workPeak, n)
			}
			if fi, err := os.Stat(cache); err == nil && (len(saves) == 0 || !fi.ModTime().Equal(saves[len(saves)-1])) {
				saves = append(saves, fi.ModTime())
			}
			select {
			case <-watchCtx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	j, err = dataWaitSucceeded(ctx, b, j.ID)
	stopWatch()
	wg.Wait()
	if err != nil {
		return err
	}

	n1, err := readProcStat(node.Pid())
	if err != nil {
		return err
	}
	m1, err := readProcStat(b.stack.Manager.Pid())
	if err != nil {
		return err
	}
	resident, err := residentBytes(files)
	if err != nil {
		return err
	}
	var declared int64
	for _, f := range j.Outputs {
		declared += f.Size
	}
	var stored int64
	for o := range b.stack.S3.ListObjects(ctx, b.stack.Bucket, minio.ListObjectsOptions{Prefix: "jobs/" + j.ID + "/", Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("list the job's outputs: %w", o.Err)
		}
		stored += o.Size
	}
	rescans := 0
	for _, t := range saves {
		ts := j.Timestamps
		if ts.Running != nil && ts.Staging != nil && t.After(*ts.Running) && !t.After(*ts.Staging) {
			rescans++
		}
	}
	rehashed := strings.Count(node.output(), `msg="dataset scanned"`) - hashedBefore

	// What GEF's processes fetched from storage, bounded by what of the
	// dataset came back into memory: a read of the evicted dataset shows in
	// both, while a page of the node's own files read meanwhile (its state,
	// its binary) shows in read_bytes only.
	gefReads := (n1.ReadBytes - n0.ReadBytes) + (m1.ReadBytes - m0.ReadBytes)
	moved := min(gefReads, resident)
	set(&b.res.DatasetBytesMoved, float64(moved))
	d := b.res.detail
	d("movement_dataset_bytes", float64(size))
	d("movement_dataset_files", float64(len(files)))
	d("movement_node_start_read_bytes", float64(atStart.ReadBytes))
	d("movement_node_read_bytes", float64(n1.ReadBytes-n0.ReadBytes))
	d("movement_node_rchar_bytes", float64(n1.RChar-n0.RChar))
	d("movement_manager_read_bytes", float64(m1.ReadBytes-m0.ReadBytes))
	d("movement_manager_rchar_bytes", float64(m1.RChar-m0.RChar))
	d("movement_dataset_resident_bytes", float64(resident))
	d("movement_work_dir_growth_bytes", float64(max(workPeak-workBefore, 0)))
	d("movement_staged_bytes", float64(stored))
	d("movement_rescans_during_job", float64(rescans))
	d("movement_rehashes_during_job", float64(rehashed))
	// The other ways a copy would show: the node reading the dataset
	// through its cache, the work directory or the store growing by it.
	small := size / 100
	clean := n1.RChar-n0.RChar < small && resident == 0 && workPeak-workBefore < small &&
		stored == declared && stored < small && rehashed == 0
	b.res.add(row{
		Figure:   fmt.Sprintf("dataset bytes moved by GEF (%s dataset)", dataFmtBytes(size)),
		GEF:      fmt.Sprintf("%d B", moved),
		Baseline: "0 B (a mount)",
		Result:   fmt.Sprintf("%d B", moved),
		Target:   "0",
		Met:      moved == 0 && clean,
	})
	if !clean {
		b.log.Warn("movement: a copy of the dataset may have been made", "node_rchar", n1.RChar-n0.RChar,
			"resident", resident, "work_growth", workPeak-workBefore, "stored", stored, "declared", declared, "rehashed", rehashed)
	}
	return nil
}

// movementDataset writes a dataset of about total bytes under dir: four
// large files holding most of it and 64 small ones. Its bytes come from a
// fast seeded generator, not a cryptographic one, and are synced to disk
// so they can be evicted from the page cache.
func movementDataset(dir string, total int64) ([]string, int64, error) {
	const smallFiles = 64
	smallSize := max(total/8/smallFiles, 1)
	largeSize := (total - smallSize*smallFiles) / 4
	var sizes []int64
	for range 4 {
		sizes = append(sizes, largeSize)
	}
	for range smallFiles {
		sizes = append(sizes, smallSize)
	}
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'g', 'e', 'f'})
	_, _ = rng.Read(buf)
	var files []string
	var written int64
	for i, n := range sizes {
		sub := "large"
		if i >= 4 {
			sub = "small"
		}
		path := filepath.Join(dir, sub, fmt.Sprintf("%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, 0, err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, 0, err
		}
		for off := int64(0); off < n; off += int64(len(buf)) {
			// No two blocks alike, at no cost.
			binary.LittleEndian.PutUint64(buf, uint64(i)<<40|uint64(off))
			if _, err := f.Write(buf[:min(int64(len(buf)), n-off)]); err != nil {
				f.Close()
				return nil, 0, err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, 0, err
		}
		if err := f.Close(); err != nil {
			return nil, 0, err
		}
		files = append(files, path)
		written += n
	}
	return files, written, os.Chmod(dir, 0o755)
}

// evict drops files from the page cache, so that reading them afterwards
// reads the disk and shows in read_bytes.
func evict(files []string) error {
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return fmt.Errorf("evict %s: %w", p, err)
		}
	}
	return nil
}

// residentBytes is how much of files is in the page cache.
func residentBytes(files []string) (int64, error) {
	page := int64(os.Getpagesize())
	var n int64
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() == 0 {
			f.Close()
			if err != nil {
				return 0, err
			}
			continue
		}
		m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("mmap %s: %w", p, err)
		}
		vec := make([]byte, (fi.Size()+page-1)/page)
		_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
		_ = unix.Munmap(m)
		if errno != 0 {
			err = errno
			return 0, fmt.Errorf("mincore %s: %w", p, err)
		}
		for _, v := range vec {
			if v&1 != 0 {
				n += page
			}
		}
	}
	return n, nil
}

// dirBytes sums the sizes of the regular files under dir; a file removed
// while it is walked is not counted.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}
