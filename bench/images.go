package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testimages"
)

// imageRoute is the manager's route a node asks where to fetch an image
// from; its request count is the number of fetches.
const imageRoute = `route="/api/v1/node/images/:digest"`

// imageColdWarm measures figure 7: the first job on a node lacking the
// service's image, which the node fetches from GEF's copy in the object
// store, against the same job once the image is there; then first jobs at
// once on a cold node, which must fetch the image once between them. The
// image is a copy of the test service under a name of its own, so it can
// be taken from the engine without touching the other figures' image.
func imageColdWarm(ctx context.Context, b *bench) error {
	id, svc, err := publishColdImage(ctx, b)
	if err != nil {
		return err
	}
	defer func() { _ = removeImage(context.WithoutCancel(ctx), b, id) }()
	pin, err := b.stack.Dataset("bench-images", map[string][]byte{"README": []byte("pins the image jobs to their node\n")})
	if err != nil {
		return err
	}
	node, err := b.stack.StartNode(ctx, "images", map[string]string{"bench-images": pin}, max(b.cfg.ColdJobs, 1),
		"-log-level", "info")
	if err != nil {
		return err
	}
	defer b.stack.StopNode(node)
	req := gef.JobRequest{Service: svc.Name, Version: svc.Version, Dataset: "bench-images",
		Params: map[string]any{"bytes": 0}, Reuse: new(false)}

	runs := 3
	if b.cfg.Short {
		runs = 1
	}
	var cold, warm, toRunning []float64
	for range runs {
		if err := removeImage(ctx, b, id); err != nil {
			return err
		}
		j, err := dataRunJob(ctx, b, req)
		if err != nil {
			return err
		}
		ts := j.Timestamps
		if ts.FetchingImage == nil || ts.Running == nil || ts.Finished == nil {
			return fmt.Errorf("images: the cold job %s did not fetch its image: %+v", j.ID, ts)
		}
		cold = append(cold, ms(ts.Finished.Sub(ts.Queued)))
		toRunning = append(toRunning, ms(ts.Running.Sub(*ts.FetchingImage)))
		if j, err = dataRunJob(ctx, b, req); err != nil {
			return err
		}
		if j.Timestamps.FetchingImage != nil {
			return fmt.Errorf("images: the warm job %s fetched its image", j.ID)
		}
		warm = append(warm, ms(j.Timestamps.Finished.Sub(j.Timestamps.Queued)))
	}

	fetch, size, err := imageFetches(node.output())
	if err != nil {
		return err
	}

	// First jobs at once: one fetch, shared.
	if err := removeImage(ctx, b, id); err != nil {
		return err
	}
	asked0, err := imageRequests(ctx, b)
	if err != nil {
		return err
	}
	logged0 := strings.Count(node.output(), `msg="fetching image"`)
	// Queued while the node takes no work, so that one poll hands it them
	// all and each finds the image missing.
	if _, err := b.stack.Admin.SetNodeState(ctx, "images", gef.NodeDraining); err != nil {
		return fmt.Errorf("images: drain the node: %w", err)
	}
	jobs := make([]gef.Job, b.cfg.ColdJobs)
	for i := range jobs {
		if jobs[i], err = b.stack.Admin.Submit(ctx, req); err != nil {
			return fmt.Errorf("submit: %w", err)
		}
	}
	if _, err := b.stack.Admin.SetNodeState(ctx, "images", gef.NodeReady); err != nil {
		return fmt.Errorf("images: resume the node: %w", err)
	}
	released := time.Now()
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jobs[i], errs[i] = dataWaitSucceeded(ctx, b, jobs[i].ID)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.log.Info("images: concurrent first jobs", "jobs", len(jobs), "took", time.Since(released).Round(time.Millisecond))
	asked1, err := imageRequests(ctx, b)
	if err != nil {
		return err
	}
	fetches := asked1 - asked0
	logged := strings.Count(node.output(), `msg="fetching image"`) - logged0
	waited := 0 // jobs that found the image missing and waited for it
	for _, j := range jobs {
		if j.Timestamps.FetchingImage != nil {
			waited++
		}
	}

	coldMS, warmMS, fetchMS := median(cold), median(warm), median(fetch)
	d := b.res.detail
	d("image_cold_ms", coldMS)
	d("image_warm_ms", warmMS)
	d("image_fetch_ms", fetchMS)
	d("image_fetch_to_running_ms", median(toRunning))
	d("image_tarball_bytes", float64(size))
	d("image_runs", float64(runs))
	d("image_fetches_concurrent", float64(fetches))
	d("image_fetches_concurrent_node_log", float64(logged))
	d("image_concurrent_jobs", float64(len(jobs)))
	d("image_concurrent_jobs_cold", float64(waited))
	b.res.add(row{
		Figure:   "first job, cold image cache vs warm",
		GEF:      fmtMS(coldMS),
		Baseline: fmtMS(warmMS),
		Result:   fmt.Sprintf("%+.0f ms; fetch %s", coldMS-warmMS, fmtMS(fetchMS)),
		Target:   "reported",
		Met:      true,
	})
	b.res.add(row{
		Figure:   fmt.Sprintf("concurrent first jobs: image fetches (%d jobs, %d cold)", len(jobs), waited),
		GEF:      strconv.Itoa(fetches),
		Baseline: "1",
		Result:   strconv.Itoa(fetches),
		Target:   "1",
		Met:      fetches == 1 && logged == 1,
	})
	return nil
}

