package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testenv"
)

const (
	testTag        = "gef-test/runtime:test"
	testLabel      = "eudat.gef.test.run" // unique per test, to find its containers
	serviceLabel   = "eudat.gef.service.name"
	testEntrypoint = "/runtime-test"
)

// testProgram is the one binary in the test image; argv[1] picks what it
// does, so each test states its behaviour in the container's Cmd.
const testProgram = `package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	mode, args := "echo", []string(nil)
	if len(os.Args) > 1 {
		mode, args = os.Args[1], os.Args[2:]
	}
	switch mode {
	case "echo": // argv as JSON
		json.NewEncoder(os.Stdout).Encode(os.Args)
	case "getenv":
		fmt.Println(os.Getenv(args[0]))
	case "streams": // OUT to stdout, ERR to stderr
		fmt.Fprintln(os.Stdout, args[0])
		fmt.Fprintln(os.Stderr, args[1])
	case "exit":
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	case "sleep": // "term": exit 0 on SIGTERM; "ignore": ignore it
		if args[0] == "ignore" {
			signal.Ignore(syscall.SIGTERM)
			fmt.Println("ready")
			for { // a bare block would be a deadlock to the Go runtime
				time.Sleep(time.Hour)
			}
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("terminated")
	case "write": // path -> "ok" or the error, as JSON
		res := map[string]string{}
		for _, p := range args {
			res[p] = "ok"
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				res[p] = err.Error()
			}
		}
		json.NewEncoder(os.Stdout).Encode(res)
	case "alloc": // touch MB mebibytes
		mb, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
	case "id":
		fmt.Println(os.Getuid(), os.Getgid())
	case "spew": // KIB kibibytes of output, in 1 KiB lines
		kib, _ := strconv.Atoi(args[0])
		line := make([]byte, 1024)
		for i := range line {
			line[i] = 'x'
		}
		line[len(line)-1] = '\n'
		for i := 0; i < kib; i++ {
			os.Stdout.Write(line)
		}
	case "serve":
		fmt.Println("ready")
		http.ListenAndServe(":"+args[0], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "hello")
		}))
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}
`

// The image's own ENTRYPOINT and CMD show up in argv if Create ever lets
// the engine fall back to them.
const testDockerfile = `FROM scratch
COPY runtime-test /runtime-test
LABEL ` + serviceLabel + `=runtime-test
ENTRYPOINT ["/runtime-test", "echo", "from-image-entrypoint"]
CMD ["from-image-cmd"]
`

// bundle is what a real-engine test needs.
type bundle struct {
	rt    *Runtime
	raw   *client.Client // for checks behind the Runtime's back
	image string         // the test image's ID
}

var (
	sharedOnce sync.Once
	shared     bundle
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.rt != nil {
		shared.rt.Close()
		shared.raw.Close()
	}
	os.Exit(code)
}

