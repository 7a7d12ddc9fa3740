package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// urlBatch is how many upload URLs are asked for at once.
const urlBatch = 1000

// uploadRefusals bounds the tries of a file the object store refuses
// outright (a 4xx other than an expired URL). A store that cannot be
// reached, or answers 5xx, is waited for for as long as the job may stage:
// the manager ends that wait (see its -staging-timeout).
const uploadRefusals = 8

// stage uploads every regular file of every output, computing each file's
// sha256 and size as it streams, and returns the manifest. Files an earlier
// run of the agent uploaded are not sent again.
func (t *task) stage(ctx context.Context) ([]gef.OutputFile, []string, error) {
	var (
		files   []gef.OutputFile
		paths   = map[string]string{} // name/path → host path
		skipped []string
	)
	done, err := t.loadStaged()
	if err != nil {
		t.a.log.Warn("reading what was uploaded before; uploading it all again", "job", t.job.JobID, "err", err)
		done = staged{}
	}
	t.status = newStagingStatus(t)
	defer t.status.stop()
	for _, o := range t.job.Outputs {
		found, skip, err := volumes.Walk(t.outputDir(o.Name))
		if err != nil {
			return nil, nil, err
		}
		for _, f := range found {
			files = append(files, gef.OutputFile{Name: o.Name, Path: f.Rel, Size: f.Size})
			paths[o.Name+"/"+f.Rel] = f.Abs
		}
		for _, s := range skip {
			skipped = append(skipped, o.Name+"/"+s)
		}
	}
	manifest := make([]gef.OutputFile, 0, len(files))
	var todo []gef.OutputFile
	var total int64
	for _, f := range files {
		total += f.Size
		if d, ok := done[f.Name+"/"+f.Path]; ok && d.Size == f.Size {
			manifest = append(manifest, d)
			continue
		}
		todo = append(todo, f)
	}
	t.status.start(len(files), total, len(manifest))
	// Largest first: a big file then uploads while the other workers take
	// the small ones, rather than alone at the end.
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].Size > todo[j].Size })
	for start := 0; start < len(todo); start += urlBatch {
		batch := todo[start:min(start+urlBatch, len(todo))]
		up, err := t.uploadBatch(ctx, batch, paths, done)
		if err != nil {
			return nil, nil, err
		}
		manifest = append(manifest, up...)
	}
	sort.Slice(manifest, func(i, j int) bool {
		if manifest[i].Name != manifest[j].Name {
			return manifest[i].Name < manifest[j].Name
		}
		return manifest[i].Path < manifest[j].Path
	})
	return manifest, skipped, nil
}

func (t *task) uploadBatch(ctx context.Context, batch []gef.OutputFile, paths map[string]string, done staged) ([]gef.OutputFile, error) {
	urls, err := t.uploadURLs(ctx, batch)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		out   = make([]gef.OutputFile, 0, len(batch))
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, t.a.cfg.UploadConcurrency)
		saved time.Time
	)
	for _, f := range batch {
		key := f.Name + "/" + f.Path
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sum, size, err := t.uploadWithRetry(ctx, f, paths[key], urls[key])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("%s: %w", key, err)
				}
				return
			}
			f.SHA256, f.Size = sum, size
			out = append(out, f)
			done[key] = f
			// Saved now and then: after a crash, at most a second's
			// uploads are made again.
			if time.Since(saved) >= time.Second || len(done) == 1 {
				saved = time.Now()
				if err := t.saveStaged(done); err != nil {
					t.a.log.Warn("saving what was uploaded", "job", t.job.JobID, "err", err)
				}
			}
			t.status.uploaded(size)
		}()
	}
	wg.Wait()
	return out, first
}

func (t *task) uploadURLs(ctx context.Context, files []gef.OutputFile) (map[string]string, error) {
	b := newBackoff(200*time.Millisecond, 5*time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, callLimit)
		urls, err := t.a.mgr.UploadURLs(cctx, t.job.JobID, t.job.Attempt, files)
		cancel()
		if err == nil {
			return urls, nil
		}
		if !retryable(err) {
			return nil, fmt.Errorf("%w: %v", errAbandon, err)
		}
		if err := t.pause(ctx, b); err != nil {
			return nil, err
		}
	}
}

// errStopped ends staging that was canceled, or stopped with the agent.
var errStopped = errors.New("staging was stopped")

// pause waits out the backoff; errStopped if the task is stopped first.
func (t *task) pause(ctx context.Context, b *backoff) error {
	timer := time.NewTimer(b.cur)
	defer timer.Stop()
	b.cur = min(b.cur*2, b.max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.stopCh:
		return errStopped
	case <-timer.C:
		return nil
	}
}

// errExpired marks a presigned URL that is no longer accepted.
var errExpired = errors.New("upload URL refused")

// errRefused marks an upload the object store refused outright.
var errRefused = errors.New("the object store refused the upload")

// uploadWithRetry uploads one file, retrying with backoff for as long as
// the object store cannot be reached; it gives up on a file the store
// keeps refusing, and stops when the task is stopped.
func (t *task) uploadWithRetry(ctx context.Context, f gef.OutputFile, path, url string) (string, int64, error) {
	b := newBackoff(500*time.Millisecond, 10*time.Second)
	refusals := 0
	var err error
	for attempt := 1; ; attempt++ {
		if url == "" || errors.Is(err, errExpired) {
			urls, uerr := t.uploadURLs(ctx, []gef.OutputFile{f})
			if uerr != nil {
				return "", 0, uerr
			}
			url = urls[f.Name+"/"+f.Path]
		}
		var sum string
		var size int64
		sum, size, err = t.upload(ctx, path, url)
		switch {
		case err == nil:
			t.status.reachable()
			return sum, size, nil
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission):
			return "", 0, err // the file itself: retrying cannot help
		case errors.Is(err, errRefused):
			if refusals++; refusals >= uploadRefusals {
				return "", 0, err
			}
		default:
			t.status.unreachable(err)
		}
		t.a.log.Warn("upload failed; retrying", "job", t.job.JobID, "file", f.Name+"/"+f.Path, "attempt", attempt, "err", err)
		if err := t.pause(ctx, b); err != nil {
			return "", 0, err
		}
	}
}

// upload PUTs one file, hashing it on the way.
func (t *task) upload(ctx context.Context, path, url string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("output file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, io.TeeReader(f, h))
	if err != nil {
		return "", 0, err
	}
	req.ContentLength = fi.Size()
	if fi.Size() == 0 {
		req.Body = http.NoBody
	}
	resp, err := t.a.http.Do(req)
	if err != nil {
		return "", 0, withoutSignature(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return "", 0, fmt.Errorf("%w: %s", errExpired, resp.Status)
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return "", 0, fmt.Errorf("%w: %s", errRefused, resp.Status)
	case resp.StatusCode/100 != 2:
		return "", 0, fmt.Errorf("the object store answered %s", resp.Status)
	}
	return hex.EncodeToString(h.Sum(nil)), fi.Size(), nil
}

// withoutSignature drops the query of a presigned URL from an error: the
// signature would let anyone who reads the job's status write its results.
func withoutSignature(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return ue.Err
	}
	return fmt.Errorf("%s %s://%s: %w", ue.Op, u.Scheme, u.Host, ue.Err)
}
