// Package images reads service images as the manager receives them: it
// checks `docker save` tarballs and build contexts entry by entry before
// anything trusts them, and fetches images from OCI/Docker registries into
// the same tarball form. Every refusal is a *gef.InvalidError naming the
// request field, so the API answers it with a 4xx.
package images

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// Limits bound what Inspect and CheckContext accept. Zero fields take the
// defaults stated.
type Limits struct {
	// Field names the request field in errors. Default "image".
	Field string
	// MaxEntries bounds the entries of one archive. Default 100,000.
	MaxEntries int
	// MaxMetadataBytes bounds manifest.json and the image config. Default
	// 8 MiB.
	MaxMetadataBytes int64
}

func (l *Limits) setDefaults() {
	if l.Field == "" {
		l.Field = "image"
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = 100_000
	}
	if l.MaxMetadataBytes == 0 {
		l.MaxMetadataBytes = 8 << 20
	}
}

// Image is what a `docker save` tarball holds, as far as GEF cares.
type Image struct {
	// ID is the image ID: "sha256:" and the hex sha256 of the config. It
	// survives save and load, and it is what a node verifies.
	ID         string
	Labels     map[string]string
	Entrypoint []string
	Cmd        []string
	User       string
	RepoTags   []string
	// Layers is the number of layers; LayerBytes their stored size.
	Layers     int
	LayerBytes int64
}

// entry is what the first pass learns of one archive member.
type entry struct {
	typ    byte
	link   string // for links: the archive path it resolves to
	size   int64
	sha256 string // of the stored bytes, for regular files
	gzip   bool   // the stored bytes start with the gzip magic
}

