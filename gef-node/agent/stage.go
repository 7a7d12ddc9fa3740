package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// urlBatch is how many upload URLs are asked for at once.
const urlBatch = 1000

// uploadAttempts bounds the tries of one file before staging fails.
const uploadAttempts = 8

// stage uploads every regular file of every output, computing each file's
// sha256 and size as it streams, and returns the manifest.
func (t *task) stage(ctx context.Context) ([]gef.OutputFile, []string, error) {
	var (
		files   []gef.OutputFile
		paths   = map[string]string{} // name/path → host path
		skipped []string
	)
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
	for start := 0; start < len(files); start += urlBatch {
		batch := files[start:min(start+urlBatch, len(files))]
		done, err := t.uploadBatch(ctx, batch, paths)
		if err != nil {
			return nil, nil, err
		}
		manifest = append(manifest, done...)
	}
	sort.Slice(manifest, func(i, j int) bool {
		if manifest[i].Name != manifest[j].Name {
			return manifest[i].Name < manifest[j].Name
		}
		return manifest[i].Path < manifest[j].Path
	})
	return manifest, skipped, nil
}

func (t *task) uploadBatch(ctx context.Context, batch []gef.OutputFile, paths map[string]string) ([]gef.OutputFile, error) {
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
		}()
	}
	wg.Wait()
	return out, first
}

func (t *task) uploadURLs(ctx context.Context, files []gef.OutputFile) (map[string]string, error) {
	b := newBackoff(200*time.Millisecond, 5*time.Second)
	for {
		urls, err := t.a.mgr.UploadURLs(ctx, t.job.JobID, files)
		if err == nil {
			return urls, nil
		}
		if !retryable(err) {
			return nil, fmt.Errorf("%w: %v", errAbandon, err)
		}
		if !b.wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

// errExpired marks a presigned URL that is no longer accepted.
var errExpired = errors.New("upload URL refused")

func (t *task) uploadWithRetry(ctx context.Context, f gef.OutputFile, path, url string) (string, int64, error) {
	b := newBackoff(200*time.Millisecond, 10*time.Second)
	var err error
	for attempt := 1; attempt <= uploadAttempts; attempt++ {
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
		if err == nil {
			return sum, size, nil
		}
		t.a.log.Warn("upload failed; retrying", "job", t.job.JobID, "file", f.Name+"/"+f.Path, "attempt", attempt, "err", err)
		if !b.wait(ctx) {
			return "", 0, ctx.Err()
		}
	}
	return "", 0, err
}

// upload PUTs one file, hashing it on the way.
func (t *task) upload(ctx context.Context, path, url string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
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
		return "", 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return "", 0, fmt.Errorf("%w: %s", errExpired, resp.Status)
	case resp.StatusCode/100 != 2:
		return "", 0, fmt.Errorf("store answered %s", resp.Status)
	}
	return hex.EncodeToString(h.Sum(nil)), fi.Size(), nil
}
