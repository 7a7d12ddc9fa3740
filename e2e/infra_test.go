package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	dockerclient "github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testenv"
)

// Private services for fault injection: a test that stops MinIO or
// restarts PostgreSQL runs its own, on its own port and data directory,
// and never touches the shared ones other tests use.

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// minioServer is a MinIO server process of one test.
type minioServer struct {
	t    *testing.T
	cfg  testenv.MinIOConfig
	dir  string
	bin  string
	proc *proc
}

func minioBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "minio")
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "the minio server binary", err)
	return ""
}

// startMinIO starts a private MinIO server listening on host.
func startMinIO(t *testing.T, host string) *minioServer {
	t.Helper()
	m := &minioServer{t: t, dir: t.TempDir(), bin: minioBinary(t),
		cfg: testenv.MinIOConfig{Endpoint: freePort(t, host), AccessKey: "gefprivate", SecretKey: "gefprivate-secret"}}
	m.start()
	return m
}

func (m *minioServer) start() {
	m.t.Helper()
	console := freePort(m.t, "127.0.0.1")
	m.proc = start(m.t, "minio "+m.cfg.Endpoint, []string{"MINIO_ROOT_USER=" + m.cfg.AccessKey,
		"MINIO_ROOT_PASSWORD=" + m.cfg.SecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off"},
		m.bin, "server", "--quiet", "--address", m.cfg.Endpoint, "--console-address", console, m.dir)
	eventually(m.t, 60*time.Second, "MinIO at "+m.cfg.Endpoint+" is ready", func() bool {
		resp, err := http.Get("http://" + m.cfg.Endpoint + "/minio/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop kills the server; restart brings it back on the same port and data.
func (m *minioServer) stop() { m.proc.kill() }

func (m *minioServer) restart() {
	m.t.Helper()
	m.start()
}

// pause freezes the server, connections and all; resume thaws it.
func (m *minioServer) pause()  { _ = m.proc.cmd.Process.Signal(syscall.SIGSTOP) }
func (m *minioServer) resume() { _ = m.proc.cmd.Process.Signal(syscall.SIGCONT) }

// pgServer is a PostgreSQL cluster of one test.
type pgServer struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	asPG bool // run the tools as the postgres user: they refuse root
}

func postgresBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("initdb")
	if err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(p)
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	testenv.Unavailable(t, "the PostgreSQL server binaries (initdb)", err)
	return ""
}

// startPostgres initdbs a cluster in a temporary directory and starts it on
// a free port on 127.0.0.1.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	pg := &pgServer{t: t, bin: postgresBin(t), asPG: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "gef-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg.dir = dir
	t.Cleanup(func() {
		_ = pg.ctl("-m", "immediate", "stop")
		_ = os.RemoveAll(dir)
	})
	if pg.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.Unavailable(t, "the postgres user", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	_, portStr, _ := net.SplitHostPort(freeAddr(t))
	pg.port, _ = strconv.Atoi(portStr)
	if out, err := pg.run("initdb", "-D", pg.data(), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// fsync is off: a crashed server keeps what the OS holds. Commits
	// wait for the WAL write, so an accepted job survives a crash.
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\n"+
		"synchronous_commit = on\nmax_connections = 200\n", pg.port, dir)
	f, err := os.OpenFile(filepath.Join(pg.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pg.start()
	return pg
}

func (pg *pgServer) data() string { return filepath.Join(pg.dir, "data") }

// dsn is the DSN of the cluster's postgres database.
func (pg *pgServer) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

func (pg *pgServer) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(pg.bin, tool), args...)
	if pg.asPG {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, tool)}, args...)...)
	}
	return cmd.CombinedOutput()
}

func (pg *pgServer) ctl(args ...string) error {
	out, err := pg.run("pg_ctl", append([]string{"-D", pg.data(), "-w", "-t", "60"}, args...)...)
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %w\n%s", args, err, out)
	}
	return nil
}

func (pg *pgServer) start() {
	pg.t.Helper()
	if err := pg.ctl("-l", filepath.Join(pg.dir, "log"), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "log"))
		pg.t.Fatalf("%v\n%s", err, log)
	}
}

// crash stops the server at once, as a crash would: no shutdown checkpoint.
func (pg *pgServer) crash() {
	pg.t.Helper()
	if err := pg.ctl("-m", "immediate", "stop"); err != nil {
		pg.t.Fatal(err)
	}
}

// Node agents in containers, on a private network the test can cut.

