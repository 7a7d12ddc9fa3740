// Package s3 implements gef.ObjectStore over MinIO or any S3-compatible
// service, with one bucket holding every object.
package s3

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/eudat-gef/gef"
)

// Defaults filled in by Config.withDefaults.
const (
	DefaultRegion = "us-east-1"
	// DefaultPartSize is the multipart part size for streams of unknown
	// size. Each such upload buffers one part in memory, and an object may
	// have at most 10,000 parts, so this allows objects up to 160 GiB.
	DefaultPartSize uint64 = 16 << 20
)

// Config locates the bucket and says how to reach it.
type Config struct {
	Endpoint  string // host:port, no scheme
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string // DefaultRegion if empty
	UseSSL    bool   // https rather than http
	// PartSize is the multipart part size used when Put is given size -1;
	// DefaultPartSize if zero. It must be at least 5 MiB.
	PartSize uint64
}

func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	return c
}

// Validate reports the first problem with c, as an error wrapping
// gef.ErrInvalid.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Endpoint == "":
		return fmt.Errorf("s3: %w", gef.Invalid("endpoint", "must not be empty"))
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("s3: %w", gef.Invalid("endpoint", "%q must be host:port without a scheme; set UseSSL for https", c.Endpoint))
	case c.AccessKey == "":
		return fmt.Errorf("s3: %w", gef.Invalid("access_key", "must not be empty"))
	case c.SecretKey == "":
		return fmt.Errorf("s3: %w", gef.Invalid("secret_key", "must not be empty"))
	case c.Bucket == "":
		return fmt.Errorf("s3: %w", gef.Invalid("bucket", "must not be empty"))
	case c.PartSize < 5<<20:
		return fmt.Errorf("s3: %w", gef.Invalid("part_size", "%d is below the S3 minimum of 5 MiB", c.PartSize))
	}
	return nil
}

// Store is a gef.ObjectStore over one S3 bucket.
type Store struct {
	client *minio.Client
	cfg    Config
}

var _ gef.ObjectStore = (*Store)(nil)

// New connects to the service in cfg and creates the bucket if it is
// missing.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.UseSSL,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: client for %s: %w", cfg.Endpoint, err)
	}
	s := &Store{client: client, cfg: cfg}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %s: %w", cfg.Bucket, err)
	}
	if !exists {
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		// Another process may have created it in between.
		if err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
			return nil, fmt.Errorf("s3: create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

// Client returns the underlying MinIO client, for callers needing more
// than gef.ObjectStore offers (tests removing the bucket, for one).
func (s *Store) Client() *minio.Client { return s.client }

// Bucket returns the name of the store's bucket.
func (s *Store) Bucket() string { return s.cfg.Bucket }

func isCode(err error, code string) bool {
	return minio.ToErrorResponse(err).Code == code
}

// wrap prefixes err with the operation and key, adding gef.ErrNotFound to
// the chain when S3 says the key does not exist.
func wrap(op, key string, err error) error {
	if isCode(err, minio.NoSuchKey) {
		return fmt.Errorf("s3: %s %q: %w: %w", op, key, gef.ErrNotFound, err)
	}
	return fmt.Errorf("s3: %s %q: %w", op, key, err)
}

func checkKey(key string) error {
	if key == "" {
		return gef.Invalid("key", "must not be empty")
	}
	return nil
}

// Put stores r under key. With size -1 the stream is uploaded in parts of
// Config.PartSize, one buffered at a time.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return wrap("put", key, err)
	}
	if size < -1 {
		return wrap("put", key, gef.Invalid("size", "%d is negative", size))
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if size < 0 {
		opts.PartSize = s.cfg.PartSize
	}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, key, r, size, opts); err != nil {
		return wrap("put", key, err)
	}
	return nil
}

// Get opens the object at key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, gef.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, gef.ObjectInfo{}, wrap("get", key, err)
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, gef.ObjectInfo{}, wrap("get", key, err)
	}
	// GetObject is lazy: Stat sends the request and reports a missing key.
	oi, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, gef.ObjectInfo{}, wrap("get", key, err)
	}
	return obj, info(oi), nil
}

func info(oi minio.ObjectInfo) gef.ObjectInfo {
	return gef.ObjectInfo{Key: oi.Key, Size: oi.Size, Modified: oi.LastModified}
}

// Stat describes the object at key.
func (s *Store) Stat(ctx context.Context, key string) (gef.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return gef.ObjectInfo{}, wrap("stat", key, err)
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return gef.ObjectInfo{}, wrap("stat", key, err)
	}
	return info(oi), nil
}

// List returns every object whose key starts with prefix, at any depth, in
// key order.
func (s *Store) List(ctx context.Context, prefix string) ([]gef.ObjectInfo, error) {
	// Cancelling stops the listing goroutine if we return early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := []gef.ObjectInfo{}
	for oi := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("s3: list %q: %w", prefix, oi.Err)
		}
		out = append(out, info(oi))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: list %q: %w", prefix, err)
	}
	// S3 lists in UTF-8 byte order already; sort so no backend's quirk leaks.
	slices.SortFunc(out, func(a, b gef.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Delete removes the object at key. Deleting an absent key is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return wrap("delete", key, err)
	}
	err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !isCode(err, minio.NoSuchKey) {
		return wrap("delete", key, err)
	}
	return nil
}

// PresignPut returns a URL that accepts one PUT of the object's bytes until
// ttl passes. S3 allows a ttl from 1 second to 7 days.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", wrap("presign put", key, err)
	}
	u, err := s.client.PresignedPutObject(ctx, s.cfg.Bucket, key, ttl)
	if err != nil {
		return "", wrap("presign put", key, err)
	}
	return u.String(), nil
}

// PresignGet returns a URL that serves the object by GET until ttl passes.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", wrap("presign get", key, err)
	}
	u, err := s.client.PresignedGetObject(ctx, s.cfg.Bucket, key, ttl, nil)
	if err != nil {
		return "", wrap("presign get", key, err)
	}
	return u.String(), nil
}

// Ping checks that the service answers and the bucket exists.
func (s *Store) Ping(ctx context.Context) error {
	exists, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: ping: %w: %w", gef.ErrUnavailable, err)
	}
	if !exists {
		return fmt.Errorf("s3: ping: bucket %s: %w", s.cfg.Bucket, gef.ErrNotFound)
	}
	return nil
}
