package services

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// del in a with() pair removes the key.
const del = "\x00delete"

// key expands a short key: "name" is eudat.gef.service.name, while keys that
// hold a dot and start with "org." or "com." are kept as they are.
func key(k string) string {
	if strings.HasPrefix(k, "org.") || strings.HasPrefix(k, "com.") || strings.HasPrefix(k, LabelPrefix) {
		return k
	}
	return LabelPrefix + k
}

// with copies base and applies key/value pairs to it.
func with(base map[string]string, kv ...string) map[string]string {
	m := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == del {
			delete(m, key(kv[i]))
		} else {
			m[key(kv[i])] = kv[i+1]
		}
	}
	return m
}

// original is what an image made for the original EUDAT GEF carries.
var original = with(nil,
	"name", "CDO Demo",
	"description", "Climate Data Operators demo",
	"version", "1.0",
	"input.1.name", "Input Directory",
	"input.1.path", "/root/input",
	"output.1.name", "Output Directory",
	"output.1.path", "/root/output",
)

// minimal is the smallest valid label set, for the refusal cases.
var minimal = with(nil,
	"name", "Stats",
	"version", "1",
	"input.1.name", "data",
	"input.1.path", "/data",
	"output.1.name", "out",
	"output.1.path", "/out",
)

// param returns the labels of a parameter at index n of minimal.
func param(n string, kv ...string) map[string]string {
	full := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		full = append(full, "param."+n+"."+kv[i], kv[i+1])
	}
	return with(minimal, full...)
}

func f64(f float64) *float64 { return &f }