// Inspect checks a `docker save` tarball and returns the one image it
// holds. It refuses, naming the entry:
//   - entries with absolute paths, ".." segments or links that leave the
//     archive;
//   - devices, FIFOs and other special files;
//   - entries larger than the tarball itself, and duplicate entries;
//   - a tarball holding no image, or more than one;
//   - layers whose content does not hash to the config's diff_ids, so the
//     engine that loads the tarball gets exactly the image whose ID is
//     returned.
//
// r is read twice: once to check and hash every entry, once for the config
// and for the content of compressed layers.
func Inspect(r io.ReadSeeker, lim Limits) (Image, error) {
	lim.setDefaults()
	inv := func(format string, args ...any) error { return gef.Invalid(lim.Field, format, args...) }
	total, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	var manifestJSON []byte
	walked, err := walk(r, lim, total, func(name string, h *tar.Header, tr io.Reader) (bool, error) {
		if name != "manifest.json" || (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) {
			return false, nil
		}
		if h.Size > lim.MaxMetadataBytes {
			return false, inv("manifest.json has %d bytes, more than the %d allowed", h.Size, lim.MaxMetadataBytes)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return false, inv("reading manifest.json: %v", err)
		}
		manifestJSON = b
		return true, nil
	})
	if err != nil {
		return Image{}, err
	}
	entries := make(map[string]*entry, len(walked))
	for _, w := range walked {
		entries[w.name] = w.e
	}
	if manifestJSON == nil {
		return Image{}, inv("not a docker save tarball: it has no manifest.json")
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(manifestJSON, &manifest); err != nil {
		return Image{}, inv("manifest.json is not a docker save manifest: %v", err)
	}
	if len(manifest) != 1 {
		return Image{}, inv("the tarball holds %d images; save exactly one (docker save IMAGE_ID)", len(manifest))
	}
	m := manifest[0]
	configName, err := resolve(entries, m.Config, lim)
	if err != nil {
		return Image{}, err
	}
	if entries[configName].size > lim.MaxMetadataBytes {
		return Image{}, inv("the image config %s has %d bytes, more than the %d allowed", m.Config, entries[configName].size, lim.MaxMetadataBytes)
	}
	layerNames := make([]string, len(m.Layers))
	var layerBytes int64
	for i, l := range m.Layers {
		if layerNames[i], err = resolve(entries, l, lim); err != nil {
			return Image{}, err
		}
		layerBytes += entries[layerNames[i]].size
	}

	// Second pass: the config, and the uncompressed digest of any gzipped
	// layer (an uncompressed layer's digest is the one already taken).
	need := map[string]bool{configName: true}
	for _, n := range layerNames {
		if entries[n].gzip {
			need[n] = true
		}
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	var config []byte
	diffs := map[string]string{}
	tr := tar.NewReader(r)
	for len(need) > 0 {
		h, err := tr.Next()
		if err != nil {
			return Image{}, inv("the tarball changed while it was read: %v", err)
		}
		name := entryName(h.Name)
		if !need[name] || h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		delete(need, name)
		if name == configName {
			if config, err = io.ReadAll(io.LimitReader(tr, lim.MaxMetadataBytes)); err != nil {
				return Image{}, inv("reading the config %s: %v", name, err)
			}
			continue
		}
		zr, err := gzip.NewReader(tr)
		if err != nil {
			return Image{}, inv("layer %s looks gzipped but is not: %v", name, err)
		}
		h256 := sha256.New()
		if _, err := io.Copy(h256, zr); err != nil {
			return Image{}, inv("layer %s: %v", name, err)
		}
		diffs[name] = hex.EncodeToString(h256.Sum(nil))
	}

	sum := sha256.Sum256(config)
	img := Image{ID: "sha256:" + hex.EncodeToString(sum[:]), RepoTags: m.RepoTags, Layers: len(m.Layers), LayerBytes: layerBytes}
	var cfg struct {
		OS     string `json:"os"`
		Config struct {
			Labels     map[string]string
			Entrypoint []string
			Cmd        []string
			User       string
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return Image{}, inv("the image config %s is not JSON: %v", m.Config, err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return Image{}, inv("the image is for %s; GEF nodes run linux images", cfg.OS)
	}
	if len(cfg.RootFS.DiffIDs) != len(layerNames) {
		return Image{}, inv("the config lists %d layers and the manifest %d", len(cfg.RootFS.DiffIDs), len(layerNames))
	}
	for i, n := range layerNames {
		got := entries[n].sha256
		if d, ok := diffs[n]; ok {
			got = d
		}
		if want := cfg.RootFS.DiffIDs[i]; "sha256:"+got != want {
			return Image{}, inv("layer %d (%s) has digest sha256:%s, but the config says %s", i+1, m.Layers[i], got, want)
		}
	}
	img.Labels, img.Entrypoint, img.Cmd, img.User = cfg.Config.Labels, cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.User
	if img.Labels == nil {
		img.Labels = map[string]string{}
	}
	return img, nil
}

// walked is one checked archive entry.
type walked struct {
	name string
	mode int64
	e    *entry
}

// walk reads every entry of a tar stream, checking it and hashing regular
// files, and returns them in archive order. consume may read an entry's
// bytes itself and say so; such an entry is left out of the result.
func walk(r io.Reader, lim Limits, total int64, consume func(name string, h *tar.Header, tr io.Reader) (bool, error)) ([]walked, error) {
	inv := func(format string, args ...any) error { return gef.Invalid(lim.Field, format, args...) }
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var out []walked
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, inv("the archive is empty")
			}
			return out, nil
		}
		if err != nil {
			return nil, inv("not a valid tar archive: %v", err)
		}
		if n >= lim.MaxEntries {
			return nil, inv("the archive has more than %d entries", lim.MaxEntries)
		}
		if h.Typeflag == tar.TypeDir && (entryName(h.Name) == "." || entryName(h.Name) == "") {
			continue // the archive's root, as `tar -C dir .` writes it
		}
		name, err := checkName(h.Name, lim)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, inv("entry %q appears twice", h.Name)
		}
		seen[name] = true
		if h.Size < 0 || (total >= 0 && h.Size > total) {
			return nil, inv("entry %q claims %d bytes, more than the whole archive", h.Name, h.Size)
		}
		e := &entry{typ: h.Typeflag, size: h.Size}
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, walked{name, h.Mode & 0o7777, e})
			continue
		case tar.TypeSymlink, tar.TypeLink:
			if e.link, err = checkLink(name, h.Linkname, h.Typeflag == tar.TypeSymlink, lim); err != nil {
				return nil, err
			}
			e.size = 0
			out = append(out, walked{name, 0, e})
			continue
		case tar.TypeReg, tar.TypeRegA:
			e.typ = tar.TypeReg
		default:
			return nil, inv("entry %q is a %s; only files, directories and links are allowed", h.Name, typeName(h.Typeflag))
		}
		if consume != nil {
			done, err := consume(name, h, tr)
			if err != nil {
				return nil, err
			}
			if done {
				continue
			}
		}
		hashed := &hashingReader{r: tr, h: sha256.New()}
		if _, err := io.Copy(io.Discard, hashed); err != nil {
			return nil, inv("entry %q: %v", h.Name, err)
		}
		e.sha256, e.gzip = hex.EncodeToString(hashed.h.Sum(nil)), hashed.gzip()
		out = append(out, walked{name, h.Mode & 0o7777, e})
	}
}

