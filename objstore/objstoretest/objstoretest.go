// Package objstoretest is the contract every gef.ObjectStore backend
// passes. Each backend's tests call Run with a constructor for a store
// backed by a real service.
package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

// Run runs the contract against the stores newStore returns. Subtests run
// in parallel, each with its own store from newStore and its own keys, so
// newStore may hand out fresh stores or one shared store. newStore should
// register any cleanup with t.Cleanup.
//
// A store's PresignPut URLs must be reachable by a plain http.Client.
func Run(t *testing.T, newStore func(t *testing.T) gef.ObjectStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s gef.ObjectStore, p string)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"UnknownSize", testUnknownSize},
		{"Overwrite", testOverwrite},
		{"Missing", testMissing},
		{"List", testList},
		{"Delete", testDelete},
		{"OddKeys", testOddKeys},
		{"CancelledPut", testCancelledPut},
		{"PresignPut", testPresignPut},
		{"PresignPutExpired", testPresignPutExpired},
		{"PresignPutTampered", testPresignPutTampered},
		{"PresignGet", testPresignGet},
		{"PresignGetTampered", testPresignGetTampered},
		{"Ping", testPing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t), uniquePrefix(t))
		})
	}
}

// uniquePrefix returns a key prefix no other subtest uses.
func uniquePrefix(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random prefix: %v", err)
	}
	return "objstoretest/" + hex.EncodeToString(b) + "/"
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s gef.ObjectStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctxFor(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// get reads the whole object at key and checks that its info agrees.
func get(t *testing.T, s gef.ObjectStore, key string) []byte {
	t.Helper()
	rc, info, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if info.Key != key {
		t.Errorf("Get(%q): info.Key = %q", key, info.Key)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Get(%q): info.Size = %d, read %d bytes", key, info.Size, len(data))
	}
	return data
}

func wantNotFound(t *testing.T, s gef.ObjectStore, key string) {
	t.Helper()
	if _, err := s.Stat(ctxFor(t), key); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Stat(%q) = %v, want an error wrapping gef.ErrNotFound", key, err)
	}
}

func keys(infos []gef.ObjectInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func testRoundTrip(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "jobs/42/out/result.txt"
	data := []byte("hello, object store\n")
	before := time.Now()
	put(t, s, key, data)

	if got := get(t, s, key); !bytes.Equal(got, data) {
		t.Errorf("Get = %q, want %q", got, data)
	}
	info, err := s.Stat(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Errorf("Stat = %+v, want key %q size %d", info, key, len(data))
	}
	// Stores keep whole seconds at best; allow for that and a little skew.
	if info.Modified.Before(before.Add(-time.Minute)) || info.Modified.After(time.Now().Add(time.Minute)) {
		t.Errorf("Stat.Modified = %v, not near %v", info.Modified, before)
	}
}

func testEmpty(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "empty"
	put(t, s, key, nil)
	if got := get(t, s, key); len(got) != 0 {
		t.Errorf("Get = %d bytes, want 0", len(got))
	}
}

// randomBytes is a reproducible stream of n bytes.
func randomBytes(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(mrand.NewChaCha8(s), n)
}

func testUnknownSize(t *testing.T, s gef.ObjectStore, p string) {
	const size = 10 << 20
	key := p + "stream.bin"
	want := sha256.New()
	if _, err := io.Copy(want, randomBytes(1, size)); err != nil {
		t.Fatal(err)
	}
	// Hide every interface but Read, so the store cannot learn the size.
	src := struct{ io.Reader }{randomBytes(1, size)}
	if err := s.Put(ctxFor(t), key, src, -1); err != nil {
		t.Fatalf("Put(size -1): %v", err)
	}
	info, err := s.Stat(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != size {
		t.Errorf("Stat.Size = %d, want %d", info.Size, size)
	}
	rc, _, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got := sha256.New()
	if _, err := io.Copy(got, rc); err != nil {
		t.Fatalf("Get: read: %v", err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Error("Get returned other bytes than were put")
	}
}

func testOverwrite(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "over"
	put(t, s, key, []byte("a much longer first version"))
	put(t, s, key, []byte("second"))
	if got := get(t, s, key); string(got) != "second" {
		t.Errorf("Get = %q, want %q", got, "second")
	}
	infos, err := s.List(ctxFor(t), p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(infos) != 1 || infos[0].Size != 6 {
		t.Errorf("List = %+v, want one object of 6 bytes", infos)
	}
}

func testMissing(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "no/such/object"
	if rc, _, err := s.Get(ctxFor(t), key); !errors.Is(err, gef.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Get = %v, want an error wrapping gef.ErrNotFound", err)
	}
	wantNotFound(t, s, key)
	// A key that is only a prefix of others is no object either.
	put(t, s, p+"dir/file", []byte("x"))
	wantNotFound(t, s, p+"dir")
}

func testList(t *testing.T, s gef.ObjectStore, p string) {
	objs := map[string]string{
		"jobs/a/1":     "one",
		"jobs/a/0":     "zero",
		"jobs/a/2/x":   "deep",
		"jobs/a.txt":   "dot",
		"jobs/ab/1":    "sibling",
		"jobs/b":       "bee",
		"other/a/file": "elsewhere",
	}
	for k, v := range objs {
		put(t, s, p+k, []byte(v))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"jobs/a/", []string{"jobs/a/0", "jobs/a/1", "jobs/a/2/x"}},
		// A bare prefix matches across segments, in byte order: '.' < '/' < 'b'.
		{"jobs/a", []string{"jobs/a.txt", "jobs/a/0", "jobs/a/1", "jobs/a/2/x", "jobs/ab/1"}},
		{"jobs/ab/", []string{"jobs/ab/1"}},
		{"jobs/", []string{"jobs/a.txt", "jobs/a/0", "jobs/a/1", "jobs/a/2/x", "jobs/ab/1", "jobs/b"}},
		{"jobs/a/2/x", []string{"jobs/a/2/x"}},
		{"jobs/c", nil},
		{"nothing/here/", nil},
		{"", []string{"jobs/a.txt", "jobs/a/0", "jobs/a/1", "jobs/a/2/x", "jobs/ab/1", "jobs/b", "other/a/file"}},
	} {
		infos, err := s.List(ctxFor(t), p+tc.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
			continue
		}
		var want []string
		for _, k := range tc.want {
			want = append(want, p+k)
		}
		if got := keys(infos); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, want)
		}
		for _, in := range infos {
			if v := objs[strings.TrimPrefix(in.Key, p)]; in.Size != int64(len(v)) {
				t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, in.Key, in.Size, len(v))
			}
		}
	}
}

