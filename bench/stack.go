package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/internal/testimages"
)

// The servers, found as the tests find them; scripts/testenv.sh starts them
// at these defaults.
func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

var (
	postgresAdminDSN = env("GEF_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable")
	minioEndpoint    = env("GEF_TEST_MINIO_ENDPOINT", "127.0.0.1:59000")
	minioAccessKey   = env("GEF_TEST_MINIO_ACCESS_KEY", "gefminio")
	minioSecretKey   = env("GEF_TEST_MINIO_SECRET_KEY", "gefminio-secret")
)

// managerFlags make the manager of the suite. The poll wait is the
// production default: dispatch must not depend on it.
var managerFlags = []string{"-log-level", "warn"}

// stack is the real GEF the suite measures: a gef-manager process on a
// fresh PostgreSQL database with results in a fresh MinIO bucket, and the
// gef-node processes started on it, on the local Docker engine.
type stack struct {
	log     *slog.Logger
	keep    bool
	pprof   string // the manager's profiles' address, if any
	dir     string // temporary files: binaries, tokens, datasets, work dirs
	bin     string
	db      *sql.DB // the maintenance database, to drop ours
	dbName  string
	DSN     string
	Bucket  string
	S3      *minio.Client
	Docker  *docker.Runtime
	URL     string
	Token   string // an admin's
	Admin   *client.Client
	Manager *proc
	// Image is the trivial service's image ID and Service its record.
	Image   string
	Service gef.Service

	mu    sync.Mutex
	procs []*proc
}

func newStack(ctx context.Context, cfg config, log *slog.Logger) (_ *stack, err error) {
	s := &stack{log: log, keep: cfg.Keep, pprof: cfg.ManagerPprof}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "gef-bench-"); err != nil {
		return nil, err
	}
	if err := s.build(ctx); err != nil {
		return nil, err
	}
	if s.Docker, err = docker.New(ctx, docker.Options{}); err != nil {
		return nil, fmt.Errorf("the Docker engine: %w", err)
	}
	if err := s.database(ctx); err != nil {
		return nil, err
	}
	if err := s.bucket(ctx); err != nil {
		return nil, err
	}
	if s.Image, err = testimages.Build(ctx, s.Docker, testimages.TestService); err != nil {
		return nil, err
	}
	if err := s.startManager(ctx); err != nil {
		return nil, err
	}
	// Published as a `docker save` tarball: publishing by image ID needs a
	// node that already has the image, and no node runs yet.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.Docker.SaveImage(ctx, s.Image, pw)) }()
	s.Service, _, err = s.Admin.PublishTarball(ctx, pr)
	pr.Close()
	if err != nil {
		return nil, fmt.Errorf("publish the test service: %w", err)
	}
	return s, nil
}

// build compiles gef-manager and gef-node from this checkout.
func (s *stack) build(ctx context.Context) error {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the module: %w", err)
	}
	s.bin = filepath.Join(s.dir, "bin")
	for _, cmd := range []string{"gef-manager", "gef-node"} {
		c := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(s.bin, cmd), "./"+cmd)
		c.Dir = strings.TrimSpace(string(root))
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", cmd, err, out)
		}
	}
	return nil
}

func (s *stack) database(ctx context.Context) error {
	db, err := sql.Open("postgres", postgresAdminDSN)
	if err != nil {
		return fmt.Errorf("PostgreSQL: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("PostgreSQL at %s: %w (run scripts/testenv.sh)", postgresAdminDSN, err)
	}
	s.db, s.dbName = db, "gef_bench_"+randomHex(6)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+s.dbName); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(postgresAdminDSN)
	if err != nil {
		return err
	}
	u.Path = "/" + s.dbName
	s.DSN = u.String()
	return nil
}

func (s *stack) bucket(ctx context.Context) error {
	c, err := minio.New(minioEndpoint, &minio.Options{Creds: credentials.NewStaticV4(minioAccessKey, minioSecretKey, "")})
	if err != nil {
		return fmt.Errorf("MinIO: %w", err)
	}
	s.S3, s.Bucket = c, "gef-bench-"+randomHex(6)
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("MinIO at %s: %w (run scripts/testenv.sh)", minioEndpoint, err)
	}
	return nil
}

