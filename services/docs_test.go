package services

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// The worked example in docs/service-labels.md is checked here, so the page
// cannot drift from what the code does.
const docPath = "../docs/service-labels.md"

// codeBlocks returns the fenced blocks of a markdown text in order, with
// their language tags.
func codeBlocks(text string) (langs, bodies []string) {
	var body []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			if in {
				bodies = append(bodies, strings.Join(body, "\n"))
				body = nil
			} else {
				langs = append(langs, strings.TrimPrefix(line, "```"))
			}
			in = !in
			continue
		}
		if in {
			body = append(body, line)
		}
	}
	return langs, bodies
}

var labelLine = regexp.MustCompile(`^LABEL "([^"\\]+)"="([^"\\]*)"$`)

func dockerfileLabels(t *testing.T, body string) map[string]string {
	t.Helper()
	labels := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "LABEL") {
			continue
		}
		m := labelLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot read %q", line)
		}
		labels[m[1]] = m[2]
	}
	return labels
}

func TestDocExample(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	langs, bodies := codeBlocks(doc)
	if len(bodies) < 5 || langs[0] != "dockerfile" || langs[1] != "json" || langs[3] != "dockerfile" {
		t.Fatalf("the page's code blocks changed (%q); update this test", langs)
	}

	labels := dockerfileLabels(t, bodies[0])
	svc, err := Parse(labels)
	if err != nil {
		t.Fatalf("the worked example does not parse:\n%v", err)
	}
	if svc.Name != "csv-column-stats" || svc.Version != "1.0.0" || len(svc.Params) != 4 ||
		svc.Resources.CPUs != 1 || svc.Resources.MemoryBytes != 512<<20 || svc.Resources.TimeoutSeconds != 1800 {
		t.Errorf("worked example parsed to %+v", svc)
	}

	params, err := ValidateParams(svc, decode(t, bodies[1], false))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(Argv(svc, params), " "), strings.TrimSpace(bodies[2]); got != want {
		t.Errorf("sample argv is %q, the page says %q", got, want)
	}
	canon, _ := CanonicalParams(params)
	if !strings.Contains(doc, "`"+string(canon)+"`") {
		t.Errorf("the page does not show the canonical JSON %s", canon)
	}

	// The table of requests and their arguments.
	row := regexp.MustCompile("^\\| `(\\{.*\\})` \\| (?:`(--[^`]*)`|refused: `([^`]*)`) \\|$")
	rows := 0
	for _, line := range strings.Split(doc, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		got, err := ValidateParams(svc, decode(t, m[1], false))
		switch {
		case m[3] != "" && (err == nil || err.Error() != m[3]):
			t.Errorf("%s: got error %v, the page says %q", m[1], err, m[3])
		case m[2] != "" && err != nil:
			t.Errorf("%s: %v", m[1], err)
		case m[2] != "" && strings.Join(Argv(svc, got), " ") != m[2]:
			t.Errorf("%s: argv %q, the page says %q", m[1], Argv(svc, got), m[2])
		}
	}
	if rows != 4 {
		t.Errorf("found %d rows of the argv table, want 4", rows)
	}

	// The bad labels: the fixes of the second Dockerfile block, with
	// param.2.values and param.3 gone.
	bad := with(labels)
	for k := range bad {
		if strings.HasPrefix(k, LabelPrefix+"param.3.") || k == LabelPrefix+"param.2.values" {
			delete(bad, k)
		}
	}
	for k, v := range dockerfileLabels(t, bodies[3]) {
		bad[k] = v
	}
	_, err = Parse(bad)
	if want := strings.TrimSpace(bodies[4]); err == nil || err.Error() != want {
		t.Errorf("bad labels give\n%v\nthe page says\n%s", err, want)
	}

	// The build spec example is a spec, and its labels, on the worked
	// example's, still make a valid service.
	found := false
	for i, b := range bodies {
		if langs[i] != "json" || !strings.Contains(b, `"base"`) {
			continue
		}
		found = true
		var spec gef.BuildSpec
		dec := json.NewDecoder(strings.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			t.Fatalf("the build spec example: %v", err)
		}
		merged := with(labels)
		for k, v := range spec.Labels {
			merged[k] = v
		}
		if got, err := Parse(merged); err != nil || got.Name != svc.Name || got.Version == svc.Version {
			t.Errorf("the build spec example's labels give %+v, %v", got, err)
		}
		if spec.Base != svc.Name+":"+svc.Version {
			t.Errorf("the build spec example builds on %q, not on the worked example", spec.Base)
		}
	}
	if !found {
		t.Error("the page has no build spec example")
	}

	// Every key the page mentions in a table is one the schema knows.
	keyCell := regexp.MustCompile("^\\| `([a-z0-9]+(?:\\.[a-z0-9N]+)+)`(?:, `([a-z0-9.N]+)`)? \\|")
	for _, line := range strings.Split(doc, "\n") {
		m := keyCell.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, k := range m[1:] {
			if k != "" && !knownKey(LabelPrefix+strings.ReplaceAll(k, ".N.", ".1.")) {
				t.Errorf("the page documents %q, which the schema does not know", k)
			}
		}
	}
	// And every key the schema knows is on the page.
	var keys []string
	for f := range topFields {
		keys = append(keys, f)
	}
	for s, fields := range sectionFields {
		for f := range fields {
			keys = append(keys, s+"."+f)
		}
	}
	for g, fields := range groupFields {
		for f := range fields {
			keys = append(keys, g+".N."+f)
		}
	}
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("the page does not document %q", k)
		}
	}
}
