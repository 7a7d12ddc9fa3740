package volumes

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDataset(t *testing.T) {
	t.Parallel()
	abs, _ := filepath.Abs("rel/dir")
	for _, tc := range []struct {
		in, name, dir, err string
	}{
		{in: "climate=/srv/data/climate", name: "climate", dir: "/srv/data/climate"},
		{in: "a.b_c-1=rel/dir", name: "a.b_c-1", dir: abs},
		{in: "x=/a=b", name: "x", dir: "/a=b"},
		{in: "noequals", err: "want NAME=DIR"},
		{in: "=/srv", err: "want NAME=DIR"},
		{in: "name=", err: "want NAME=DIR"},
		{in: "-bad=/srv", err: "use 1-64"},
		{in: "sp ace=/srv", err: "use 1-64"},
		{in: strings.Repeat("a", 65) + "=/srv", err: "use 1-64"},
	} {
		d, err := ParseDataset(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDataset(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.Name != tc.name || d.Dir != tc.dir {
			t.Errorf("ParseDataset(%q) = %+v, %v", tc.in, d, err)
		}
	}
}

func TestStatAndCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.txt"), "hello")
	write(t, filepath.Join(dir, "sub", "b.bin"), "12345678")
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	d := Dataset{Name: "d", Dir: dir}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	files, size, err := d.Stat(context.Background())
	if err != nil || files != 2 || size != 13 {
		t.Fatalf("Stat = %d files, %d bytes, %v; want 2, 13", files, size, err)
	}
	if err := (Dataset{Name: "f", Dir: filepath.Join(dir, "a.txt")}).Check(); err == nil {
		t.Fatal("a file passed as a dataset directory")
	}
	if err := (Dataset{Name: "m", Dir: filepath.Join(dir, "missing")}).Check(); err == nil {
		t.Fatal("a missing directory passed Check")
	}
}

func TestWalkSkipsLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, "secret")
	write(t, filepath.Join(dir, "z.txt"), "z")
	write(t, filepath.Join(dir, "a", "b.txt"), "bb")
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	files, skipped, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Rel != "a/b.txt" || files[0].Size != 2 || files[1].Rel != "z.txt" {
		t.Fatalf("files = %+v", files)
	}
	if strings.Join(skipped, ",") != "dirlink,escape" {
		t.Fatalf("skipped = %v, want the two links", skipped)
	}
}

func TestRemoveAllWithoutPermissions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	locked := filepath.Join(dir, "job", "out", "locked")
	write(t, filepath.Join(locked, "f"), "x")
	if err := os.Chmod(locked, 0o500); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(filepath.Join(dir, "job")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "job")); !os.IsNotExist(err) {
		t.Fatalf("job dir still there: %v", err)
	}
}

// TestRemoveAllOfAnotherUser removes what a container wrote as another
// uid, in directories that deny everyone else. The agent that drives
// Docker runs as root, which may remove them; this shows RemoveAll does.
func TestRemoveAllOfAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("making files of another uid needs root")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "job", "out", "result")
	write(t, filepath.Join(out, "deep", "er", "f"), "x")
	write(t, filepath.Join(out, "g"), "y")
	err := filepath.WalkDir(filepath.Join(dir, "job", "out"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(out, "deep", "er"), filepath.Join(out, "deep"), out} {
		if err := os.Chmod(p, 0o500); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(filepath.Join(dir, "job")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "job")); !os.IsNotExist(err) {
		t.Fatalf("job dir still there: %v", err)
	}
}

func TestMakeWritable(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "x", "out")
	if err := MakeWritable(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Fatalf("mode = %v, %v", fi.Mode(), err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
