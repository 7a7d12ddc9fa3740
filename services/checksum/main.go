// Command checksum is GEF's dataset checksum and inventory service. It
// lists every regular file under its dataset input with its size and
// digest, and writes a manifest and a summary. Its output depends only on
// the dataset's bytes, so a rerun on the same data gives identical bytes.
package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

type entry struct {
	Path string
	Size int64
	Sum  string
}

func main() {
	algorithm := flag.String("algorithm", "sha256", "digest: sha256, sha1 or md5")
	include := flag.String("include", "*", "only files whose base name matches this glob")
	in := flag.String("in", "/data", "the dataset directory")
	out := flag.String("out", "/out", "the output directory")
	flag.Parse()
	if err := run(*algorithm, *include, *in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "checksum:", err)
		os.Exit(1)
	}
}

func newHash(name string) (hash.Hash, error) {
	switch name {
	case "sha256":
		return sha256.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	}
	return nil, fmt.Errorf("unknown algorithm %q", name)
}

func run(algorithm, include, in, out string) error {
	if _, err := path.Match(include, ""); err != nil {
		return fmt.Errorf("bad --include pattern: %w", err)
	}
	if _, err := newHash(algorithm); err != nil {
		return err
	}
	var entries []entry
	var total int64
	err := filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if ok, _ := path.Match(include, d.Name()); !ok {
			return nil
		}
		rel, err := filepath.Rel(in, p)
		if err != nil {
			return err
		}
		h, _ := newHash(algorithm)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		entries = append(entries, entry{Path: filepath.ToSlash(rel), Size: n, Sum: hex.EncodeToString(h.Sum(nil))})
		total += n
		fmt.Printf("%s  %s\n", entries[len(entries)-1].Sum, entries[len(entries)-1].Path)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })

	var manifest strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&manifest, "%s\t%d\t%s\n", e.Sum, e.Size, e.Path)
	}
	if err := os.WriteFile(filepath.Join(out, "manifest.tsv"), []byte(manifest.String()), 0o644); err != nil {
		return err
	}
	h, _ := newHash(algorithm)
	h.Write([]byte(manifest.String()))
	summary, _ := json.MarshalIndent(map[string]any{
		"algorithm": algorithm, "files": len(entries), "bytes": total,
		"manifest_digest": hex.EncodeToString(h.Sum(nil)),
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "summary.json"), append(summary, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "checksum: %d files, %d bytes\n", len(entries), total)
	return nil
}
