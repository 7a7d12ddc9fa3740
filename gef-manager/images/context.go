package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/eudat-gef/gef"
)

// CheckContext checks a build context, a tar archive (gzipped or not)
// with a Dockerfile at its root, by the same rules as Inspect: no
// absolute paths, no "..", no links leaving the archive, no special files.
// It returns a digest of the context's content that ignores what does not
// change a build (entry order, times and owners), so the same files give
// the same digest however they were packed.
func CheckContext(r io.Reader, lim Limits) (Context, error) {
	lim.setDefaults()
	zr, err := peekGzip(r)
	if err != nil {
		return Context{}, gef.Invalid(lim.Field, "not a tar archive: %v", err)
	}
	var dockerfile []byte
	entries, err := walk(zr, lim, -1, func(name string, h *tar.Header, tr io.Reader) (bool, error) {
		if name != "Dockerfile" || h.Size > maxDockerfile {
			return false, nil
		}
		// Read through the hashing walk: the Dockerfile counts in the digest.
		b, err := io.ReadAll(tr)
		if err != nil {
			return false, gef.Invalid(lim.Field, "reading the Dockerfile: %v", err)
		}
		dockerfile = b
		return true, nil
	})
	if err != nil {
		return Context{}, err
	}
	// Drain what follows the archive's end, so a gzip stream is checked to
	// its trailer.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return Context{}, gef.Invalid(lim.Field, "the context is cut short: %v", err)
	}
	lines := make([]string, 0, len(entries)+1)
	if dockerfile != nil {
		sum := sha256.Sum256(dockerfile)
		lines = append(lines, fmt.Sprintf("f Dockerfile %o %s", dockerfileMode, hex.EncodeToString(sum[:])))
	}
	for _, w := range entries {
		switch w.e.typ {
		case tar.TypeReg:
			lines = append(lines, fmt.Sprintf("f %s %o %s", w.name, w.mode, w.e.sha256))
		case tar.TypeDir:
			lines = append(lines, fmt.Sprintf("d %s %o", w.name, w.mode))
		case tar.TypeSymlink:
			lines = append(lines, fmt.Sprintf("l %s %s", w.name, w.e.link))
		default:
			lines = append(lines, fmt.Sprintf("h %s %s", w.name, w.e.link))
		}
	}
	if dockerfile == nil {
		return Context{}, gef.Invalid(lim.Field, "the build context has no Dockerfile (of at most %d bytes) at its root", maxDockerfile)
	}
	return Context{Digest: Digest(lines), Dockerfile: dockerfile}, nil
}

// Context is what CheckContext learns of a build context.
type Context struct {
	// Digest identifies the context's content.
	Digest string
	// Dockerfile is the Dockerfile at its root.
	Dockerfile []byte
}

// maxDockerfile bounds the Dockerfile of a build context.
const maxDockerfile = 1 << 20

// dockerfileMode stands for the Dockerfile's mode in the digest, which a
// build does not depend on.
const dockerfileMode = 0o644

// ImageIDsFrom returns the image IDs a Dockerfile's FROM lines name
// directly (FROM sha256:…), in order. Tags and stage names are left out:
// only the engine knows what they mean.
func ImageIDsFrom(dockerfile []byte) []string {
	var ids []string
	for _, line := range strings.Split(string(dockerfile), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.EqualFold(f[0], "FROM") {
			continue
		}
		ref := f[1]
		if strings.HasPrefix(ref, "--") && len(f) > 2 { // FROM --platform=… IMAGE
			ref = f[2]
		}
		if len(ref) == 71 && strings.HasPrefix(ref, "sha256:") && strings.Trim(ref[7:], "0123456789abcdef") == "" {
			ids = append(ids, ref)
		}
	}
	return ids
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
