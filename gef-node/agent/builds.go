package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

// Builds arrive on the same poll as jobs and take a slot each. The node
// fetches the context through a presigned URL, builds it on its engine
// with the build output shipped live, saves the image and uploads the
// tarball through another presigned URL, and reports the image ID; the
// manager checks and publishes it.

// buildTask runs one build on this node.
type buildTask struct {
	a   *Agent
	b   gef.BuildAssignment
	log *slog.Logger
}

// startBuild runs a build the manager gave the node, unless it runs already.
func (a *Agent) startBuild(ctx context.Context, b gef.BuildAssignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.builds[b.BuildID]; ok {
		return
	}
	bt := &buildTask{a: a, b: b, log: a.log.With("build", b.BuildID)}
	a.builds[b.BuildID] = bt
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		bt.run(ctx)
		a.mu.Lock()
		delete(a.builds, b.BuildID)
		a.mu.Unlock()
	}()
}

// run builds and reports. The build itself stops when ctx ends (the agent
// shuts down); the report that ends it is still delivered.
func (bt *buildTask) run(ctx context.Context) {
	bt.log.Info("build started")
	ship := newShipperTo(bt.a, bt.b.BuildID, 1, func(ctx context.Context, seq int, stream string, data []byte) error {
		return bt.a.mgr.AppendBuildLog(ctx, bt.b.BuildID, 1, seq, stream, data)
	})
	out := ship.writer("stdout")
	imageID, err := bt.build(ctx, out)
	report := gef.BuildReport{State: gef.BuildPublishing, ImageID: imageID}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("the node agent shut down during the build: %w", err)
		}
		fmt.Fprintf(out, "gef: build failed: %v\n", err)
		report = gef.BuildReport{State: gef.BuildFailed, Reason: err.Error()}
	} else {
		fmt.Fprintf(out, "gef: image %s uploaded; the manager checks its labels and publishes it\n", imageID)
	}
	// The output is all stored before the report that may end the build,
	// so a follower sees all of it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	ship.close(rctx)
	b, err := bt.report(rctx, report)
	if err != nil {
		bt.log.Error("build report failed", "state", report.State, "err", err)
		return
	}
	bt.log.Info("build ended", "state", b.State, "service", b.Service, "version", b.Version, "reason", b.Reason)
	// An image the manager refused is of no use to anyone: the same image
	// would have published, so no published service can share its ID.
	if b.State == gef.BuildFailed && imageID != "" {
		if err := bt.a.rt.RemoveImage(rctx, imageID); err != nil && !errors.Is(err, gef.ErrNotFound) {
			bt.log.Warn("removing a refused image", "image", imageID, "err", err)
		}
	}
}

// build runs the build and uploads the image, returning its ID.
func (bt *buildTask) build(ctx context.Context, out io.Writer) (string, error) {
	a := bt.a
	fmt.Fprintf(out, "gef: building on node %s\n", a.cfg.Name)
	if base := bt.b.BaseImage; base != "" {
		if _, err := a.ensureImage(ctx, base, func() { fmt.Fprintf(out, "gef: fetching base image %s\n", base) }); err != nil {
			return "", fmt.Errorf("base image: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bt.b.ContextURL, nil)
	if err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching the build context: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching the build context: the object store answered %s", resp.Status)
	}
	id, err := a.rt.Build(ctx, resp.Body, "", out)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "gef: built image %s; saving and uploading it\n", id)

	dir := filepath.Join(a.cfg.WorkDir, "builds")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("saving the image: %w", err)
	}
	f, err := os.CreateTemp(dir, bt.b.BuildID+"-*.tar")
	if err != nil {
		return "", fmt.Errorf("saving the image: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := a.rt.SaveImage(ctx, id, f); err != nil {
		return "", fmt.Errorf("saving the image: %w", err)
	}
	if err := bt.upload(ctx, f); err != nil {
		return "", fmt.Errorf("uploading the image: %w", err)
	}
	return id, nil
}

// buildUploadAttempts bounds the tries of uploading a built image before
// the build fails.
const buildUploadAttempts = 8

// upload PUTs the saved tarball to a presigned URL, asking for a fresh
// URL and retrying while the store or the manager is away.
func (bt *buildTask) upload(ctx context.Context, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	b := newBackoff(200*time.Millisecond, 10*time.Second)
	for attempt := 1; ; attempt++ {
		err = bt.uploadOnce(ctx, f, fi.Size())
		if err == nil || errors.Is(err, errAbandon) || attempt >= buildUploadAttempts {
			return err
		}
		bt.log.Warn("image upload failed; retrying", "attempt", attempt, "err", err)
		if !b.wait(ctx) {
			return ctx.Err()
		}
	}
}

func (bt *buildTask) uploadOnce(ctx context.Context, f *os.File, size int64) error {
	url, err := bt.a.mgr.BuildUploadURL(ctx, bt.b.BuildID)
	if err != nil {
		if !retryable(err) {
			return fmt.Errorf("%w: %v", errAbandon, err)
		}
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, io.NopCloser(f))
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := bt.a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the object store answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// report delivers a build report, retrying while the manager is away.
func (bt *buildTask) report(ctx context.Context, r gef.BuildReport) (gef.Build, error) {
	b := newBackoff(200*time.Millisecond, 10*time.Second)
	for {
		build, err := bt.a.mgr.ReportBuild(ctx, bt.b.BuildID, r)
		if err == nil || !retryable(err) {
			return build, err
		}
		bt.log.Warn("build report failed; retrying", "state", r.State, "err", err)
		if !b.wait(ctx) {
			return gef.Build{}, ctx.Err()
		}
	}
}
