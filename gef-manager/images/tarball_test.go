package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// member is one entry of a test archive.
type member struct {
	name string
	typ  byte
	link string
	data []byte
	size int64 // overrides len(data) in the header when non-zero
}

func archive(t testing.TB, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.link, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// image is a well-formed test image: its layers, config and manifest.
type image struct {
	layers   [][]byte // uncompressed layer tars
	labels   map[string]string
	config   []byte
	manifest []byte
	id       string
}

func newImage(t testing.TB, labels map[string]string, layerFiles ...string) *image {
	t.Helper()
	img := &image{labels: labels}
	var diffs []string
	for _, f := range layerFiles {
		l := archive(t, member{name: f, data: []byte("content of " + f)})
		img.layers = append(img.layers, l)
		diffs = append(diffs, "sha256:"+sha(l))
	}
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": labels, "Entrypoint": []string{"/svc"}, "Cmd": []string{"--x"}, "User": "1000"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffs},
	}
	img.config, _ = json.Marshal(cfg)
	img.id = "sha256:" + sha(img.config)
	return img
}

// save packs img as docker save does (legacy layout), with one layer
// directory per layer.
func (img *image) save(t testing.TB) []byte {
	t.Helper()
	members, layers := img.members()
	img.manifest, _ = json.Marshal([]map[string]any{{"Config": img.id[7:] + ".json", "RepoTags": []string{"x/y:1"}, "Layers": layers}})
	return archive(t, append(members, member{name: "manifest.json", data: img.manifest})...)
}

func (img *image) members() ([]member, []string) {
	var members []member
	var layers []string
	for i, l := range img.layers {
		dir := sha(append(l, byte(i)))
		members = append(members, member{name: dir + "/", typ: tar.TypeDir},
			member{name: dir + "/VERSION", data: []byte("1.0")}, member{name: dir + "/layer.tar", data: l})
		layers = append(layers, dir+"/layer.tar")
	}
	members = append(members, member{name: img.id[7:] + ".json", data: img.config})
	return members, layers
}

func withManifest(t testing.TB, members []member, manifest any) []byte {
	b, _ := json.Marshal(manifest)
	return archive(t, append(members, member{name: "manifest.json", data: b})...)
}

func inspect(b []byte) (Image, error) { return Inspect(bytes.NewReader(b), Limits{}) }

func TestInspect(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"eudat.gef.service.name": "Test", "eudat.gef.service.version": "1"}
	img := newImage(t, labels, "bin/svc", "etc/conf")

	t.Run("docker save layout", func(t *testing.T) {
		got, err := inspect(img.save(t))
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != img.id || got.Labels["eudat.gef.service.name"] != "Test" || got.Layers != 2 ||
			strings.Join(got.Entrypoint, " ") != "/svc" || strings.Join(got.Cmd, " ") != "--x" || got.User != "1000" ||
			strings.Join(got.RepoTags, ",") != "x/y:1" {
			t.Fatalf("Inspect = %+v, want ID %s and the config's fields", got, img.id)
		}
	})
	t.Run("gzipped layers named by digest, config named sha256:", func(t *testing.T) {
		// The layout go-containerregistry's tarball.Write produces.
		var members []member
		var layers []string
		for _, l := range img.layers {
			z := gz(t, l)
			members = append(members, member{name: sha(z) + ".tar.gz", data: z})
			layers = append(layers, sha(z)+".tar.gz")
		}
		members = append(members, member{name: img.id, data: img.config})
		got, err := inspect(withManifest(t, members, []map[string]any{{"Config": img.id, "Layers": layers}}))
		if err != nil || got.ID != img.id {
			t.Fatalf("Inspect = %+v, %v", got, err)
		}
	})
	t.Run("a layer shared through a symlink", func(t *testing.T) {
		twice := newImage(t, labels, "same", "same")
		members, layers := twice.members()
		// docker save links a repeated layer to its first copy.
		kept := members[:0]
		for _, m := range members {
			if m.name != layers[1] {
				kept = append(kept, m)
			}
		}
		kept = append(kept, member{name: layers[1], typ: tar.TypeSymlink, link: "../" + layers[0]})
		got, err := inspect(withManifest(t, kept, []map[string]any{{"Config": twice.id[7:] + ".json", "Layers": layers}}))
		if err != nil || got.ID != twice.id || got.Layers != 2 {
			t.Fatalf("Inspect = %+v, %v", got, err)
		}
	})
	t.Run("./-prefixed names", func(t *testing.T) {
		members, layers := img.members()
		for i := range members {
			members[i].name = "./" + members[i].name
		}
		got, err := inspect(withManifest(t, members, []map[string]any{{"Config": img.id[7:] + ".json", "Layers": layers}}))
		if err != nil || got.ID != img.id {
			t.Fatalf("Inspect = %+v, %v", got, err)
		}
	})
}

