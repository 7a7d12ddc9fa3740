package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

// A node runs images only by ID and never pulls. When it lacks the image a
// job needs, it asks the manager for a presigned URL of the image's
// `docker save` tarball in the object store, streams it into the engine,
// and checks that the engine loaded exactly the image ID the job names.

// mismatchError is a fetched tarball that held another image.
type mismatchError struct {
	want string
	got  []string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("image digest mismatch: the tarball GEF keeps for %s loaded as %s; refusing to run it",
		e.want, strings.Join(e.got, ", "))
}

// image returns the job's image, fetching it if the node lacks it. When the
// image cannot be had it returns the report that ends the job; an error
// means the job is no longer this node's.
func (t *task) image(ctx context.Context) (ImageInfo, *gef.JobReport, error) {
	digest := t.job.ImageDigest
	img, err := t.a.ensureImage(ctx, digest, func() {
		// Through the outbox: it reaches the manager whenever it is up.
		t.report(ctx, gef.JobReport{State: gef.JobFetchingImage})
	})
	if err != nil {
		r := t.sysErr("%v", err)
		return ImageInfo{}, &r, nil
	}
	return img, nil, nil
}

func derefReport(r *gef.JobReport) gef.JobReport {
	if r == nil {
		return gef.JobReport{}
	}
	return *r
}

// ensureImage returns the local image with ID digest, fetching it first if
// the engine lacks it; fetching, if not nil, is called before. Concurrent
// callers wanting the same image share one fetch.
func (a *Agent) ensureImage(ctx context.Context, digest string, fetching func()) (ImageInfo, error) {
	img, err := a.rt.Image(ctx, digest)
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, gef.ErrNotFound) {
		return ImageInfo{}, fmt.Errorf("engine: %w", err)
	}
	if fetching != nil {
		fetching()
	}
	_, err, _ = a.fetches.Do(digest, func() (any, error) {
		// A fetch that ended just before this one began got it already.
		if _, err := a.rt.Image(ctx, digest); err == nil {
			return nil, nil
		}
		// Shared by every waiting job, so bound by the fetch, not by one
		// job's context.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.FetchTimeout)
		defer cancel()
		return nil, a.fetchImage(fctx, digest)
	})
	if err != nil {
		return ImageInfo{}, err
	}
	img, err = a.rt.Image(ctx, digest)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s was fetched, but: %w", digest, err)
	}
	return img, nil
}

// fetchImage downloads an image's tarball, loads it and verifies its ID.
func (a *Agent) fetchImage(ctx context.Context, digest string) error {
	start := time.Now()
	a.log.Info("fetching image", "image", digest)
	var d gef.ImageDownload
	b := newBackoff(200*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		var err error
		if d, err = a.mgr.ImageDownload(ctx, digest); err == nil {
			break
		}
		if errors.Is(err, gef.ErrNotFound) {
			return fmt.Errorf("image %s is not on node %s, and GEF cannot ship it: %w", digest, a.cfg.Name, err)
		}
		if !retryable(err) || attempt >= 5 || !b.wait(ctx) {
			return fmt.Errorf("fetching image %s: asking the manager: %w", digest, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL, nil)
	if err != nil {
		return fmt.Errorf("fetching image %s: %w", digest, err)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("fetching image %s: %w", digest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching image %s: the object store answered %s", digest, resp.Status)
	}
	body := &countingReader{r: resp.Body}
	ids, err := a.rt.LoadImage(ctx, body)
	if err != nil {
		return fmt.Errorf("fetching image %s: loading it: %w", digest, err)
	}
	// The engine may stop reading at the end of the archive; what follows
	// would not be part of any image, but must not be missing either.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("fetching image %s: %w", digest, err)
	}
	if d.Size > 0 && body.n != d.Size {
		return fmt.Errorf("fetching image %s: got %d of its %d bytes", digest, body.n, d.Size)
	}
	if !slices.Contains(ids, digest) {
		a.log.Error("image digest mismatch", "image", digest, "loaded", ids)
		return &mismatchError{want: digest, got: ids}
	}
	a.log.Info("image fetched", "image", digest, "bytes", body.n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
