package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// The access matrix in docs/security.md is the specification of who may
// call what. TestAccessMatrix reads it and checks every cell against a
// running manager, on fresh objects for every cell.

var callers = []string{"anonymous", "user", "owner", "maintainer", "admin", "node", "other node"}

type matrixRow struct {
	method, path, body string
	want               map[string]int
	line               int
}

func parseMatrix(t *testing.T, path string) []matrixRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []matrixRow
	in, line := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line++
		l := sc.Text()
		if strings.HasPrefix(l, "## ") {
			in = l == "## Access matrix"
			continue
		}
		if !in || !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| endpoint") || strings.HasPrefix(l, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 2+len(callers) {
			t.Fatalf("security.md:%d: %d cells, want %d", line, len(cells), 2+len(callers))
		}
		ep := strings.TrimSpace(cells[0])
		ep, _, _ = strings.Cut(ep, " (") // a note in parentheses names the case
		method, p, ok := strings.Cut(ep, " ")
		if !ok {
			t.Fatalf("security.md:%d: endpoint %q is not METHOD PATH", line, ep)
		}
		r := matrixRow{method: method, path: p, body: strings.Trim(strings.TrimSpace(cells[1]), "`"), want: map[string]int{}, line: line}
		for i, c := range callers {
			var code int
			if _, err := fmt.Sscanf(strings.TrimSpace(cells[2+i]), "%d", &code); err != nil {
				t.Fatalf("security.md:%d: cell %q: %v", line, cells[2+i], err)
			}
			r.want[c] = code
		}
		rows = append(rows, r)
	}
	if len(rows) < 40 {
		t.Fatalf("security.md: only %d rows in the access matrix", len(rows))
	}
	return rows
}

// world is a manager with people, nodes, datasets and services, in which
// each cell of the matrix makes the objects it needs.
type world struct {
	t       *testing.T
	b       *bundle
	c       map[string]*client.Client
	tokens  map[string]string
	service gef.Service
	web     gef.Service

	mu       sync.Mutex // guards n1's state: a node polls one at a time
	images   []gef.NodeImage
	jobs     []string
	builds   []string
	sessions []gef.NodeSession
	seq      int
}

// digestD is the content digest n1 reports for its datasets.
var digestD = "sha256:" + strings.Repeat("d", 64)

// matrixImage is a service image a simulated node reports.
func matrixImage(seq int, version string, extra map[string]string) gef.NodeImage {
	labels := map[string]string{
		"eudat.gef.service.name": "Matrix", "eudat.gef.service.version": version,
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data",
		"eudat.gef.service.output.1.name": "out", "eudat.gef.service.output.1.path": "/out",
	}
	for k, v := range extra {
		labels[k] = v
	}
	return gef.NodeImage{ID: "sha256:" + fmt.Sprintf("%064x", seq), Labels: labels, Entrypoint: []string{"/svc"}}
}