func TestInspectRefusals(t *testing.T) {
	t.Parallel()
	img := newImage(t, map[string]string{"a": "b"}, "f")
	members, layers := img.members()
	goodManifest := []map[string]any{{"Config": img.id[7:] + ".json", "Layers": layers}}
	other := newImage(t, nil, "g")
	otherMembers, otherLayers := other.members()

	tamperedLayer := append([]member(nil), members...)
	for i := range tamperedLayer {
		if strings.HasSuffix(tamperedLayer[i].name, "layer.tar") {
			tamperedLayer[i].data = archive(t, member{name: "f", data: []byte("something else")})
		}
	}
	for _, tc := range []struct {
		name string
		tar  []byte
		says string
	}{
		{"not a tar", []byte("this is not a tarball at all, just some text that is long enough to fill a header block or so"), "not a valid tar archive"},
		{"empty archive", archive(t), "empty"},
		{"no manifest", archive(t, members...), "no manifest.json"},
		{"absolute path", withManifest(t, append(members, member{name: "/etc/passwd", data: []byte("x")}), goodManifest), "absolute path"},
		{"dot-dot", withManifest(t, append(members, member{name: "a/../../etc/passwd", data: []byte("x")}), goodManifest), "climbs out"},
		{"dot-dot at the start", withManifest(t, append(members, member{name: "../x", data: []byte("x")}), goodManifest), "climbs out"},
		{"unclean path", withManifest(t, append(members, member{name: "a//b", data: []byte("x")}), goodManifest), "unclean"},
		{"symlink to an absolute path", withManifest(t, append(members, member{name: "evil", typ: tar.TypeSymlink, link: "/etc/shadow"}), goodManifest), "absolute path"},
		{"symlink escaping", withManifest(t, append(members, member{name: "a/evil", typ: tar.TypeSymlink, link: "../../etc"}), goodManifest), "outside the archive"},
		{"hard link escaping", withManifest(t, append(members, member{name: "evil", typ: tar.TypeLink, link: "../outside"}), goodManifest), "outside the archive"},
		{"device", withManifest(t, append(members, member{name: "dev", typ: tar.TypeChar}), goodManifest), "character device"},
		{"fifo", withManifest(t, append(members, member{name: "fifo", typ: tar.TypeFifo}), goodManifest), "FIFO"},
		{"duplicate entry", withManifest(t, append(members, members[len(members)-1]), goodManifest), "appears twice"},
		{"two images", withManifest(t, append(members, otherMembers...), []map[string]any{goodManifest[0],
			{"Config": other.id[7:] + ".json", "Layers": otherLayers}}), "holds 2 images"},
		{"no image", withManifest(t, members, []any{}), "holds 0 images"},
		{"manifest not JSON", archive(t, append(members, member{name: "manifest.json", data: []byte("{")})...), "not a docker save manifest"},
		{"config missing", withManifest(t, members, []map[string]any{{"Config": "missing.json", "Layers": layers}}), "does not hold"},
		{"config path escaping", withManifest(t, members, []map[string]any{{"Config": "../x.json", "Layers": layers}}), "climbs out"},
		{"layer missing", withManifest(t, members, []map[string]any{{"Config": img.id[7:] + ".json", "Layers": []string{"nope/layer.tar"}}}), "does not hold"},
		{"layer count differs", withManifest(t, members, []map[string]any{{"Config": img.id[7:] + ".json", "Layers": []string{}}}), "lists 1 layers and the manifest 0"},
		{"tampered layer", withManifest(t, tamperedLayer, goodManifest), "but the config says"},
		{"link loop", withManifest(t, append(members, member{name: "l1", typ: tar.TypeSymlink, link: "l2"}, member{name: "l2", typ: tar.TypeSymlink, link: "l1"}),
			[]map[string]any{{"Config": "l1", "Layers": layers}}), "chain of more than 16 links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := inspect(tc.tar)
			var inv *gef.InvalidError
			if !errors.As(err, &inv) || inv.Field != "image" || !strings.Contains(inv.Reason, tc.says) {
				t.Fatalf("Inspect = %v, want an invalid image saying %q", err, tc.says)
			}
		})
	}
}

