package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// TestInputDigestsRefuseChangedPinnedData checks the node's own guard: a
// job pinned to a digest does not start on other bytes.
func TestInputDigestsRefuseChangedPinnedData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Name: "n1", WorkDir: t.TempDir(), Datasets: []volumes.Dataset{{Name: "climate", Dir: dir}}},
		nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want, err := volumes.DigestDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := gef.Assignment{JobID: gef.NewID(), Mounts: []gef.Mount{{Input: "data", Dataset: "climate", Path: "/data"}}}
	got, err := a.inputDigests(ctx, job)
	if err != nil || got["data"] != want.Digest {
		t.Fatalf("unpinned: %v %v, want %s", got, err, want.Digest)
	}
	job.DatasetDigests = map[string]string{"data": want.Digest}
	if _, err := a.inputDigests(ctx, job); err != nil {
		t.Fatalf("pinned to the bytes it holds: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alphb"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = a.inputDigests(ctx, job)
	if err == nil || !strings.Contains(err.Error(), want.Digest) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("pinned to bytes that changed: %v", err)
	}
	// The cache file was written under the work directory.
	if _, err := os.Stat(filepath.Join(a.cfg.WorkDir, "digests", "climate.cache")); err != nil {
		t.Fatalf("no hash cache: %v", err)
	}
}