// hashingReader hashes what is read through it and keeps its first bytes.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	head []byte
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.h.Write(p[:n])
		if len(h.head) < 2 {
			h.head = append(h.head, p[:min(n, 2-len(h.head))]...)
		}
		h.n += int64(n)
	}
	return n, err
}

func (h *hashingReader) gzip() bool {
	return len(h.head) == 2 && h.head[0] == 0x1f && h.head[1] == 0x8b
}

// entryName is an entry's name as the archive means it: without a leading
// "./" or a trailing slash.
func entryName(raw string) string {
	return strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
}

// checkName refuses entry names that could land outside the directory an
// archive is unpacked in, and returns the name in canonical form.
func checkName(raw string, lim Limits) (string, error) {
	name := entryName(raw)
	switch {
	case name == "" || name == ".":
		return "", gef.Invalid(lim.Field, "an entry has an empty name")
	case !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\\"):
		return "", gef.Invalid(lim.Field, "entry %q has a NUL, a backslash or invalid UTF-8 in its name", raw)
	case strings.HasPrefix(name, "/"):
		return "", gef.Invalid(lim.Field, "entry %q has an absolute path", raw)
	case len(name) > 4096:
		return "", gef.Invalid(lim.Field, "entry %q has a name longer than 4096 bytes", raw[:64]+"…")
	case escapes(name):
		return "", gef.Invalid(lim.Field, "entry %q climbs out of the archive with ..", raw)
	case path.Clean(name) != name:
		return "", gef.Invalid(lim.Field, "entry %q has an unclean path", raw)
	}
	return name, nil
}

func escapes(p string) bool {
	return p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..")
}

// checkLink checks a link's target and returns the archive path it points
// at. A symlink's target is relative to the link's directory; a hard
// link's is an archive path.
func checkLink(name, target string, symbolic bool, lim Limits) (string, error) {
	if target == "" || strings.ContainsRune(target, 0) {
		return "", gef.Invalid(lim.Field, "link %q has an empty target", name)
	}
	if path.IsAbs(target) {
		return "", gef.Invalid(lim.Field, "link %q points at the absolute path %q", name, target)
	}
	resolved := path.Clean(target)
	if symbolic {
		resolved = path.Join(path.Dir(name), target)
	}
	if escapes(resolved) || resolved == "." {
		return "", gef.Invalid(lim.Field, "link %q points at %q, outside the archive", name, target)
	}
	return resolved, nil
}

// resolve follows links from an archive path named in the manifest to the
// regular file holding its bytes.
func resolve(entries map[string]*entry, name string, lim Limits) (string, error) {
	cur, err := checkName(name, lim)
	if err != nil {
		return "", gef.Invalid(lim.Field, "manifest.json names %q: %v", name, err.(*gef.InvalidError).Reason)
	}
	for hops := 0; hops < 16; hops++ {
		e, ok := entries[cur]
		switch {
		case !ok:
			return "", gef.Invalid(lim.Field, "manifest.json names %q, which the tarball does not hold", name)
		case e.typ == tar.TypeReg:
			return cur, nil
		case e.link == "":
			return "", gef.Invalid(lim.Field, "manifest.json names %q, which is not a file", name)
		}
		cur = e.link
	}
	return "", gef.Invalid(lim.Field, "manifest.json names %q, a chain of more than 16 links", name)
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// peekGzip wraps r in a gunzip reader if it starts with the gzip magic.
func peekGzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}
