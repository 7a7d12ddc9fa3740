// Package local implements gef.ObjectStore over a directory on the local
// disk. It is the embedded default in dev mode, where no MinIO runs.
//
// Keys map to files under the root. Put writes a temporary file beside the
// target, syncs it and renames it into place, so a crash never leaves half
// an object visible. Presigned URLs carry an HMAC-SHA256 of the method, key
// and expiry; Handler serves them, so nodes can upload without credentials.
package local

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eudat-gef/gef"
)

// DefaultMaxObjectBytes caps an object uploaded through Handler when
// Store.MaxObjectBytes is zero.
const DefaultMaxObjectBytes int64 = 64 << 30

// tempPrefix starts the names of files that Put has not finished. Keys may
// not have a segment starting with it, so a leftover from a crash can never
// be taken for an object.
const tempPrefix = ".gef-tmp-"

// Store is a gef.ObjectStore over a local directory.
type Store struct {
	root    string
	baseURL string
	secret  []byte

	// MaxObjectBytes caps the size of an object uploaded through Handler;
	// zero means DefaultMaxObjectBytes. Set it before serving.
	MaxObjectBytes int64

	now func() time.Time // for tests of expiry; time.Now by default
}

var _ gef.ObjectStore = (*Store)(nil)

// New opens (creating if needed) a store rooted at root. Presigned URLs
// start with baseURL, the address where Handler is mounted, and are signed
// with secret, which must not be empty.
func New(root string, baseURL string, secret []byte) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("local: %w", gef.Invalid("root", "must not be empty"))
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("local: %w", gef.Invalid("secret", "must not be empty"))
	}
	if baseURL != "" {
		if _, err := url.Parse(baseURL); err != nil {
			return nil, fmt.Errorf("local: %w", gef.Invalid("baseURL", "%v", err))
		}
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local: root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local: create root: %w", err)
	}
	// Walking starts at the root, and a walk does not follow a symlink.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("local: root %s: %w", root, err)
	}
	return &Store{
		root:    abs,
		baseURL: strings.TrimRight(baseURL, "/"),
		secret:  slices.Clone(secret),
		now:     time.Now,
	}, nil
}

// Root returns the absolute directory holding the objects.
func (s *Store) Root() string { return s.root }

func (s *Store) maxObjectBytes() int64 {
	if s.MaxObjectBytes > 0 {
		return s.MaxObjectBytes
	}
	return DefaultMaxObjectBytes
}

// ValidateKey reports whether key may name an object: non-empty, relative,
// slash-separated, with no empty, "." or ".." segments, no backslash or NUL,
// and no segment starting with the reserved temporary-file prefix. The error
// wraps gef.ErrInvalid.
func ValidateKey(key string) error {
	reason := keyProblem(key)
	if reason == "" {
		return nil
	}
	return gef.Invalid("key", "%q: %s", key, reason)
}

func keyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case strings.HasPrefix(key, "/"):
		return "absolute"
	case strings.ContainsRune(key, '\\'):
		return "contains a backslash"
	case strings.ContainsRune(key, 0):
		return "contains NUL"
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return "has an empty segment"
		case seg == "." || seg == "..":
			return "has a " + seg + " segment"
		case strings.HasPrefix(seg, tempPrefix):
			return "has a segment with the reserved prefix " + tempPrefix
		}
	}
	return ""
}

// path returns the file holding key, after validating it.
func (s *Store) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put stores r under key, atomically: the object appears whole or not at
// all. If size is not -1, exactly size bytes are read from r.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size); err != nil {
		return fmt.Errorf("local: put %q: %w", key, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if size < -1 {
		return gef.Invalid("size", "%d is negative", size)
	}
	path, err := s.path(key)
	if err != nil {
		return err
	}
	f, err := s.createTemp(filepath.Dir(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	src := &ctxReader{ctx: ctx, r: r}
	if size >= 0 {
		n, err := io.CopyN(f, src, size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return gef.Invalid("size", "reader ended after %d of %d bytes", n, size)
			}
			return err
		}
	} else if _, err := io.Copy(f, src); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		if isDir(path) {
			return fmt.Errorf("%w: a key below it exists", gef.ErrConflict)
		}
		return err
	}
	committed = true
	// Make the rename itself durable.
	return syncDir(filepath.Dir(path))
}

// createTemp makes a temporary file in dir, creating dir first. A
// concurrent Delete may prune dir between the two steps, so try again then.
func (s *Store) createTemp(dir string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("%w: a prefix of the key is an object", gef.ErrConflict)
			}
			return nil, err
		}
		f, err := os.CreateTemp(dir, tempPrefix+"*")
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt >= 10 {
			return nil, err
		}
	}
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a long copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get opens the object at key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, gef.ObjectInfo, error) {
	f, info, err := s.open(ctx, key)
	if err != nil {
		return nil, gef.ObjectInfo{}, fmt.Errorf("local: get %q: %w", key, err)
	}
	return f, info, nil
}

