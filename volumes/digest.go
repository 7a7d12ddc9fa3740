package volumes

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

// A dataset's digest names its exact content, so a job can record which
// bytes it ran on and a rerun can tell whether they changed. It is defined
// in docs/reproducibility.md precisely enough to recompute with find, sort
// and sha256sum:
//
//   - Every regular file and every symbolic link under the dataset's
//     directory is an entry, named by its slash-separated path relative to
//     the directory. Links are not followed. Directories themselves, and
//     special files (FIFOs, sockets, devices), are not entries.
//   - Entries are sorted by path, comparing bytes.
//   - A regular file is written as PATH NUL SIZE NUL SHA256 NUL, SIZE in
//     decimal and SHA256 in lower-case hex; a link as PATH NUL "link" NUL
//     TARGET NUL. NUL cannot occur in a path, so the manifest is
//     unambiguous whatever the names hold.
//   - The digest is "sha256:" and the hex sha256 of that manifest.

// DigestInfo is what a scan of a dataset found.
type DigestInfo struct {
	Digest  string   // sha256:<hex> of the manifest
	Files   int64    // regular files
	Bytes   int64    // their total size
	Links   int64    // symbolic links, digested by their target text
	Skipped []string // special files, not part of the digest
	Hashed  int64    // files read in full; the rest came from the cache
}

// entry is one line of the manifest.
type entry struct {
	rel    string
	link   string // the target, for a link
	isLink bool
	size   int64
	sum    [32]byte
}

func (e *entry) write(w io.Writer) error {
	var err error
	if e.isLink {
		_, err = fmt.Fprintf(w, "%s\x00link\x00%s\x00", e.rel, e.link)
	} else {
		_, err = fmt.Fprintf(w, "%s\x00%d\x00%s\x00", e.rel, e.size, hex.EncodeToString(e.sum[:]))
	}
	return err
}

// Digest computes the dataset's digest. cache, if not nil, supplies the
// hashes of files unchanged since it last saw them and learns the rest.
func (d Dataset) Digest(ctx context.Context, cache *DigestCache) (DigestInfo, error) {
	info, err := DigestDir(ctx, d.Dir, cache)
	if err != nil {
		return DigestInfo{}, fmt.Errorf("volumes: digest of dataset %s: %w", d.Name, err)
	}
	return info, nil
}

// DigestDir computes the digest of the tree under dir.
func DigestDir(ctx context.Context, dir string, cache *DigestCache) (DigestInfo, error) {
	start := time.Now()
	var (
		info    DigestInfo
		entries []*entry
		toHash  []*entry
		stats   = map[*entry]fileStamp{}
	)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entries = append(entries, &entry{rel: rel, isLink: true, link: target})
			info.Links++
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			e := &entry{rel: rel, size: fi.Size()}
			entries = append(entries, e)
			info.Files++
			info.Bytes += fi.Size()
			st := stampOf(fi)
			stats[e] = st
			if sum, ok := cache.lookup(rel, st); ok {
				e.sum = sum
			} else {
				toHash = append(toHash, e)
			}
		default:
			info.Skipped = append(info.Skipped, rel)
		}
		return nil
	})
	if err != nil {
		return DigestInfo{}, err
	}
	if err := hashAll(ctx, dir, toHash); err != nil {
		return DigestInfo{}, err
	}
	info.Hashed = int64(len(toHash))

	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	h := sha256.New()
	w := bufio.NewWriterSize(h, 64<<10)
	for _, e := range entries {
		if err := e.write(w); err != nil {
			return DigestInfo{}, err
		}
	}
	if err := w.Flush(); err != nil {
		return DigestInfo{}, err
	}
	info.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if cache != nil {
		fresh := make(map[string]cacheEntry, len(stats))
		for e, st := range stats {
			if cache.trustworthy(st, start) {
				fresh[e.rel] = cacheEntry{Stamp: st, Sum: e.sum}
			}
		}
		cache.replace(dir, fresh)
	}
	return info, nil
}