func TestInspectOversizedEntry(t *testing.T) {
	t.Parallel()
	img := newImage(t, nil, "f")
	b := img.save(t)
	// Patch the first header's size field to claim far more than there is,
	// and fix its checksum.
	hdr := b[:512]
	copy(hdr[124:136], "77777777777\x00")
	copy(hdr[148:156], "        ")
	var sum int64
	for _, c := range hdr {
		sum += int64(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	_, err := inspect(b)
	if !errors.Is(err, gef.ErrInvalid) || !strings.Contains(err.Error(), "more than the whole archive") {
		t.Fatalf("Inspect(oversized entry) = %v", err)
	}
}

func TestCheckContext(t *testing.T) {
	t.Parallel()
	df := member{name: "Dockerfile", data: []byte("FROM scratch\nCOPY x /x\n")}
	x := member{name: "x", data: []byte("x")}
	plain := archive(t, df, x)
	reordered := archive(t, member{name: "./x", data: []byte("x")}, member{name: "./", typ: tar.TypeDir}, member{name: "./Dockerfile", data: df.data})
	c1, err := CheckContext(bytes.NewReader(plain), Limits{Field: "context"})
	if err != nil || string(c1.Dockerfile) != string(df.data) {
		t.Fatalf("CheckContext = %+v, %v", c1, err)
	}
	c2, err := CheckContext(bytes.NewReader(gz(t, reordered)), Limits{Field: "context"})
	if err != nil {
		t.Fatal(err)
	}
	// A "./" directory entry is the root and is skipped, so the reordered
	// archive, gzipped or not, has plain's digest.
	c3, err := CheckContext(bytes.NewReader(reordered), Limits{Field: "context"})
	if err != nil || c2.Digest != c3.Digest || c1.Digest != c2.Digest {
		t.Fatalf("digests %s %s %s (%v): packing changed the digest", c1.Digest, c2.Digest, c3.Digest, err)
	}
	changed, err := CheckContext(bytes.NewReader(archive(t, df, member{name: "x", data: []byte("y")})), Limits{})
	if err != nil || changed.Digest == c1.Digest || !strings.HasPrefix(c1.Digest, "sha256:") {
		t.Fatalf("digests %s and %s (%v): a changed file must change the digest", c1.Digest, changed.Digest, err)
	}
	otherDockerfile, err := CheckContext(bytes.NewReader(archive(t, member{name: "Dockerfile", data: []byte("FROM scratch\n")}, x)), Limits{})
	if err != nil || otherDockerfile.Digest == c1.Digest {
		t.Fatalf("a changed Dockerfile must change the digest: %v", err)
	}
	for _, tc := range []struct {
		name string
		tar  []byte
		says string
	}{
		{"no Dockerfile", archive(t, x), "no Dockerfile"},
		{"Dockerfile in a subdirectory", archive(t, member{name: "sub/Dockerfile", data: df.data}), "no Dockerfile"},
		{"absolute path", archive(t, df, member{name: "/x", data: []byte("x")}), "absolute path"},
		{"dot-dot", archive(t, df, member{name: "../x", data: []byte("x")}), "climbs out"},
		{"escaping symlink", archive(t, df, member{name: "l", typ: tar.TypeSymlink, link: "../../x"}), "outside the archive"},
		{"device", archive(t, df, member{name: "d", typ: tar.TypeBlock}), "block device"},
		{"not a tar", []byte(strings.Repeat("junk", 200)), "not a valid tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckContext(bytes.NewReader(tc.tar), Limits{Field: "context"})
			var inv *gef.InvalidError
			if !errors.As(err, &inv) || inv.Field != "context" || !strings.Contains(inv.Reason, tc.says) {
				t.Fatalf("CheckContext = %v, want an invalid context saying %q", err, tc.says)
			}
		})
	}
}

// FuzzInspect feeds arbitrary bytes to the tarball importer: it must never
// panic, and whatever it accepts must hash to the ID it reports.
func FuzzInspect(f *testing.F) {
	img := newImage(f, map[string]string{"eudat.gef.service.name": "Fuzz"}, "a", "b")
	f.Add(img.save(f))
	members, layers := img.members()
	f.Add(withManifest(f, append(members, member{name: "../evil", data: []byte("x")}), []map[string]any{{"Config": img.id[7:] + ".json", "Layers": layers}}))
	f.Add(withManifest(f, append(members, member{name: "l", typ: tar.TypeSymlink, link: "../../etc"}), []map[string]any{{"Config": "l", "Layers": layers}}))
	f.Add(archive(f, member{name: "manifest.json", data: []byte(`[{"Config":"c","Layers":["c"]}]`)}, member{name: "c", data: []byte(`{"rootfs":{"diff_ids":[]}}`)}))
	f.Add(gz(f, img.save(f)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Inspect(bytes.NewReader(data), Limits{MaxEntries: 64, MaxMetadataBytes: 1 << 16})
		if err != nil {
			if !errors.Is(err, gef.ErrInvalid) {
				t.Fatalf("Inspect failed with an error that is not ErrInvalid: %v", err)
			}
			return
		}
		if len(got.ID) != 71 || !strings.HasPrefix(got.ID, "sha256:") || got.Labels == nil {
			t.Fatalf("accepted image with ID %q, labels %v", got.ID, got.Labels)
		}
	})
}

// FuzzCheckContext does the same for build contexts.
func FuzzCheckContext(f *testing.F) {
	f.Add(archive(f, member{name: "Dockerfile", data: []byte("FROM scratch")}))
	f.Add(gz(f, archive(f, member{name: "Dockerfile", data: []byte("FROM scratch")}, member{name: "l", typ: tar.TypeSymlink, link: "Dockerfile"})))
	f.Add(archive(f, member{name: "../Dockerfile", data: []byte("x")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := CheckContext(bytes.NewReader(data), Limits{MaxEntries: 64})
		if err != nil {
			if !errors.Is(err, gef.ErrInvalid) {
				t.Fatalf("CheckContext failed with an error that is not ErrInvalid: %v", err)
			}
			return
		}
		if !strings.HasPrefix(c.Digest, "sha256:") || c.Dockerfile == nil {
			t.Fatalf("accepted context %+v", c)
		}
		_ = ImageIDsFrom(c.Dockerfile)
	})
}

func TestImageIDsFrom(t *testing.T) {
	t.Parallel()
	id := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		dockerfile string
		want       []string
	}{
		{"FROM " + id + "\nCOPY x /x\n", []string{id}},
		{"from " + id + " AS build\nFROM scratch\nCOPY --from=build /x /x\n", []string{id}},
		{"FROM --platform=linux/amd64 " + id + "\n", []string{id}},
		{"FROM gef/cdo-base:bookworm\n", nil},
		{"FROM sha256:short\n", nil},
		{"FROM sha256:" + strings.Repeat("AB", 32) + "\n", nil},
		{"# FROM " + id + "\nRUN echo FROM " + id + "\n", nil},
		{"", nil},
	} {
		if got := ImageIDsFrom([]byte(tc.dockerfile)); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ImageIDsFrom(%q) = %q, want %q", tc.dockerfile, got, tc.want)
		}
	}
}