func TestParse(t *testing.T) {
	t.Parallel()

	full := with(nil,
		"name", "CSV Column Stats",
		"description", "  Statistics of one CSV column  ",
		"version", "2.1.0+build.7",
		"input.1.name", "table",
		"input.1.path", "/data",
		"input.2.name", "Query Text",
		"input.2.path", "/params",
		"input.2.type", "string",
		"input.2.filename", "query.txt",
		"input.3.name", "notes",
		"input.3.type", "string",
		"input.3.path", "/params",
		"input.3.filename", "notes.txt",
		"output.1.name", "out",
		"output.1.path", "/out",
		"output.2.name", "logs",
		"output.2.path", "/logs",
		"param.1.name", "column",
		"param.1.type", "str",
		"param.1.required", "true",
		"param.1.pattern", "[A-Za-z0-9_.-]+",
		"param.1.description", "column to summarise",
		"param.2.name", "delimiter",
		"param.2.type", "enum",
		"param.2.values", " comma , tab,semicolon ",
		"param.2.default", "comma",
		"param.3.name", "skip_header",
		"param.3.type", "bool",
		"param.3.required", "false",
		"param.4.name", "bins",
		"param.4.type", "int",
		"param.4.min", "1",
		"param.4.max", "1000",
		"param.4.default", " 10 ",
		"param.5.name", "threshold",
		"param.5.type", "float",
		"param.5.min", "-0.5",
		"param.5.default", "0.25",
		"param.6.name", "label",
		"param.6.type", "str",
		"param.6.default", " keep spaces ",
		"param.7.name", "strict",
		"param.7.type", "bool",
		"param.7.default", "true",
		"param.7.required", "true",
		"resources.cpus", "1.5",
		"resources.memory", "512m",
		"resources.timeout", "1h30m",
		"http.port", "8080",
		"http.path", "/health",
		"org.opencontainers.image.title", "csvstats",
		"org.opencontainers.image.description", "ignored: GEF description wins",
		"org.opencontainers.image.version", "2.1.0",
		"org.opencontainers.image.source", "https://example.org/csvstats",
		"org.opencontainers.image.licenses", "Apache-2.0",
		"org.opencontainers.image.authors", "EUDAT",
		"org.opencontainers.image.revision", "abc123",
		"com.example.team", "kept as is",
	)

	tests := []struct {
		name   string
		labels map[string]string
		want   *gef.Service
	}{
		{
			name:   "original GEF image",
			labels: original,
			want: &gef.Service{
				Name:        "cdo-demo",
				Title:       "CDO Demo",
				Version:     "1.0",
				Description: "Climate Data Operators demo",
				Inputs:      []gef.Input{{Name: "Input Directory", Path: "/root/input", Type: gef.InputURL}},
				Outputs:     []gef.Output{{Name: "Output Directory", Path: "/root/output"}},
				Params:      []gef.Param{},
				Labels:      original,
			},
		},
		{
			name:   "every key",
			labels: full,
			want: &gef.Service{
				Name:        "csv-column-stats",
				Title:       "CSV Column Stats",
				Version:     "2.1.0+build.7",
				Description: "Statistics of one CSV column",
				Inputs: []gef.Input{
					{Name: "table", Path: "/data", Type: gef.InputURL},
					{Name: "Query Text", Path: "/params", Type: gef.InputString, Filename: "query.txt"},
					{Name: "notes", Path: "/params", Type: gef.InputString, Filename: "notes.txt"},
				},
				Outputs: []gef.Output{{Name: "out", Path: "/out"}, {Name: "logs", Path: "/logs"}},
				Params: []gef.Param{
					{Name: "column", Type: gef.ParamStr, Description: "column to summarise", Required: true, Pattern: "[A-Za-z0-9_.-]+"},
					{Name: "delimiter", Type: gef.ParamEnum, Values: []string{"comma", "tab", "semicolon"}, Default: "comma"},
					{Name: "skip_header", Type: gef.ParamBool},
					{Name: "bins", Type: gef.ParamInt, Min: f64(1), Max: f64(1000), Default: int64(10)},
					{Name: "threshold", Type: gef.ParamFloat, Min: f64(-0.5), Default: 0.25},
					{Name: "label", Type: gef.ParamStr, Default: " keep spaces "},
					{Name: "strict", Type: gef.ParamBool, Default: true, Required: true},
				},
				Resources: gef.Resources{CPUs: 1.5, MemoryBytes: 512 << 20, TimeoutSeconds: 5400},
				HTTP:      &gef.HTTPPort{Port: 8080, Path: "/health"},
				OCI: gef.OCI{
					Title:       "csvstats",
					Description: "ignored: GEF description wins",
					Version:     "2.1.0",
					Source:      "https://example.org/csvstats",
					Licenses:    "Apache-2.0",
					Authors:     "EUDAT",
					Revision:    "abc123",
				},
				Labels: full,
			},
		},
		{
			name:   "description falls back to the OCI one",
			labels: with(minimal, "org.opencontainers.image.description", "From OCI"),
			want:   withSvc(minimalSvc(), func(s *gef.Service) { s.Description = "From OCI"; s.OCI.Description = "From OCI" }),
		},
		{
			name:   "empty value counts as unset",
			labels: with(minimal, "description", " ", "input.1.type", "", "param.1.name", "n", "param.1.type", "int", "param.1.default", "", "param.1.min", " "),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Params = []gef.Param{{Name: "n", Type: gef.ParamInt}}
			}),
		},
		{
			name:   "one trailing slash on a path is dropped",
			labels: with(minimal, "input.1.path", "/root/input/", "output.1.path", "/root/output/"),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Inputs[0].Path, s.Outputs[0].Path = "/root/input", "/root/output"
			}),
		},
		{
			name:   "accented title",
			labels: with(minimal, "name", "  Análisis Ñandú — Straße  "),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Title, s.Name = "Análisis Ñandú — Straße", "analisis-nandu-strasse"
			}),
		},
		{
			name:   "sibling paths do not overlap",
			labels: with(minimal, "input.1.path", "/data", "output.1.path", "/data2", "output.2.name", "o2", "output.2.path", "/data-out"),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Inputs[0].Path = "/data"
				s.Outputs = []gef.Output{{Name: "out", Path: "/data2"}, {Name: "o2", Path: "/data-out"}}
			}),
		},
		{
			name:   "no inputs or outputs",
			labels: with(nil, "name", "Web App", "version", "3", "http.port", "80"),
			want: &gef.Service{
				Name: "web-app", Title: "Web App", Version: "3",
				Inputs: []gef.Input{}, Outputs: []gef.Output{}, Params: []gef.Param{},
				HTTP: &gef.HTTPPort{Port: 80},
			},
		},
		{
			name:   "resources in other spellings",
			labels: with(minimal, "resources.cpus", "0.25", "resources.memory", "1.5GiB", "resources.timeout", "90"),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Resources = gef.Resources{CPUs: 0.25, MemoryBytes: 3 << 29, TimeoutSeconds: 90}
			}),
		},
		{
			name:   "required param with a default",
			labels: param("1", "name", "mode", "type", "enum", "values", "fast,slow", "default", "slow", "required", "true"),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Params = []gef.Param{{Name: "mode", Type: gef.ParamEnum, Values: []string{"fast", "slow"}, Default: "slow", Required: true}}
			}),
		},
		{
			name:   "int bounds written as decimals",
			labels: param("1", "name", "n", "type", "int", "min", "-1e3", "max", "10.0", "default", "-1000"),
			want: withSvc(minimalSvc(), func(s *gef.Service) {
				s.Params = []gef.Param{{Name: "n", Type: gef.ParamInt, Min: f64(-1000), Max: f64(10), Default: int64(-1000)}}
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.labels)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.want
			if want.Labels == nil {
				want.Labels = tt.labels
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func minimalSvc() *gef.Service {
	return &gef.Service{
		Name:    "stats",
		Title:   "Stats",
		Version: "1",
		Inputs:  []gef.Input{{Name: "data", Path: "/data", Type: gef.InputURL}},
		Outputs: []gef.Output{{Name: "out", Path: "/out"}},
		Params:  []gef.Param{},
	}
}

func withSvc(s *gef.Service, change func(*gef.Service)) *gef.Service {
	change(s)
	return s
}

// problem is one expected error: the label key in full or short, and a
// phrase of its reason.
type problem struct{ key, phrase string }

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		labels map[string]string
		want   []problem
	}{
		// The header.
		{"no labels", nil, []problem{{"name", "missing"}, {"version", "missing"}}},
		{"missing name", with(minimal, "name", del), []problem{{"name", "missing"}}},
		{"blank name", with(minimal, "name", "  "), []problem{{"name", "missing"}}},
		{"name without letters", with(minimal, "name", "!!! ???"), []problem{{"name", "URL-safe"}}},
		{"name only in another script", with(minimal, "name", "数据"), []problem{{"name", "URL-safe"}}},
		{"name with a newline", with(minimal, "name", "A\nB"), []problem{{"name", "control"}}},
		{"name too long", with(minimal, "name", strings.Repeat("a", 257)), []problem{{"name", "at most 256"}}},
		{"missing version", with(minimal, "version", del), []problem{{"version", "missing"}}},
		{"version with a space", with(minimal, "version", "1.0 beta"), []problem{{"version", "may contain only"}}},
		{"version with a slash", with(minimal, "version", "1/2"), []problem{{"version", "may contain only"}}},
		{"version too long", with(minimal, "version", strings.Repeat("1", 65)), []problem{{"version", "at most 64"}}},

		// Unknown keys.
		{"typo in a group", with(minimal, "inptu.1.name", "x"), []problem{{"inptu.1.name", "unknown label"}}},
		{"typo in a field", with(minimal, "input.1.mode", "ro"), []problem{{"input.1.mode", "unknown label"}}},
		{"typo at the top", with(minimal, "descripton", "x"), []problem{{"descripton", "unknown label"}}},
		{"unknown section field", with(minimal, "resources.gpus", "1"), []problem{{"resources.gpus", "unknown label"}}},
		{"too deep", with(minimal, "input.1.name.x", "x"), []problem{{"input.1.name.x", "unknown label"}}},
		{"the prefix alone", with(minimal, "", "x"), []problem{{"", "unknown label"}}},
		{"capitals", with(minimal, "eudat.gef.service.Description", "x"), []problem{{"eudat.gef.service.Description", "did you mean eudat.gef.service.description"}}},
		{"capital prefix", with(minimal, "EUDAT.GEF.SERVICE.FOO", "x"), []problem{{"EUDAT.GEF.SERVICE.FOO", "unknown label"}}},

		// Numbering.
		{"gap", with(minimal, "input.3.name", "x", "input.3.path", "/x"), []problem{{"input.2.name", "numbered from 1 with no gaps"}}},
		{"starts at 2", with(minimal, "output.1.name", del, "output.1.path", del, "output.2.name", "o", "output.2.path", "/o"), []problem{{"output.1.name", "numbered from 1"}}},
		{"two gaps", with(minimal, "param.2.name", "a", "param.2.type", "str", "param.4.name", "b", "param.4.type", "str"), []problem{{"param.1.name", "param.2 is declared"}, {"param.3.name", "param.4 is declared"}}},
		{"index 0", with(minimal, "input.0.name", "x"), []problem{{"input.0.name", "starts at 1"}}},
		{"leading zero", with(minimal, "input.01.name", "x"), []problem{{"input.01.name", "leading zeros"}}},
		{"index not a number", with(minimal, "input.one.name", "x"), []problem{{"input.one.name", "positive whole number"}}},
		{"index huge", with(minimal, "input.99999999999.name", "x"), []problem{{"input.99999999999.name", "too large"}}},

		// Inputs and outputs.
		{"input without name", with(minimal, "input.1.name", del), []problem{{"input.1.name", "missing"}}},
		{"input without path", with(minimal, "input.1.path", del), []problem{{"input.1.path", "missing"}}},
		{"output without name", with(minimal, "output.1.name", ""), []problem{{"output.1.name", "missing"}}},
		{"output without path", with(minimal, "output.1.path", del), []problem{{"output.1.path", "missing"}}},
		{"relative path", with(minimal, "input.1.path", "data"), []problem{{"input.1.path", "absolute"}}},
		{"unclean path", with(minimal, "input.1.path", "/data/../etc"), []problem{{"input.1.path", `clean path such as "/etc"`}}},
		{"double slash", with(minimal, "output.1.path", "/out//x"), []problem{{"output.1.path", "clean"}}},
		{"dot segment", with(minimal, "output.1.path", "/out/./x"), []problem{{"output.1.path", "clean"}}},
		{"root path", with(minimal, "input.1.path", "/"), []problem{{"input.1.path", "root"}}},
		{"control character in a path", with(minimal, "input.1.path", "/da\nta"), []problem{{"input.1.path", "control"}}},
		{"name with a slash", with(minimal, "input.1.name", "in/put"), []problem{{"input.1.name", "may contain only"}}},
		{"name too long", with(minimal, "output.1.name", strings.Repeat("o", 65)), []problem{{"output.1.name", "at most 64"}}},
		{"name ..", with(minimal, "output.1.name", ".."), []problem{{"output.1.name", "must not be"}}},
		{"duplicate input names", with(minimal, "input.2.name", "data", "input.2.path", "/data2"), []problem{{"input.2.name", "duplicate name"}}},
		{"duplicate output names", with(minimal, "output.2.name", "out", "output.2.path", "/out2"), []problem{{"output.2.name", "also used by eudat.gef.service.output.1.name"}}},
		{"two outputs on one path", with(minimal, "output.2.name", "o2", "output.2.path", "/out"), []problem{{"output.2.path", "two outputs cannot share"}}},
		{"nested outputs", with(minimal, "output.2.name", "o2", "output.2.path", "/out/logs"), []problem{{"output.2.path", "nests with"}}},
		{"output is an input", with(minimal, "output.1.path", "/data"), []problem{{"output.1.path", "must not overlap"}}},
		{"output inside an input", with(minimal, "output.1.path", "/data/out"), []problem{{"output.1.path", "read-only input and a writable output"}}},
		{"input inside an output", with(minimal, "input.1.path", "/out/in"), []problem{{"output.1.path", "overlaps the input at eudat.gef.service.input.1.path"}}},
		{"output over a string input", with(minimal, "input.2.name", "q", "input.2.type", "string", "input.2.path", "/out", "input.2.filename", "q.txt"), []problem{{"output.1.path", "must not overlap"}}},
		{"two datasets on one path", with(minimal, "input.2.name", "more", "input.2.path", "/data"), []problem{{"input.2.path", "mounts must not overlap"}}},
		{"nested datasets", with(minimal, "input.2.name", "more", "input.2.path", "/data/more"), []problem{{"input.2.path", "mounts must not overlap"}}},
		{"string input inside a dataset", with(minimal, "input.2.name", "q", "input.2.type", "string", "input.2.path", "/data", "input.2.filename", "q.txt"), []problem{{"input.2.path", "a dataset is mounted there"}}},
		{"unknown input type", with(minimal, "input.1.type", "file"), []problem{{"input.1.type", "unknown input type"}}},
		{"input type in capitals", with(minimal, "input.1.type", "URL"), []problem{{"input.1.type", "unknown input type"}}},
		{"string input without filename", with(minimal, "input.1.type", "string"), []problem{{"input.1.filename", "missing"}}},
		{"filename with a slash", with(minimal, "input.1.type", "string", "input.1.filename", "a/b.txt"), []problem{{"input.1.filename", "without /"}}},
		{"filename ..", with(minimal, "input.1.type", "string", "input.1.filename", ".."), []problem{{"input.1.filename", "not \"..\""}}},
		{"filename with a newline", with(minimal, "input.1.type", "string", "input.1.filename", "a\nb"), []problem{{"input.1.filename", "control"}}},
		{"filename too long", with(minimal, "input.1.type", "string", "input.1.filename", strings.Repeat("f", 256)), []problem{{"input.1.filename", "at most 255 bytes"}}},
		{"filename on a dataset input", with(minimal, "input.1.filename", "x.txt"), []problem{{"input.1.filename", "only allowed for inputs of type string"}}},
		{"two string inputs on one file", with(minimal,
			"input.2.name", "a", "input.2.type", "string", "input.2.path", "/params", "input.2.filename", "p.txt",
			"input.3.name", "b", "input.3.type", "string", "input.3.path", "/params", "input.3.filename", "p.txt"),
			[]problem{{"input.3.filename", "as does the input at eudat.gef.service.input.2.filename"}}},

		// Parameters.
		{"param without name", param("1", "type", "str"), []problem{{"param.1.name", "missing"}}},
		{"param name in capitals", param("1", "name", "Threshold", "type", "str"), []problem{{"param.1.name", "must match"}}},
		{"param name starting with a digit", param("1", "name", "1st", "type", "str"), []problem{{"param.1.name", "--1st flag"}}},
		{"param name with a space", param("1", "name", "a b", "type", "str"), []problem{{"param.1.name", "must match"}}},
		{"param name too long", param("1", "name", "a"+strings.Repeat("b", 63), "type", "str"), []problem{{"param.1.name", "must match"}}},
		{"duplicate param", with(param("1", "name", "n", "type", "str"), "param.2.name", "n", "param.2.type", "int"), []problem{{"param.2.name", "duplicate parameter"}}},
		{"long value quoted short", param("1", "name", "n", "type", strings.Repeat("é", 100)), []problem{{"param.1.type", `unknown type "` + strings.Repeat("é", 32) + `"…`}}},
		{"param without type", param("1", "name", "n"), []problem{{"param.1.type", "missing"}}},
		{"unknown param type", param("1", "name", "n", "type", "string"), []problem{{"param.1.type", `unknown type "string"`}}},
		{"required not a bool", param("1", "name", "n", "type", "str", "required", "yes"), []problem{{"param.1.required", "true or false"}}},
		{"values on a str", param("1", "name", "n", "type", "str", "values", "a,b"), []problem{{"param.1.values", "only allowed for type enum"}}},
		{"enum without values", param("1", "name", "n", "type", "enum"), []problem{{"param.1.values", "missing"}}},
		{"empty value", param("1", "name", "n", "type", "enum", "values", "a,,b"), []problem{{"param.1.values", "entry 2 is empty"}}},
		{"duplicate value", param("1", "name", "n", "type", "enum", "values", "a, b ,b"), []problem{{"param.1.values", `lists "b" twice`}}},
		{"control character in a value", param("1", "name", "n", "type", "enum", "values", "a,b\tc"), []problem{{"param.1.values", "entry 2 must be printable"}}},
		{"min on a str", param("1", "name", "n", "type", "str", "min", "1"), []problem{{"param.1.min", "only allowed for types int and float"}}},
		{"max on a bool", param("1", "name", "n", "type", "bool", "max", "1"), []problem{{"param.1.max", "only allowed for types int and float"}}},
		{"min on an enum", param("1", "name", "n", "type", "enum", "values", "a", "min", "0"), []problem{{"param.1.min", "only allowed"}}},
		{"fractional int bound", param("1", "name", "n", "type", "int", "min", "1.5"), []problem{{"param.1.min", "must be an integer"}}},
		{"int bound past 2^53", param("1", "name", "n", "type", "int", "max", "1e16"), []problem{{"param.1.max", "must be an integer"}}},
		{"bound not a number", param("1", "name", "n", "type", "float", "max", "ten"), []problem{{"param.1.max", "finite decimal number"}}},
		{"bound Inf", param("1", "name", "n", "type", "float", "max", "Inf"), []problem{{"param.1.max", "finite decimal number"}}},
		{"bound in hex", param("1", "name", "n", "type", "float", "max", "0x10"), []problem{{"param.1.max", "finite decimal number"}}},
		{"min above max", param("1", "name", "n", "type", "float", "min", "5", "max", "3"), []problem{{"param.1.min", "min 5 is greater than max 3"}}},
		{"pattern on an int", param("1", "name", "n", "type", "int", "pattern", "[0-9]+"), []problem{{"param.1.pattern", "only allowed for type str"}}},
		{"invalid pattern", param("1", "name", "n", "type", "str", "pattern", "(a"), []problem{{"param.1.pattern", "invalid regular expression"}}},
		{"pattern with a newline", param("1", "name", "n", "type", "str", "pattern", "(\n"), []problem{{"param.1.pattern", `missing closing ): "(\n"`}}},
		{"pattern that escapes its anchors", param("1", "name", "n", "type", "str", "pattern", "a)|(b"), []problem{{"param.1.pattern", "invalid regular expression"}}},
		{"default below min", param("1", "name", "bins", "type", "int", "min", "1", "max", "1000", "default", "0"), []problem{{"param.1.default", "must be an integer between 1 and 1000, got 0"}}},
		{"default below a lone min", param("1", "name", "n", "type", "int", "min", "0", "default", "-1"), []problem{{"param.1.default", "must be an integer of at least 0, got -1"}}},
		{"default above max", param("1", "name", "t", "type", "float", "max", "1", "default", "1.5"), []problem{{"param.1.default", "a finite number of at most 1, got 1.5"}}},
		{"fractional int default", param("1", "name", "n", "type", "int", "default", "2.5"), []problem{{"param.1.default", "must be an integer"}}},
		{"default not a number", param("1", "name", "n", "type", "float", "default", "NaN"), []problem{{"param.1.default", `got "NaN"`}}},
		{"default not in values", param("1", "name", "d", "type", "enum", "values", "comma,tab", "default", "pipe"), []problem{{"param.1.default", `must be one of comma, tab, got "pipe"`}}},
		{"default not matching", param("1", "name", "c", "type", "str", "pattern", "[a-z]+", "default", "abc1"), []problem{{"param.1.default", `must be a string matching [a-z]+, got "abc1"`}}},
		{"default matching only in part", param("1", "name", "c", "type", "str", "pattern", "[a-z]+", "default", "ok;rm"), []problem{{"param.1.default", "must be a string matching"}}},
		{"bool default", param("1", "name", "b", "type", "bool", "default", "maybe"), []problem{{"param.1.default", "true or false"}}},
		{"str default too long", param("1", "name", "s", "type", "str", "default", strings.Repeat("x", 4097)), []problem{{"param.1.default", "at most 4096 bytes"}}},
		{"str default with NUL", param("1", "name", "s", "type", "str", "default", "a\x00b"), []problem{{"param.1.default", "NUL"}}},

		// Resources.
		{"no cpus", with(minimal, "resources.cpus", "0"), []problem{{"resources.cpus", "greater than 0"}}},
		{"negative cpus", with(minimal, "resources.cpus", "-1"), []problem{{"resources.cpus", "greater than 0"}}},
		{"too many cpus", with(minimal, "resources.cpus", "257"), []problem{{"resources.cpus", "at most 256"}}},
		{"cpus NaN", with(minimal, "resources.cpus", "NaN"), []problem{{"resources.cpus", "must be a number"}}},
		{"memory too small", with(minimal, "resources.memory", "1m"), []problem{{"resources.memory", "at least 4m"}}},
		{"memory without number", with(minimal, "resources.memory", "lots"), []problem{{"resources.memory", "must be a size"}}},
		{"memory with unknown unit", with(minimal, "resources.memory", "12x"), []problem{{"resources.memory", "must be a size"}}},
		{"memory too large", with(minimal, "resources.memory", "99999999t"), []problem{{"resources.memory", "too large"}}},
		{"zero timeout", with(minimal, "resources.timeout", "0"), []problem{{"resources.timeout", "longer than 0"}}},
		{"negative timeout", with(minimal, "resources.timeout", "-5s"), []problem{{"resources.timeout", "longer than 0"}}},
		{"timeout over 30 days", with(minimal, "resources.timeout", "721h"), []problem{{"resources.timeout", "at most 30 days"}}},
		{"timeout seconds over 30 days", with(minimal, "resources.timeout", "2592001"), []problem{{"resources.timeout", "at most 30 days"}}},
		{"timeout in days", with(minimal, "resources.timeout", "2d"), []problem{{"resources.timeout", "must be a duration"}}},

		// HTTP.
		{"port 0", with(minimal, "http.port", "0"), []problem{{"http.port", "1 to 65535"}}},
		{"port too high", with(minimal, "http.port", "65536"), []problem{{"http.port", "1 to 65535"}}},
		{"port by name", with(minimal, "http.port", "http"), []problem{{"http.port", "1 to 65535"}}},
		{"http path without port", with(minimal, "http.path", "/"), []problem{{"http.path", "only allowed with eudat.gef.service.http.port"}}},
		{"relative http path", with(minimal, "http.port", "80", "http.path", "health"), []problem{{"http.path", "must start with /"}}},
		{"http path with a space", with(minimal, "http.port", "80", "http.path", "/a b"), []problem{{"http.path", "without spaces"}}},

		// Several at once come sorted by key, numbers as numbers.
		{"several", with(minimal,
			"version", del,
			"input.10.name", "x", // gap from 2
			"input.1.path", "rel",
			"param.1.name", "n", "param.1.type", "float", "param.1.min", "2", "param.1.max", "1",
			"http.port", "0"),
			[]problem{
				{"http.port", "1 to 65535"},
				{"input.1.path", "absolute"},
				{"input.2.name", "input.10 is declared"},
				{"input.10.path", "missing"},
				{"param.1.min", "greater than max"},
				{"version", "missing"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc, err := Parse(tt.labels)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v", svc)
			}
			if svc != nil {
				t.Errorf("Parse returned a service with its error")
			}
			checkProblems(t, err, tt.want)
		})
	}
}

// checkProblems asserts err lists exactly want, in order.
func checkProblems(t *testing.T, err error, want []problem) {
	t.Helper()
	if !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("errors.Is(%v, gef.ErrInvalid) is false", err)
	}
	var list LabelErrors
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not a LabelErrors: %v", err, err)
	}
	var first *gef.InvalidError
	if !errors.As(err, &first) || first != list[0] {
		t.Errorf("errors.As does not find the first *gef.InvalidError")
	}
	if len(list) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(list), len(want), err)
	}
	for i, w := range want {
		if k := key(w.key); list[i].Field != k && list[i].Field != w.key {
			t.Errorf("problem %d is on %q, want %q:\n%v", i, list[i].Field, k, err)
		}
		if !strings.Contains(list[i].Reason, w.phrase) {
			t.Errorf("problem %d on %s says %q, want it to say %q", i, list[i].Field, list[i].Reason, w.phrase)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(list) {
		t.Errorf("Error() has %d lines for %d problems:\n%v", len(lines), len(list), err)
	}
}

func TestParseErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := Parse(with(minimal, "input.1.path", "/data/../etc", "output.3.name", "x", "output.3.path", "/x"))
	want := `eudat.gef.service.input.1.path: must be a clean path such as "/etc", got "/data/../etc"
eudat.gef.service.output.2.name: missing: output.3 is declared, and outputs are numbered from 1 with no gaps`
	if err == nil || err.Error() != want {
		t.Errorf("Error():\n got %v\nwant %s", err, want)
	}
}

