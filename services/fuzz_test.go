package services

import (
	"encoding/json"
	"errors"
	"path"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

func FuzzParse(f *testing.F) {
	seeds := []struct {
		k1, v1   string
		prefix1  bool
		k2, v2   string
		prefix2  bool
		original bool
	}{
		{"description", "x", true, "version", "2", true, false},
		{"input.2.name", "more", true, "input.2.path", "/data/more", true, false},
		{"input.3.name", "gap", true, "input.3.path", "/gap", true, false},
		{"output.2.path", "/out/../data", true, "output.2.name", "o", true, true},
		{"param.9.type", "enum", true, "param.9.values", "a,a", true, false},
		{"param.1.default", "1001", true, "param.1.max", "1e3", true, false},
		{"param.1.pattern", "a)|(b", true, "param.1.default", "b", true, false},
		{"resources.memory", "1.5GiB", true, "resources.timeout", "500ms", true, false},
		{"http.port", "65535", true, "http.path", "/x y", true, false},
		{"name", "Straße 数据", true, "org.opencontainers.image.description", "d", false, true},
		{"input.1.type", "string", true, "input.1.filename", "..", true, true},
		{"input.01.name", "x", true, "EUDAT.gef.service.name", "x", false, false},
	}
	for _, s := range seeds {
		f.Add(s.k1, s.v1, s.prefix1, s.k2, s.v2, s.prefix2, s.original)
	}
	f.Fuzz(func(t *testing.T, k1, v1 string, prefix1 bool, k2, v2 string, prefix2 bool, useOriginal bool) {
		base := csvStatsLabels
		if useOriginal {
			base = original
		}
		labels := with(base)
		// The prefix flags let the fuzzer reach the schema without having
		// to discover "eudat.gef.service." itself.
		if prefix1 {
			k1 = LabelPrefix + k1
		}
		if prefix2 {
			k2 = LabelPrefix + k2
		}
		labels[k1] = v1
		labels[k2] = v2

		svc, err := Parse(labels)
		again, err2 := Parse(labels)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(svc, again) {
			t.Fatalf("Parse is not deterministic")
		}
		if err != nil {
			checkParseError(t, err, err2)
			return
		}
		checkService(t, svc, labels)
	})
}

func checkParseError(t *testing.T, err, again error) {
	t.Helper()
	if !errors.Is(err, gef.ErrInvalid) {
		t.Fatalf("error does not wrap gef.ErrInvalid: %v", err)
	}
	var list LabelErrors
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("error is not a non-empty LabelErrors: %#v", err)
	}
	if err.Error() != again.Error() {
		t.Fatalf("the same labels gave different errors:\n%v\n---\n%v", err, again)
	}
	for i, p := range list {
		if len(p.Field) < len(LabelPrefix) || !strings.EqualFold(p.Field[:len(LabelPrefix)], LabelPrefix) {
			t.Fatalf("problem on %q, not a GEF label key", p.Field)
		}
		if p.Reason == "" {
			t.Fatalf("problem on %q has no reason", p.Field)
		}
		if i > 0 && compareKeys(list[i-1].Field, p.Field) > 0 {
			t.Fatalf("problems out of order: %q before %q", list[i-1].Field, p.Field)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(list) {
		t.Fatalf("Error() has %d lines for %d problems", n, len(list))
	}
}

// checkService asserts the invariants of every parsed service.
func checkService(t *testing.T, svc *gef.Service, labels map[string]string) {
	t.Helper()
	if !validSlug(svc.Name) || Slug(svc.Title) != svc.Name {
		t.Fatalf("Name %q is not the slug of %q", svc.Name, svc.Title)
	}
	if svc.Version == "" || len(svc.Version) > maxVersion || !versionStr.MatchString(svc.Version) {
		t.Fatalf("invalid version %q", svc.Version)
	}
	cleanAbs := func(p string) bool { return p != "/" && path.IsAbs(p) && path.Clean(p) == p }
	for i, in := range svc.Inputs {
		if !cleanAbs(in.Path) || in.Name == "" {
			t.Fatalf("input %d: %+v", i+1, in)
		}
		if in.Type == gef.InputString && (in.Filename == "" || strings.Contains(in.Filename, "/")) {
			t.Fatalf("input %d: string input with filename %q", i+1, in.Filename)
		}
		for _, out := range svc.Outputs {
			if overlap(in.Path, out.Path) {
				t.Fatalf("input %s overlaps output %s", in.Path, out.Path)
			}
		}
	}
	for i, out := range svc.Outputs {
		if !cleanAbs(out.Path) || out.Name == "" {
			t.Fatalf("output %d: %+v", i+1, out)
		}
	}
	names := map[string]bool{}
	for i, p := range svc.Params {
		if !paramName.MatchString(p.Name) || names[p.Name] {
			t.Fatalf("param %d: bad or duplicate name %q", i+1, p.Name)
		}
		names[p.Name] = true
		if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
			t.Fatalf("param %s: min > max", p.Name)
		}
		if p.Default != nil {
			got, err := ValidateParams(&gef.Service{Params: []gef.Param{p}}, nil)
			if err != nil || !reflect.DeepEqual(got[p.Name], p.Default) {
				t.Fatalf("param %s: default %#v does not validate: %v", p.Name, p.Default, err)
			}
		}
	}
	// N runs from 1 with no gaps: every numbered key is within the count.
	counts := map[string]int{"input": len(svc.Inputs), "output": len(svc.Outputs), "param": len(svc.Params)}
	for k := range labels {
		rest, ok := strings.CutPrefix(k, LabelPrefix)
		if !ok {
			continue
		}
		parts := strings.Split(rest, ".")
		if len(parts) != 3 {
			continue
		}
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			t.Fatalf("key %q parsed without a valid number", k)
		}
		if n < 1 || n > counts[parts[0]] {
			t.Fatalf("key %q is outside 1..%d", k, counts[parts[0]])
		}
	}
	for i, in := range svc.Inputs {
		if strings.TrimSpace(labels[groupKey("input", i+1, "name")]) != in.Name {
			t.Fatalf("input %d is not the one labelled input.%d", i+1, i+1)
		}
	}
	if !reflect.DeepEqual(svc.Labels, labels) {
		t.Fatalf("Labels differ from the image's labels")
	}
}

