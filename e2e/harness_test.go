// Package e2e runs GEF as its users do: a real gef-manager process on
// PostgreSQL with results in MinIO, real gef-node processes on the local
// Docker engine, driven through the HTTP API with the typed client.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	dockerclient "github.com/docker/docker/client"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/internal/testenv"
	"github.com/eudat-gef/gef/internal/testimages"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds gef-manager and gef-node once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "gef-e2e-bin-")
		if binErr != nil {
			return
		}
		for _, cmd := range []string{"gef-manager", "gef-node", "gefctl"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "../"+cmd).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// runtime connects to the local engine, or stops the test.
func engine(t *testing.T) *docker.Runtime {
	t.Helper()
	testenv.Docker(t)
	rt, err := docker.New(context.Background(), docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// image builds a test image and returns its ID.
func image(t *testing.T, rt *docker.Runtime, img testimages.Image) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id, err := testimages.Build(ctx, rt, img)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// proc is a GEF process under test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
	// what started it, to start it again
	env  []string
	bin  string
	args []string
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func start(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{}), env: env, bin: bin, args: args}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	w := lockedWriter{p.mu, p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 20*time.Second)
		if t.Failed() || os.Getenv("GEF_E2E_LOGS") != "" {
			t.Logf("--- %s log ---\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill() { p.stop(syscall.SIGKILL, time.Minute) }

// restart starts the process again as it was started, after it ended.
func (p *proc) restart(t *testing.T) *proc {
	t.Helper()
	select {
	case <-p.done:
	default:
		t.Fatalf("restart %s: it still runs", p.name)
	}
	return start(t, p.name, p.env, p.bin, p.args...)
}

// stop signals the process and waits for it to exit, killing it after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr(t *testing.T) string { return freePort(t, "127.0.0.1") }

// freePort returns host:port with a port free on host.
func freePort(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stack is a manager on PostgreSQL with results in MinIO.
type stack struct {
	t       *testing.T
	http    *http.Client // trusts the manager's certificate when it serves TLS
	url     string
	dir     string
	admin   *client.Client
	token   string // the admin's
	manager managerProc
	s3      *minio.Client
	bucket  string
	rt      *docker.Runtime
	dsn     string
	minio   testenv.MinIOConfig
	cfg     stackConfig
	// sessionNet is the stack's own network for session containers:
	// Docker 20.10 can deadlock when containers of one network end at
	// once (docs/operations.md), so tests running side by side keep theirs
	// apart.
	sessionNet string
}

// stackConfig varies a stack. The zero value is a manager on 127.0.0.1 on a
// fresh database of the shared PostgreSQL, with results in the shared MinIO.
type stackConfig struct {
	dsn   string               // the database; default a fresh one
	minio *testenv.MinIOConfig // the object store; default the shared MinIO
	host  string               // the address the manager listens on; default 127.0.0.1
	// args are more manager flags; they override the defaults below.
	args []string
	// tls makes the manager serve HTTPS with this certificate.
	tls *tlsFiles
}

// managerDefaults are the manager flags of every stack: fast failure
// detection for tests.
var managerDefaults = []string{"-node-timeout", "6s", "-poll-wait", "2s", "-sweep-interval", "1s"}

func newStack(t *testing.T) *stack { return newStackWith(t, stackConfig{}) }

func newStackWith(t *testing.T, cfg stackConfig) *stack {
	t.Helper()
	rt := engine(t)
	if cfg.dsn == "" {
		cfg.dsn = testenv.Postgres(t)
	}
	mc := testenv.MinIO(t)
	if cfg.minio != nil {
		mc = *cfg.minio
	}
	if cfg.host == "" {
		cfg.host = "127.0.0.1"
	}
	s := &stack{t: t, dir: t.TempDir(), bucket: testenv.Bucket(), rt: rt, dsn: cfg.dsn, minio: mc, cfg: cfg, http: http.DefaultClient,
		sessionNet: randomName("gef-e2e-sessions-")}
	// Registered before any node starts, so it runs after they stopped.
	cli := dockerAPI(t)
	t.Cleanup(func() { removeNetwork(t, cli, s.sessionNet) })
	if cfg.tls != nil {
		s.http = cfg.tls.client
	}
	s.manager = s.startManager("gef-manager", "admin.token")
	s.url = s.manager.url
	tok, err := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	s.admin = client.New(s.url, s.token, client.WithHTTPClient(s.http))
	s.s3, err = minio.New(mc.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(mc.AccessKey, mc.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.removeBucket() })
	return s
}

// removeNetwork removes a network and any container a killed node left on
// it, so that networks do not pile up until the engine has no addresses
// left for another.
func removeNetwork(t *testing.T, cli *dockerclient.Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Logf("network %s: %v", name, err)
		return
	}
	for id := range n.Containers {
		if err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("removing container %s from network %s: %v", id, name, err)
		}
	}
	if err := cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
		t.Logf("removing network %s: %v", name, err)
	}
}

// managerProc is a running gef-manager and the URL it serves.
type managerProc struct {
	*proc
	url string
}

// startManager starts a manager on the stack's database, object store and
// data directory (so all share one signing key), on a free port, and waits
// until it is ready.
func (s *stack) startManager(name, tokenFile string) managerProc {
	t := s.t
	t.Helper()
	addr := freePort(t, s.cfg.host)
	args := append([]string{"-addr", addr, "-data", s.dir, "-s3-endpoint", s.minio.Endpoint,
		"-s3-bucket", s.bucket, "-admin-token-file", filepath.Join(s.dir, tokenFile)}, managerDefaults...)
	scheme := "http"
	if s.cfg.tls != nil {
		scheme = "https"
		args = append(args, "-tls-cert", s.cfg.tls.cert, "-tls-key", s.cfg.tls.key)
	}
	args = append(args, s.cfg.args...)
	p := start(t, name, []string{
		"GEF_DATABASE_URL=" + s.dsn, "GEF_S3_ACCESS_KEY=" + s.minio.AccessKey, "GEF_S3_SECRET_KEY=" + s.minio.SecretKey,
	}, filepath.Join(binaries(t), "gef-manager"), args...)
	m := managerProc{proc: p, url: scheme + "://" + addr}
	s.waitReady(m)
	return m
}

// waitReady waits until the manager answers ready and wrote its token.
func (s *stack) waitReady(m managerProc) {
	s.t.Helper()
	token := m.args[slices.Index(m.args, "-admin-token-file")+1]
	_ = os.Remove(token)
	eventually(s.t, 60*time.Second, m.name+" is ready", func() bool {
		resp, err := s.http.Get(m.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		_, err = os.Stat(token)
		return resp.StatusCode == http.StatusOK && err == nil
	})
}

// killManager ends the manager with SIGKILL.
func (s *stack) killManager() { s.manager.kill() }

// restartManager starts the manager again as it was, on the same address.
func (s *stack) restartManager() {
	s.t.Helper()
	s.manager = managerProc{proc: s.manager.restart(s.t), url: s.manager.url}
	s.waitReady(s.manager)
}

func (s *stack) removeBucket() {
	ctx := context.Background()
	for o := range s.s3.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Recursive: true}) {
		_ = s.s3.RemoveObject(ctx, s.bucket, o.Key, minio.RemoveObjectOptions{})
	}
	_ = s.s3.RemoveBucket(ctx, s.bucket)
}

