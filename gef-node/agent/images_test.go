package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

// These tests drive the image fetch against fakes of the engine and the
// manager, for the paths a real engine will not take on demand: a slow
// shared download, a tarball of the wrong image, refusals. The real path
// is in the end-to-end tests.

// fakeRuntime is an engine that has the images in have and loads what
// load says a tarball holds. Calls it does not fake panic.
type fakeRuntime struct {
	Runtime
	mu    sync.Mutex
	have  map[string]bool
	loads atomic.Int32
	load  func(body []byte) ([]string, error)
}

func (f *fakeRuntime) Image(_ context.Context, id string) (ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.have[id] {
		return ImageInfo{}, fmt.Errorf("fake: image %s: %w", id, gef.ErrNotFound)
	}
	return ImageInfo{ID: id}, nil
}

func (f *fakeRuntime) LoadImage(_ context.Context, r io.Reader) ([]string, error) {
	f.loads.Add(1)
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	ids, err := f.load(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.have[id] = true
	}
	return ids, err
}

// fakeManager answers image download requests with url, or with err.
type fakeManager struct {
	Manager
	url  string
	size int64
	err  error
	asks atomic.Int32
}

func (f *fakeManager) ImageDownload(context.Context, string) (gef.ImageDownload, error) {
	f.asks.Add(1)
	return gef.ImageDownload{URL: f.url, Size: f.size}, f.err
}

const (
	wantID  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	otherID = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func testAgent(t *testing.T, rt Runtime, mgr Manager) *Agent {
	t.Helper()
	a, err := New(Config{Name: "n1", WorkDir: t.TempDir(), Capacity: 4}, rt, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// blobServer serves body, holding every request until release is closed.
func blobServer(t *testing.T, body string, status int, release <-chan struct{}) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		<-release
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &gets
}

func TestEnsureImageFetchesOnce(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv, gets := blobServer(t, "tarball of the image", http.StatusOK, release)
	rt := &fakeRuntime{have: map[string]bool{}, load: func(b []byte) ([]string, error) {
		if string(b) != "tarball of the image" {
			return nil, fmt.Errorf("loaded %q", b)
		}
		return []string{wantID}, nil
	}}
	mgr := &fakeManager{url: srv.URL, size: int64(len("tarball of the image"))}
	a := testAgent(t, rt, mgr)

	const n = 5
	var wg sync.WaitGroup
	var fetching atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := a.ensureImage(context.Background(), wantID, func() { fetching.Add(1) })
			if err == nil && img.ID != wantID {
				err = fmt.Errorf("got image %s", img.ID)
			}
			errs <- err
		}()
	}
	// Every caller has said it is fetching before the download may end.
	deadline := time.Now().Add(10 * time.Second)
	for fetching.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if gets.Load() != 1 || rt.loads.Load() != 1 || mgr.asks.Load() != 1 {
		t.Fatalf("%d callers made %d downloads, %d loads and %d requests for a URL; want one each", n, gets.Load(), rt.loads.Load(), mgr.asks.Load())
	}
	// Present now: no fetch, and no call to fetching.
	if _, err := a.ensureImage(context.Background(), wantID, func() { t.Error("fetching an image the engine has") }); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureImageRefusals(t *testing.T) {
	t.Parallel()
	open := make(chan struct{})
	close(open)
	for _, tc := range []struct {
		name   string
		status int
		mgrErr error
		loads  func([]byte) ([]string, error)
		says   string
	}{
		{"another image", 200, nil, func([]byte) ([]string, error) { return []string{otherID}, nil },
			"image digest mismatch: the tarball GEF keeps for " + wantID + " loaded as " + otherID},
		{"not a tarball", 200, nil, func([]byte) ([]string, error) { return nil, errors.New("docker: load image: unexpected EOF") },
			"fetching image " + wantID + ": loading it: docker: load image"},
		{"URL refused", 403, nil, nil, "the object store answered 403"},
		{"no copy kept", 200, fmt.Errorf("gef: 404 not_found: GEF keeps no copy: %w", gef.ErrNotFound), nil,
			"is not on node n1, and GEF cannot ship it"},
		{"manager refuses", 200, fmt.Errorf("gef: 403: %w", gef.ErrForbidden), nil, "asking the manager"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := blobServer(t, "some bytes", tc.status, open)
			rt := &fakeRuntime{have: map[string]bool{}, load: tc.loads}
			a := testAgent(t, rt, &fakeManager{url: srv.URL, err: tc.mgrErr})
			_, err := a.ensureImage(context.Background(), wantID, nil)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("ensureImage = %v, want an error saying %q", err, tc.says)
			}
		})
	}
}
