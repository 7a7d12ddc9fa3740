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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	p := &proc{name: name, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
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
		if t.Failed() {
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stack is a manager on PostgreSQL with results in MinIO.
type stack struct {
	t       *testing.T
	http    *http.Client
	tls     *tlsFiles
	url     string
	dir     string
	admin   *client.Client
	manager *proc
	s3      *minio.Client
	bucket  string
	rt      *docker.Runtime
}

func newStack(t *testing.T) *stack { return newStackOpts(t, stackOpts{}) }

// stackOpts varies the manager of a stack.
type stackOpts struct {
	tls *tlsFiles // serve HTTPS with this certificate
}

func newStackOpts(t *testing.T, o stackOpts) *stack {
	t.Helper()
	rt := engine(t)
	dsn := testenv.Postgres(t)
	mc := testenv.MinIO(t)
	bin := binaries(t)
	s := &stack{t: t, dir: t.TempDir(), bucket: testenv.Bucket(), rt: rt, http: http.DefaultClient}
	addr := freeAddr(t)
	s.url = "http://" + addr
	args := []string{"-addr", addr, "-data", s.dir, "-s3-endpoint", mc.Endpoint,
		"-s3-bucket", s.bucket, "-admin-token-file", filepath.Join(s.dir, "admin.token"),
		"-node-timeout", "6s", "-poll-wait", "2s"}
	if o.tls != nil {
		s.url = "https://" + addr
		s.tls = o.tls
		s.http = o.tls.client
		args = append(args, "-tls-cert", o.tls.cert, "-tls-key", o.tls.key)
	}
	s.manager = start(t, "gef-manager", []string{
		"GEF_DATABASE_URL=" + dsn, "GEF_S3_ACCESS_KEY=" + mc.AccessKey, "GEF_S3_SECRET_KEY=" + mc.SecretKey,
	}, filepath.Join(bin, "gef-manager"), args...)
	eventually(t, 30*time.Second, "the manager is ready", func() bool {
		resp, err := s.http.Get(s.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		_, err = os.Stat(filepath.Join(s.dir, "admin.token"))
		return resp.StatusCode == http.StatusOK && err == nil
	})
	tok, err := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.admin = client.New(s.url, strings.TrimSpace(string(tok)), client.WithHTTPClient(s.http))
	s.s3, err = minio.New(mc.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(mc.AccessKey, mc.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.removeBucket() })
	return s
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
	args := []string{"-manager", s.url, "-token-file", tokFile, "-name", name,
		"-work-dir", filepath.Join(s.dir, "work-"+name), "-capacity", "4", "-memory", "256"}
	for ds, dir := range datasets {
		args = append(args, "-dataset", ds+"="+dir)
	}
	if s.tls != nil {
		args = append(args, "-ca-file", s.tls.cert)
	}
	args = append(args, extra...)
	p := start(t, "gef-node "+name, nil, filepath.Join(binaries(t), "gef-node"), args...)
	eventually(t, 30*time.Second, "node "+name+" is ready", func() bool {
		nodes, err := s.admin.Nodes(ctx)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.Name == name && n.State == gef.NodeReady {
				return true
			}
		}
		return false
	})
	return p
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
