package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eudat-gef/gef/internal/testenv"
)

// TestShort runs the suite in its -short mode on the real stack. It fails
// when the suite breaks, never on a figure: CI machines are too noisy for
// targets.
func TestShort(t *testing.T) {
	testenv.Docker(t)
	testenv.Postgres(t)
	testenv.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := shortConfig()
	cfg.Out = filepath.Join(t.TempDir(), "bench.json")
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := run(ctx, cfg, log, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if err := res.write(cfg.Out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"job_overhead_ratio", "job_overhead_ms", "dispatch_p50_ms", "dispatch_p99_ms", "drain_ratio",
		"submit_per_s", "list_p99_ms", "staging_ratio", "dataset_bytes_moved",
		"scale_manager_cpu_cores", "scale_manager_rss_mib",
	} {
		v, ok := got[k].(float64)
		if !ok {
			t.Errorf("%s: %v (%T), want a number", k, got[k], got[k])
			continue
		}
		// Differences from a baseline measured apart (the overhead in ms,
		// dispatch beyond the engine's median create-and-start) can fall
		// below zero on a noisy machine; the rest cannot.
		difference := k == "job_overhead_ms" || k == "dispatch_p50_ms" || k == "dispatch_p99_ms"
		if math.IsNaN(v) || math.IsInf(v, 0) || (v < 0 && !difference) {
			t.Errorf("%s = %v", k, v)
		}
	}
	if got["dataset_bytes_moved"] != 0.0 {
		t.Errorf("GEF moved %v bytes of the dataset; it must only mount it", got["dataset_bytes_moved"])
	}
}
