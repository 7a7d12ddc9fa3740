package server

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/eudat-gef/gef"
)

// hostile is one malformed or hostile request.
type hostile struct {
	name   string
	method string
	path   string
	body   []byte
	ctype  string
	as     string // "admin", "user", "node" or "" for anonymous
	header map[string]string
}

// hostileCorpus builds the corpus: malformed JSON, wrong types, hostile
// values, path and id tricks, oversized and nested bodies, bad archives and
// a hostile node.
func hostileCorpus(w *world) []hostile {
	var c []hostile
	add := func(name, method, path, body, as string) {
		c = append(c, hostile{name: name, method: method, path: path, body: []byte(body), as: as})
	}
	jsonEndpoints := []string{"/api/v1/jobs", "/api/v1/services", "/api/v1/users", "/api/v1/tokens", "/api/v1/login",
		"/api/v1/password", "/api/v1/groups", "/api/v1/sessions", "/api/v1/builds", "/api/v1/jobs/from-provenance",
		"/api/v1/services/" + w.service.Name + "/run?wait=0"}
	malformed := map[string]string{
		"truncated":       `{"service":`,
		"array":           `[1,2,3]`,
		"string":          `"hello"`,
		"null":            `null`,
		"number":          `12345678901234567890`,
		"two objects":     `{}{}`,
		"trailing comma":  `{"service":"x",}`,
		"single quotes":   `{'service':'x'}`,
		"bare words":      `service=x&dataset=y`,
		"unknown field":   `{"servce":"x"}`,
		"invalid utf8":    "{\"service\":\"\xff\xfe\"}",
		"nul byte":        "{\"service\":\"a\x00b\"}",
		"deep nesting":    strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000),
		"huge string":     `{"service":"` + strings.Repeat("x", 2<<20) + `"}`,
		"empty":           ``,
		"whitespace only": "   \n\t ",
	}
	for _, ep := range jsonEndpoints {
		for name, body := range malformed {
			add(ep+" "+name, http.MethodPost, ep, body, "admin")
		}
	}
	svc := w.service.Name
	jobs := []struct{ name, body string }{
		{"float exit", `{"service":"` + svc + `","dataset":"d","params":{"n":1.5}}`},
		{"param is object", `{"service":"` + svc + `","dataset":"d","params":{"n":{"$gt":1}}}`},
		{"params is array", `{"service":"` + svc + `","dataset":"d","params":[1,2]}`},
		{"inputs is string", `{"service":"` + svc + `","inputs":"d"}`},
		{"input traversal", `{"service":"` + svc + `","inputs":{"../../etc":"d"}}`},
		{"dataset traversal", `{"service":"` + svc + `","dataset":"../../etc/passwd"}`},
		{"dataset sql", `{"service":"` + svc + `","dataset":"d' OR '1'='1"}`},
		{"service sql", `{"service":"x'; DROP TABLE jobs; --","dataset":"d"}`},
		{"service shell", `{"service":"$(rm -rf /)","dataset":"d"}`},
		{"version weird", `{"service":"` + svc + `","version":"../../..","dataset":"d"}`},
		{"1e400 param", `{"service":"` + svc + `","dataset":"d","params":{"n":1e400}}`},
		{"many params", `{"service":"` + svc + `","dataset":"d","params":{` + manyParams(200) + `}}`},
		{"both dataset and inputs", `{"service":"` + svc + `","dataset":"d","inputs":{"data":"d"}}`},
		{"max attempts huge", `{"service":"` + svc + `","dataset":"d","max_attempts":1000000}`},
		{"max attempts negative", `{"service":"` + svc + `","dataset":"d","max_attempts":-5}`},
		{"reuse is string", `{"service":"` + svc + `","dataset":"d","reuse":"no"}`},
		{"emoji service", `{"service":"🔥🔥","dataset":"d"}`},
		{"very long dataset", `{"service":"` + svc + `","dataset":"` + strings.Repeat("d", 5000) + `"}`},
	}
	for _, j := range jobs {
		add("job "+j.name, http.MethodPost, "/api/v1/jobs", j.body, "user")
	}
	ids := []string{"..", "../../etc/passwd", "%2e%2e%2f%2e%2e", strings.Repeat("A", 5000), "01M80' OR 1=1 --",
		"<script>alert(1)</script>", "%00", "0000000000000000000000000%", "NaN", "-1"}
	for _, id := range ids {
		for _, p := range []string{"/api/v1/jobs/%s", "/api/v1/jobs/%s/logs", "/api/v1/jobs/%s/provenance",
			"/api/v1/jobs/%s/outputs/out/..%%2f..%%2fsecret", "/api/v1/builds/%s", "/api/v1/sessions/%s"} {
			add("id "+p+" "+id[:min(len(id), 12)], http.MethodGet, fmt.Sprintf(p, id), "", "user")
		}
	}
	for _, q := range []string{"?limit=abc", "?limit=-1", "?limit=99999999999999999999", "?state=' OR 1=1",
		"?page_token=../../", "?page_token=" + strings.Repeat("Z", 3000), "?owner=%00", "?dataset=%ff%fe"} {
		add("list "+q, http.MethodGet, "/api/v1/jobs"+q, "", "user")
		add("sessions list "+q, http.MethodGet, "/api/v1/sessions"+q, "", "user")
	}
	for _, v := range []string{"?wait=-1", "?wait=1e9", "?wait=abc", "?wait=" + strings.Repeat("9", 40)} {
		add("call wait "+v, http.MethodPost, "/api/v1/services/"+svc+"/run"+v, `{"dataset":"d"}`, "user")
	}
	// Bad credentials.
	for _, auth := range []string{"Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer a.b.c", "Bearer " + strings.Repeat("x", 8000),
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.", "bearer\tx"} {
		c = append(c, hostile{name: "auth " + auth[:min(len(auth), 20)], method: http.MethodGet, path: "/api/v1/jobs",
			header: map[string]string{"Authorization": auth}})
	}
	// Hostile archives.
	for name, tarball := range hostileTars() {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("image", "image.tar")
		fw.Write(tarball)
		mw.Close()
		c = append(c, hostile{name: "image tar " + name, method: http.MethodPost, path: "/api/v1/services", body: buf.Bytes(),
			ctype: mw.FormDataContentType(), as: "admin"})
		c = append(c, hostile{name: "build context " + name, method: http.MethodPost, path: "/api/v1/builds", body: tarball,
			ctype: "application/x-tar", as: "admin"})
	}
	c = append(c, hostile{name: "multipart without boundary", method: http.MethodPost, path: "/api/v1/services",
		body: []byte("--x\r\n"), ctype: "multipart/form-data", as: "admin"})
	// A hostile node.
	job := gef.NewID()
	for name, body := range map[string]string{
		"upload traversal":  `{"attempt":1,"files":[{"name":"out","path":"../../../etc/passwd"}]}`,
		"upload absolute":   `{"attempt":1,"files":[{"name":"out","path":"/etc/passwd"}]}`,
		"upload undeclared": `{"attempt":1,"files":[{"name":"secrets","path":"a"}]}`,
		"upload none":       `{"attempt":1,"files":[]}`,
		"upload backslash":  `{"attempt":1,"files":[{"name":"out","path":"..\\..\\x"}]}`,
		"upload many":       `{"attempt":1,"files":[` + strings.Repeat(`{"name":"out","path":"a"},`, 3000) + `{"name":"out","path":"b"}]}`,
	} {
		add("node "+name, http.MethodPost, "/api/v1/node/jobs/"+job+"/uploads", body, "node")
	}
	for name, body := range map[string]string{
		"report queued":         `{"state":"queued"}`,
		"report bogus":          `{"state":"exploded"}`,
		"report future":         `{"state":"running","at":"9999-01-01T00:00:00Z"}`,
		"report outputs":        `{"state":"succeeded","outputs":[{"name":"out","path":"../x","size":-1,"sha256":"zz"}]}`,
		"report huge exit":      `{"state":"failed","exit_code":99999999999}`,
		"report attempt string": `{"state":"running","attempt":"1"}`,
	} {
		add("node "+name, http.MethodPost, "/api/v1/node/jobs/"+job+"/report", body, "node")
	}
	for name, q := range map[string]string{"log seq": "?attempt=1&seq=-1&stream=stdout", "log stream": "?attempt=1&seq=0&stream=stdin",
		"log attempt": "?attempt=abc&seq=0&stream=stdout", "log huge": "?attempt=99999999999&seq=99999999999999&stream=stderr"} {
		add("node "+name, http.MethodPost, "/api/v1/node/jobs/"+job+"/logs"+q, "data", "node")
	}
	for name, body := range map[string]string{
		"register other":     `{"name":"n2","capacity":1}`,
		"register capacity":  `{"name":"n1","capacity":-1}`,
		"register datasets":  `{"name":"n1","capacity":1,"datasets":[{"name":"../x"}]}`,
		"register image":     `{"name":"n1","capacity":1,"images":[{"id":"latest"}]}`,
		"poll negative free": `{"free":-100,"wait_ms":-1}`,
		"poll huge wait":     `{"free":1,"wait_ms":999999999999}`,
	} {
		path := "/api/v1/node/register"
		if strings.HasPrefix(name, "poll") {
			path = "/api/v1/node/poll"
		}
		add("node "+name, http.MethodPost, path, body, "node")
	}
	add("node image not an id", http.MethodGet, "/api/v1/node/images/latest", "", "node")
	add("node image traversal", http.MethodGet, "/api/v1/node/images/..%2f..%2fetc", "", "node")
	return c
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"p%d":%d`, i, i)
	}
	return b.String()
}

// hostileTars are archives that try to escape or exhaust.
func hostileTars() map[string][]byte {
	mk := func(entries ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			h := h
			if h.Typeflag == 0 {
				h.Typeflag = tar.TypeReg
			}
			body := []byte("x")
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(body))
			}
			_ = tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				_, _ = tw.Write(body)
			}
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	return map[string][]byte{
		"traversal":        mk(tar.Header{Name: "../../etc/passwd"}),
		"absolute":         mk(tar.Header{Name: "/etc/passwd"}),
		"escaping symlink": mk(tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../../../etc/shadow"}),
		"device":           mk(tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}),
		"garbage":          []byte("this is not a tar archive at all"),
		"empty":            {},
		"manifest lies":    mk(tar.Header{Name: "manifest.json"}),
	}
}

// TestHostileRequests sends the corpus: whatever arrives, no answer is a
// 5xx, no handler panics, and the manager still answers afterwards.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	b := setupLogged(t, slog.New(slog.NewTextHandler(&logs, nil)))
	w := newWorld(t, b)
	corpus := hostileCorpus(w)
	t.Logf("%d hostile requests", len(corpus))
	if len(corpus) < 150 {
		t.Fatalf("the corpus has %d requests, want at least 150", len(corpus))
	}
	tokens := map[string]string{"admin": w.tokens["admin"], "user": w.tokens["user"], "node": w.tokens["n1"]}
	for _, h := range corpus {
		req, err := http.NewRequest(h.method, b.url+h.path, bytes.NewReader(h.body))
		if err != nil {
			// The client refuses to send it; so would any honest client.
			continue
		}
		if h.ctype != "" {
			req.Header.Set("Content-Type", h.ctype)
		} else if len(h.body) > 0 {
			req.Header.Set("Content-Type", "application/json")
		}
		if tok := tokens[h.as]; tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range h.header {
			req.Header[k] = []string{v}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", h.name, err)
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("%s: %s %s answered %d: %s", h.name, h.method, h.path[:min(len(h.path), 80)], resp.StatusCode, msg)
		}
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("a handler panicked:\n%s", logs.String())
	}
	resp, err := http.Get(b.url + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the manager is not ready after the corpus: %v", err)
	}
	resp.Body.Close()
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test to share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