func (s *Store) open(ctx context.Context, key string) (*os.File, gef.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, gef.ObjectInfo{}, err
	}
	path, err := s.path(key)
	if err != nil {
		return nil, gef.ObjectInfo{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, gef.ObjectInfo{}, notFound(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, gef.ObjectInfo{}, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, gef.ObjectInfo{}, gef.ErrNotFound
	}
	return f, info(key, fi), nil
}

// notFound maps the errors of a missing file, including a path that runs
// through a file, to gef.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %w", gef.ErrNotFound, err)
	}
	return err
}

func info(key string, fi fs.FileInfo) gef.ObjectInfo {
	return gef.ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()}
}

// Stat describes the object at key.
func (s *Store) Stat(ctx context.Context, key string) (gef.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return gef.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", key, err)
	}
	path, err := s.path(key)
	if err != nil {
		return gef.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", key, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return gef.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return gef.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", key, gef.ErrNotFound)
	}
	return info(key, fi), nil
}

// List returns the objects whose keys start with prefix, in key order. The
// prefix is a plain string prefix: "jobs/a" matches "jobs/ab/x" while
// "jobs/a/" does not.
func (s *Store) List(ctx context.Context, prefix string) ([]gef.ObjectInfo, error) {
	out, err := s.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	return out, nil
}

func (s *Store) list(ctx context.Context, prefix string) ([]gef.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A prefix is valid when some key could start with it.
	if prefix != "" {
		if err := ValidateKey(prefix + "x"); err != nil {
			return nil, gef.Invalid("prefix", "%q: no key can start with it", prefix)
		}
	}
	// Walk only the deepest directory the prefix names in full.
	dir := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	out := []gef.ObjectInfo{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// The start is missing or not a directory, or a directory
			// vanished under a concurrent Delete: nothing to list there.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if path == dir && d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip subtrees that cannot hold a match.
			if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return err
		}
		out = append(out, info(key, fi))
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b gef.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Delete removes the object at key and prunes the directories it leaves
// empty. Deleting an absent key is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil // a prefix of other keys, not an object
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("local: delete %q: %w", key, err)
	}
	// Prune empty parents; stop at the first that is not empty.
	for dir := filepath.Dir(path); dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// PresignPut returns a URL under the base URL that accepts one PUT of the
// object's bytes until ttl passes.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	u, err := s.presign(ctx, "PUT", key, ttl)
	if err != nil {
		return "", fmt.Errorf("local: presign put %q: %w", key, err)
	}
	return u, nil
}

// PresignGet returns a URL under the base URL that serves the object by GET
// until ttl passes.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	u, err := s.presign(ctx, "GET", key, ttl)
	if err != nil {
		return "", fmt.Errorf("local: presign get %q: %w", key, err)
	}
	return u, nil
}

func (s *Store) presign(ctx context.Context, method, key string, ttl time.Duration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.baseURL == "" {
		return "", gef.Invalid("baseURL", "not set, so the store cannot presign")
	}
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", gef.Invalid("ttl", "%v is not positive", ttl)
	}
	// Round up so a short ttl is never cut below its length.
	expires := s.now().Add(ttl + time.Second - 1).Unix()
	q := url.Values{}
	q.Set("expires", strconv.FormatInt(expires, 10))
	q.Set("signature", hex.EncodeToString(s.sign(method, key, expires)))
	return s.baseURL + "/" + escapeKey(key) + "?" + q.Encode(), nil
}

// escapeKey escapes each segment of key for a URL path, keeping slashes.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return strings.Join(segs, "/")
}

// sign is the MAC of one presigned request. The method is part of it, so a
// PUT URL cannot be used to GET and vice versa. The fields are joined by
// newlines: the method and the expiry hold none, so the first and the last
// newline delimit the key even if the key holds some.
func (s *Store) sign(method, key string, expires int64) []byte {
	m := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(m, "%s\n%s\n%d", method, key, expires)
	return m.Sum(nil)
}

// verify checks a presigned request's signature and expiry.
func (s *Store) verify(method, key string, q url.Values) error {
	expires, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err != nil {
		return errors.New("missing or malformed expires")
	}
	got, err := hex.DecodeString(q.Get("signature"))
	if err != nil || len(got) == 0 {
		return errors.New("missing or malformed signature")
	}
	if !hmac.Equal(got, s.sign(method, key, expires)) {
		return errors.New("signature does not match")
	}
	if s.now().Unix() > expires {
		return errors.New("URL has expired")
	}
	return nil
}

// Ping checks that the root directory is still there.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: ping: %w", err)
	}
	fi, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("local: ping: %w: %w", gef.ErrUnavailable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("local: ping: %w: %s is not a directory", gef.ErrUnavailable, s.root)
	}
	return nil
}
