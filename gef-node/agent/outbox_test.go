package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

// recorder is the manager's side of the outbox: it records what arrives,
// and fails or refuses it as a test says. The outbox's own logic is under
// test here; the real manager is in the end-to-end suite.
type recorder struct {
	mu      sync.Mutex
	got     []string // "job report state" or "job log seq data"
	down    bool     // answer as an unreachable manager
	refuse  map[string]bool
	arrived chan struct{}
}

func newRecorder() *recorder {
	return &recorder{refuse: map[string]bool{}, arrived: make(chan struct{}, 1000)}
}

func (r *recorder) take(what string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return fmt.Errorf("dial: %w", gef.ErrUnavailable)
	}
	for prefix := range r.refuse {
		if strings.HasPrefix(what, prefix) {
			return fmt.Errorf("not yours: %w", gef.ErrConflict)
		}
	}
	r.got = append(r.got, what)
	r.arrived <- struct{}{}
	return nil
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *recorder) Report(_ context.Context, id string, rep gef.JobReport) (gef.Job, error) {
	return gef.Job{}, r.take(fmt.Sprintf("%s report %s", id, rep.State))
}

func (r *recorder) AppendLog(_ context.Context, id string, attempt, seq int, stream string, data []byte) error {
	return r.take(fmt.Sprintf("%s log %d %s", id, seq, data))
}