// Keys and reasons from outside cannot break the one-per-line layout.
func TestLabelErrorsError(t *testing.T) {
	t.Parallel()
	err := LabelErrors{
		{Field: "a\nb", Reason: "line\nbreak"},
		nil,
		{Field: "", Reason: "no field"},
		{Field: "ok", Reason: "fine"},
	}
	want := `"a\nb": line\nbreak` + "\nno field\nok: fine"
	if got := err.Error(); got != want {
		t.Errorf("Error():\n got %s\nwant %s", got, want)
	}
	if n := len(err.Unwrap()); n != 3 {
		t.Errorf("Unwrap() has %d errors, want 3", n)
	}
	if !errors.Is(err, gef.ErrInvalid) {
		t.Errorf("errors.Is(err, gef.ErrInvalid) is false")
	}
}

func TestParseDoesNotKeepCallersMap(t *testing.T) {
	t.Parallel()
	labels := with(original)
	svc, err := Parse(labels)
	if err != nil {
		t.Fatal(err)
	}
	labels[key("name")] = "changed"
	if svc.Labels[key("name")] != "CDO Demo" {
		t.Errorf("Service.Labels shares the caller's map")
	}
}

func TestParseMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64 // 0: refused
	}{
		{"512m", 512 << 20},
		{"2g", 2 << 30},
		{"2G", 2 << 30},
		{"4096k", 4 << 20},
		{"1073741824", 1 << 30},
		{"1.5g", 3 << 29},
		{"512mb", 512 << 20},
		{"512MiB", 512 << 20},
		{"512mi", 512 << 20},
		{"512 MB", 512 << 20},
		{"1t", 1 << 40},
		{".5g", 1 << 29},
		{"4194304b", 4 << 20},
		{"4194303", 0},
		{"3.9m", 0},
		{"1024k", 0}, // 1 MiB is under the 4 MiB floor
		{"512", 0},
		{"", 0},
		{"m", 0},
		{"1e9", 0},
		{"-1g", 0},
		{"1kk", 0},
		{"1ib", 0},
		{"1p", 0},
		{"0x10m", 0},
	}
	for _, tt := range tests {
		got, reason := parseMemory(tt.in)
		if got != tt.want || (tt.want == 0) != (reason != "") {
			t.Errorf("parseMemory(%q) = %d, %q; want %d", tt.in, got, reason, tt.want)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64 // 0: refused
	}{
		{"90s", 90},
		{"1h30m", 5400},
		{"90", 90},
		{"1", 1},
		{"500ms", 1}, // rounds up, never to 0
		{"1.5s", 2},
		{"720h", 2592000},
		{"2592000", 2592000},
		{"720h0m1s", 0},
		{"2592001", 0},
		{"99999999999999999999", 0},
		{"0", 0},
		{"0s", 0},
		{"-1s", 0},
		{"1d", 0},
		{"soon", 0},
		{"", 0},
	}
	for _, tt := range tests {
		got, reason := parseTimeout(tt.in)
		if got != tt.want || (tt.want == 0) != (reason != "") {
			t.Errorf("parseTimeout(%q) = %d, %q; want %d", tt.in, got, reason, tt.want)
		}
	}
}

func TestCompareKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"input.2.name", "input.10.name", -1},
		{"input.10.name", "input.2.name", 1},
		{"input.2.name", "input.2.path", -1},
		{"input.2", "input.2.name", -1},
		{"a", "a", 0},
		{"", "a", -1},
		{"param.9", "param.09", 1},
	}
	for _, tt := range tests {
		if got := compareKeys(tt.a, tt.b); sign(got) != tt.want {
			t.Errorf("compareKeys(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
