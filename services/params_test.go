package services

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// csvStats is the service of docs/service-labels.md, plus a float and two
// unconstrained parameters.
var csvStatsLabels = with(nil,
	"name", "CSV Column Stats",
	"version", "1.0.0",
	"input.1.name", "table",
	"input.1.path", "/data",
	"output.1.name", "stats",
	"output.1.path", "/out",
	"param.1.name", "column",
	"param.1.type", "str",
	"param.1.required", "true",
	"param.1.pattern", "[A-Za-z0-9_.-]+",
	"param.2.name", "delimiter",
	"param.2.type", "enum",
	"param.2.values", "comma,tab,semicolon",
	"param.2.default", "comma",
	"param.3.name", "skip_header",
	"param.3.type", "bool",
	"param.4.name", "bins",
	"param.4.type", "int",
	"param.4.min", "1",
	"param.4.max", "1000",
	"param.4.default", "10",
	"param.5.name", "threshold",
	"param.5.type", "float",
	"param.5.min", "0",
	"param.5.max", "1",
	"param.6.name", "title",
	"param.6.type", "str",
	"param.7.name", "count",
	"param.7.type", "int",
	"param.8.name", "scale",
	"param.8.type", "float",
)

func csvStats(t testing.TB) *gef.Service {
	t.Helper()
	svc, err := Parse(csvStatsLabels)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// defaults is what every valid request to csvStats gets filled in.
func defaults(kv ...any) map[string]any {
	m := map[string]any{"delimiter": "comma", "bins": int64(10)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func decode(t testing.TB, s string, useNumber bool) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		dec.UseNumber()
	}
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return m
}

func TestValidateParams(t *testing.T) {
	t.Parallel()
	svc := csvStats(t)
	tests := []struct {
		name string
		in   map[string]any
		json string // decoded into in when set, both as float64 and json.Number
		want map[string]any
	}{
		{name: "defaults", json: `{"column":"price"}`, want: defaults("column", "price")},
		{name: "every type", json: `{"column":"price","delimiter":"tab","skip_header":true,"bins":20,"threshold":0.5,"title":"Prices, 2024","count":-3,"scale":1e21}`,
			want: map[string]any{"column": "price", "delimiter": "tab", "skip_header": true, "bins": int64(20), "threshold": 0.5, "title": "Prices, 2024", "count": int64(-3), "scale": 1e21}},
		{name: "bounds are inclusive", json: `{"column":"c","bins":1000,"threshold":0}`, want: defaults("column", "c", "bins", int64(1000), "threshold", 0.0)},
		{name: "lowest bound", json: `{"column":"c","bins":1,"threshold":1}`, want: defaults("column", "c", "bins", int64(1), "threshold", 1.0)},
		{name: "integral float for int", json: `{"column":"c","bins":5.0}`, want: defaults("column", "c", "bins", int64(5))},
		{name: "int written with exponent", json: `{"column":"c","count":1e3}`, want: defaults("column", "c", "count", int64(1000))},
		{name: "int at 2^53", json: `{"column":"c","count":9007199254740992}`, want: defaults("column", "c", "count", int64(1<<53))},
		{name: "int at -2^53", json: `{"column":"c","count":-9007199254740992}`, want: defaults("column", "c", "count", int64(-1<<53))},
		{name: "false bool is kept", json: `{"column":"c","skip_header":false}`, want: defaults("column", "c", "skip_header", false)},
		{name: "null counts as not given", json: `{"column":"c","bins":null,"skip_header":null}`, want: defaults("column", "c")},
		{name: "empty str is a value", json: `{"column":"c","title":""}`, want: defaults("column", "c", "title", "")},
		{name: "str at the size limit", in: map[string]any{"column": "c", "title": strings.Repeat("é", 2048)}, want: defaults("column", "c", "title", strings.Repeat("é", 2048))},
		{name: "str with shell characters and no pattern", json: `{"column":"c","title":"$(rm -rf /); echo"}`, want: defaults("column", "c", "title", "$(rm -rf /); echo")},
		{name: "negative zero", in: map[string]any{"column": "c", "threshold": math.Copysign(0, -1)}, want: defaults("column", "c", "threshold", 0.0)},

		// HTML forms send strings.
		{name: "form strings", in: map[string]any{"column": "c", "bins": " 3 ", "threshold": "0.25", "skip_header": "on", "count": "-7", "scale": "2"},
			want: defaults("column", "c", "bins", int64(3), "threshold", 0.25, "skip_header", true, "count", int64(-7), "scale", 2.0)},
		{name: "form true", in: map[string]any{"column": "c", "skip_header": "TRUE"}, want: defaults("column", "c", "skip_header", true)},
		{name: "form false", in: map[string]any{"column": "c", "skip_header": "false"}, want: defaults("column", "c", "skip_header", false)},
		{name: "form off", in: map[string]any{"column": "c", "skip_header": "off"}, want: defaults("column", "c", "skip_header", false)},
		{name: "empty form fields count as not given", in: map[string]any{"column": "c", "bins": "", "delimiter": "", "skip_header": " "}, want: defaults("column", "c")},

		// Go values, as a caller may pass them, or as ValidateParams returns them.
		{name: "Go ints", in: map[string]any{"column": "c", "bins": 7, "count": int64(8), "scale": int32(2)}, want: defaults("column", "c", "bins", int64(7), "count", int64(8), "scale", 2.0)},
		{name: "json.Number", in: map[string]any{"column": "c", "bins": json.Number("12"), "threshold": json.Number("5e-1")}, want: defaults("column", "c", "bins", int64(12), "threshold", 0.5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inputs := []map[string]any{tt.in}
			if tt.json != "" {
				inputs = []map[string]any{decode(t, tt.json, false), decode(t, tt.json, true)}
			}
			for _, in := range inputs {
				got, err := ValidateParams(svc, in)
				if err != nil {
					t.Fatalf("ValidateParams(%v): %v", in, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("ValidateParams(%v)\n got %#v\nwant %#v", in, got, tt.want)
				}
			}
		})
	}
}

func TestValidateParamsRefuses(t *testing.T) {
	t.Parallel()
	svc := csvStats(t)
	tooMany := map[string]any{}
	for i := range 65 {
		tooMany[strings.Repeat("x", i+1)] = 1
	}
	tests := []struct {
		name string
		in   map[string]any
		json string
		want []problem
	}{
		{name: "missing required", json: `{}`, want: []problem{{"column", "missing: this parameter is required"}}},
		{name: "null required", json: `{"column":null}`, want: []problem{{"column", "required"}}},
		{name: "unknown", json: `{"column":"c","colour":"red"}`, want: []problem{{"colour", "unknown parameter: this service takes column, delimiter, skip_header, bins, threshold, title, count, scale"}}},
		{name: "flag name injected", json: `{"column":"c","--rm":true}`, want: []problem{{"--rm", "unknown parameter"}}},
		{name: "too many", in: tooMany, want: []problem{{"", "too many parameters: at most 64 per request, got 65"}}},

		{name: "fractional int", json: `{"column":"c","bins":11.5}`, want: []problem{{"bins", "must be an integer between 1 and 1000, got 11.5"}}},
		{name: "int below min", json: `{"column":"c","bins":0}`, want: []problem{{"bins", "between 1 and 1000, got 0"}}},
		{name: "int above max", json: `{"column":"c","bins":1001}`, want: []problem{{"bins", "between 1 and 1000, got 1001"}}},
		{name: "int past 2^53", json: `{"column":"c","count":9007199254740994}`, want: []problem{{"count", "must be an integer between -9007199254740992 and 9007199254740992"}}},
		{name: "int past 2^53 exactly", in: map[string]any{"column": "c", "count": json.Number("9007199254740993")}, want: []problem{{"count", "must be an integer"}}},
		{name: "huge uint", in: map[string]any{"column": "c", "count": uint64(math.MaxUint64)}, want: []problem{{"count", "must be an integer"}}},
		{name: "int from a word", json: `{"column":"c","bins":"ten"}`, want: []problem{{"bins", `got "ten"`}}},
		{name: "int from a bool", json: `{"column":"c","bins":true}`, want: []problem{{"bins", "got true"}}},
		{name: "int from hex", json: `{"column":"c","bins":"0x10"}`, want: []problem{{"bins", `got "0x10"`}}},
		{name: "float above max", json: `{"column":"c","threshold":1.5}`, want: []problem{{"threshold", "must be a finite number between 0 and 1, got 1.5"}}},
		{name: "float below min", json: `{"column":"c","threshold":-0.1}`, want: []problem{{"threshold", "got -0.1"}}},
		{name: "NaN", in: map[string]any{"column": "c", "scale": math.NaN()}, want: []problem{{"scale", "must be a finite number"}}},
		{name: "Inf", in: map[string]any{"column": "c", "scale": math.Inf(1)}, want: []problem{{"scale", "finite"}}},
		{name: "Inf from a string", in: map[string]any{"column": "c", "scale": "Inf"}, want: []problem{{"scale", "finite"}}},
		{name: "overflow from a string", in: map[string]any{"column": "c", "scale": "1e400"}, want: []problem{{"scale", "finite"}}},
		{name: "overflow from json.Number", in: map[string]any{"column": "c", "scale": json.Number("1e400")}, want: []problem{{"scale", "finite"}}},
		{name: "float from a list", json: `{"column":"c","scale":[1]}`, want: []problem{{"scale", "got a list"}}},
		{name: "bool from a word", json: `{"column":"c","skip_header":"maybe"}`, want: []problem{{"skip_header", `must be true or false, got "maybe"`}}},
		{name: "bool from a number", json: `{"column":"c","skip_header":1}`, want: []problem{{"skip_header", "true or false, got 1"}}},
		{name: "enum not listed", json: `{"column":"c","delimiter":"pipe"}`, want: []problem{{"delimiter", `must be one of comma, tab, semicolon, got "pipe"`}}},
		{name: "enum differs in case", json: `{"column":"c","delimiter":"Tab"}`, want: []problem{{"delimiter", "must be one of"}}},
		{name: "enum not a string", json: `{"column":"c","delimiter":1}`, want: []problem{{"delimiter", "got 1"}}},

		{name: "pattern refuses ;", json: `{"column":"a;b"}`, want: []problem{{"column", `must be a string matching [A-Za-z0-9_.-]+, got "a;b"`}}},
		{name: "pattern refuses $(...)", json: `{"column":"$(rm -rf /)"}`, want: []problem{{"column", "must be a string matching"}}},
		{name: "pattern matches the whole value", json: `{"column":"ok\nrm -rf /"}`, want: []problem{{"column", "must be a string matching"}}},
		{name: "pattern refuses empty", json: `{"column":""}`, want: []problem{{"column", "must be a string matching"}}},
		{name: "str from a number", json: `{"column":5}`, want: []problem{{"column", "must be a string, got 5"}}},
		{name: "str from an object", json: `{"column":{}}`, want: []problem{{"column", "got an object"}}},
		{name: "str with NUL", json: `{"column":"c","title":"a\u0000b"}`, want: []problem{{"title", "NUL"}}},
		{name: "str not UTF-8", in: map[string]any{"column": "c", "title": "a\xffb"}, want: []problem{{"title", "UTF-8"}}},
		{name: "str too long", in: map[string]any{"column": "c", "title": strings.Repeat("x", 4097)}, want: []problem{{"title", "at most 4096 bytes, got 4097"}}},

		{name: "several, sorted by name", json: `{"zeta":1,"bins":0,"delimiter":"x","alpha":2}`, want: []problem{
			{"alpha", "unknown"}, {"bins", "between"}, {"column", "missing"}, {"delimiter", "one of"}, {"zeta", "unknown"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inputs := []map[string]any{tt.in}
			if tt.json != "" {
				inputs = []map[string]any{decode(t, tt.json, false), decode(t, tt.json, true)}
			}
			for _, in := range inputs {
				got, err := ValidateParams(svc, in)
				if err == nil {
					t.Fatalf("ValidateParams(%v) = %v, want an error", in, got)
				}
				if got != nil {
					t.Errorf("ValidateParams returned values with its error")
				}
				checkProblems(t, err, tt.want)
			}
		})
	}
}

func TestValidateParamsMessage(t *testing.T) {
	t.Parallel()
	_, err := ValidateParams(csvStats(t), map[string]any{"column": "price", "bins": 11.5, "threshold": 2.0})
	want := "bins: must be an integer between 1 and 1000, got 11.5\nthreshold: must be a finite number between 0 and 1, got 2"
	if err == nil || err.Error() != want {
		t.Errorf("Error():\n got %v\nwant %s", err, want)
	}
}

func TestValidateParamsServiceEdges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		svc  *gef.Service
		in   map[string]any
		want map[string]any
		err  string // a phrase of the error, "" for none
	}{
		{name: "nil service, no params", svc: nil, in: nil, want: map[string]any{}},
		{name: "nil service with a param", svc: nil, in: map[string]any{"a": 1}, err: "takes no parameters"},
		{name: "service without params", svc: &gef.Service{}, in: map[string]any{}, want: map[string]any{}},
		// A service read back from JSON holds an int default as a float64.
		{name: "float64 default of an int", svc: &gef.Service{Params: []gef.Param{{Name: "n", Type: gef.ParamInt, Default: 10.0}}}, want: map[string]any{"n": int64(10)}},
		{name: "invalid stored default", svc: &gef.Service{Params: []gef.Param{{Name: "n", Type: gef.ParamInt, Default: 1.5}}}, err: "the service's default is invalid"},
		{name: "invalid stored pattern", svc: &gef.Service{Params: []gef.Param{{Name: "s", Type: gef.ParamStr, Pattern: "("}}}, in: map[string]any{"s": "x"}, err: "invalid pattern"},
		{name: "unknown stored type", svc: &gef.Service{Params: []gef.Param{{Name: "x", Type: "date"}}}, in: map[string]any{"x": "x"}, err: "unknown type"},
		{name: "duplicate stored name", svc: &gef.Service{Params: []gef.Param{{Name: "n", Type: gef.ParamInt}, {Name: "n", Type: gef.ParamStr}}}, in: map[string]any{"n": 3}, want: map[string]any{"n": int64(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ValidateParams(tt.svc, tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ValidateParams = %v, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ValidateParams = %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

func TestArgv(t *testing.T) {
	t.Parallel()
	svc := csvStats(t)
	tests := []struct {
		name string
		in   map[string]any
		want []string
	}{
		{name: "declared order", in: map[string]any{"scale": 2.5, "column": "price", "bins": int64(20), "delimiter": "tab"},
			want: []string{"--column", "price", "--delimiter", "tab", "--bins", "20", "--scale", "2.5"}},
		{name: "true bool alone", in: map[string]any{"skip_header": true, "column": "c"}, want: []string{"--column", "c", "--skip_header"}},
		{name: "false bool omitted", in: map[string]any{"skip_header": false, "column": "c"}, want: []string{"--column", "c"}},
		{name: "value with spaces stays one element", in: map[string]any{"title": "Prices; $(date) 2024"}, want: []string{"--title", "Prices; $(date) 2024"}},
		{name: "value that looks like a flag", in: map[string]any{"title": "--help"}, want: []string{"--title", "--help"}},
		{name: "empty string", in: map[string]any{"title": ""}, want: []string{"--title", ""}},
		{name: "floats in shortest form", in: map[string]any{"threshold": 1.0, "scale": 1e21}, want: []string{"--threshold", "1", "--scale", "1e+21"}},
		{name: "small float", in: map[string]any{"scale": 0.000001}, want: []string{"--scale", "1e-06"}},
		{name: "ints in decimal", in: map[string]any{"count": int64(-9007199254740992)}, want: []string{"--count", "-9007199254740992"}},
		{name: "undeclared keys ignored", in: map[string]any{"other": "x"}, want: []string{}},
		{name: "nothing", in: nil, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Argv(svc, tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Argv(%v)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
	if got := Argv(nil, map[string]any{"a": 1}); len(got) != 0 {
		t.Errorf("Argv(nil, …) = %q, want nothing", got)
	}
}

// The argv the docs show for their sample request.
func TestArgvFromRequest(t *testing.T) {
	t.Parallel()
	svc := csvStats(t)
	params, err := ValidateParams(svc, decode(t, `{"column":"price","delimiter":"semicolon","skip_header":true}`, false))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--column", "price", "--delimiter", "semicolon", "--skip_header", "--bins", "10"}
	if got := Argv(svc, params); !reflect.DeepEqual(got, want) {
		t.Errorf("Argv = %q, want %q", got, want)
	}
}

func TestCanonicalParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   map[string]any
		want string // "" for an error
	}{
		{name: "nil", in: nil, want: `{}`},
		{name: "empty", in: map[string]any{}, want: `{}`},
		{name: "sorted, compact", in: map[string]any{"z": "last", "a": true, "m": int64(3)}, want: `{"a":true,"m":3,"z":"last"}`},
		{name: "large int without exponent", in: map[string]any{"n": int64(9007199254740992)}, want: `{"n":9007199254740992}`},
		{name: "floats", in: map[string]any{"a": 0.5, "b": 1e21, "c": 2.0, "d": 1e-7}, want: `{"a":0.5,"b":1e+21,"c":2,"d":1e-7}`},
		{name: "negative zero", in: map[string]any{"z": math.Copysign(0, -1)}, want: `{"z":0}`},
		{name: "no HTML escaping", in: map[string]any{"s": "<a & b>"}, want: `{"s":"<a & b>"}`},
		{name: "unicode as is, control escaped", in: map[string]any{"s": "é\n\"q\""}, want: `{"s":"é\n\"q\""}`},
		{name: "NaN", in: map[string]any{"x": math.NaN()}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalParams(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("CanonicalParams = %s, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("CanonicalParams = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// A request spelt differently but meaning the same gives the same bytes, so
// an earlier result can be reused for it.
func TestCanonicalParamsMatchesEqualRequests(t *testing.T) {
	t.Parallel()
	svc := csvStats(t)
	a, err := ValidateParams(svc, decode(t, `{"column":"price","bins":10,"skip_header":true}`, false))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ValidateParams(svc, map[string]any{"skip_header": "on", "column": "price", "delimiter": "comma", "bins": "10.0"})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := CanonicalParams(a)
	cb, _ := CanonicalParams(b)
	if string(ca) != string(cb) {
		t.Errorf("canonical forms differ: %s and %s", ca, cb)
	}
	if want := `{"bins":10,"column":"price","delimiter":"comma","skip_header":true}`; string(ca) != want {
		t.Errorf("CanonicalParams = %s, want %s", ca, want)
	}
}
