// Package volumes is how a node lays out what a container sees: the
// datasets it holds on local disk, mounted read-only and never copied, and
// the fresh output directories whose files are staged after the run.
package volumes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dataset is a dataset a node holds: a name and a host directory.
type Dataset struct {
	Name string
	Dir  string // absolute
}

// ParseDataset parses a NAME=DIR flag value.
func ParseDataset(s string) (Dataset, error) {
	name, dir, ok := strings.Cut(s, "=")
	if !ok || name == "" || dir == "" {
		return Dataset{}, fmt.Errorf("volumes: dataset %q: want NAME=DIR", s)
	}
	if !validName(name) {
		return Dataset{}, fmt.Errorf("volumes: dataset name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Dataset{}, fmt.Errorf("volumes: dataset %s: %w", name, err)
	}
	return Dataset{Name: name, Dir: abs}, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != '-') {
			return false
		}
	}
	return true
}

// Check verifies the dataset's directory exists and is a directory.
func (d Dataset) Check() error {
	fi, err := os.Stat(d.Dir)
	if err != nil {
		return fmt.Errorf("volumes: dataset %s: %w", d.Name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("volumes: dataset %s: %s is not a directory", d.Name, d.Dir)
	}
	return nil
}

// Stat counts the dataset's regular files and their bytes. It reads
// metadata only.
func (d Dataset) Stat(ctx context.Context) (files, bytes int64, err error) {
	err = filepath.WalkDir(d.Dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("volumes: scan dataset %s: %w", d.Name, err)
	}
	return files, bytes, nil
}

// File is a file found in an output directory.
type File struct {
	Rel  string // slash-separated, relative to the output directory
	Abs  string
	Size int64
}

// Walk lists the regular files under dir in path order. It never follows a
// symbolic link: links and other special files are returned as skipped,
// so a container cannot make the node upload files outside its outputs.
func Walk(dir string) (files []File, skipped []string, err error) {
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case e.IsDir():
			return nil
		case e.Type().IsRegular():
			fi, err := e.Info()
			if err != nil {
				return err
			}
			files = append(files, File{Rel: rel, Abs: p, Size: fi.Size()})
		default:
			skipped = append(skipped, rel)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("volumes: walk %s: %w", dir, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	return files, skipped, nil
}

// MakeWritable creates dir so that the container's user, whatever its uid,
// can write into it.
func MakeWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	// MkdirAll is subject to the umask; the container's uid is not ours.
	if err := os.Chmod(dir, 0o777); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	return nil
}

// RemoveAll removes dir even when the container left files or directories
// without write permission for us.
func RemoveAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// Grant ourselves write permission on every directory, then retry.
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volumes: remove %s: %w", dir, err)
	}
	return nil
}