// imageFetches reads the node's log: how long each fetch of an image took,
// from asking the manager to the engine having loaded it, and its size.
func imageFetches(log string) ([]float64, int64, error) {
	var took []float64
	var size int64
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="image fetched"`) {
			continue
		}
		for _, f := range strings.Fields(l) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "took":
				d, err := time.ParseDuration(v)
				if err != nil {
					return nil, 0, fmt.Errorf("images: node log %q: %w", l, err)
				}
				took = append(took, ms(d))
			case "bytes":
				size, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	if len(took) == 0 {
		return nil, 0, errors.New("images: the node logged no image fetch")
	}
	return took, size, nil
}

// publishColdImage builds the test service again under another name and
// publishes it as a tarball, so GEF keeps a copy a node can fetch.
func publishColdImage(ctx context.Context, b *bench) (string, gef.Service, error) {
	src, err := testimages.TestService.Context(ctx)
	if err != nil {
		return "", gef.Service{}, err
	}
	renamed, err := renameService(src, "GEF test service", "GEF bench cold image")
	if err != nil {
		return "", gef.Service{}, err
	}
	id, err := b.stack.Docker.Build(ctx, bytes.NewReader(renamed), "gef-bench/cold-image:latest", io.Discard)
	if err != nil {
		return "", gef.Service{}, fmt.Errorf("images: build: %w", err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(b.stack.Docker.SaveImage(ctx, id, pw)) }()
	svc, _, err := b.stack.Admin.PublishTarball(ctx, pr)
	pr.Close()
	if err != nil {
		return "", gef.Service{}, fmt.Errorf("images: publish: %w", err)
	}
	return id, svc, nil
}

// renameService rewrites the service name label in a build context's
// Dockerfile.
func renameService(contextTar []byte, from, to string) ([]byte, error) {
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(contextTar)), tar.NewWriter(&out)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("images: build context: %w", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("images: build context: %w", err)
		}
		if h.Name == "Dockerfile" {
			label := `eudat.gef.service.name="` + from + `"`
			found = bytes.Contains(body, []byte(label))
			body = bytes.Replace(body, []byte(label), []byte(`eudat.gef.service.name="`+to+`"`), 1)
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("images: no service name %q in the Dockerfile", from)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// removeImage takes the image from the engine. The node removes a job's
// container just after its final report, so a refusal is tried again.
func removeImage(ctx context.Context, b *bench, id string) error {
	var last error
	err := waitFor(ctx, 30*time.Second, "the image is removed", func() bool {
		last = b.stack.Docker.RemoveImage(ctx, id)
		return last == nil || errors.Is(last, gef.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("images: %w: %w", err, last)
	}
	return nil
}

// imageRequests is how many times nodes have asked the manager where to
// fetch an image, from its metrics.
func imageRequests(ctx context.Context, b *bench) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.stack.URL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("images: metrics: %w", err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "gef_http_request_duration_seconds_count{") || !strings.Contains(l, imageRoute) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("images: metrics: %q: %w", l, err)
		}
		n += int(v)
	}
	return n, sc.Err()
}
