package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
	"github.com/eudat-gef/gef/objstore/objstoretest"
)

// newTestStore returns a store over a fresh bucket on the test MinIO,
// removed with its objects when t ends.
func newTestStore(t testing.TB) *Store {
	t.Helper()
	mc := testenv.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, Config{
		Endpoint:  mc.Endpoint,
		AccessKey: mc.AccessKey,
		SecretKey: mc.SecretKey,
		Bucket:    testenv.Bucket(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := removeBucket(s); err != nil {
			t.Errorf("remove bucket %s: %v", s.Bucket(), err)
		}
	})
	return s
}

// removeBucket empties the store's bucket and removes it.
func removeBucket(s *Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := s.Client().ListObjects(ctx, s.Bucket(), minio.ListObjectsOptions{Recursive: true})
	for res := range s.Client().RemoveObjects(ctx, s.Bucket(), objs, minio.RemoveObjectsOptions{}) {
		if res.Err != nil {
			return res.Err
		}
	}
	return s.Client().RemoveBucket(ctx, s.Bucket())
}

func TestContract(t *testing.T) {
	t.Parallel()
	objstoretest.Run(t, func(t *testing.T) gef.ObjectStore { return newTestStore(t) })
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "s", Bucket: "b"}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", good, err)
	}
	for name, mutate := range map[string]func(*Config){
		"no endpoint":     func(c *Config) { c.Endpoint = "" },
		"scheme":          func(c *Config) { c.Endpoint = "http://127.0.0.1:9000" },
		"no access key":   func(c *Config) { c.AccessKey = "" },
		"no secret key":   func(c *Config) { c.SecretKey = "" },
		"no bucket":       func(c *Config) { c.Bucket = "" },
		"small part size": func(c *Config) { c.PartSize = 1 << 20 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
		if _, err := New(t.Context(), c); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	if c := good.withDefaults(); c.Region != DefaultRegion || c.PartSize != DefaultPartSize {
		t.Errorf("defaults: region %q part size %d", c.Region, c.PartSize)
	}
}

func TestNewCreatesBucketOnce(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	exists, err := s.Client().BucketExists(t.Context(), s.Bucket())
	if err != nil || !exists {
		t.Fatalf("BucketExists = %v, %v; want true", exists, err)
	}
	// A second store over the same, existing bucket.
	again, err := New(t.Context(), s.cfg)
	if err != nil {
		t.Fatalf("New over an existing bucket: %v", err)
	}
	if err := again.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	mc := testenv.MinIO(t)
	_, err := New(t.Context(), Config{Endpoint: mc.Endpoint, AccessKey: mc.AccessKey, SecretKey: "wrong-secret", Bucket: testenv.Bucket()})
	if err == nil {
		t.Fatal("New with a wrong secret succeeded")
	}
	if got := minio.ToErrorResponse(errors.Unwrap(err)).StatusCode; got != http.StatusForbidden {
		t.Errorf("New with a wrong secret = %v (status %d), want a 403 from S3", err, got)
	}
}

func TestPingMissingBucket(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	other, err := New(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	other.cfg.Bucket = testenv.Bucket() // never created
	if err := other.Ping(ctx); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Ping of a missing bucket = %v, want ErrNotFound", err)
	}
}

func TestPresignGet(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	data := []byte("served by a presigned GET")
	if err := s.Put(ctx, "out/result.txt", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignGet(ctx, "out/result.txt", time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("GET = %d %q, want 200 %q", resp.StatusCode, got, data)
	}
	// A GET URL does not allow a PUT.
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader([]byte("forged")))
	if err != nil {
		t.Fatal(err)
	}
	resp2, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusForbidden {
		t.Errorf("PUT on a GET URL: status %d, want 403", resp2.StatusCode)
	}
}

func TestEmptyKeyInvalid(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	if err := s.Put(t.Context(), "", bytes.NewReader(nil), 0); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("Put with an empty key = %v, want ErrInvalid", err)
	}
	if _, err := s.Stat(t.Context(), ""); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("Stat with an empty key = %v, want ErrInvalid", err)
	}
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
