package volumes

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exampleDigest is the worked example of docs/reproducibility.md.
const exampleDigest = "sha256:03079a4deb763b875aa931422571b4554475bbc1d553c190491d84adc2328b0e"

// recipe is the shell recipe of docs/reproducibility.md, verbatim.
const recipe = `find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z |
  while IFS= read -r -d '' f; do
    p=${f#./}
    if [ -L "$f" ]; then
      printf '%s\0link\0%s\0' "$p" "$(readlink "$f")"
    else
      printf '%s\0%s\0%s\0' "$p" "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)"
    fi
  done | sha256sum | sed 's/^/sha256:/; s/ .*//'`

func tree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func digest(t testing.TB, dir string, cache *DigestCache) DigestInfo {
	t.Helper()
	info, err := DigestDir(context.Background(), dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestDigestWorkedExample pins the documented example, and checks that
// the documented shell recipe gives the same digest as the Go code.
func TestDigestWorkedExample(t *testing.T) {
	t.Parallel()
	dir := tree(t, map[string]string{"hello.txt": "hello\n", "sub/data.csv": "x,y\n1,2\n"})
	info := digest(t, dir, nil)
	if info.Digest != exampleDigest || info.Files != 2 || info.Bytes != 14 {
		t.Fatalf("example: %+v, want %s over 2 files and 14 bytes", info, exampleDigest)
	}
	doc, err := os.ReadFile("../docs/reproducibility.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{exampleDigest, recipe} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Fatalf("docs/reproducibility.md lacks %q", want)
		}
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum to run the recipe with")
	}
	// A link and an awkward name make the recipe earn its keep.
	if err := os.Symlink("hello.txt", filepath.Join(dir, "link to hello")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-b"), []byte("sorted before a/"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", recipe)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recipe: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), digest(t, dir, nil).Digest; got != want {
		t.Fatalf("the shell recipe gives %s, the Go code %s", got, want)
	}
}

func TestDigestDefinition(t *testing.T) {
	t.Parallel()
	base := map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "sub/deeper/c": ""}
	want := digest(t, tree(t, base), nil).Digest
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string)
		same   bool
	}{
		{"identical copy", func(t *testing.T, dir string) {}, true},
		{"an empty directory does not count", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a FIFO is skipped", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
				t.Skip("no FIFOs here:", err)
			}
		}, true},
		{"one byte changed", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alphb"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a file renamed", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, "a.txt"), filepath.Join(dir, "A.txt")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"an empty file added", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a link added", func(t *testing.T, dir string) {
			if err := os.Symlink("a.txt", filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"mode and times do not count", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a.txt")
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tree(t, base)
			tc.change(t, dir)
			got := digest(t, dir, nil)
			if (got.Digest == want) != tc.same {
				t.Fatalf("digest %s, base %s; want same=%v", got.Digest, want, tc.same)
			}
		})
	}
}

func TestDigestLinkTargetCounts(t *testing.T) {
	t.Parallel()
	a, b := tree(t, map[string]string{"x": "x"}), tree(t, map[string]string{"x": "x"})
	if err := os.Symlink("x", filepath.Join(a, "l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(b, "l")); err != nil {
		t.Fatal(err)
	}
	da, db := digest(t, a, nil), digest(t, b, nil)
	if da.Digest == db.Digest || da.Links != 1 || da.Files != 1 {
		t.Fatalf("links to other targets: %+v %+v", da, db)
	}
}

func TestDigestCache(t *testing.T) {
	t.Parallel()
	dir := tree(t, map[string]string{"a": "aaaa", "b/c": "cccc", "d": "dddd"})
	cacheFile := filepath.Join(t.TempDir(), "cache")
	cache := OpenDigestCache(cacheFile)
	cache.racy = 0
	cold := digest(t, dir, cache)
	if cold.Hashed != 3 {
		t.Fatalf("cold scan hashed %d files, want 3", cold.Hashed)
	}
	if err := cache.Save(); err != nil {
		t.Fatal(err)
	}
	reopened := OpenDigestCache(cacheFile)
	reopened.racy = 0
	warm := digest(t, dir, reopened)
	if warm.Hashed != 0 || warm.Digest != cold.Digest {
		t.Fatalf("warm scan: %+v, want no file hashed and digest %s", warm, cold.Digest)
	}
	// An unchanged dataset leaves the file alone: a job's scan writes nothing.
	if err := os.WriteFile(cacheFile, []byte("marker"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reopened.Save(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cacheFile); string(b) != "marker" {
		t.Fatalf("an unchanged cache was written again (%d bytes)", len(b))
	}

	// Same size, and the modification time put back: the change time
	// still gives the write away.
	p := filepath.Join(dir, "b", "c")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("CCCC"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	changed := digest(t, dir, reopened)
	if changed.Digest == cold.Digest || changed.Hashed != 1 {
		t.Fatalf("after an in-place write: %+v", changed)
	}
	if fresh := digest(t, dir, nil); fresh.Digest != changed.Digest {
		t.Fatalf("cached %s, uncached %s", changed.Digest, fresh.Digest)
	}

	// Files changed just now are not trusted to the cache.
	young := OpenDigestCache(filepath.Join(t.TempDir(), "cache"))
	digest(t, dir, young)
	if again := digest(t, dir, young); again.Hashed != 3 {
		t.Fatalf("files younger than the racy window came from the cache: hashed %d", again.Hashed)
	}

	// A corrupt cache file is an empty cache, not an error.
	if err := os.WriteFile(cacheFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := digest(t, dir, OpenDigestCache(cacheFile)); got.Digest != changed.Digest {
		t.Fatalf("with a corrupt cache: %s", got.Digest)
	}
}

func TestCheckDigest(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{
		exampleDigest:                       true,
		"sha256:" + strings.Repeat("A", 64): false,
		"sha256:abc":                        false,
		"md5:" + strings.Repeat("a", 64):    false,
		"":                                  false,
	} {
		if got := CheckDigest(s) == nil; got != ok {
			t.Errorf("CheckDigest(%q) ok=%v, want %v", s, got, ok)
		}
	}
}

// BenchmarkDigest measures a scan of 256 files of 256 KiB (64 MiB), cold
// (every file hashed) and warm (the cache answers; only metadata is read).
func BenchmarkDigest(b *testing.B) {
	dir := b.TempDir()
	buf := make([]byte, 256<<10)
	for i := range 256 {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%16), fmt.Sprintf("f%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(256 * 256 << 10)
		for b.Loop() {
			digest(b, dir, nil)
		}
	})
	b.Run("warm", func(b *testing.B) {
		cache := OpenDigestCache(filepath.Join(b.TempDir(), "cache"))
		cache.racy = 0
		digest(b, dir, cache)
		b.SetBytes(256 * 256 << 10)
		for b.Loop() {
			if info := digest(b, dir, cache); info.Hashed != 0 {
				b.Fatalf("warm scan hashed %d files", info.Hashed)
			}
		}
	})
}
