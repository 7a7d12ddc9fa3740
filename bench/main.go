// Command bench measures GEF against what it stands on, in the same run on
// the same machine: a job against `docker run`, a drain of queued jobs
// against the same containers started directly, staging against raw
// minio-go uploads. It runs the real stack (a gef-manager process on
// PostgreSQL with results in MinIO, a gef-node process on the local Docker
// engine), prints a table and writes the figures as JSON.
//
//	bash scripts/bench.sh            # the whole suite, about 10 minutes
//	bash scripts/bench.sh -short     # a smaller run, as CI does
//
// The servers are found as the tests find them (GEF_TEST_POSTGRES_DSN,
// GEF_TEST_MINIO_*); scripts/bench.sh starts them first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config sizes a run. The defaults are the full suite; -short shrinks it.
type config struct {
	Short bool
	Out   string   // JSON results file; empty for none
	Only  []string // figures to run; empty for all
	Keep  bool     // leave the stack's files behind, for inspection
	// ManagerPprof, if set, is the loopback address where the manager
	// serves its runtime profiles during the run, for go tool pprof.
	ManagerPprof string

	Runs         int   // interleaved runs of a job and of `docker run`
	DrainJobs    int   // jobs in the queue-drain figure
	Concurrency  int   // containers at once in the drain, on both sides
	SubmitJobs   int   // jobs submitted in the throughput figure
	Submitters   int   // concurrent clients submitting
	ListJobs     int   // jobs in the table for the list-page figure
	ListPages    int   // pages fetched for the list-page figure
	StagingBytes int64 // total output staged
	DatasetBytes int64 // dataset size in the data-movement figure
	ColdJobs     int   // concurrent first jobs on a cold image cache
	ScaleNodes   int   // simulated nodes
	ScaleJobs    int   // jobs queued while they heartbeat
}

func fullConfig() config {
	return config{
		Runs: 30, DrainJobs: 1000, Concurrency: 4, SubmitJobs: 10000, Submitters: 8,
		ListJobs: 100000, ListPages: 500, StagingBytes: 1 << 30, DatasetBytes: 1 << 30,
		ColdJobs: 4, ScaleNodes: 1000, ScaleJobs: 2000,
	}
}

func shortConfig() config {
	return config{
		Short: true, Runs: 3, DrainJobs: 20, Concurrency: 2, SubmitJobs: 300, Submitters: 4,
		ListJobs: 2000, ListPages: 30, StagingBytes: 16 << 20, DatasetBytes: 16 << 20,
		ColdJobs: 2, ScaleNodes: 20, ScaleJobs: 200,
	}
}

// figure is one measurement of the suite.
type figure struct {
	name string
	run  func(ctx context.Context, b *bench) error
}

// figures run in this order; each writes its numbers into the results.
var figures = []figure{
	{"overhead", jobOverhead},  // 1 and 2: job overhead and dispatch latency
	{"drain", queueDrain},      // 3
	{"submit", submitRate},     // 4: accepted submissions
	{"list", listPages},        // 4: list pages over a long history
	{"staging", staging},       // 5
	{"movement", dataMovement}, // 6
	{"images", imageColdWarm},  // 7
	{"scale", scale},           // 8
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res, err := run(ctx, cfg, log, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if cfg.Out != "" {
		if err := res.write(cfg.Out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "bench: wrote", cfg.Out)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	short := fs.Bool("short", false, "a small run that checks the suite works, as CI runs it")
	out := fs.String("out", "bench-results.json", "write the figures here as JSON (empty: do not)")
	only := fs.String("only", "", "comma-separated figures to run: "+figureNames())
	keep := fs.Bool("keep", false, "keep the stack's temporary files")
	pprofAddr := fs.String("manager-pprof", "", "serve the manager's runtime profiles on this loopback address, e.g. 127.0.0.1:6060")
	runs := fs.Int("runs", 0, "interleaved runs of a job and of docker run (default 30, 3 with -short)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg := fullConfig()
	if *short {
		cfg = shortConfig()
	}
	cfg.Out, cfg.Keep, cfg.ManagerPprof = *out, *keep, *pprofAddr
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if !slices.ContainsFunc(figures, func(f figure) bool { return f.name == n }) {
				return config{}, fmt.Errorf("-only: no figure %q; the figures are %s", n, figureNames())
			}
			cfg.Only = append(cfg.Only, n)
		}
	}
	return cfg, nil
}

func figureNames() string {
	var names []string
	for _, f := range figures {
		names = append(names, f.name)
	}
	return strings.Join(names, ",")
}

// bench is one run of the suite: its configuration, the stack it measures
// and the results it fills in.
type bench struct {
	cfg   config
	log   *slog.Logger
	stack *stack
	res   *results
}

// run starts the stack, runs the chosen figures, and prints the table to w.
func run(ctx context.Context, cfg config, log *slog.Logger, w io.Writer) (*results, error) {
	start := time.Now()
	res := newResults(cfg)
	st, err := newStack(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer st.close()
	b := &bench{cfg: cfg, log: log, stack: st, res: res}
	for _, f := range figures {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, f.name) {
			continue
		}
		log.Info("figure", "name", f.name)
		t0 := time.Now()
		if err := f.run(ctx, b); err != nil {
			return nil, fmt.Errorf("%s: %w\n--- the manager's log, its end ---\n%s", f.name, err, st.Manager.tail(8<<10))
		}
		log.Info("figure done", "name", f.name, "took", time.Since(t0).Round(time.Millisecond))
	}
	res.Seconds = time.Since(start).Seconds()
	res.table(w)
	return res, nil
}