// setup skips or fails t without an engine, and builds the test image once
// per run, through Runtime.Build.
func setup(t *testing.T) bundle {
	t.Helper()
	testenv.Docker(t)
	sharedOnce.Do(func() { shared, sharedErr = newBundle() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func newBundle() (bundle, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt, err := New(ctx, Options{})
	if err != nil {
		return bundle{}, err
	}
	raw, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return bundle{}, err
	}
	b := bundle{rt: rt, raw: raw}
	contextTar, err := testImageContext(ctx)
	if err != nil {
		return b, err
	}
	var log bytes.Buffer
	b.image, err = rt.Build(ctx, contextTar, testTag, &log)
	if err != nil {
		return b, fmt.Errorf("build test image: %w\n%s", err, log.String())
	}
	return b, nil
}

// testImageContext compiles testProgram statically and packs it with
// testDockerfile into a build context.
func testImageContext(ctx context.Context) (io.Reader, error) {
	dir, err := os.MkdirTemp("", "gef-runtime-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module runtimetest\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(testProgram), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "runtime-test", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build test program: %w\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "runtime-test"))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(testDockerfile)},
		{"runtime-test", 0o755, bin},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testCtx bounds a whole test, since Wait and Logs have no bound of their own.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// spec is a minimal spec for the test image, labelled for this test.
func (b bundle) spec(cmd ...string) agent.ContainerSpec {
	return agent.ContainerSpec{
		Name:       "gef-runtime-test-" + randomHex(6),
		Image:      b.image,
		Entrypoint: []string{testEntrypoint},
		Cmd:        cmd,
		Labels:     map[string]string{testLabel: randomHex(6)},
	}
}

// create creates spec and removes the container when t ends.
func (b bundle) create(t *testing.T, ctx context.Context, spec agent.ContainerSpec) string {
	t.Helper()
	id, err := b.rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := b.rt.Remove(context.Background(), id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return id
}

// run runs spec to its end and returns how it ended and its output.
func (b bundle) run(t *testing.T, ctx context.Context, spec agent.ContainerSpec) (st agent.ExitStatus, stdout, stderr string) {
	t.Helper()
	id := b.create(t, ctx, spec)
	if err := b.rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := b.rt.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	var out, errOut bytes.Buffer
	if err := b.rt.Logs(ctx, id, &out, &errOut); err != nil {
		t.Fatalf("Logs: %v", err)
	}
	return st, out.String(), errOut.String()
}

// syncBuffer collects output from a Logs goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startFollowing starts id with its stdout followed into the returned
// buffer, and waits for the program to say it is ready.
func (b bundle) startFollowing(t *testing.T, ctx context.Context, id string) (out *syncBuffer, logsDone <-chan error) {
	t.Helper()
	if err := b.rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- b.rt.Logs(ctx, id, out, io.Discard) }()
	eventually(t, "program ready", 30*time.Second, func() bool { return strings.Contains(out.String(), "ready\n") })
	return out, done
}

func TestInfo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	info, err := b.rt.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || info.OS == "" || info.Arch == "" || info.Runtime == "" {
		t.Errorf("Info = %+v, want all fields set", info)
	}
	server, err := b.raw.ServerVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if versions.LessThan(info.APIVersion, "1.41") || versions.GreaterThan(info.APIVersion, server.APIVersion) {
		t.Errorf("APIVersion = %q, want 1.41 up to the engine's %s", info.APIVersion, server.APIVersion)
	}
	t.Logf("engine: %+v", info)
}

func TestCreateRefusesImageTags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	for _, ref := range []string{testTag, b.image[len("sha256:"):], b.image[:19], "", strings.ToUpper(b.image)} {
		spec := b.spec("echo")
		spec.Image = ref
		_, err := b.rt.Create(ctx, spec)
		if !errors.Is(err, gef.ErrInvalid) || !strings.HasPrefix(err.Error(), "docker: ") {
			t.Errorf("Create(image %q) = %v, want a docker: invalid error", ref, err)
		}
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	unknown := "sha256:" + strings.Repeat("0", 64)
	if _, err := b.rt.Image(ctx, unknown); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Image(unknown) = %v, want ErrNotFound", err)
	}
	if err := b.rt.RemoveImage(ctx, unknown); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("RemoveImage(unknown) = %v, want ErrNotFound", err)
	}
	spec := b.spec("echo")
	spec.Image = unknown
	if _, err := b.rt.Create(ctx, spec); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Create(unknown image) = %v, want ErrNotFound", err)
	}
	gone := "gef-runtime-test-gone-" + randomHex(6)
	if _, err := b.rt.Wait(ctx, gone); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Wait(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := b.rt.Inspect(ctx, gone); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Inspect(unknown) = %v, want ErrNotFound", err)
	}
	if err := b.rt.Start(ctx, gone); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Start(unknown) = %v, want ErrNotFound", err)
	}
	if err := b.rt.Remove(ctx, gone); err != nil {
		t.Errorf("Remove(unknown) = %v, want nil", err)
	}
}

