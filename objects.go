package gef

import (
	"context"
	"io"
	"time"
)

// ObjectStore keeps results, logs and image blobs. Keys are slash-separated
// paths such as jobs/<id>/<output>/<path>. MinIO/S3 and a local directory
// implement it; both pass the suite in objstore/objstoretest.
type ObjectStore interface {
	// Put stores r under key. size is the byte count, or -1 if unknown.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object at key; the error wraps ErrNotFound if absent.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// Stat describes the object at key; the error wraps ErrNotFound if absent.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix, in key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object at key. Deleting an absent key is no error.
	Delete(ctx context.Context, key string) error
	// PresignPut returns a URL that accepts one HTTP PUT of the object's
	// bytes until ttl passes, so a node can upload without store credentials.
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
	// PresignGet returns a URL that serves the object by HTTP GET until ttl
	// passes, so a node can download an image blob without store
	// credentials.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}
