package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

// fakeEngine fails the way the engine does. Calls it does not override
// panic through the nil embedded interface, which shows that a code path
// reached the engine when it should not have.
type fakeEngine struct {
	engine
	createErr error
	waitErr   error
	removeErr error
	loadBody  string
	buildBody string
	inspected []string
}

func (f *fakeEngine) ClientVersion() string { return "1.41" }

func (f *fakeEngine) ContainerCreate(context.Context, *container.Config, *container.HostConfig, *network.NetworkingConfig, *ocispec.Platform, string) (container.CreateResponse, error) {
	return container.CreateResponse{}, f.createErr
}

func (f *fakeEngine) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	errC := make(chan error, 1)
	errC <- f.waitErr
	return make(chan container.WaitResponse), errC
}

func (f *fakeEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	return f.removeErr
}

func (f *fakeEngine) ImageLoad(context.Context, io.Reader, ...client.ImageLoadOption) (image.LoadResponse, error) {
	return image.LoadResponse{Body: io.NopCloser(strings.NewReader(f.loadBody)), JSON: true}, nil
}

func (f *fakeEngine) ImageBuild(context.Context, io.Reader, build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader(f.buildBody))}, nil
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.inspected = append(f.inspected, ref)
	return image.InspectResponse{ID: "sha256:of-" + ref}, nil
}

// The engine's not-found errors satisfy cerrdefs.IsNotFound through a
// NotFound() method; this one does it through the sentinel.
var errNoSuchImage = fmt.Errorf("Error response from daemon: No such image: sha256:00: %w", cerrdefs.ErrNotFound)

var validSpec = agent.ContainerSpec{Image: "sha256:" + strings.Repeat("ab", 32), Entrypoint: []string{"/x"}}

func TestCreateWrapsEngineErrors(t *testing.T) {
	boom := errors.New("Error response from daemon: boom")
	conflict := fmt.Errorf("Error response from daemon: name in use: %w", cerrdefs.ErrConflict)
	for _, tc := range []struct {
		name     string
		engine   error
		sentinel error // the gef error it must also be; nil for none
	}{
		{"plain", boom, nil},
		{"not found", errNoSuchImage, gef.ErrNotFound},
		{"conflict", conflict, gef.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRuntime(&fakeEngine{createErr: tc.engine}, Options{})
			_, err := rt.Create(context.Background(), validSpec)
			if err == nil || !strings.HasPrefix(err.Error(), "docker: create container") {
				t.Fatalf("Create = %v, want a docker: error", err)
			}
			if !errors.Is(err, tc.engine) {
				t.Errorf("Create = %v, lost the engine's error", err)
			}
			if !strings.Contains(err.Error(), tc.engine.Error()) {
				t.Errorf("Create = %q, lost the engine's message", err)
			}
			for _, s := range []error{gef.ErrNotFound, gef.ErrConflict} {
				if got, want := errors.Is(err, s), s == tc.sentinel; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, want)
				}
			}
		})
	}
}

func TestCreateRefusesBeforeCallingEngine(t *testing.T) {
	rt := newRuntime(&fakeEngine{}, Options{})
	for name, spec := range map[string]agent.ContainerSpec{
		"tag":          {Image: "busybox:latest", Entrypoint: []string{"/x"}},
		"short ID":     {Image: "sha256:abababab", Entrypoint: []string{"/x"}},
		"no command":   {Image: validSpec.Image},
		"port, no net": {Image: validSpec.Image, Entrypoint: []string{"/x"}, ExposePort: 80},
	} {
		if _, err := rt.Create(context.Background(), spec); !errors.Is(err, gef.ErrInvalid) {
			t.Errorf("%s: Create = %v, want ErrInvalid", name, err)
		}
	}
}

func TestWaitAndRemoveNotFound(t *testing.T) {
	f := &fakeEngine{waitErr: errNoSuchImage, removeErr: errNoSuchImage}
	rt := newRuntime(f, Options{})
	if _, err := rt.Wait(context.Background(), "c1"); !errors.Is(err, gef.ErrNotFound) || !strings.HasPrefix(err.Error(), "docker: wait") {
		t.Errorf("Wait = %v, want a docker: not found", err)
	}
	if err := rt.Remove(context.Background(), "c1"); err != nil {
		t.Errorf("Remove(gone) = %v, want nil", err)
	}
	f.removeErr = errors.New("boom")
	if err := rt.Remove(context.Background(), "c1"); err == nil {
		t.Error("Remove: engine error lost")
	}
}

