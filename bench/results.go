package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// results are the suite's figures. The named keys are the stable contract
// of the JSON output; a figure not run leaves its keys out.
type results struct {
	JobOverheadRatio     *float64 `json:"job_overhead_ratio,omitempty"`
	JobOverheadMS        *float64 `json:"job_overhead_ms,omitempty"`
	DispatchP50MS        *float64 `json:"dispatch_p50_ms,omitempty"`
	DispatchP99MS        *float64 `json:"dispatch_p99_ms,omitempty"`
	DrainRatio           *float64 `json:"drain_ratio,omitempty"`
	SubmitPerS           *float64 `json:"submit_per_s,omitempty"`
	ListP99MS            *float64 `json:"list_p99_ms,omitempty"`
	StagingRatio         *float64 `json:"staging_ratio,omitempty"`
	DatasetBytesMoved    *float64 `json:"dataset_bytes_moved,omitempty"`
	ScaleManagerCPUCores *float64 `json:"scale_manager_cpu_cores,omitempty"`
	ScaleManagerRSSMiB   *float64 `json:"scale_manager_rss_mib,omitempty"`

	// Details are the numbers behind the figures: baselines, percentiles,
	// phases, sizes.
	Details map[string]float64 `json:"details"`

	Machine string    `json:"machine"`
	Date    time.Time `json:"date"`
	Short   bool      `json:"short"`
	Seconds float64   `json:"seconds"`

	rows []row
}

// row is one line of the printed table.
type row struct {
	Figure   string // what is measured
	GEF      string // GEF's number
	Baseline string // the same thing without GEF, in the same run
	Result   string // the figure: a ratio, an overhead, a latency
	Target   string
	Met      bool
}

func newResults(cfg config) *results {
	return &results{Details: map[string]float64{}, Machine: machine(), Date: time.Now().UTC(), Short: cfg.Short}
}

// set stores a contract figure.
func set(p **float64, v float64) { *p = &v }

// detail records a number behind a figure.
func (r *results) detail(key string, v float64) { r.Details[key] = round(v) }

// add appends a row to the printed table.
func (r *results) add(x row) { r.rows = append(r.rows, x) }

func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	return math.Round(v*1000) / 1000
}

func (r *results) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// table prints the rows, then the details in key order.
func (r *results) table(w io.Writer) {
	fmt.Fprintf(w, "GEF benchmark, %s, %s%s, %.0f s\n\n", r.Date.Format(time.RFC3339), r.Machine, map[bool]string{true: ", -short"}[r.Short], r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tGEF\tbaseline\tresult\ttarget\tmet")
	for _, x := range r.rows {
		met := "yes"
		switch {
		case x.Target == "" || x.Target == "-":
			met = "-" // a breakdown or a detail, with no target of its own
		case !x.Met:
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Figure, x.GEF, x.Baseline, x.Result, x.Target, met)
	}
	tw.Flush()
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %g\n", k, r.Details[k])
	}
}

// machine describes where the suite ran.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kib)/(1<<20))
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

var errTODO = errors.New("not measured yet")
