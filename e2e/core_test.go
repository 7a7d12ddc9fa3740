package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testimages"
)

// TestRunNextToTheData runs a job through the whole stack and checks what
// the container saw, what was staged and what was recorded.
func TestRunNextToTheData(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	data := dataset(t, map[string]string{
		"a.txt":            "alpha\n",
		"b.csv":            "x,y\n1,2\n",
		"sub/c.bin":        strings.Repeat("c", 5000),
		"sub/deeper/d.txt": "delta\n",
	})
	s.node("site-a", map[string]string{"climate": data})
	svc := s.publish(imageID)
	if svc.Name != "gef-test-service" || svc.Digest != imageID || len(svc.Inputs) != 1 || svc.Inputs[0].Path != "/data" {
		t.Fatalf("published service = %+v", svc)
	}

	j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "climate",
		Params: map[string]any{"write_dataset": true, "lines": 5, "bytes": 300000, "message": "hello from the job"}})
	if j.State != gef.JobSucceeded || j.ExitCode == nil || *j.ExitCode != 0 {
		t.Fatalf("job ended %s (exit %v): %s", j.State, j.ExitCode, j.Reason)
	}
	if j.Node != "site-a" || j.ImageDigest != imageID || j.Inputs["data"] != "climate" {
		t.Fatalf("job record: node %q image %q inputs %v", j.Node, j.ImageDigest, j.Inputs)
	}
	ts := j.Timestamps
	if ts.Assigned == nil || ts.Running == nil || ts.Staging == nil || ts.Finished == nil ||
		ts.Assigned.Before(ts.Queued) || ts.Running.Before(*ts.Assigned) || ts.Finished.Before(*ts.Staging) {
		t.Fatalf("phase timestamps out of order: %+v", ts)
	}

	files := outputs(t, s, j)
	// The container saw the dataset at the declared path...
	if got := string(files["listing.txt"]); got != "a.txt\nb.csv\nsub/c.bin\nsub/deeper/d.txt\n" {
		t.Fatalf("listing.txt = %q", got)
	}
	// ...read-only: its write failed, and the host dataset is unchanged.
	if got := string(files["write-attempt.txt"]); !strings.Contains(got, "write failed") || !strings.Contains(got, "read-only file system") {
		t.Fatalf("write-attempt.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(data, "written-by-job")); !os.IsNotExist(err) {
		t.Fatalf("the job wrote into the dataset: %v", err)
	}
	// The container got exactly the argv the record shows.
	var argv []string
	if err := json.Unmarshal(files["argv.json"], &argv); err != nil || strings.Join(argv, "\x00") != strings.Join(j.Argv, "\x00") {
		t.Fatalf("container argv %q, record %q (%v)", argv, j.Argv, err)
	}
	if len(files["nested/deep/data.bin"]) != 300000 {
		t.Fatalf("data.bin has %d bytes", len(files["nested/deep/data.bin"]))
	}

	logs, err := s.admin.Logs(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"line 1\n", "line 5\n", "hello from the job", "testsvc: done"} {
		if !strings.Contains(string(logs), want) {
			t.Fatalf("logs lack %q:\n%s", want, logs)
		}
	}

	// The agent removes its container once the manager has its final
	// report, so just after the job shows as ended.
	eventually(t, 10*time.Second, "the job's container is removed", func() bool {
		left, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelJob: j.ID})
		return err == nil && len(left) == 0
	})
}

// outputs checks every output file of j in MinIO against the record and
// returns the files by path, also checking the download API agrees.
func outputs(t *testing.T, s *stack, j gef.Job) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	files := map[string][]byte{}
	if len(j.Outputs) == 0 {
		t.Fatal("the job has no outputs")
	}
	for _, o := range j.Outputs {
		key := gef.AttemptOutputKey(j.ID, j.Attempt, o.Name, o.Path)
		obj, err := s.s3.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("read %s from MinIO: %v", key, err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != o.SHA256 || int64(len(b)) != o.Size {
			t.Fatalf("%s in MinIO: %d bytes sha256 %x; the record says %d bytes %s", key, len(b), sum, o.Size, o.SHA256)
		}
		rc, err := s.admin.Output(ctx, j.ID, o.Name, o.Path)
		if err != nil {
			t.Fatal(err)
		}
		via, _ := io.ReadAll(rc)
		rc.Close()
		if string(via) != string(b) {
			t.Fatalf("download of %s differs from MinIO", o.Path)
		}
		files[o.Path] = b
	}
	return files
}