func testDelete(t *testing.T, s gef.ObjectStore, p string) {
	ctx := ctxFor(t)
	put(t, s, p+"gone/a", []byte("a"))
	put(t, s, p+"gone/b", []byte("b"))
	if err := s.Delete(ctx, p+"gone/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, p+"gone/a")
	infos, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := keys(infos), []string{p + "gone/b"}; !slices.Equal(got, want) {
		t.Errorf("List after Delete = %q, want %q", got, want)
	}
	if err := s.Delete(ctx, p+"gone/a"); err != nil {
		t.Errorf("Delete of a deleted key: %v", err)
	}
	if err := s.Delete(ctx, p+"never/was"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	// Deleting a prefix of other keys removes nothing.
	if err := s.Delete(ctx, p+"gone"); err != nil {
		t.Errorf("Delete of a prefix: %v", err)
	}
	if got := get(t, s, p+"gone/b"); string(got) != "b" {
		t.Errorf("after deleting its prefix, Get = %q, want %q", got, "b")
	}
	// The deleted key can be used again.
	put(t, s, p+"gone/a", []byte("again"))
	if got := get(t, s, p+"gone/a"); string(got) != "again" {
		t.Errorf("Get after re-Put = %q, want %q", got, "again")
	}
}

func testOddKeys(t *testing.T, s gef.ObjectStore, p string) {
	odd := []string{
		"with space/file name.txt",
		"ünïcödé/日本語/файл.dat",
		"deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p.bin",
		"symbols/+&=@,;~!$'()%25.txt",
		"emoji/🧪 test.json",
	}
	for i, k := range odd {
		put(t, s, p+k, []byte(fmt.Sprintf("object %d", i)))
	}
	for i, k := range odd {
		if got, want := string(get(t, s, p+k)), fmt.Sprintf("object %d", i); got != want {
			t.Errorf("Get(%q) = %q, want %q", k, got, want)
		}
	}
	infos, err := s.List(ctxFor(t), p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var want []string
	for _, k := range odd {
		want = append(want, p+k)
	}
	slices.Sort(want)
	if got := keys(infos); !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

func testCancelledPut(t *testing.T, s gef.ObjectStore, p string) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	key := p + "cancelled"
	if err := s.Put(ctx, key, bytes.NewReader([]byte("never")), 5); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
	wantNotFound(t, s, key)
}

var httpClient = &http.Client{Timeout: time.Minute}

// upload PUTs data to a presigned URL and returns the status code.
func upload(t *testing.T, rawURL string, data []byte) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodPut, rawURL, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("PUT %s: read response: %v", rawURL, err)
	}
	return resp.StatusCode
}

func testPresignPut(t *testing.T, s gef.ObjectStore, p string) {
	for _, key := range []string{p + "upload/result.bin", p + "upload/with space ü/日本.bin"} {
		u, err := s.PresignPut(ctxFor(t), key, 5*time.Minute)
		if err != nil {
			t.Fatalf("PresignPut(%q): %v", key, err)
		}
		data := []byte("uploaded without credentials to " + key)
		if code := upload(t, u, data); code != http.StatusOK {
			t.Fatalf("PUT to presigned URL of %q: status %d, want 200", key, code)
		}
		if got := get(t, s, key); !bytes.Equal(got, data) {
			t.Errorf("Get(%q) after presigned PUT = %q, want %q", key, got, data)
		}
	}
}

func testPresignPutExpired(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "expiring"
	u, err := s.PresignPut(ctxFor(t), key, 2*time.Second)
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	if code := upload(t, u, []byte("in time")); code != http.StatusOK {
		t.Fatalf("PUT before expiry: status %d, want 200", code)
	}
	// Wait for the URL to expire: it must be refused well within a minute.
	deadline := time.Now().Add(time.Minute)
	code := 0
	for time.Now().Before(deadline) {
		if code = upload(t, u, []byte("in time")); code != http.StatusOK {
			break
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	if code != http.StatusForbidden {
		t.Fatalf("PUT after expiry: status %d, want 403", code)
	}
	if code := upload(t, u, []byte("too late")); code != http.StatusForbidden {
		t.Fatalf("PUT after expiry: status %d, want 403", code)
	}
	if got := get(t, s, key); string(got) != "in time" {
		t.Errorf("Get = %q, want the upload made in time", got)
	}
}

func testPresignPutTampered(t *testing.T, s gef.ObjectStore, p string) {
	key := p + "tamper/a.bin"
	signed, err := s.PresignPut(ctxFor(t), key, 5*time.Minute)
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatalf("parse %s: %v", signed, err)
	}
	if !strings.HasSuffix(u.Path, "tamper/a.bin") {
		t.Fatalf("presigned URL path %q does not end in the key", u.Path)
	}
	u.Path = strings.TrimSuffix(u.Path, "a.bin") + "b.bin"
	u.RawPath = ""
	if code := upload(t, u.String(), []byte("forged")); code != http.StatusForbidden {
		t.Errorf("PUT to a URL with another key: status %d, want 403", code)
	}
	wantNotFound(t, s, p+"tamper/b.bin")

	// A PUT URL does not allow a GET.
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet, signed, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", signed, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET on a PUT URL: status %d, want 403", resp.StatusCode)
	}
	wantNotFound(t, s, key)
}