func TestImages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	img, err := b.rt.Image(ctx, b.image)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != b.image || img.Labels[serviceLabel] != "runtime-test" || img.Size <= 0 ||
		!slices.Equal(img.Entrypoint, []string{testEntrypoint, "echo", "from-image-entrypoint"}) ||
		!slices.Equal(img.Cmd, []string{"from-image-cmd"}) {
		t.Errorf("Image = %+v", img)
	}
	list, err := b.rt.Images(ctx, serviceLabel)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(i agent.ImageInfo) bool { return i.ID == b.image }) {
		t.Errorf("Images(%s) lacks the test image %s: %+v", serviceLabel, b.image, list)
	}
	none, err := b.rt.Images(ctx, "eudat.gef.test.no-such-label-"+randomHex(4))
	if err != nil || len(none) != 0 {
		t.Errorf("Images(unused label) = %v, %v; want none", none, err)
	}
}

func TestExactArgv(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name            string
		entrypoint, cmd []string
		want            []string
	}{
		{
			name:       "awkward args",
			entrypoint: []string{testEntrypoint},
			cmd:        []string{"echo", "a b", ";", "$(x)", "", "  ", "'q'", `"dq"`, "*", "`id`", "a\nb", "é"},
			want:       []string{testEntrypoint, "echo", "a b", ";", "$(x)", "", "  ", "'q'", `"dq"`, "*", "`id`", "a\nb", "é"},
		},
		{
			name:       "empty cmd is not the image's CMD",
			entrypoint: []string{testEntrypoint},
			want:       []string{testEntrypoint},
		},
		{
			name: "no entrypoint is not the image's ENTRYPOINT",
			cmd:  []string{testEntrypoint, "echo", "x"},
			want: []string{testEntrypoint, "echo", "x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			spec := b.spec()
			spec.Entrypoint, spec.Cmd = tc.entrypoint, tc.cmd
			st, stdout, stderr := b.run(t, ctx, spec)
			if st.Code != 0 {
				t.Fatalf("exit %+v, stderr %q", st, stderr)
			}
			var got []string
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("stdout %q: %v", stdout, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("argv = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExitAndStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	t.Run("exit code", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		spec := b.spec("exit", "3")
		st, _, _ := b.run(t, ctx, spec)
		if st.Code != 3 || st.OOMKilled || st.Error != "" {
			t.Errorf("status = %+v, want code 3", st)
		}
		cs, err := b.rt.Containers(ctx, spec.Labels)
		if err != nil || len(cs) != 1 {
			t.Fatalf("Containers = %v, %v", cs, err)
		}
		c := cs[0]
		// No FinishedAt >= StartedAt: dockerd stamps StartedAt after runc
		// returns, but FinishedAt is containerd's exit time, so a process
		// that exits at once can seem to end before it started.
		if c.Name != spec.Name || c.Image != b.image || c.Running || c.ExitCode != 3 ||
			c.StartedAt.IsZero() || c.FinishedAt.IsZero() || c.Labels[testLabel] != spec.Labels[testLabel] {
			t.Errorf("container = %+v", c)
		}
	})
	t.Run("streams", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		st, stdout, stderr := b.run(t, ctx, b.spec("streams", "to stdout", "to stderr"))
		if st.Code != 0 || stdout != "to stdout\n" || stderr != "to stderr\n" {
			t.Errorf("status %+v, stdout %q, stderr %q", st, stdout, stderr)
		}
	})
	t.Run("env and user", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		spec := b.spec("getenv", "GEF_X")
		spec.Env = []string{"GEF_X=a b;$(c)"}
		if _, stdout, _ := b.run(t, ctx, spec); stdout != "a b;$(c)\n" {
			t.Errorf("GEF_X = %q", stdout)
		}
		spec = b.spec("id")
		spec.User = "1234:5678"
		if _, stdout, _ := b.run(t, ctx, spec); stdout != "1234 5678\n" {
			t.Errorf("uid gid = %q", stdout)
		}
	})
}

func TestSandbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	ro, rw := t.TempDir(), t.TempDir()
	// The container runs as 1234: open permissions leave read-only-ness as
	// the only reason a write can fail.
	for _, dir := range []string{ro, rw} {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// A writable mount under the read-only bind must not be writable
	// through it. Mounting needs privileges the host may not grant.
	sub := filepath.Join(ro, "sub")
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	submounted := syscall.Mount("tmpfs", sub, "tmpfs", 0, "mode=0777") == nil
	if submounted {
		t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })
	} else {
		t.Log("cannot mount a tmpfs on the host; the submount case checks only the directory")
	}

	spec := b.spec("write", "/ro/x", "/ro/sub/x", "/rw/x", "/x", "/tmp/x")
	spec.User = "1234:5678"
	spec.Mounts = []agent.BindMount{
		{Source: ro, Target: "/ro", ReadOnly: true},
		{Source: rw, Target: "/rw"},
	}
	spec.Tmpfs = map[string]string{"/tmp": "rw,size=1m,mode=1777"}
	spec.ReadOnlyRootfs = true
	spec.Network = "none"
	spec.DropAllCaps = true
	spec.NoNewPrivileges = true
	spec.MemoryBytes = 64 << 20
	spec.NanoCPUs = 500_000_000
	spec.PidsLimit = 64
	spec.LogMaxBytes = 1 << 20
	st, stdout, stderr := b.run(t, ctx, spec)
	if st.Code != 0 {
		t.Fatalf("status %+v, stderr %q", st, stderr)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	for path, wantOK := range map[string]bool{"/ro/x": false, "/ro/sub/x": false, "/rw/x": true, "/x": false, "/tmp/x": true} {
		if wantOK && res[path] != "ok" || !wantOK && !strings.Contains(res[path], "read-only file system") {
			t.Errorf("write %s: %s; want success %v", path, res[path], wantOK)
		}
	}
	if _, err := os.Stat(filepath.Join(rw, "x")); err != nil {
		t.Errorf("the write to /rw did not reach the host: %v", err)
	}

	// The engine's own record of the container, behind the Runtime's back.
	cs, err := b.rt.Containers(ctx, spec.Labels)
	if err != nil || len(cs) != 1 {
		t.Fatalf("Containers = %v, %v", cs, err)
	}
	c, err := b.raw.ContainerInspect(ctx, cs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	h := c.HostConfig
	if !slices.Equal(h.CapDrop, []string{"ALL"}) {
		t.Errorf("CapDrop = %q", h.CapDrop)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %q", h.SecurityOpt)
	}
	if h.NetworkMode != "none" || !h.ReadonlyRootfs || c.Config.User != "1234:5678" {
		t.Errorf("NetworkMode %q, ReadonlyRootfs %v, User %q", h.NetworkMode, h.ReadonlyRootfs, c.Config.User)
	}
	if h.Memory != 64<<20 || h.MemorySwap != 64<<20 || h.NanoCPUs != 500_000_000 || h.PidsLimit == nil || *h.PidsLimit != 64 {
		t.Errorf("Memory %d, MemorySwap %d, NanoCPUs %d, PidsLimit %v", h.Memory, h.MemorySwap, h.NanoCPUs, h.PidsLimit)
	}
	if h.LogConfig.Type != "json-file" || h.LogConfig.Config["max-size"] != "1048576" || h.LogConfig.Config["max-file"] != "1" {
		t.Errorf("LogConfig = %+v", h.LogConfig)
	}
	for _, m := range c.Mounts {
		if m.Destination == "/ro" && m.RW || m.Destination == "/rw" && !m.RW {
			t.Errorf("mount %s: RW %v", m.Destination, m.RW)
		}
	}
}

func TestOOM(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	spec := b.spec("alloc", "200")
	spec.MemoryBytes = 16 << 20
	st, stdout, _ := b.run(t, ctx, spec)
	if !st.OOMKilled || st.Code != 137 {
		t.Errorf("status %+v, stdout %q; want OOMKilled and code 137", st, stdout)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		mode     string
		grace    time.Duration
		wantCode int
	}{
		{"term", 20 * time.Second, 0},    // ends well before the grace period
		{"ignore", 1 * time.Second, 137}, // SIGKILLed once it is over
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			id := b.create(t, ctx, b.spec("sleep", tc.mode))
			out, logsDone := b.startFollowing(t, ctx, id)
			start := time.Now()
			if err := b.rt.Stop(ctx, id, tc.grace); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			took := time.Since(start)
			t.Logf("Stop took %v", took)
			st, err := b.rt.Wait(ctx, id)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if st.Code != tc.wantCode {
				t.Errorf("status %+v, want code %d; output %q", st, tc.wantCode, out.String())
			}
			if tc.wantCode == 0 && took >= tc.grace {
				t.Errorf("Stop took %v, want under the %v grace", took, tc.grace)
			}
			if tc.wantCode == 137 && took < tc.grace {
				t.Errorf("Stop took %v, want at least the %v grace", took, tc.grace)
			}
			if err := <-logsDone; err != nil {
				t.Errorf("Logs: %v", err)
			}
			if c, err := b.rt.Inspect(ctx, id); err != nil || c.Running {
				t.Errorf("after Stop: %+v, %v", c, err)
			}
		})
	}
}