func TestContainerConfig(t *testing.T) {
	spec := validSpec
	spec.Mounts = []agent.BindMount{{Source: "/a", Target: "/a", ReadOnly: true}, {Source: "/b", Target: "/b"}}
	spec.MemoryBytes = 1 << 20
	cfg, host, err := containerConfig(spec, "1.41")
	if err != nil {
		t.Fatal(err)
	}
	// An empty Cmd must reach the engine as [], not null, or the image's
	// CMD would fill it in.
	raw, _ := json.Marshal(cfg)
	if !strings.Contains(string(raw), `"Cmd":[]`) {
		t.Errorf("config JSON %s, want \"Cmd\":[]", raw)
	}
	if host.NetworkMode != "none" || host.MemorySwap != host.Memory || host.PidsLimit != nil {
		t.Errorf("host config %+v", host)
	}
	if bo := host.Mounts[0].BindOptions; bo == nil || !bo.NonRecursive {
		t.Errorf("read-only bind on API 1.41: options %+v, want NonRecursive", bo)
	}
	if bo := host.Mounts[1].BindOptions; bo != nil {
		t.Errorf("read-write bind: options %+v, want none", bo)
	}
	_, host, _ = containerConfig(spec, "1.44")
	if bo := host.Mounts[0].BindOptions; bo == nil || !bo.ReadOnlyForceRecursive || bo.NonRecursive {
		t.Errorf("read-only bind on API 1.44: options %+v, want ReadOnlyForceRecursive", bo)
	}
}

func TestLoadImageStream(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
		wantErr    string
	}{
		{
			name: "by ID and by tag",
			body: `{"status":"Loading layer","progressDetail":{"current":1,"total":2},"id":"abc"}
{"stream":"Loaded image ID: sha256:aaa\n"}
{"stream":"Loaded image: x/y:1\n"}
{"stream":"Loaded image: x/y:2\n"}`,
			want: []string{"sha256:aaa", "sha256:of-x/y:1", "sha256:of-x/y:2"},
		},
		{
			name:    "error in stream",
			body:    `{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}`,
			wantErr: "docker: load image: unexpected EOF",
		},
		{name: "nothing loaded", body: `{"stream":"hello\n"}`, wantErr: "no image loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRuntime(&fakeEngine{loadBody: tc.body}, Options{})
			ids, err := rt.LoadImage(context.Background(), strings.NewReader(""))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("LoadImage = %v, %v; want error %q", ids, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Errorf("LoadImage = %q, %v; want %q", ids, err, tc.want)
			}
		})
	}
}

func TestBuildStream(t *testing.T) {
	f := &fakeEngine{buildBody: `{"stream":"Step 1/1 : FROM scratch\n"}
{"aux":{"ID":"sha256:built"}}
{"stream":"Successfully built 0123456789ab\n"}`}
	var log strings.Builder
	id, err := newRuntime(f, Options{}).Build(context.Background(), strings.NewReader(""), "t:1", &log)
	if err != nil || id != "sha256:built" || len(f.inspected) != 0 {
		t.Errorf("Build = %q, %v (inspected %q); want the aux ID", id, err, f.inspected)
	}
	if log.String() != "Step 1/1 : FROM scratch\nSuccessfully built 0123456789ab\n" {
		t.Errorf("log = %q", log.String())
	}

	// Without an aux message, the short ID in the output names the image.
	f = &fakeEngine{buildBody: `{"stream":"Successfully built 0123456789ab\n"}`}
	if id, err := newRuntime(f, Options{}).Build(context.Background(), strings.NewReader(""), "t:1", nil); err != nil || id != "sha256:of-0123456789ab" {
		t.Errorf("Build without aux = %q, %v", id, err)
	}

	f = &fakeEngine{buildBody: `{"stream":"Step 1/2\n"}
{"errorDetail":{"code":1,"message":"COPY failed"},"error":"COPY failed"}`}
	if _, err := newRuntime(f, Options{}).Build(context.Background(), strings.NewReader(""), "t:1", nil); err == nil || err.Error() != "docker: build t:1: COPY failed" {
		t.Errorf("Build with error = %v", err)
	}
}
