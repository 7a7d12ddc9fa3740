// Package imagebuild builds service images from Go sources with no
// registry: it compiles a static binary and builds a FROM scratch image
// around it on the local engine. Dev mode builds its demo image this way,
// and the tests their test images.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/eudat-gef/gef/gef-node/agent"
)

// GoImage builds the image whose sources are in src: a stdlib-only Go main
// package and a Dockerfile that copies a binary called name. It returns the
// image ID. The Go toolchain must be installed.
func GoImage(ctx context.Context, rt agent.Runtime, src fs.FS, name, tag string, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	ctxTar, err := GoContext(ctx, src, name)
	if err != nil {
		return "", err
	}
	id, err := rt.Build(ctx, bytes.NewReader(ctxTar), tag, log)
	if err != nil {
		return "", fmt.Errorf("imagebuild: build %s: %w", tag, err)
	}
	return id, nil
}

// GoContext compiles the Go main package in src into a static binary called
// name and returns the build context: src's Dockerfile and the binary, as
// a tar with fixed times and owners, so the same sources give the same
// context.
func GoContext(ctx context.Context, src fs.FS, name string) ([]byte, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "gef-imagebuild-")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(tmp)

	dockerfile, err := fs.ReadFile(src, "Dockerfile")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %s: %w", name, err)
	}
	// A module of its own, so the build needs nothing but the standard
	// library, wherever the sources came from.
	srcDir := filepath.Join(tmp, "src")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	goFiles, _ := fs.Glob(src, "*.go")
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := fs.ReadFile(src, f)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
		if err := os.WriteFile(filepath.Join(srcDir, f), b, 0o644); err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
	}
	mod := fmt.Sprintf("module gefservice/%s\n\ngo 1.22\n", name)
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte(mod), 0o644); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	binPath := filepath.Join(tmp, name)
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", binPath, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imagebuild: go build %s: %w\n%s", name, err, out)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	var ctxTar bytes.Buffer
	if err := writeContext(&ctxTar, map[string][]byte{"Dockerfile": dockerfile, name: bin}); err != nil {
		return nil, err
	}
	return ctxTar.Bytes(), nil
}

// writeContext writes a build context with fixed times and owners, so the
// same files make the same context and the engine's cache is hit.
func writeContext(w io.Writer, files map[string][]byte) error {
	tw := tar.NewWriter(w)
	for _, name := range []string{"Dockerfile"} {
		if err := addFile(tw, name, files[name], 0o644); err != nil {
			return err
		}
	}
	for name, b := range files {
		if name == "Dockerfile" {
			continue
		}
		if err := addFile(tw, name, b, 0o755); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("imagebuild: context: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, name string, b []byte, mode int64) error {
	hdr := &tar.Header{Name: path.Clean(name), Mode: mode, Size: int64(len(b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("imagebuild: context: %w", err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("imagebuild: context: %w", err)
	}
	return nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("imagebuild: the Go toolchain is needed to build service images and was not found in PATH")
}