// dockerNet is a private bridge network.
type dockerNet struct {
	t       *testing.T
	cli     *dockerclient.Client
	name    string
	gateway string // the host's address on it
}

func dockerAPI(t *testing.T) *dockerclient.Client {
	t.Helper()
	testenv.Docker(t)
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newDockerNet(t *testing.T) *dockerNet {
	t.Helper()
	cli := dockerAPI(t)
	ctx := context.Background()
	n := &dockerNet{t: t, cli: cli, name: randomName("gef-e2e-")}
	resp, err := cli.NetworkCreate(ctx, n.name, network.CreateOptions{Driver: "bridge", Labels: map[string]string{"org.eudat.gef.e2e": "1"}})
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() { _ = cli.NetworkRemove(context.Background(), resp.ID) })
	info, err := cli.NetworkInspect(ctx, resp.ID, network.InspectOptions{})
	if err != nil || len(info.IPAM.Config) == 0 || info.IPAM.Config[0].Gateway == "" {
		t.Fatalf("network %s has no gateway: %v", n.name, err)
	}
	n.gateway = info.IPAM.Config[0].Gateway
	return n
}

func (n *dockerNet) disconnect(containerID string) {
	n.t.Helper()
	if err := n.cli.NetworkDisconnect(context.Background(), n.name, containerID, true); err != nil {
		n.t.Fatalf("disconnect: %v", err)
	}
}

func (n *dockerNet) connect(containerID string) {
	n.t.Helper()
	if err := n.cli.NetworkConnect(context.Background(), n.name, containerID, nil); err != nil {
		n.t.Fatalf("connect: %v", err)
	}
}

// nodeImage builds an image FROM scratch holding a static gef-node.
func nodeImage(t *testing.T, s *stack) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gef-node")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "../gef-node")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static gef-node: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY gef-node /gef-node\nENTRYPOINT [\"/gef-node\"]\n")},
		{"gef-node", 0o755, b},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tag := randomName("gef-e2e/node:")
	id, err := s.rt.Build(ctx, &ctxTar, tag, io.Discard)
	if err != nil {
		t.Fatalf("build the node image: %v", err)
	}
	t.Cleanup(func() { _ = s.rt.RemoveImage(context.Background(), tag) })
	return id
}

// nodeContainer is a gef-node running in a container on a private network.
// It drives the host's engine through its socket, and sees the datasets
// and its work directory at their host paths, so that the binds of the
// job containers it makes resolve on the host.
type nodeContainer struct {
	t    *testing.T
	cli  *dockerclient.Client
	id   string
	name string
}

func (s *stack) nodeInContainer(n *dockerNet, image, name string, datasets map[string]string, capacity int) *nodeContainer {
	t := s.t
	t.Helper()
	url := "http://" + net.JoinHostPort(n.gateway, portOf(s.url))
	args := append(s.nodeArgs(url, name, datasets), "-capacity", strconv.Itoa(capacity))
	if err := os.MkdirAll(s.workDir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	binds := []string{"/var/run/docker.sock:/var/run/docker.sock", s.dir + ":" + s.dir}
	for _, dir := range datasets {
		binds = append(binds, dir+":"+dir+":ro")
	}
	ctx := context.Background()
	resp, err := n.cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: args,
		Labels: map[string]string{"org.eudat.gef.e2e": "1"}},
		&container.HostConfig{Binds: binds, NetworkMode: container.NetworkMode(n.name)}, nil, nil, randomName("gef-e2e-node-"))
	if err != nil {
		t.Fatalf("create the node container: %v", err)
	}
	c := &nodeContainer{t: t, cli: n.cli, id: resp.ID, name: name}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- node container %s log ---\n%s", name, c.logs())
		}
		_ = n.cli.ContainerRemove(context.Background(), c.id, container.RemoveOptions{Force: true})
		// The job containers it left, if any.
		if left, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelNode: name}); err == nil {
			for _, l := range left {
				_ = s.rt.Remove(context.Background(), l.ID)
			}
		}
	})
	if err := n.cli.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
		t.Fatalf("start the node container: %v", err)
	}
	s.waitNode(name)
	return c
}

func (c *nodeContainer) logs() string {
	rc, err := c.cli.ContainerLogs(context.Background(), c.id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var b bytes.Buffer
	_, _ = stdcopy.StdCopy(&b, &b, rc)
	return b.String()
}

func portOf(url string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"))
	return port
}
