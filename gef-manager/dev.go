package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/internal/imagebuild"
	"github.com/eudat-gef/gef/services"
	"github.com/eudat-gef/gef/volumes"
)

// Dev mode: a whole GEF in one process. Beside the manager it runs a node
// agent on the local Docker engine, holding a small demo dataset, and
// publishes the checksum example service, built here FROM scratch.

const (
	devNode    = "local"
	demoData   = "demo"
	demoTag    = "gef/checksum:1.0.0"
	demoSource = "checksum"
	// The dataset browser, a long-lived HTTP service, to try sessions.
	browseTag    = "gef/browse:1.0.0"
	browseSource = "browse"
)

var devWG sync.WaitGroup

func waitDev(ctx context.Context) {
	done := make(chan struct{})
	go func() { devWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func startDev(ctx context.Context, cfg Config, m *manager.Manager, adminToken string, log *slog.Logger) (<-chan error, error) {
	rt, err := docker.New(ctx, docker.Options{})
	if err != nil {
		return nil, fmt.Errorf("dev mode needs the local Docker engine: %w", err)
	}
	dataset, err := writeDemoDataset(filepath.Join(cfg.DataDir, "datasets", demoData))
	if err != nil {
		return nil, err
	}
	log.Info("building the demo service image", "tag", demoTag)
	src, err := fs.Sub(services.Examples, demoSource)
	if err != nil {
		return nil, err
	}
	imageID, err := imagebuild.GoImage(ctx, rt, src, demoSource, demoTag, nil)
	if err != nil {
		return nil, err
	}
	img, err := rt.Image(ctx, imageID)
	if err != nil {
		return nil, err
	}
	log.Info("building the dataset browser image", "tag", browseTag)
	browseSrc, err := fs.Sub(services.Examples, browseSource)
	if err != nil {
		return nil, err
	}
	browseID, err := imagebuild.GoImage(ctx, rt, browseSrc, browseSource, browseTag, nil)
	if err != nil {
		return nil, err
	}
	browseImg, err := rt.Image(ctx, browseID)
	if err != nil {
		return nil, err
	}

	nodeTok, err := m.Bootstrap(ctx, devNode, gef.RoleNode)
	if err != nil {
		return nil, err
	}
	capacity := cfg.NodeCapacity
	a, err := agent.New(agent.Config{Name: devNode, Manager: cfg.PublicURL, Datasets: []volumes.Dataset{dataset},
		WorkDir: filepath.Join(cfg.DataDir, "node"), Capacity: capacity},
		rt, client.New(cfg.PublicURL, nodeTok.Secret), log.With("component", "node"))
	if err != nil {
		return nil, err
	}
	devWG.Add(1)
	nodeErr := make(chan error, 1)
	go func() {
		defer devWG.Done()
		nodeErr <- a.Run(ctx)
	}()
	select {
	case <-a.Registered():
	case err := <-nodeErr:
		return nil, fmt.Errorf("dev node: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	admin, err := m.Authenticate(ctx, adminToken)
	if err != nil {
		return nil, err
	}
	svc, _, err := m.PublishImage(ctx, admin, gef.NodeImage{ID: img.ID, Labels: img.Labels, Entrypoint: img.Entrypoint, Cmd: img.Cmd})
	if err != nil {
		return nil, fmt.Errorf("publish demo service: %w", err)
	}
	passwordFile := filepath.Join(cfg.DataDir, "admin.password")
	if err := devPassword(ctx, m, admin, passwordFile); err != nil {
		return nil, err
	}
	browse, _, err := m.PublishImage(ctx, admin, gef.NodeImage{ID: browseImg.ID, Labels: browseImg.Labels,
		Entrypoint: browseImg.Entrypoint, Cmd: browseImg.Cmd})
	if err != nil {
		return nil, fmt.Errorf("publish the dataset browser: %w", err)
	}
	fmt.Printf(`
GEF is running in dev mode at %[1]s
  database:      %[2]s
  results:       %[3]s
  node:          %[4]q with dataset %[5]q (%[6]s)
  demo service:  %[7]s %[8]s (%[9]s)

Use it in a browser:
  %[1]s  (user admin, password in %[11]s)

Use it with gefctl:
  export GEF_URL=%[1]s GEF_TOKEN=$(cat %[10]s)
  go run ./gefctl run %[7]s --dataset %[5]s --wait

Browse the dataset in a session, a long-lived service next to it:
  go run ./gefctl session start %[12]s --dataset %[5]s --name demo-browser --wait
  go run ./gefctl session open SESSION_ID     # a link that signs a browser in

`, cfg.PublicURL, cfg.Database, filepath.Join(cfg.DataDir, "objects"), devNode, demoData, dataset.Dir,
		svc.Name, svc.Version, svc.Digest, cfg.AdminTokenFile, passwordFile, browse.Name)

	done := make(chan error, 1)
	if !cfg.Demo {
		return done, nil
	}
	go func() { done <- runDemo(ctx, cfg, client.New(cfg.PublicURL, adminToken), svc.Name) }()
	return done, nil
}

// devPassword gives the dev-mode admin a password for the web GUI, kept in
// a file beside the admin token. An existing file is reused, so the
// password stays the same across restarts.
func devPassword(ctx context.Context, m *manager.Manager, admin manager.Principal, path string) error {
	b, err := os.ReadFile(path)
	password := strings.TrimSpace(string(b))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && password == "") {
		buf := make([]byte, 15)
		if _, err := rand.Read(buf); err != nil {
			return err
		}
		password = base64.RawURLEncoding.EncodeToString(buf)
		if err := writeSecret(path, password); err != nil {
			return fmt.Errorf("dev admin password: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("dev admin password: %w", err)
	}
	return m.SetPassword(ctx, admin, "", password)
}

// writeDemoDataset makes the small demo dataset if it is not there.
func writeDemoDataset(dir string) (volumes.Dataset, error) {
	files := map[string]string{
		"README.txt":               "A small demo dataset for GEF. Jobs see it read-only at the path their service declares.\n",
		"stations.csv":             "station,lat,lon,elevation\nDE-BRE,53.08,8.80,5\nDE-ZUG,47.42,10.98,2962\nFI-SOD,67.37,26.63,180\n",
		"observations/2024-01.csv": "station,day,temperature\nDE-BRE,1,3.5\nDE-BRE,2,4.1\nDE-ZUG,1,-12.0\nFI-SOD,1,-21.3\n",
		"observations/2024-02.csv": "station,day,temperature\nDE-BRE,1,5.2\nDE-ZUG,1,-9.8\nFI-SOD,1,-18.1\nFI-SOD,2,-16.4\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return volumes.Dataset{}, err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return volumes.Dataset{}, err
		}
	}
	return volumes.Dataset{Name: demoData, Dir: dir}, nil
}

// runDemo runs the demo job end to end and prints what it produced.
func runDemo(ctx context.Context, cfg Config, c *client.Client, service string) error {
	job, err := c.Submit(ctx, gef.JobRequest{Service: service, Dataset: demoData})
	if err != nil {
		return fmt.Errorf("demo: submit: %w", err)
	}
	fmt.Printf("demo job %s submitted: %s on dataset %q\n", job.ID, service, demoData)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	job, err = c.Wait(ctx, job.ID, func(j gef.Job) { fmt.Printf("  %s\n", j.State) })
	if err != nil {
		return fmt.Errorf("demo: wait: %w", err)
	}
	if job.State != gef.JobSucceeded {
		return fmt.Errorf("demo job %s ended %s: %s", job.ID, job.State, job.Reason)
	}
	fmt.Printf("demo job %s succeeded on node %s in %s\n", job.ID, job.Node, job.Timestamps.Finished.Sub(job.Timestamps.Queued).Round(time.Millisecond))
	for _, o := range job.Outputs {
		fmt.Printf("  output %s/%s  %d bytes  sha256 %s\n", o.Name, o.Path, o.Size, o.SHA256)
	}
	if rc, err := c.Output(ctx, job.ID, "report", "summary.json"); err == nil {
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := rc.Read(buf)
		b.Write(buf[:n])
		rc.Close()
		fmt.Printf("\nreport/summary.json:\n%s\n", b.String())
	}
	fmt.Printf(`See it:
  in a browser:  %[1]s/jobs/%[2]s
  over the API:  curl -H "Authorization: Bearer $(cat %[3]s)" %[1]s/api/v1/jobs/%[2]s
  its logs:      GEF_URL=%[1]s GEF_TOKEN=$(cat %[3]s) go run ./gefctl logs %[2]s
  on disk:       %[4]s

`, cfg.PublicURL, job.ID, cfg.AdminTokenFile, filepath.Join(cfg.DataDir, "objects", "jobs", job.ID))
	return nil
}
