package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
)

// cdoBase makes the CDO example's base image if the engine lacks it: a
// debootstrap root file system with cdo, imported into the engine. The
// first run downloads Debian packages and takes minutes; later runs find
// the image and return at once.
func cdoBase(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "../services/cdo/base.sh").CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			testenv.Unavailable(t, "bash to run services/cdo/base.sh", err)
		}
		t.Fatalf("services/cdo/base.sh: %v\n%s", err, out)
	}
	return time.Since(start)
}

// ncgen makes a NetCDF file from CDL text.
func ncgen(t *testing.T, cdl string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ncgen"); err != nil {
		testenv.Unavailable(t, "ncgen (apt-get install netcdf-bin)", err)
	}
	nc := filepath.Join(t.TempDir(), "out.nc")
	if out, err := exec.Command("ncgen", "-o", nc, cdl).CombinedOutput(); err != nil {
		t.Fatalf("ncgen %s: %v\n%s", cdl, err, out)
	}
	b, err := os.ReadFile(nc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ncdump prints a NetCDF file's header, and the data of one variable on
// one line.
func ncdump(t *testing.T, nc []byte, variable string) (header, data string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "in.nc")
	if err := os.WriteFile(f, nc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ncdump", "-v", variable, f).CombinedOutput()
	if err != nil {
		t.Fatalf("ncdump: %v\n%s", err, out)
	}
	header, data, _ = strings.Cut(string(out), "\ndata:\n")
	return header, strings.Join(strings.Fields(data), " ")
}

// TestCDOService builds the field-realistic example, CDO on NetCDF files,
// through GEF with gefctl from services/cdo, on a base made with
// debootstrap, and runs it on a dataset made from CDL text with ncgen.
// This test is the slow one: it reports the time each part took.
func TestCDOService(t *testing.T) {
	engine(t)
	baseTook := cdoBase(t)
	s := newStack(t)
	ctx := context.Background()
	nc := ncgen(t, "../services/cdo/testdata/tas.cdl")
	s.node(nodeName("site-a"), map[string]string{"climate": dataset(t, map[string]string{"tas.nc": string(nc), "2024/january.nc": string(nc)})})

	start := time.Now()
	out := s.gefctl("build", "../services/cdo", "--follow")
	buildTook := time.Since(start)
	if !strings.Contains(out, ": done") || !strings.Contains(out, "service cdo-demo 1.0.0") {
		t.Fatalf("gefctl build services/cdo:\n%s", out)
	}
	svc, err := s.admin.Service(ctx, "cdo-demo", "")
	if err != nil || svc.Title != "CDO Demo" || svc.Params[0].Name != "operator" || svc.Params[0].Default != "sinfo" || svc.Resources.MemoryBytes != 1<<30 {
		t.Fatalf("cdo-demo: %+v, %v", svc, err)
	}

	start = time.Now()
	j := s.run(s.admin, gef.JobRequest{Service: "cdo-demo", Dataset: "climate", Params: map[string]any{"operator": "fldmean", "variable": "tas"}})
	if j.State != gef.JobSucceeded {
		logs, _ := s.admin.Logs(ctx, j.ID)
		t.Fatalf("fldmean job: %s %s\n%s", j.State, j.Reason, logs)
	}
	files := outputs(t, s, j)
	// The two latitudes are symmetric, so the field mean of day d is 276 + d.
	header, got := ncdump(t, files["tas.fldmean.nc"], "tas")
	if !strings.Contains(got, "tas = 276, 277, 278, 279 ;") {
		t.Fatalf("fldmean of tas: %s", got)
	}
	if strings.Contains(header, " pr(") {
		t.Fatalf("the variable selection let pr through:\n%s", header)
	}
	if _, ok := files["2024_january.fldmean.nc"]; !ok {
		t.Fatalf("no result for the file in a subdirectory: %v", keys(files))
	}
	if txt := string(files["tas.fldmean.txt"]); !strings.Contains(txt, "279.00") {
		t.Fatalf("fldmean summary:\n%s", txt)
	}

	jt := s.run(s.admin, gef.JobRequest{Service: "cdo-demo", Dataset: "climate", Params: map[string]any{"operator": "timmean"}})
	if jt.State != gef.JobSucceeded {
		t.Fatalf("timmean job: %s %s", jt.State, jt.Reason)
	}
	if _, got := ncdump(t, outputs(t, s, jt)["tas.timmean.nc"], "tas"); !strings.Contains(got, "tas = 271.5, 272.5, 273.5, 281.5, 282.5, 283.5 ;") {
		t.Fatalf("timmean of tas: %s", got)
	}

	js := s.run(s.admin, gef.JobRequest{Service: "cdo-demo", Dataset: "climate"})
	if txt := string(outputs(t, s, js)["tas.sinfo.txt"]); js.State != gef.JobSucceeded || !strings.Contains(txt, "lonlat") || !strings.Contains(txt, "points=6") {
		t.Fatalf("default sinfo job: %s %s\n%s", js.State, js.Reason, txt)
	}
	jobsTook := time.Since(start)

	_, err = s.admin.Submit(ctx, gef.JobRequest{Service: "cdo-demo", Dataset: "climate", Params: map[string]any{"operator": "rm"}})
	wantInvalid(t, err, "operator", "rm")
	_, err = s.admin.Submit(ctx, gef.JobRequest{Service: "cdo-demo", Dataset: "climate", Params: map[string]any{"variable": "tas,pr"}})
	wantInvalid(t, err, "variable", "must be a string matching")

	t.Logf("CDO example: base image %s (0 when it already existed), GEF build %s, three jobs %s",
		baseTook.Round(time.Second), buildTook.Round(100*time.Millisecond), jobsTook.Round(100*time.Millisecond))
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