func FuzzValidateParams(f *testing.F) {
	for _, s := range []string{
		`{"column":"price"}`,
		`{"column":"price","delimiter":"tab","skip_header":true,"bins":20,"threshold":0.5,"title":"x","count":-3,"scale":1e21}`,
		`{"column":"a;b","bins":11.5}`,
		`{"column":"c","bins":"3","skip_header":"on","threshold":"0.25"}`,
		`{"column":"c","count":9007199254740993}`,
		`{"column":"c","title":"a\u0000b"}`,
		`{"column":null,"bins":null,"title":""}`,
		`{"column":"c","scale":-0.0,"delimiter":""}`,
		`{"x":[1,{"y":2}]}`,
		`{}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	svc := csvStats(f)
	f.Fuzz(func(t *testing.T, data []byte, useNumber bool) {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		if useNumber {
			dec.UseNumber()
		}
		var in map[string]any
		if err := dec.Decode(&in); err != nil {
			return
		}
		got, err := ValidateParams(svc, in)
		if err != nil {
			if got != nil {
				t.Fatalf("values returned with an error")
			}
			if !errors.Is(err, gef.ErrInvalid) {
				t.Fatalf("error does not wrap gef.ErrInvalid: %v", err)
			}
			return
		}
		argv := Argv(svc, got)
		for _, a := range argv {
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("argv element %q holds a NUL", a)
			}
		}
		// Validated values are a fixed point: validating them again, or
		// their canonical JSON decoded, changes nothing.
		again, err := ValidateParams(svc, got)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("revalidation changed %#v to %#v (%v)", got, again, err)
		}
		canon, err := CanonicalParams(got)
		if err != nil {
			t.Fatalf("CanonicalParams(%#v): %v", got, err)
		}
		var back map[string]any
		if err := json.Unmarshal(canon, &back); err != nil {
			t.Fatalf("canonical JSON %s does not decode: %v", canon, err)
		}
		round, err := ValidateParams(svc, back)
		if err != nil || !reflect.DeepEqual(round, got) {
			t.Fatalf("canonical JSON %s validates to %#v, want %#v (%v)", canon, round, got, err)
		}
		if !reflect.DeepEqual(Argv(svc, round), argv) {
			t.Fatalf("argv differs after a round trip through canonical JSON")
		}
	})
}
