package ui

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"}, {1, "1 byte"}, {1023, "1023 bytes"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{10239, "9.9 KiB"}, {10240, "10 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {1 << 62, "4.0 EiB"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestRelative(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"}, {9 * time.Second, "just now"}, {45 * time.Second, "45 s ago"}, {3 * time.Minute, "3 min ago"},
		{5 * time.Hour, "5 h ago"}, {47 * time.Hour, "47 h ago"}, {72 * time.Hour, "3 days ago"},
		{-2 * time.Minute, "in 2 min"}, {90 * 24 * time.Hour, "10 Dec 2024"},
	} {
		if got := relative(now.Add(-tc.d), now); got != tc.want {
			t.Errorf("relative(now - %s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "–"}, {0, "0 ms"}, {850 * time.Millisecond, "850 ms"}, {4250 * time.Millisecond, "4.2 s"},
		{42 * time.Second, "42 s"}, {3*time.Minute + 5*time.Second, "3 min 5 s"}, {time.Hour, "1 h"},
		{2*time.Hour + 10*time.Minute, "2 h 10 min"}, {50 * time.Hour, "2 days 2 h"}, {72 * time.Hour, "3 days"},
	} {
		if got := duration(tc.d); got != tc.want {
			t.Errorf("duration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestSafeLinkAndOutputURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://example.org/x": "https://example.org/x", " http://a.b ": "http://a.b",
		"javascript:alert(1)": "", "ftp://x.y/": "", "//evil.example": "", "not a url": "",
	} {
		if got := safeLink(in); got != want {
			t.Errorf("safeLink(%q) = %q, want %q", in, got, want)
		}
	}
	got := outputURL("01J", gef.OutputFile{Name: "report", Path: "a dir/x#1?.txt"})
	if got != "/api/v1/jobs/01J/outputs/report/a%20dir/x%231%3F.txt" {
		t.Errorf("outputURL = %q", got)
	}
}

func TestLocalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "/", "/jobs?state=running": "/jobs?state=running", "/jobs/01J": "/jobs/01J",
		"https://evil.example/": "/", "//evil.example/x": "/", "/\\evil.example": "/", "jobs": "/",
		"/login?next=/x": "/", "/logout": "/", "/a\r\nSet-Cookie: x": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzLocalPath checks that the sign-in page never sends anyone off-site,
// whatever next= holds.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/jobs", "//x", "/\\x", "https://x", "/%2F%2Fx", "/.//x", "\t//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := localPath(next)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("localPath(%q) = %q", next, got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" {
			t.Fatalf("localPath(%q) = %q, which leaves the site", next, got)
		}
	})
}

func TestPhases(t *testing.T) {
	t.Parallel()
	at := func(s int) *time.Time { v := time.Unix(1000+int64(s), 0).UTC(); return &v }
	now := *at(100)
	running := gef.Job{State: gef.JobRunning, Timestamps: gef.Timestamps{Queued: *at(0), Assigned: at(2), Running: at(5)}}
	got := phases(running, now)
	want := []string{"queued done 2s", "assigned done 3s", "fetching image skipped 0s", "running current 1m35s", "staging pending 0s"}
	if s := phaseStrings(got); s != strings.Join(want, ", ") {
		t.Errorf("running job: %s", s)
	}
	done := gef.Job{State: gef.JobFailed, Timestamps: gef.Timestamps{Queued: *at(0), Assigned: at(1), FetchingImage: at(2),
		Running: at(10), Staging: at(70), Finished: at(71)}}
	want = []string{"queued done 1s", "assigned done 1s", "fetching image done 8s", "running done 1m0s", "staging done 1s", "failed end 0s"}
	if s := phaseStrings(phases(done, now)); s != strings.Join(want, ", ") {
		t.Errorf("finished job: %s", s)
	}
	// A job canceled while queued skips every phase but the first.
	canceled := gef.Job{State: gef.JobCanceled, Timestamps: gef.Timestamps{Queued: *at(0), Finished: at(4)}}
	want = []string{"queued done 4s", "assigned skipped 0s", "fetching image skipped 0s", "running skipped 0s", "staging skipped 0s", "canceled end 0s"}
	if s := phaseStrings(phases(canceled, now)); s != strings.Join(want, ", ") {
		t.Errorf("canceled job: %s", s)
	}
}

func phaseStrings(ps []phase) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+" "+p.Status+" "+p.Took.String())
	}
	return strings.Join(out, ", ")
}

func TestTailWriter(t *testing.T) {
	t.Parallel()
	w := &tailWriter{max: 8}
	for _, s := range []string{"abc", "def", "gh"} {
		w.Write([]byte(s))
	}
	if string(w.buf) != "abcdefgh" || w.cut {
		t.Fatalf("tail %q cut %v", w.buf, w.cut)
	}
	w.Write([]byte("ij"))
	if string(w.buf) != "cdefghij" || !w.cut {
		t.Fatalf("tail %q cut %v", w.buf, w.cut)
	}
	w.Write([]byte("0123456789"))
	if string(w.buf) != "23456789" {
		t.Fatalf("tail %q", w.buf)
	}
}