func (s *stack) startManager(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	tokFile := filepath.Join(s.dir, "admin.token")
	args := append([]string{"-addr", addr, "-data", filepath.Join(s.dir, "manager"), "-s3-endpoint", minioEndpoint,
		"-s3-bucket", s.Bucket, "-admin-token-file", tokFile}, managerFlags...)
	if s.pprof != "" {
		args = append(args, "-pprof-addr", s.pprof)
	}
	s.Manager, err = s.start("gef-manager", []string{
		"GEF_DATABASE_URL=" + s.DSN, "GEF_S3_ACCESS_KEY=" + minioAccessKey, "GEF_S3_SECRET_KEY=" + minioSecretKey,
	}, filepath.Join(s.bin, "gef-manager"), args...)
	if err != nil {
		return err
	}
	s.URL = "http://" + addr
	err = waitFor(ctx, time.Minute, "the manager is ready", func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		_, err = os.Stat(tokFile)
		return resp.StatusCode == http.StatusOK && err == nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, s.Manager.output())
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		return err
	}
	s.Token = strings.TrimSpace(string(tok))
	s.Admin = client.New(s.URL, s.Token)
	return nil
}

// NodeToken makes a node credential for name and returns its secret.
func (s *stack) NodeToken(ctx context.Context, name string) (string, error) {
	if _, err := s.Admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil {
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
			return "", fmt.Errorf("node %s: %w", name, err)
		}
	}
	tok, err := s.Admin.CreateToken(ctx, name, "bench", 0)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", name, err)
	}
	return tok.Secret, nil
}

// StartNode starts a gef-node process holding datasets (name → directory)
// and waits until the manager sees it ready.
func (s *stack) StartNode(ctx context.Context, name string, datasets map[string]string, capacity int, extra ...string) (*proc, error) {
	secret, err := s.NodeToken(ctx, name)
	if err != nil {
		return nil, err
	}
	tokFile := filepath.Join(s.dir, name+".token")
	if err := os.WriteFile(tokFile, []byte(secret), 0o600); err != nil {
		return nil, err
	}
	args := []string{"-manager", s.URL, "-token-file", tokFile, "-name", name,
		"-work-dir", filepath.Join(s.dir, "work-"+name), "-capacity", strconv.Itoa(capacity),
		"-memory", "256", "-log-level", "warn"}
	for ds, dir := range datasets {
		args = append(args, "-dataset", ds+"="+dir)
	}
	p, err := s.start("gef-node "+name, nil, filepath.Join(s.bin, "gef-node"), append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, 2*time.Minute, "node "+name+" is ready", func() bool {
		nodes, err := s.Admin.Nodes(ctx)
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
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.output())
	}
	return p, nil
}

// StopNode ends a node and waits for it, so the next figure has the
// machine to itself.
func (s *stack) StopNode(p *proc) { p.stop(syscall.SIGTERM, 30*time.Second) }

// Dataset makes a directory of files, named under the stack, readable by the
// unprivileged user containers run as.
func (s *stack) Dataset(name string, files map[string][]byte) (string, error) {
	dir := filepath.Join(s.dir, "datasets", name)
	for p, b := range files {
		f := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// Dir is a fresh directory under the stack's.
func (s *stack) Dir(name string) (string, error) {
	d := filepath.Join(s.dir, name)
	return d, os.MkdirAll(d, 0o755)
}

func (s *stack) close() {
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(syscall.SIGTERM, 30*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.S3 != nil && s.Bucket != "" {
		for o := range s.S3.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			_ = s.S3.RemoveObject(ctx, s.Bucket, o.Key, minio.RemoveObjectOptions{})
		}
		_ = s.S3.RemoveBucket(ctx, s.Bucket)
	}
	if s.db != nil {
		_, _ = s.db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+s.dbName+" WITH (FORCE)")
		s.db.Close()
	}
	if s.dir != "" && !s.keep {
		_ = os.RemoveAll(s.dir)
	}
	if s.Docker != nil {
		s.Docker.Close()
	}
}

// proc is a process of the stack.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log.Len() > 4<<20 { // keep the start and bound the rest
		return len(b), nil
	}
	return p.log.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// tail is the last n bytes of the process's output.
func (p *proc) tail(n int) string {
	out := p.output()
	return out[max(0, len(out)-n):]
}

// Pid is the process's id, for reading its accounting under /proc.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

func (s *stack) start(name string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

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

// waitFor checks cond often until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting until %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
