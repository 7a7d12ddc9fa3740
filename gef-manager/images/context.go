package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"

	"github.com/eudat-gef/gef"
)

// CheckContext checks a build context, a tar archive (gzipped or not)
// with a Dockerfile at its root, by the same rules as Inspect: no
// absolute paths, no "..", no links leaving the archive, no special files.
// It returns a digest of the context's content that ignores what does not
// change a build (entry order, times and owners), so the same files give
// the same digest however they were packed.
func CheckContext(r io.Reader, lim Limits) (string, error) {
	lim.setDefaults()
	zr, err := peekGzip(r)
	if err != nil {
		return "", gef.Invalid(lim.Field, "not a tar archive: %v", err)
	}
	entries, err := walk(zr, lim, -1, nil)
	if err != nil {
		return "", err
	}
	// Drain what follows the archive's end, so a gzip stream is checked to
	// its trailer.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return "", gef.Invalid(lim.Field, "the context is cut short: %v", err)
	}
	lines := make([]string, 0, len(entries))
	dockerfile := false
	for _, w := range entries {
		switch w.e.typ {
		case tar.TypeReg:
			dockerfile = dockerfile || w.name == "Dockerfile"
			lines = append(lines, fmt.Sprintf("f %s %o %s", w.name, w.mode, w.e.sha256))
		case tar.TypeDir:
			lines = append(lines, fmt.Sprintf("d %s %o", w.name, w.mode))
		case tar.TypeSymlink:
			lines = append(lines, fmt.Sprintf("l %s %s", w.name, w.e.link))
		default:
			lines = append(lines, fmt.Sprintf("h %s %s", w.name, w.e.link))
		}
	}
	if !dockerfile {
		return "", gef.Invalid(lim.Field, "the build context has no Dockerfile at its root")
	}
	return Digest(lines), nil
}

// Digest hashes a set of lines in sorted order, so that the order they
// were gathered in does not matter.
func Digest(lines []string) string {
	sorted := append([]string(nil), lines...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, l := range sorted {
		io.WriteString(h, l)
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
