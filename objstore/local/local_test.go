package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/objstore/objstoretest"
)

// mount is where the tests serve Handler, to show it works under a prefix.
const mount = "/objects"

// newTestStore returns a store in a fresh directory whose Handler is served
// by a real HTTP server, so presigned URLs work with any client.
func newTestStore(t testing.TB) *Store {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s, err := New(t.TempDir(), srv.URL+mount, []byte("test secret"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux.Handle(mount+"/", http.StripPrefix(mount, s.Handler()))
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	objstoretest.Run(t, func(t *testing.T) gef.ObjectStore { return newTestStore(t) })
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New("", "http://x", []byte("k")); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("New with no root = %v, want ErrInvalid", err)
	}
	if _, err := New(t.TempDir(), "http://x", nil); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("New with no secret = %v, want ErrInvalid", err)
	}
	s, err := New(t.TempDir(), "", []byte("k"))
	if err != nil {
		t.Fatalf("New without base URL: %v", err)
	}
	if _, err := s.PresignPut(t.Context(), "a", time.Minute); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("PresignPut without base URL = %v, want ErrInvalid", err)
	}
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"jobs/42/out/result.txt", true},
		{"with space/ü/日本語", true},
		{"a..b/..c/d..", true},
		{".hidden/.x", true},
		{"a/b\nc", true},
		{"", false},
		{"/etc/passwd", false},
		{"..", false},
		{"../escape", false},
		{"a/../../escape", false},
		{"a/..", false},
		{".", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{`a\..\b`, false},
		{`..\escape`, false},
		{"a\x00b", false},
		{".gef-tmp-123", false},
		{"a/.gef-tmp-x/b", false},
	} {
		err := ValidateKey(tc.key)
		if tc.ok && err != nil {
			t.Errorf("ValidateKey(%q) = %v, want ok", tc.key, err)
		}
		if !tc.ok && !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("ValidateKey(%q) = %v, want an error wrapping gef.ErrInvalid", tc.key, err)
		}
	}
}

func TestTraversalRefused(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	s, err := New(filepath.Join(parent, "root"), "http://127.0.0.1:1/o", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("do not read"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, key := range []string{"../secret", "../escape", "a/../../escape", "/tmp/abs"} {
		if err := s.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("Put(%q) = %v, want ErrInvalid", key, err)
		}
		if _, _, err := s.Get(ctx, key); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("Stat(%q) = %v, want ErrInvalid", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("Delete(%q) = %v, want ErrInvalid", key, err)
		}
		if _, err := s.PresignPut(ctx, key, time.Minute); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("PresignPut(%q) = %v, want ErrInvalid", key, err)
		}
	}
	if _, err := s.List(ctx, "../"); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("List(../) = %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(filepath.Join(parent, "escape")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file appeared outside the root: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(parent, "secret")); err != nil || string(b) != "do not read" {
		t.Errorf("file outside the root changed: %q, %v", b, err)
	}
}

// failingReader yields n bytes and then fails.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// regularFiles lists every regular file under root, temporary or not.
func regularFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func TestPutAtomic(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	boom := errors.New("boom")

	err := s.Put(ctx, "job/out.bin", &failingReader{n: 3 << 20, err: boom}, -1)
	if !errors.Is(err, boom) {
		t.Fatalf("Put from a failing reader = %v, want it to wrap the reader's error", err)
	}
	if _, err := s.Stat(ctx, "job/out.bin"); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Stat after failed Put = %v, want ErrNotFound", err)
	}
	if infos, err := s.List(ctx, ""); err != nil || len(infos) != 0 {
		t.Errorf("List after failed Put = %+v, %v; want nothing", infos, err)
	}
	if files := regularFiles(t, s.Root()); len(files) != 0 {
		t.Errorf("files left on disk after failed Put: %q", files)
	}

	// A failed overwrite keeps the old object whole.
	if err := s.Put(ctx, "job/out.bin", strings.NewReader("old"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "job/out.bin", &failingReader{n: 1 << 20, err: boom}, 2<<20); !errors.Is(err, boom) {
		t.Fatalf("overwrite from a failing reader = %v, want it to wrap the reader's error", err)
	}
	// A reader shorter than the size given is refused too.
	if err := s.Put(ctx, "job/out.bin", strings.NewReader("short"), 10); !errors.Is(err, gef.ErrInvalid) {
		t.Fatalf("Put of a short reader = %v, want ErrInvalid", err)
	}
	rc, _, err := s.Get(ctx, "job/out.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != "old" {
		t.Errorf("after failed overwrites Get = %q, %v; want %q", got, err, "old")
	}
	if files := regularFiles(t, s.Root()); len(files) != 1 {
		t.Errorf("files on disk = %q, want only the object", files)
	}
}

