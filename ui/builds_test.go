package ui

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

var buildLocation = regexp.MustCompile(`^/builds/([0-9A-Z]{26})$`)

// contextFiles reads back the build context GEF stored for a build.
func (b *bundle) contextFiles(t *testing.T, id string) map[string]string {
	t.Helper()
	rc, _, err := b.m.Objects().Get(context.Background(), "builds/"+id+"/context.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = string(data)
	}
}

func TestBuildFromTheForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	maint := b.user(t, "mae", gef.RoleMaintainer)
	other := b.user(t, "moe", gef.RoleMaintainer)
	form := maint.get("/builds/new?base=table-stats:1.0.0")
	for _, want := range []string{`<form method="post" action="/builds" enctype="multipart/form-data"`, `<form method="post" action="/builds/spec"`,
		`<input type="text" id="b-base" name="base" value="table-stats:1.0.0" list="bases" required`, `<option value="table-stats:1.0.0">`,
		`name="file.3.content"`, `<a href="/builds" aria-current="page">Builds</a>`} {
		if !strings.Contains(form.body, want) {
			t.Errorf("the build form lacks %s", want)
		}
	}
	tok := csrfInput.FindStringSubmatch(form.body)[1]

	// A spec: problems are shown at their fields, labels by their key.
	bad := maint.post("/builds/spec", url.Values{"csrf": {tok}, "base": {"table-stats:1.0.0"}, "apt": {"cdo ;rm"},
		"file.1.path": {"etc/x"}, "file.1.content": {"y"},
		"labels": {"eudat.gef.service.version=1.0.1\neudat.gef.service.output.1.path=relative"}})
	for _, want := range []string{`id="b-apt-error" role="alert">&#34;;rm&#34; is not a package name`,
		`id="b-files-error" role="alert">etc/x: the path must be absolute`} {
		if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, want) {
			t.Errorf("a bad spec: %d, lacks %s", bad.status, want)
		}
	}
	if t.Failed() {
		t.Fatal(bad.body)
	}
	labels := maint.post("/builds/spec", url.Values{"csrf": {tok}, "base": {"table-stats:1.0.0"},
		"labels": {"eudat.gef.service.version=1.0.1\r\neudat.gef.service.output.1.path=relative"}})
	if labels.status != http.StatusUnprocessableEntity || !strings.Contains(labels.body, `id="b-labels-error" role="alert">eudat.gef.service.output.1.path: `) {
		t.Fatalf("a spec whose image would have a bad label: %d\n%s", labels.status, labels.body)
	}
	if a := maint.post("/builds/spec", url.Values{"csrf": {tok}, "base": {"table-stats"}, "labels": {"no equals sign"}}); a.status != http.StatusUnprocessableEntity ||
		!strings.Contains(a.body, "Line 1: write each label as KEY=VALUE.") {
		t.Fatalf("a label line without =: %d", a.status)
	}
	if a := maint.post("/builds/spec", url.Values{"csrf": {tok}, "base": {"table-stats:1.0.0"}}); a.status != http.StatusConflict ||
		!strings.Contains(a.body, "is already published, and a build makes a new image") {
		t.Fatalf("a spec that would rebind 1.0.0: %d\n%s", a.status, a.body)
	}
	if a := maint.post("/builds/spec", url.Values{"base": {"table-stats:1.0.0"}}); a.status != http.StatusForbidden {
		t.Fatalf("a spec without the form token: %d", a.status)
	}

	good := maint.post("/builds/spec", url.Values{"csrf": {tok}, "base": {"table-stats:1.0.0"}, "apt": {"cdo  netcdf-bin"},
		"file.2.path": {"/usr/local/bin/run.sh"}, "file.2.content": {"#!/bin/sh\r\necho hi\r\n"},
		"entrypoint": {"/usr/local/bin/run.sh\r\n--flag with space"}, "labels": {"eudat.gef.service.version=1.0.1"}})
	m := buildLocation.FindStringSubmatch(good.location)
	if good.status != http.StatusSeeOther || m == nil {
		t.Fatalf("a good spec: %d %q\n%s", good.status, good.location, good.body)
	}
	spec, err := b.m.Build(context.Background(), b.admin, m[1])
	if err != nil || spec.Kind != gef.BuildFromSpec || strings.Join(spec.Spec.Apt, " ") != "cdo netcdf-bin" ||
		spec.Spec.Files["/usr/local/bin/run.sh"] != "#!/bin/sh\necho hi\n" || strings.Join(spec.Spec.Entrypoint, "|") != "/usr/local/bin/run.sh|--flag with space" {
		t.Fatalf("the spec stored: %+v %v", spec.Spec, err)
	}
	page := maint.get(good.location)
	for _, want := range []string{`data-build="` + spec.ID + `"`, `data-logs="/api/v1/builds/` + spec.ID + `/logs"`, `data-state="queued"`,
		"<code>cdo netcdf-bin</code>", "<code>/usr/local/bin/run.sh</code>", `<code>[&#34;/usr/local/bin/run.sh&#34;,&#34;--flag with space&#34;]</code>`,
		"<code>eudat.gef.service.version</code></dt><dd><code>1.0.1</code>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the build page lacks %s", want)
		}
	}
	if live := maint.get(good.location + "/live"); live.status != http.StatusOK || !strings.Contains(live.body, `data-live="status"`) || strings.Contains(live.body, "<html") {
		t.Fatalf("the build's live part: %d\n%s", live.status, live.body)
	}

	// A Dockerfile typed in, with a context whose own Dockerfile it replaces.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, map[string]string{"Dockerfile": "FROM scratch\n", "./data/table.csv": "a,b\n"}))
	zw.Close()
	dockerfile := "FROM " + imageID + "\r\nCOPY data/ /data/\r\nLABEL eudat.gef.service.version=1.0.2\r\n"
	up := maint.postMultipart("/builds", part{name: "csrf", content: []byte(tok)}, part{name: "dockerfile", content: []byte(dockerfile)},
		part{name: "context", filename: "context.tgz", content: gz.Bytes()})
	m = buildLocation.FindStringSubmatch(up.location)
	if up.status != http.StatusSeeOther || m == nil {
		t.Fatalf("a Dockerfile build: %d %q\n%s", up.status, up.location, up.body)
	}
	if files := b.contextFiles(t, m[1]); len(files) != 2 || files["Dockerfile"] != strings.ReplaceAll(dockerfile, "\r\n", "\n") || files["./data/table.csv"] != "a,b\n" {
		t.Fatalf("the context stored: %q", files)
	}
	// The Dockerfile alone, or the context alone.
	alone := maint.postMultipart("/builds", part{name: "csrf", content: []byte(tok)}, part{name: "dockerfile", content: []byte("FROM " + imageID + "\nLABEL a=b\n")},
		part{name: "context"})
	if m := buildLocation.FindStringSubmatch(alone.location); m == nil || len(b.contextFiles(t, m[1])) != 1 {
		t.Fatalf("a Dockerfile without a context: %d %q\n%s", alone.status, alone.location, alone.body)
	}
	ctxOnly := maint.postMultipart("/builds", part{name: "csrf", content: []byte(tok)}, part{name: "dockerfile", content: []byte("")},
		part{name: "context", filename: "c.tar", content: tarOf(t, map[string]string{"Dockerfile": "FROM " + imageID + "\nLABEL c=d\n"})})
	if ctxOnly.status != http.StatusSeeOther {
		t.Fatalf("a context alone: %d\n%s", ctxOnly.status, ctxOnly.body)
	}
	for name, parts := range map[string][]part{
		"nothing":               {{name: "dockerfile", content: []byte("  \r\n")}, {name: "context"}},
		"no Dockerfile at all":  {{name: "dockerfile", content: []byte("")}, {name: "context", filename: "c.tar", content: tarOf(t, map[string]string{"x": "y"})}},
		"a context of garbage":  {{name: "dockerfile", content: []byte("FROM scratch\n")}, {name: "context", filename: "c.tar", content: []byte("garbage, not a tar")}},
		"a context of garbage2": {{name: "dockerfile", content: []byte("")}, {name: "context", filename: "c.tar", content: []byte("garbage, not a tar")}},
	} {
		a := maint.postMultipart("/builds", append([]part{{name: "csrf", content: []byte(tok)}}, parts...)...)
		if a.status != http.StatusUnprocessableEntity || !regexp.MustCompile(`id="b-(dockerfile|context)-error" role="alert">\S`).MatchString(a.body) {
			t.Errorf("%s: %d\n%s", name, a.status, a.body)
		}
	}
	if a := maint.postMultipart("/builds", part{name: "dockerfile", content: []byte("FROM scratch\n")}); a.status != http.StatusForbidden {
		t.Fatalf("a build without the form token: %d", a.status)
	}

	// The list shows one's own builds; another maintainer's are not found.
	list := maint.get("/builds")
	if n := strings.Count(list.body, `<tr data-build=`); n != 4 || !strings.Contains(list.body, `<tr data-build="`+spec.ID+`">`) {
		t.Fatalf("the builds list shows %d builds:\n%s", n, list.body)
	}
	if a := other.get("/builds"); strings.Contains(a.body, `<tr data-build=`) || !strings.Contains(a.body, "No builds yet") {
		t.Fatal("another maintainer sees these builds")
	}
	if a := other.get("/builds/" + spec.ID); a.status != http.StatusNotFound {
		t.Fatalf("another maintainer on a build: %d", a.status)
	}
	if a := maint.get("/builds?state=nonsense"); a.status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad state filter: %d", a.status)
	}
}