// hashAll fills in the sha256 of files, reading a few at once.
func hashAll(ctx context.Context, dir string, files []*entry) error {
	if len(files) == 0 {
		return nil
	}
	work := make(chan *entry)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), 4, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				sum, n, err := hashFile(filepath.Join(dir, filepath.FromSlash(e.rel)))
				if err == nil && n != e.size {
					err = fmt.Errorf("%s changed size while it was read", e.rel)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				e.sum = sum
			}
		}()
	}
	for _, e := range files {
		if ctx.Err() != nil {
			break
		}
		work <- e
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func hashFile(path string) ([32]byte, int64, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}

// fileStamp is what says a file is unchanged: its size and its
// modification and change times. A write moves the change time, which no
// one can set back, so a file copied with its old mtime still re-hashes.
type fileStamp struct {
	Size  int64
	MTime int64 // unix nanoseconds
	CTime int64
}

func stampOf(fi fs.FileInfo) fileStamp {
	return fileStamp{Size: fi.Size(), MTime: fi.ModTime().UnixNano(), CTime: changeTime(fi)}
}

// DigestCache keeps the sha256 of a dataset's files by their stamp, in one
// file on the node's disk, so a rescan of an unchanged dataset reads only
// metadata. It is safe for concurrent use.
type DigestCache struct {
	file string
	// racy is how recent a change may be for its hash to be trusted later:
	// a file written again within the file system's timestamp granularity
	// keeps its stamp, so hashes of files that young are not kept.
	racy time.Duration

	mu      sync.Mutex
	dir     string
	entries map[string]cacheEntry
	// dirty says the entries differ from the file's: a rescan of an
	// unchanged dataset, which each job makes, writes nothing.
	dirty bool
}

type cacheEntry struct {
	Stamp fileStamp
	Sum   [32]byte
}

type cacheFile struct {
	Version int
	Dir     string
	Entries map[string]cacheEntry
}

const cacheVersion = 1

// OpenDigestCache loads the cache kept in file, or starts an empty one if
// the file is missing or unreadable: a lost cache costs one full re-hash,
// never a wrong digest.
func OpenDigestCache(file string) *DigestCache {
	c := &DigestCache{file: file, racy: 2 * time.Second, entries: map[string]cacheEntry{}}
	f, err := os.Open(file)
	if err != nil {
		return c
	}
	defer f.Close()
	var cf cacheFile
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&cf); err == nil && cf.Version == cacheVersion && cf.Entries != nil {
		c.dir, c.entries = cf.Dir, cf.Entries
	}
	return c
}

func (c *DigestCache) lookup(rel string, st fileStamp) ([32]byte, bool) {
	if c == nil {
		return [32]byte{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[rel]
	if !ok || e.Stamp != st {
		return [32]byte{}, false
	}
	return e.Sum, true
}

func (c *DigestCache) trustworthy(st fileStamp, scanStart time.Time) bool {
	limit := scanStart.Add(-c.racy).UnixNano()
	return st.MTime < limit && st.CTime < limit
}

func (c *DigestCache) replace(dir string, entries map[string]cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir == c.dir && maps.Equal(entries, c.entries) {
		return
	}
	c.dir, c.entries, c.dirty = dir, entries, true
}

// Save writes the cache to its file, atomically, if it changed since it
// was loaded or last saved.
func (c *DigestCache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	cf := cacheFile{Version: cacheVersion, Dir: c.dir, Entries: c.entries}
	if err := os.MkdirAll(filepath.Dir(c.file), 0o755); err != nil {
		return fmt.Errorf("volumes: digest cache: %w", err)
	}
	tmp := c.file + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("volumes: digest cache: %w", err)
	}
	w := bufio.NewWriter(f)
	err = gob.NewEncoder(w).Encode(cf)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("volumes: digest cache: %w", err)
	}
	c.dirty = false
	return nil
}

// errNotDigest marks a string that is not a dataset digest.
var errNotDigest = errors.New("not a sha256:<64 hex> digest")

// CheckDigest reports whether s has the form of a digest.
func CheckDigest(s string) error {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return errNotDigest
	}
	for _, c := range s[len(prefix):] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return errNotDigest
		}
	}
	return nil
}
