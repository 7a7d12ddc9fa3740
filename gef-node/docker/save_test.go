package docker

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	gef "github.com/eudat-gef/gef"
)

// TestSaveImage saves a fresh image, removes it from the engine and loads
// the tarball back: the image comes back under the same ID, which is the
// sha256 of the config the tarball holds.
func TestSaveImage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)

	// An image of this test's own, so removing it disturbs no other test.
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := []byte("FROM " + b.image + "\nLABEL eudat.gef.test.nonce=" + randomHex(8) + "\n")
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write(df)
	tw.Close()
	id, err := b.rt.Build(ctx, &ctxTar, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.rt.RemoveImage(ctx, id) })

	var saved bytes.Buffer
	if err := b.rt.SaveImage(ctx, id, &saved); err != nil {
		t.Fatalf("SaveImage: %v", err)
	}
	// The config entry the manifest names hashes to the image ID.
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(saved.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the saved tarball is not a tar: %v", err)
		}
		if h.Typeflag == tar.TypeReg && (h.Name == "manifest.json" || strings.HasSuffix(h.Name, ".json")) {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	var manifest []struct{ Config string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json = %s (%v)", files["manifest.json"], err)
	}
	sum := sha256.Sum256(files[manifest[0].Config])
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != id {
		t.Fatalf("config %s hashes to %s, want the image ID %s", manifest[0].Config, got, id)
	}

	if err := b.rt.RemoveImage(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.rt.Image(ctx, id); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("Image after RemoveImage = %v, want not found", err)
	}
	ids, err := b.rt.LoadImage(ctx, bytes.NewReader(saved.Bytes()))
	if err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("LoadImage(saved) = %q, %v; want [%s]", ids, err, id)
	}
}

func TestSaveImageRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	if err := b.rt.SaveImage(ctx, testTag, io.Discard); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("SaveImage(a tag) = %v, want ErrInvalid", err)
	}
	missing := "sha256:" + strings.Repeat("0", 64)
	if err := b.rt.SaveImage(ctx, missing, io.Discard); !errors.Is(err, gef.ErrNotFound) || !strings.HasPrefix(err.Error(), "docker: ") {
		t.Errorf("SaveImage(missing) = %v, want a docker: not found error", err)
	}
}