func TestListHidesLeftovers(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "job/a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	// What a crash between create and rename leaves behind.
	if err := os.WriteFile(filepath.Join(s.Root(), "job", tempPrefix+"12345"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	infos, err := s.List(ctx, "job/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Key != "job/a" {
		t.Errorf("List = %+v, want only job/a", infos)
	}
	if _, err := s.List(ctx, "job/.gef"); err != nil {
		t.Errorf("List(job/.gef): %v", err)
	}
}

func TestKeyConflicts(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "a/b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", strings.NewReader("x"), 1); !errors.Is(err, gef.ErrConflict) {
		t.Errorf("Put over a prefix of a key = %v, want ErrConflict", err)
	}
	if err := s.Put(ctx, "a/b/c", strings.NewReader("x"), 1); !errors.Is(err, gef.ErrConflict) {
		t.Errorf("Put below a key = %v, want ErrConflict", err)
	}
	if _, err := s.Stat(ctx, "a/b/c"); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Stat below a key = %v, want ErrNotFound", err)
	}
}

func TestDeletePrunesDirectories(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	for _, k := range []string{"jobs/1/out/a", "jobs/2/b"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "jobs/1/out/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "jobs", "1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory jobs/1 left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "jobs", "2", "b")); err != nil {
		t.Errorf("sibling object lost: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("root pruned away: %v", err)
	}
}

// fakeClock is a settable clock safe to read from the server goroutines.
type fakeClock struct{ unix atomic.Int64 }

func (c *fakeClock) Now() time.Time      { return time.Unix(c.unix.Load(), 0) }
func (c *fakeClock) Add(d time.Duration) { c.unix.Add(int64(d / time.Second)) }

// newClockedStore is newTestStore with a fake clock and a small size cap.
func newClockedStore(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	clock := &fakeClock{}
	clock.unix.Store(time.Now().Unix())
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s, err := New(t.TempDir(), srv.URL+mount, []byte("test secret"))
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.Now
	s.MaxObjectBytes = 1 << 20
	mux.Handle(mount+"/", http.StripPrefix(mount, s.Handler()))
	return s, clock
}

// do sends one request and returns the status, a header and the body.
func do(t *testing.T, method, rawURL string, body io.Reader, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	s, clock := newClockedStore(t)
	ctx := t.Context()
	data := []byte("the object's bytes")
	sum := sha256.Sum256(data)

	putURL, err := s.PresignPut(ctx, "jobs/1/out.txt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	code, hdr, _ := do(t, http.MethodPut, putURL, bytes.NewReader(data), nil)
	if code != http.StatusOK {
		t.Fatalf("PUT: status %d", code)
	}
	if got, want := hdr.Get("ETag"), `"`+hex.EncodeToString(sum[:])+`"`; got != want {
		t.Errorf("ETag = %s, want %s", got, want)
	}

	getURL, err := s.PresignGet(ctx, "jobs/1/out.txt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := do(t, http.MethodGet, getURL, nil, nil); code != http.StatusOK || body != string(data) {
		t.Errorf("GET = %d %q, want 200 %q", code, body, data)
	}
	if code, _, body := do(t, http.MethodGet, getURL, nil, http.Header{"Range": {"bytes=4-9"}}); code != http.StatusPartialContent || body != "object" {
		t.Errorf("GET with Range = %d %q, want 206 %q", code, body, "object")
	}
	if code, _, _ := do(t, http.MethodPut, getURL, strings.NewReader("overwrite"), nil); code != http.StatusForbidden {
		t.Errorf("PUT on a GET URL: status %d, want 403", code)
	}
	if code, _, _ := do(t, http.MethodPost, putURL, strings.NewReader("x"), nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", code)
	}

	missingURL, err := s.PresignGet(ctx, "jobs/1/missing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, http.MethodGet, missingURL, nil, nil); code != http.StatusNotFound {
		t.Errorf("GET of a missing object: status %d, want 404", code)
	}

	// Tampering with any part of the query is refused.
	u, _ := url.Parse(putURL)
	for name, mutate := range map[string]func(q url.Values){
		"no signature":     func(q url.Values) { q.Del("signature") },
		"bad signature":    func(q url.Values) { q.Set("signature", strings.Repeat("00", 32)) },
		"not hex":          func(q url.Values) { q.Set("signature", "zz") },
		"later expiry":     func(q url.Values) { q.Set("expires", fmt.Sprint(clock.Now().Add(time.Hour).Unix())) },
		"no expiry":        func(q url.Values) { q.Del("expires") },
		"signature of GET": func(q url.Values) { q.Set("signature", mustQuery(t, getURL).Get("signature")) },
	} {
		q := u.Query()
		mutate(q)
		v := *u
		v.RawQuery = q.Encode()
		if code, _, body := do(t, http.MethodPut, v.String(), strings.NewReader("forged"), nil); code != http.StatusForbidden || !strings.Contains(body, "forbidden") {
			t.Errorf("%s: status %d %q, want 403 with a message", name, code, body)
		}
	}

	// Once the clock passes the expiry, the URLs stop working.
	clock.Add(2 * time.Minute)
	if code, _, body := do(t, http.MethodPut, putURL, bytes.NewReader(data), nil); code != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Errorf("PUT after expiry = %d %q, want 403 saying expired", code, body)
	}
	if code, _, _ := do(t, http.MethodGet, getURL, nil, nil); code != http.StatusForbidden {
		t.Errorf("GET after expiry: status %d, want 403", code)
	}
}