func newWorld(t *testing.T, b *bundle) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, b: b, c: map[string]*client.Client{"anonymous": client.New(b.url, "")}, tokens: map[string]string{}}
	for name, role := range map[string]gef.Role{"user": gef.RoleUser, "owner": gef.RoleMaintainer,
		"maintainer": gef.RoleMaintainer, "n1": gef.RoleNode, "n2": gef.RoleNode} {
		if _, err := b.admin.CreateUser(ctx, name, role, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := b.admin.CreateToken(ctx, name, "matrix", 0)
		if err != nil {
			t.Fatal(err)
		}
		w.tokens[name] = tok.Secret
	}
	if _, err := b.admin.CreateUser(ctx, "carol", gef.RoleUser, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	admin, err := b.admin.CreateToken(ctx, "", "matrix", 0)
	if err != nil {
		t.Fatal(err)
	}
	w.tokens["admin"] = admin.Secret
	for caller, who := range map[string]string{"user": "user", "owner": "owner", "maintainer": "maintainer",
		"admin": "admin", "node": "n1", "other node": "n2"} {
		w.c[caller] = client.New(b.url, w.tokens[who])
	}
	w.images = []gef.NodeImage{matrixImage(1, "1.0", nil),
		matrixImage(2, "1.0", map[string]string{"eudat.gef.service.name": "Matrix web", "eudat.gef.service.http.port": "8080"})}
	w.seq = 2
	w.register()
	if err := w.c["other node"].Register(ctx, gef.NodeRegistration{Name: "n2", Capacity: 8,
		Datasets: []gef.NodeDataset{{Name: "e", Files: 1, Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	if w.service, err = w.c["owner"].RegisterImage(ctx, w.images[0].ID); err != nil {
		t.Fatal(err)
	}
	if w.web, err = w.c["owner"].RegisterImage(ctx, w.images[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.SetDatasetAccess(ctx, "closed", gef.DatasetAccess{Restricted: true}); err != nil {
		t.Fatal(err)
	}
	return w
}

// registration is what n1 reports of itself; callers hold w.mu.
func (w *world) registration() gef.NodeRegistration {
	return gef.NodeRegistration{Name: "n1", Capacity: 4096, Images: w.images,
		Datasets: []gef.NodeDataset{{Name: "d", Files: 1, Size: 1, Digest: digestD}, {Name: "closed", Files: 1, Size: 1, Digest: digestD}}}
}

func (w *world) register() {
	if err := w.c["node"].Register(context.Background(), w.registration()); err != nil {
		w.t.Fatal(err)
	}
}

// poll is n1's poll: it lists everything n1 holds, and takes whatever it
// is given, so nothing is ever reported lost. Callers hold w.mu.
func (w *world) poll() gef.PollResponse {
	resp, err := w.c["node"].Poll(context.Background(), w.pollRequest())
	if err != nil {
		w.t.Fatal(err)
	}
	for _, a := range resp.Jobs {
		w.jobs = append(w.jobs, a.JobID)
	}
	for _, b := range resp.Builds {
		w.builds = append(w.builds, b.BuildID)
	}
	for _, s := range resp.Sessions {
		w.sessions = append(w.sessions, gef.NodeSession{ID: s.SessionID})
	}
	return resp
}

func (w *world) pollRequest() gef.PollRequest {
	return gef.PollRequest{Free: 4096, SessionFree: 4096, Running: slices.Clone(w.jobs), Builds: slices.Clone(w.builds),
		Sessions: slices.Clone(w.sessions)}
}

func (w *world) fresh() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	return fmt.Sprintf("fresh%d", w.seq)
}

// runningJob is a job of owner's that n1 runs.
func (w *world) runningJob() gef.Assignment {
	ctx := context.Background()
	j, err := w.c["owner"].Submit(ctx, gef.JobRequest{Service: w.service.Name, Version: w.service.Version, Dataset: "d", Reuse: new(bool)})
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.poll().Jobs {
		if a.JobID == j.ID {
			if _, err := w.c["node"].Report(ctx, j.ID, gef.JobReport{State: gef.JobRunning, Attempt: a.Attempt,
				DatasetDigests: map[string]string{"data": digestD}}); err != nil {
				w.t.Fatal(err)
			}
			return a
		}
	}
	w.t.Fatalf("n1 was not given job %s", j.ID)
	return gef.Assignment{}
}

// doneJob is a job of owner's that succeeded with one output file.
func (w *world) doneJob() string {
	ctx := context.Background()
	a := w.runningJob()
	content := []byte("result of " + a.JobID)
	file := gef.OutputFile{Name: "out", Path: "result.txt"}
	urls, err := w.c["node"].UploadURLs(ctx, a.JobID, a.Attempt, []gef.OutputFile{file})
	if err != nil {
		w.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, urls["out/result.txt"], bytes.NewReader(content))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	sum := sha256.Sum256(content)
	file.Size, file.SHA256 = int64(len(content)), hex.EncodeToString(sum[:])
	code := 0
	if _, err := w.c["node"].Report(ctx, a.JobID, gef.JobReport{State: gef.JobSucceeded, Attempt: a.Attempt, ExitCode: &code,
		Outputs: []gef.OutputFile{file}}); err != nil {
		w.t.Fatal(err)
	}
	return a.JobID
}

// version publishes a fresh version of owner's service that no job uses.
func (w *world) version() string {
	id := w.image()
	svc, err := w.c["owner"].RegisterImage(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return svc.Version
}

// image has n1 report a fresh, unpublished version of owner's service.
func (w *world) image() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	img := matrixImage(w.seq, fmt.Sprintf("2.%d", w.seq), nil)
	w.images = append(w.images, img)
	w.register()
	return img.ID
}

// build is a build of owner's that n1 holds.
func (w *world) build() string {
	var b gef.Build
	spec := gef.BuildSpec{Base: w.service.Digest, Labels: map[string]string{"eudat.gef.service.version": w.fresh()}}
	if err := w.c["owner"].Do(context.Background(), http.MethodPost, "/api/v1/builds", spec, &b); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poll()
	if !slices.Contains(w.builds, b.ID) {
		w.t.Fatalf("n1 was not given build %s", b.ID)
	}
	return b.ID
}

// session is a session of owner's that n1 holds.
func (w *world) session() string {
	s, err := w.c["owner"].StartSession(context.Background(), gef.SessionRequest{JobRequest: gef.JobRequest{Service: w.web.Name, Dataset: "d"}})
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poll()
	if !slices.ContainsFunc(w.sessions, func(x gef.NodeSession) bool { return x.ID == s.ID }) {
		w.t.Fatalf("n1 was not given session %s", s.ID)
	}
	return s.ID
}

// fill replaces the placeholders of a row for one caller, making fresh
// objects as needed.
func (w *world) fill(caller, s string) string {
	ctx := context.Background()
	once := map[string]string{}
	get := func(key string, make func() string) string {
		if v, ok := once[key]; ok {
			return v
		}
		once[key] = make()
		return once[key]
	}
	repl := map[string]func() string{
		"{job}":     func() string { return get("job", func() string { return w.runningJob().JobID }) },
		"{done}":    func() string { return get("done", w.doneJob) },
		"{version}": func() string { return get("version", w.version) },
		"{image}":   func() string { return get("image", w.image) },
		"{build}":   func() string { return get("build", w.build) },
		"{session}": func() string { return get("session", w.session) },
		"{service}": func() string { return w.service.Name },
		"{web}":     func() string { return w.web.Name },
		"{fresh}":   func() string { return get("fresh", w.fresh) },
		"{public}": func() string {
			return get("public", func() string {
				id := w.doneJob()
				if err := w.c["owner"].Do(ctx, http.MethodPost, "/api/v1/jobs/"+id+"/visibility",
					map[string]string{"visibility": "public"}, nil); err != nil {
					w.t.Fatal(err)
				}
				return id
			})
		},
		"{token}": func() string {
			return get("token", func() string {
				tok, err := w.c["owner"].CreateToken(ctx, "", "doomed", time.Hour)
				if err != nil {
					w.t.Fatal(err)
				}
				return tok.ID
			})
		},
		"{group}": func() string {
			return get("group", func() string {
				g := w.fresh()
				if err := w.b.admin.CreateGroup(ctx, g); err != nil {
					w.t.Fatal(err)
				}
				return g
			})
		},
		"{build spec}": func() string {
			b, _ := json.Marshal(gef.BuildSpec{Base: w.service.Digest, Labels: map[string]string{"eudat.gef.service.version": w.fresh()}})
			return string(b)
		},
		"{crate of done}": func() string {
			var crate json.RawMessage
			if err := w.c["owner"].Do(ctx, http.MethodGet, "/api/v1/jobs/"+get("done", w.doneJob)+"/provenance", nil, &crate); err != nil {
				w.t.Fatal(err)
			}
			return string(crate)
		},
		"{registration of n1}": func() string {
			w.mu.Lock()
			defer w.mu.Unlock()
			b, _ := json.Marshal(w.registration())
			return string(b)
		},
	}
	for {
		i := strings.Index(s, "{")
		if i < 0 {
			return s
		}
		done := false
		for key, f := range repl {
			if strings.HasPrefix(s[i:], key) {
				s = s[:i] + f() + s[i+len(key):]
				done = true
				break
			}
		}
		if !done {
			// A JSON object, not a placeholder: fill what follows it.
			rest := w.fill(caller, s[i+1:])
			return s[:i+1] + rest
		}
	}
}

func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	rows := parseMatrix(t, "../../docs/security.md")
	b := setup(t)
	w := newWorld(t, b)

	// Every route is in the matrix, or named as tested elsewhere.
	covered := map[string]bool{}
	for _, r := range rows {
		p, _, _ := strings.Cut(r.path, "?")
		covered[r.method+" "+p] = true
	}
	for _, rt := range b.srv.Engine().Routes() {
		if strings.HasPrefix(rt.Path, "/s/") || strings.HasPrefix(rt.Path, "/api/v1/blobs/") {
			continue
		}
		found := false
		for c := range covered {
			m, p, _ := strings.Cut(c, " ")
			found = found || (m == rt.Method && routeMatches(rt.Path, p))
		}
		if !found {
			t.Errorf("route %s %s is not in the access matrix of docs/security.md", rt.Method, rt.Path)
		}
	}

	for _, r := range rows {
		for _, caller := range callers {
			name := fmt.Sprintf("%d %s %s as %s", r.line, r.method, r.path, caller)
			path, body := w.fill(caller, r.path), w.fill(caller, r.body)
			if caller == "node" || caller == "other node" {
				if r.path == "/api/v1/node/poll" {
					w.mu.Lock()
					req := w.pollRequest()
					w.mu.Unlock()
					if caller == "other node" {
						req = gef.PollRequest{}
					}
					bb, _ := json.Marshal(req)
					body = string(bb)
				}
			}
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequest(r.method, b.url+path, rd)
			if err != nil {
				t.Fatal(err)
			}
			if tok := w.tokens[map[string]string{"user": "user", "owner": "owner", "maintainer": "maintainer",
				"admin": "admin", "node": "n1", "other node": "n2"}[caller]]; tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			if strings.HasPrefix(r.path, "/jobs/") {
				req.Header.Set("Accept", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			if resp.StatusCode != r.want[caller] {
				t.Errorf("security.md:%s: got %d, want %d: %s", name, resp.StatusCode, r.want[caller], got)
			}
		}
	}
}

// routeMatches reports whether a matrix path fits a router pattern.
func routeMatches(pattern, p string) bool {
	pp, sp := strings.Split(pattern, "/"), strings.Split(p, "/")
	for i, seg := range pp {
		if strings.HasPrefix(seg, "*") {
			return i < len(sp)
		}
		if i >= len(sp) {
			return false
		}
		if strings.HasPrefix(seg, ":") {
			continue
		}
		if seg != sp[i] {
			return false
		}
	}
	return len(pp) == len(sp)
}