// download GETs a presigned URL and returns the status code and body.
func download(t *testing.T, rawURL string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read response: %v", rawURL, err)
	}
	return resp.StatusCode, body
}

func testPresignGet(t *testing.T, s gef.ObjectStore, p string) {
	for _, key := range []string{p + "images/blob.tar", p + "images/with space ü/日本.tar"} {
		data := make([]byte, 300<<10)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		put(t, s, key, data)
		u, err := s.PresignGet(ctxFor(t), key, 5*time.Minute)
		if err != nil {
			t.Fatalf("PresignGet(%q): %v", key, err)
		}
		code, got := download(t, u)
		if code != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("GET presigned URL of %q: status %d, %d bytes; want 200 and the %d bytes stored", key, code, len(got), len(data))
		}
	}
	// A URL for an object that is not there yet signs fine and answers 404
	// until the object exists.
	key := p + "images/later.tar"
	u, err := s.PresignGet(ctxFor(t), key, 5*time.Minute)
	if err != nil {
		t.Fatalf("PresignGet(absent): %v", err)
	}
	if code, _ := download(t, u); code != http.StatusNotFound {
		t.Errorf("GET of an absent object: status %d, want 404", code)
	}
	put(t, s, key, []byte("now here"))
	if code, got := download(t, u); code != http.StatusOK || string(got) != "now here" {
		t.Errorf("GET after Put: %d %q", code, got)
	}
}

func testPresignGetTampered(t *testing.T, s gef.ObjectStore, p string) {
	put(t, s, p+"secret/a.bin", []byte("a"))
	put(t, s, p+"secret/b.bin", []byte("b"))
	signed, err := s.PresignGet(ctxFor(t), p+"secret/a.bin", 5*time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatalf("parse %s: %v", signed, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "a.bin") + "b.bin"
	u.RawPath = ""
	if code, body := download(t, u.String()); code != http.StatusForbidden {
		t.Errorf("GET of a URL with another key: status %d (%q), want 403", code, body)
	}
	// A GET URL does not allow a PUT.
	if code := upload(t, signed, []byte("overwritten")); code != http.StatusForbidden {
		t.Errorf("PUT on a GET URL: status %d, want 403", code)
	}
	if got := get(t, s, p+"secret/a.bin"); string(got) != "a" {
		t.Errorf("object after a refused PUT = %q", got)
	}
}

func testPing(t *testing.T, s gef.ObjectStore, _ string) {
	if err := s.Ping(ctxFor(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