func TestContainersAndRemove(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	run := randomHex(6)
	a, other := b.spec("echo"), b.spec("echo")
	a.Labels = map[string]string{testLabel: run, "eudat.gef.test.role": "a"}
	other.Labels = map[string]string{testLabel: run, "eudat.gef.test.role": "other"}
	idA := b.create(t, ctx, a)
	b.create(t, ctx, other)

	all, err := b.rt.Containers(ctx, map[string]string{testLabel: run})
	if err != nil || len(all) != 2 {
		t.Fatalf("Containers(run) = %+v, %v; want 2", all, err)
	}
	onlyA, err := b.rt.Containers(ctx, a.Labels)
	if err != nil || len(onlyA) != 1 || onlyA[0].ID != idA || onlyA[0].Name != a.Name {
		t.Fatalf("Containers(run, role a) = %+v, %v; want %s", onlyA, err, idA)
	}
	if c := onlyA[0]; c.Running || !c.StartedAt.IsZero() || !c.FinishedAt.IsZero() || c.HostPort != 0 {
		t.Errorf("created container = %+v", c)
	}

	if err := b.rt.Remove(ctx, idA); err != nil {
		t.Fatal(err)
	}
	if err := b.rt.Remove(ctx, idA); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
	if left, err := b.rt.Containers(ctx, map[string]string{testLabel: run}); err != nil || len(left) != 1 {
		t.Errorf("after Remove: %+v, %v; want 1", left, err)
	}
}

func TestRemoveRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	id := b.create(t, ctx, b.spec("sleep", "ignore"))
	_, logsDone := b.startFollowing(t, ctx, id)
	if err := b.rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := <-logsDone; err != nil {
		t.Errorf("Logs of a removed container: %v", err)
	}
	if _, err := b.rt.Inspect(ctx, id); !errors.Is(err, gef.ErrNotFound) {
		t.Errorf("Inspect after Remove = %v, want ErrNotFound", err)
	}
}

func TestExposePort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	spec := b.spec("serve", "8080")
	spec.ExposePort = 8080
	if _, err := b.rt.Create(ctx, spec); !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("Create(ExposePort, no network) = %v, want ErrInvalid", err)
	}
	spec.Network = "bridge"
	id := b.create(t, ctx, spec)
	b.startFollowing(t, ctx, id)
	c, err := b.rt.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.HostPort == 0 {
		t.Fatalf("HostPort = 0: %+v", c)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", c.HostPort)
	var body string
	eventually(t, "GET "+url, 30*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		body = string(data)
		return true
	})
	if body != "hello" {
		t.Errorf("GET %s = %q", url, body)
	}
	if err := b.rt.Stop(ctx, id, 0); err != nil {
		t.Error(err)
	}
}