// TestFailureAndCancel shows a non-zero exit is a failure with its code,
// and cancel stops a running container.
func TestFailureAndCancel(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	s.node("site-a", map[string]string{"d": dataset(t, map[string]string{"x": "x"})})
	svc := s.publish(imageID)

	failed := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{"exit": 3}})
	if failed.State != gef.JobFailed || failed.ExitCode == nil || *failed.ExitCode != 3 || !strings.Contains(failed.Reason, "code 3") {
		t.Fatalf("exit 3 ended %s (exit %v): %q", failed.State, failed.ExitCode, failed.Reason)
	}
	if len(failed.Outputs) == 0 {
		t.Fatal("a failed job's outputs were not staged")
	}

	ctx := context.Background()
	j, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{"sleep": 600}})
	if err != nil {
		t.Fatal(err)
	}
	var containerID string
	eventually(t, 30*time.Second, "the job's container runs", func() bool {
		cs, err := s.rt.Containers(ctx, map[string]string{agent.LabelJob: j.ID})
		if err != nil || len(cs) != 1 || !cs[0].Running {
			return false
		}
		containerID = cs[0].ID
		return true
	})
	if _, err := s.admin.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	j, err = s.admin.Wait(wctx, j.ID, nil)
	if err != nil || j.State != gef.JobCanceled {
		t.Fatalf("canceled job: %s %v", j.State, err)
	}
	if !strings.Contains(j.Reason, "canceled by admin") {
		t.Fatalf("reason = %q", j.Reason)
	}
	// The node reports canceled only once the container has stopped; it
	// removes it just after.
	if c, err := s.rt.Inspect(ctx, containerID); err == nil && c.Running {
		t.Fatal("the canceled job's container still runs")
	}
	eventually(t, 10*time.Second, "the canceled job's container is removed", func() bool {
		_, err := s.rt.Inspect(ctx, containerID)
		return errors.Is(err, gef.ErrNotFound)
	})
	if _, err := s.admin.Cancel(ctx, j.ID); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("a second cancel: %v, want 409", err)
	}
}

// TestPlacementAndRefusals shows each job goes to the node that holds its
// data, and that requests naming what does not exist are refused clearly.
func TestPlacementAndRefusals(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	s.node("site-x", map[string]string{"x-data": dataset(t, map[string]string{"x.txt": "x"})})
	s.node("site-y", map[string]string{"y-data": dataset(t, map[string]string{"y.txt": "y"})})
	svc := s.publish(imageID)

	ctx := context.Background()
	var jobs []gef.Job
	for range 3 {
		for _, ds := range []string{"x-data", "y-data"} {
			j, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: ds})
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, j)
		}
	}
	for _, j := range jobs {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		done, err := s.admin.Wait(wctx, j.ID, nil)
		cancel()
		if err != nil || done.State != gef.JobSucceeded {
			t.Fatalf("job %s: %s %v %s", j.ID, done.State, err, done.Reason)
		}
		want := map[string]string{"x-data": "site-x", "y-data": "site-y"}[done.Inputs["data"]]
		if done.Node != want {
			t.Fatalf("job on %s ran on %s, want %s", done.Inputs["data"], done.Node, want)
		}
		files := outputs(t, s, done)
		wantFile := map[string]string{"x-data": "x.txt\n", "y-data": "y.txt\n"}[done.Inputs["data"]]
		if string(files["listing.txt"]) != wantFile {
			t.Fatalf("job on %s saw %q", done.Inputs["data"], files["listing.txt"])
		}
	}

	for _, tc := range []struct {
		name  string
		req   gef.JobRequest
		field string
		says  string
	}{
		{"unknown dataset", gef.JobRequest{Service: svc.Name, Dataset: "nowhere"}, "inputs.data", `dataset "nowhere" is not known`},
		{"unknown service", gef.JobRequest{Service: "no-such-service", Dataset: "x-data"}, "service", `no service "no-such-service" is published`},
		{"unknown version", gef.JobRequest{Service: svc.Name, Version: "9.9", Dataset: "x-data"}, "version", `no version "9.9"`},
		{"unknown input", gef.JobRequest{Service: svc.Name, Inputs: map[string]string{"other": "x-data"}}, "inputs.other", `has no input "other"`},
		{"missing input", gef.JobRequest{Service: svc.Name}, "inputs.data", "is required"},
		{"bad parameter", gef.JobRequest{Service: svc.Name, Dataset: "x-data", Params: map[string]any{"exit": 999}}, "exit", "999"},
		{"unknown parameter", gef.JobRequest{Service: svc.Name, Dataset: "x-data", Params: map[string]any{"nope": 1}}, "nope", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.admin.Submit(ctx, tc.req)
			var e *client.Error
			if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || e.Field != tc.field || !strings.Contains(e.Message, tc.says) {
				t.Fatalf("got %v (field %q), want 422 on %s saying %q", err, fieldOf(e), tc.field, tc.says)
			}
		})
	}
}

func fieldOf(e *client.Error) string {
	if e == nil {
		return ""
	}
	return e.Field
}