// node starts a gef-node process holding datasets (name → host dir), with
// extra flags if given.
func (s *stack) node(name string, datasets map[string]string, extra ...string) *proc {
	s.t.Helper()
	return s.nodeVia(s.url, name, datasets, 4, extra...)
}

// nodeVia starts a gef-node process that talks to the manager at url.
func (s *stack) nodeVia(url, name string, datasets map[string]string, capacity int, extra ...string) *proc {
	t := s.t
	t.Helper()
	args := append(s.nodeArgs(url, name, datasets), "-capacity", strconv.Itoa(capacity))
	args = append(args, extra...)
	p := start(t, "gef-node "+name, nil, filepath.Join(binaries(t), "gef-node"), args...)
	s.waitNode(name)
	return p
}

// nodeArgs makes a node credential and returns the flags of a node.
func (s *stack) nodeArgs(url, name string, datasets map[string]string) []string {
	t := s.t
	t.Helper()
	ctx := context.Background()
	if _, err := s.admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil && !isConflict(err) {
		t.Fatal(err)
	}
	tok, err := s.admin.CreateToken(ctx, name, "e2e", 0)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(s.dir, name+".token")
	if err := os.WriteFile(tokFile, []byte(tok.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-manager", url, "-token-file", tokFile, "-name", name,
		"-work-dir", s.workDir(name), "-memory", "256", "-session-network", s.sessionNet}
	for ds, dir := range datasets {
		args = append(args, "-dataset", ds+"="+dir)
	}
	if s.cfg.tls != nil {
		args = append(args, "-ca-file", s.cfg.tls.cert)
	}
	return args
}

// workDir is a node's work directory.
func (s *stack) workDir(name string) string { return filepath.Join(s.dir, "work-"+name) }

// waitNode waits until a node is registered and ready.
func (s *stack) waitNode(name string) {
	s.t.Helper()
	ctx := context.Background()
	eventually(s.t, 30*time.Second, "node "+name+" is ready", func() bool {
		n, err := s.node1(ctx, name)
		return err == nil && n.State == gef.NodeReady
	})
}

// node1 returns one node as the manager sees it.
func (s *stack) node1(ctx context.Context, name string) (gef.Node, error) {
	nodes, err := s.admin.Nodes(ctx)
	if err != nil {
		return gef.Node{}, err
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return gef.Node{}, fmt.Errorf("no node %s: %w", name, gef.ErrNotFound)
}

func isConflict(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

// publish registers an image a node holds and returns its service.
func (s *stack) publish(imageID string) gef.Service {
	s.t.Helper()
	svc, err := s.admin.RegisterImage(context.Background(), imageID)
	if err != nil {
		s.t.Fatalf("publish %s: %v", imageID, err)
	}
	return svc
}

// run submits a job and waits for it to end.
func (s *stack) run(c *client.Client, req gef.JobRequest) gef.Job {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err := c.Submit(ctx, req)
	if err != nil {
		s.t.Fatalf("submit %+v: %v", req, err)
	}
	j, err = c.Wait(ctx, j.ID, nil)
	if err != nil {
		s.t.Fatalf("wait for %s: %v", j.ID, err)
	}
	return j
}

// dataset writes files (relative path → content) into a fresh directory.
func dataset(t *testing.T, files map[string]string) string {
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
	// The container runs as an unprivileged user that must read it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// eventually waits for cond, checking often, and fails after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; ; wait = min(wait*2, 500*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// noReuse switches reuse off for a request: a test of how jobs run must not
// be answered by an earlier identical job.
func noReuse() *bool { return new(bool) }