func (r *recorder) Register(context.Context, gef.NodeRegistration) error { return nil }
func (r *recorder) Poll(context.Context, gef.PollRequest) (gef.PollResponse, error) {
	return gef.PollResponse{}, nil
}
func (r *recorder) UploadURLs(context.Context, string, int, []gef.OutputFile) (map[string]string, error) {
	return nil, nil
}
func (r *recorder) Assignment(context.Context, string) (gef.Assignment, error) {
	return gef.Assignment{}, gef.ErrNotFound
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func logEntry(job string, seq int, data string) envelope {
	return envelope{Job: job, Attempt: 1, Seq: seq, Stream: "stdout", Data: []byte(data)}
}

// TestOutboxSurvivesARestart puts entries while the manager is away, drops
// the outbox as a killed agent would, and shows the next one delivers them
// all, in order, the final report after the output.
func TestOutboxSurvivesARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := newRecorder()
	rec.setDown(true)
	o, err := openOutbox(dir, rec, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	o.start(ctx)
	for _, env := range []envelope{logEntry("a", 0, "one"), logEntry("a", 1, "two")} {
		if _, err := o.put(env); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.report("a", 1, gef.JobReport{State: gef.JobRunning}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.report("a", 1, gef.JobReport{State: gef.JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.put(logEntry("a", 2, "three")); err != nil {
		t.Fatal(err)
	}
	// The agent dies.
	stop()
	o.wait()
	if got := rec.received(); len(got) != 0 {
		t.Fatalf("delivered to a manager that is down: %v", got)
	}

	rec.setDown(false)
	o2, err := openOutbox(dir, rec, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if n := o2.pending(); n != 5 {
		t.Fatalf("%d entries after the restart, want 5", n)
	}
	if ids := o2.finals(); len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("finals: %v", ids)
	}
	done, ok := o2.final("a", 1)
	if !ok {
		t.Fatal("the final report is not found")
	}
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	o2.start(ctx2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the final report was not delivered")
	}
	waitFor(t, "everything is delivered", func() bool { return o2.pending() == 0 })
	got := rec.received()
	logs, reports := []string{}, []string{}
	for _, g := range got {
		if strings.Contains(g, " log ") {
			logs = append(logs, g)
		} else {
			reports = append(reports, g)
		}
	}
	if strings.Join(logs, "|") != "a log 0 one|a log 1 two|a log 2 three" || strings.Join(reports, "|") != "a report running|a report succeeded" {
		t.Fatalf("delivered %v", got)
	}
	// The final report came after the job's last output.
	if got[len(got)-1] != "a report succeeded" {
		t.Fatalf("the final report was not last: %v", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("%d files left in the outbox", len(entries))
	}
}

// TestOutboxRefusalAndRetry shows an entry the manager refuses is dropped
// and its refusal handed back, while one it cannot take yet is retried.
func TestOutboxRefusalAndRetry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := newRecorder()
	rec.refuse["gone report"] = true
	o, err := openOutbox(dir, rec, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer func() { stop(); o.wait() }()
	o.start(ctx)
	refused, err := o.report("gone", 1, gef.JobReport{State: gef.JobCanceled})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refused:
		if err == nil {
			t.Fatal("a refused report was acknowledged")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer for a refused report")
	}

	rec.setDown(true)
	later, err := o.report("b", 1, gef.JobReport{State: gef.JobSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a failed try or two
	rec.setDown(false)
	o.retryNow()
	select {
	case err := <-later:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the report was not retried")
	}
}

// TestOutboxDropLogs shows an adopted job's chunks past what was counted
// shipped are dropped, to be read from the container again.
func TestOutboxDropLogs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := newRecorder()
	o, err := openOutbox(dir, rec, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for seq := range 4 {
		if _, err := o.put(logEntry("c", seq, fmt.Sprint(seq))); err != nil {
			t.Fatal(err)
		}
	}
	o.dropLogs("c", 1, 2)
	ctx, stop := context.WithCancel(context.Background())
	defer func() { stop(); o.wait() }()
	o.start(ctx)
	waitFor(t, "delivery", func() bool { return o.pending() == 0 })
	if got := strings.Join(rec.received(), "|"); got != "c log 0 0|c log 1 1" {
		t.Fatalf("delivered %s", got)
	}
}

func TestOutboxSkipsWhatIsNotAnEntry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{"00000000000000000007.json.tmp": "{half", "00000000000000000003.json": "{broken"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o, err := openOutbox(dir, newRecorder(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if o.pending() != 0 {
		t.Fatalf("%d entries from junk", o.pending())
	}
	if _, err := o.put(logEntry("d", 0, "x")); err != nil {
		t.Fatal(err)
	}
	// Numbering goes on past what was there, so order is kept.
	if _, err := os.Stat(filepath.Join(dir, "00000000000000000004.json")); err != nil {
		t.Fatalf("the next entry is not numbered after the last: %v", err)
	}
}

func TestSkipWriter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		skip   int64
		writes []string
		want   string
	}{
		{0, []string{"abc", "def"}, "abcdef"},
		{2, []string{"abc", "def"}, "cdef"},
		{3, []string{"abc", "def"}, "def"},
		{5, []string{"abc", "def"}, "f"},
		{9, []string{"abc", "def"}, ""},
		{4, []string{"", "abcdef", "g"}, "efg"},
	} {
		var b bytes.Buffer
		w := &skipWriter{w: &b, n: tc.skip}
		for _, s := range tc.writes {
			if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
				t.Fatalf("write %q: %d %v", s, n, err)
			}
		}
		if b.String() != tc.want {
			t.Errorf("skip %d of %v: %q, want %q", tc.skip, tc.writes, b.String(), tc.want)
		}
	}
}

// The outbox tests run no images, builds or sessions.
func (r *recorder) ImageDownload(context.Context, string) (gef.ImageDownload, error) {
	return gef.ImageDownload{}, gef.ErrNotFound
}
func (r *recorder) ReportBuild(context.Context, string, gef.BuildReport) (gef.Build, error) {
	return gef.Build{}, gef.ErrNotFound
}
func (r *recorder) AppendBuildLog(context.Context, string, int, int, string, []byte) error {
	return gef.ErrNotFound
}
func (r *recorder) BuildUploadURL(context.Context, string) (string, error) {
	return "", gef.ErrNotFound
}
func (r *recorder) ReportSession(context.Context, string, gef.SessionReport) (gef.Session, error) {
	return gef.Session{}, gef.ErrNotFound
}
func (r *recorder) Tunnel(context.Context) (net.Conn, error) { return nil, gef.ErrUnavailable }