func mustQuery(t *testing.T, rawURL string) url.Values {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// onlyReader hides a reader's length so the request is sent chunked.
type onlyReader struct{ io.Reader }

func TestHandlerSizeCap(t *testing.T) {
	t.Parallel()
	s, _ := newClockedStore(t) // caps objects at 1 MiB
	ctx := t.Context()
	for name, body := range map[string]func() io.Reader{
		"with Content-Length": func() io.Reader { return bytes.NewReader(make([]byte, 1<<20+1)) },
		"chunked":             func() io.Reader { return onlyReader{bytes.NewReader(make([]byte, 1<<20+1))} },
	} {
		key := "big/" + strings.ReplaceAll(name, " ", "-")
		u, err := s.PresignPut(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if code, _, _ := do(t, http.MethodPut, u, body(), nil); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: status %d, want 413", name, code)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, gef.ErrNotFound) {
			t.Errorf("%s: Stat = %v, want ErrNotFound", name, err)
		}
	}
	// Exactly the cap is fine, chunked or not.
	u, err := s.PresignPut(ctx, "big/exact", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, http.MethodPut, u, onlyReader{bytes.NewReader(make([]byte, 1<<20))}, nil); code != http.StatusOK {
		t.Errorf("PUT of exactly the cap: status %d, want 200", code)
	}
	if info, err := s.Stat(ctx, "big/exact"); err != nil || info.Size != 1<<20 {
		t.Errorf("Stat = %+v, %v; want 1 MiB", info, err)
	}
}

func TestHandlerRefusesInvalidKeyEvenIfSigned(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	s, err := New(filepath.Join(parent, "root"), "http://unused", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	// Sign a traversal key by hand, as a leaked secret would allow.
	exp := time.Now().Add(time.Minute).Unix()
	target := fmt.Sprintf("/../escape?expires=%d&signature=%x", exp, s.sign(http.MethodPut, "../escape", exp))
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPut, "/", strings.NewReader("x"))
	req.URL, err = url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status %d, want 400", rec.Code)
	}
	if _, err := os.Stat(filepath.Join(parent, "escape")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file appeared outside the root: %v", err)
	}
}

func FuzzKey(f *testing.F) {
	for _, seed := range []string{
		"a", "jobs/1/out", "../x", "a/../b", "/abs", "a//b", `a\b`, "a\x00", ".", "..",
		"a/./b", " ", "ü/日本", "%2e%2e/x", ".gef-tmp-1", "a/b/", "....", "a/..b",
	} {
		f.Add(seed)
	}
	root := filepath.Join(f.TempDir(), "root")
	s := &Store{root: root, baseURL: "http://h/o", secret: []byte("k"), now: time.Now}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		path, perr := s.path(key)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ValidateKey(%q) = %v but path gave %v", key, err, perr)
		}
		if err != nil {
			if !errors.Is(err, gef.ErrInvalid) {
				t.Fatalf("ValidateKey(%q) = %v, not wrapping ErrInvalid", key, err)
			}
			return
		}
		rel, rerr := filepath.Rel(root, path)
		if rerr != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Fatalf("key %q resolves to %s, outside root %s", key, path, root)
		}
		if filepath.ToSlash(rel) != key {
			t.Fatalf("key %q resolves to %s, not the key itself", key, rel)
		}
		// The presigned URL's path decodes back to the key.
		raw, perr := s.PresignPut(context.Background(), key, time.Minute)
		if perr != nil {
			t.Fatalf("PresignPut(%q): %v", key, perr)
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("PresignPut(%q) made an unparsable URL %q: %v", key, raw, perr)
		}
		if got := strings.TrimPrefix(u.Path, "/o/"); got != key {
			t.Fatalf("PresignPut(%q) URL path decodes to %q", key, got)
		}
		if verr := s.verify(http.MethodPut, key, u.Query()); verr != nil {
			t.Fatalf("PresignPut(%q) URL does not verify: %v", key, verr)
		}
	})
}

func BenchmarkPut(b *testing.B) {
	s := newTestStore(b)
	ctx := b.Context()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("bench/%d", i%16)
		if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