func TestLoadImage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	save := func(t *testing.T, ctx context.Context, ref string) []byte {
		t.Helper()
		rc, err := b.raw.ImageSave(ctx, []string{ref})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	t.Run("saved by ID", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		ids, err := b.rt.LoadImage(ctx, bytes.NewReader(save(t, ctx, b.image)))
		if err != nil || !slices.Equal(ids, []string{b.image}) {
			t.Errorf("LoadImage = %q, %v; want [%s]", ids, err, b.image)
		}
	})
	t.Run("saved by tag", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		// A tag of its own, since another run may move testTag.
		tag := "gef-test/runtime-load:" + randomHex(6)
		if err := b.raw.ImageTag(ctx, b.image, tag); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { untag(b, tag) })
		ids, err := b.rt.LoadImage(ctx, bytes.NewReader(save(t, ctx, tag)))
		if err != nil || !slices.Equal(ids, []string{b.image}) {
			t.Errorf("LoadImage = %q, %v; want [%s]", ids, err, b.image)
		}
	})
	t.Run("not a tarball", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		if _, err := b.rt.LoadImage(ctx, strings.NewReader("not a tarball")); err == nil || !strings.HasPrefix(err.Error(), "docker: ") {
			t.Errorf("LoadImage(junk) = %v, want a docker: error", err)
		}
	})
}

// untag drops tag, unless it is the image's last name: removing that would
// delete the image the other tests run.
func untag(b bundle, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	img, err := b.raw.ImageInspect(ctx, tag)
	if err != nil || len(img.RepoTags) < 2 {
		return
	}
	b.raw.ImageRemove(ctx, tag, image.RemoveOptions{})
}

func TestBuildFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	df := []byte("FROM scratch\nCOPY missing-file /x\n")
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write(df)
	tw.Close()
	var log bytes.Buffer
	_, err := b.rt.Build(ctx, &buf, "", &log)
	if err == nil || !strings.HasPrefix(err.Error(), "docker: build") || !strings.Contains(err.Error(), "missing-file") {
		t.Errorf("Build(bad context) = %v, want the engine's error", err)
	}
	if !strings.Contains(log.String(), "Step 1/2") {
		t.Errorf("build log = %q, want the builder's steps", log.String())
	}
}

func TestCancelWaitAndLogs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	id := b.create(t, ctx, b.spec("sleep", "term"))
	b.startFollowing(t, ctx, id)

	cctx, cancel := context.WithCancel(ctx)
	waitErr, logsErr := make(chan error, 1), make(chan error, 1)
	go func() { _, err := b.rt.Wait(cctx, id); waitErr <- err }()
	go func() { logsErr <- b.rt.Logs(cctx, id, io.Discard, io.Discard) }()
	cancel()
	for what, c := range map[string]chan error{"Wait": waitErr, "Logs": logsErr} {
		select {
		case err := <-c:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s after cancel = %v, want context.Canceled", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not return after cancel", what)
		}
	}
	if c, err := b.rt.Inspect(ctx, id); err != nil || !c.Running {
		t.Errorf("cancelling must not stop the container: %+v, %v", c, err)
	}
}

func TestNewWithoutEngine(t *testing.T) {
	t.Parallel()
	host := "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
	_, err := New(t.Context(), Options{Host: host, Timeout: 5 * time.Second})
	if !errors.Is(err, gef.ErrUnavailable) || !strings.HasPrefix(err.Error(), "docker: ping") {
		t.Errorf("New(%s) = %v, want a docker: unavailable error", host, err)
	}
}
