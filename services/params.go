package services

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// Limits on a request's parameters. Values end up in argv, where the kernel
// caps the total size, and in provenance records kept for every job.
const (
	maxRequestParams = 64
	maxStringBytes   = 4096
	// maxExactInt is 2^53: every integer up to it survives a trip through
	// a JSON number (a float64) unchanged.
	maxExactInt = 1 << 53
)

// ValidateParams checks the parameters of a request against svc and returns
// them normalised: int → int64, float → float64, bool → bool, str and enum →
// string. Missing parameters with a default get it. params is typically
// decoded JSON, so numbers may be float64 or json.Number; strings are also
// accepted for numbers and bools ("3", "0.5", "true", "on"), as HTML forms
// send them. A null, or an empty string for a non-str parameter, counts as
// not given. Every problem is reported as a *gef.InvalidError whose Field is
// the parameter name, gathered in a LabelErrors.
func ValidateParams(svc *gef.Service, params map[string]any) (map[string]any, error) {
	var probs problems
	if len(params) > maxRequestParams {
		probs.add("", fmt.Sprintf("too many parameters: at most %d per request, got %d", maxRequestParams, len(params)))
		return nil, probs.err()
	}
	var declared []gef.Param
	if svc != nil {
		declared = svc.Params
	}
	known := make(map[string]bool, len(declared))
	for _, p := range declared {
		known[p.Name] = true
	}
	for _, name := range sortedKeys(params) {
		if !known[name] {
			probs.add(name, unknownParam(declared))
		}
	}

	out := make(map[string]any, len(declared))
	done := make(map[string]bool, len(declared))
	for i := range declared {
		p := &declared[i]
		if done[p.Name] {
			continue // a corrupt service declaring a name twice: first wins
		}
		done[p.Name] = true
		re, err := paramPattern(p)
		if err != nil {
			probs.add(p.Name, "the service declares an invalid pattern: "+patternError(err))
			continue
		}
		if v, ok := params[p.Name]; ok {
			val, given, reason := normalise(p, re, v)
			if reason != "" {
				probs.add(p.Name, reason)
				continue
			}
			if given {
				out[p.Name] = val
				continue
			}
		}
		if p.Default != nil {
			// A service read back from JSON holds an int default as a
			// float64; normalising turns it back into an int64.
			val, given, reason := normalise(p, re, p.Default)
			if reason != "" {
				probs.add(p.Name, "the service's default is invalid: "+reason)
				continue
			}
			if given {
				out[p.Name] = val
				continue
			}
		}
		if p.Required {
			probs.add(p.Name, "missing: this parameter is required")
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func unknownParam(declared []gef.Param) string {
	if len(declared) == 0 {
		return "unknown parameter: this service takes no parameters"
	}
	names := make([]string, len(declared))
	for i, p := range declared {
		names[i] = p.Name
	}
	return "unknown parameter: this service takes " + strings.Join(names, ", ")
}

// paramPattern compiles p's pattern anchored at both ends, or returns nil
// when p has none.
func paramPattern(p *gef.Param) (*regexp.Regexp, error) {
	if p.Type != gef.ParamStr || p.Pattern == "" {
		return nil, nil
	}
	if re, ok := patterns.Load(p.Pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := compilePattern(p.Pattern)
	if err != nil {
		return nil, err
	}
	// Patterns come from published services, so there are few; the bound
	// only keeps a flood of publications from growing the cache forever.
	if patternCount.Add(1) <= maxCachedPatterns {
		patterns.Store(p.Pattern, re)
	}
	return re, nil
}

// Compiling a pattern costs far more than matching it, and every run of a
// service checks its parameters again: compiled patterns are kept, by text.
// A *regexp.Regexp is safe for concurrent use.
var (
	patterns     sync.Map // pattern → *regexp.Regexp
	patternCount atomic.Int64
)

const maxCachedPatterns = 4096

// compilePattern anchors pattern so it must match a whole value. The bare
// pattern is compiled first: wrapped unchecked, "a)|(b" would become
// ^(?:a)|(b)$, which compiles and matches far more than intended.
func compilePattern(pattern string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, err
	}
	return regexp.Compile("^(?:" + pattern + ")$")
}

// patternError words a compile error without the raw pattern text, which
// may hold newlines; the label value is quoted instead.
func patternError(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: %s", se.Code, quote(se.Expr))
	}
	return quote(err.Error())
}

// normalise checks one value against p. given is false when the value
// counts as not given; reason is non-empty when it is invalid.
func normalise(p *gef.Param, re *regexp.Regexp, v any) (val any, given bool, reason string) {
	if v == nil {
		return nil, false, ""
	}
	if s, ok := v.(string); ok && p.Type != gef.ParamStr && strings.TrimSpace(s) == "" {
		return nil, false, "" // an empty form field
	}
	switch p.Type {
	case gef.ParamInt:
		n, ok := toInt(v)
		if !ok || !inBounds(float64(n), p) {
			return nil, false, "must be " + describe(p) + ", got " + shown(v)
		}
		return n, true, ""
	case gef.ParamFloat:
		f, ok := toFloat(v)
		if !ok || !inBounds(f, p) {
			return nil, false, "must be " + describe(p) + ", got " + shown(v)
		}
		return f, true, ""
	case gef.ParamBool:
		b, ok := toBool(v)
		if !ok {
			return nil, false, "must be " + describe(p) + ", got " + shown(v)
		}
		return b, true, ""
	case gef.ParamEnum:
		s, ok := v.(string)
		if !ok {
			return nil, false, "must be " + describe(p) + ", got " + shown(v)
		}
		for _, allowed := range p.Values {
			if s == allowed {
				return s, true, ""
			}
		}
		return nil, false, "must be " + describe(p) + ", got " + quote(s)
	case gef.ParamStr:
		s, ok := v.(string)
		switch {
		case !ok:
			return nil, false, "must be a string, got " + shown(v)
		case !utf8.ValidString(s):
			return nil, false, "must be valid UTF-8"
		case strings.IndexByte(s, 0) >= 0:
			return nil, false, "must not contain a NUL byte"
		case len(s) > maxStringBytes:
			return nil, false, fmt.Sprintf("must be at most %d bytes, got %d", maxStringBytes, len(s))
		case re != nil && !re.MatchString(s):
			return nil, false, "must be " + describe(p) + ", got " + quote(s)
		}
		return s, true, ""
	}
	return nil, false, fmt.Sprintf("the service declares an unknown type %s", quote(p.Type))
}

// describe says in words what p accepts, for error messages.
func describe(p *gef.Param) string {
	switch p.Type {
	case gef.ParamInt:
		if p.Min == nil && p.Max == nil {
			return fmt.Sprintf("an integer between %d and %d", -maxExactInt, maxExactInt)
		}
		return "an integer" + bounds(p)
	case gef.ParamFloat:
		return "a finite number" + bounds(p)
	case gef.ParamBool:
		return "true or false"
	case gef.ParamEnum:
		return "one of " + strings.Join(p.Values, ", ")
	case gef.ParamStr:
		if p.Pattern != "" {
			return "a string matching " + p.Pattern
		}
		return "a string"
	}
	return "a value"
}

func bounds(p *gef.Param) string {
	switch {
	case p.Min != nil && p.Max != nil:
		return " between " + formatFloat(*p.Min) + " and " + formatFloat(*p.Max)
	case p.Min != nil:
		return " of at least " + formatFloat(*p.Min)
	case p.Max != nil:
		return " of at most " + formatFloat(*p.Max)
	}
	return ""
}

func inBounds(f float64, p *gef.Param) bool {
	return (p.Min == nil || f >= *p.Min) && (p.Max == nil || f <= *p.Max)
}

// shown renders a rejected value for a message.
func shown(v any) string {
	switch v := v.(type) {
	case string:
		// A number sent as a string is shown as the number it is.
		if t := strings.TrimSpace(v); len(t) <= 64 && decimal.MatchString(t) {
			return t
		}
		return quote(v)
	case json.Number:
		if len(v) <= 64 && decimal.MatchString(string(v)) {
			return string(v)
		}
		return quote(string(v))
	case float64:
		return formatFloat(v)
	case float32:
		return formatFloat(float64(v))
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	if n, ok := exactInt(v); ok {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("a value of type %T", v)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// decimal is the number syntax accepted in labels and form fields: no
// hexadecimal, underscores, Inf or NaN, which strconv.ParseFloat allows.
var decimal = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)

// parseDecimal parses a finite decimal number, ignoring surrounding space.
func parseDecimal(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 400 || !decimal.MatchString(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f + 0, true // + 0 turns -0 into 0
}

// integral reports whether f is an integer that a float64 holds exactly.
func integral(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -maxExactInt || f > maxExactInt {
		return 0, false
	}
	return int64(f), true
}

// exactInt accepts Go's integer types, as a caller may pass values it made
// itself, or the int64s ValidateParams returned.
func exactInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint:
		return int64(v), uint64(v) <= math.MaxInt64
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(v), v <= math.MaxInt64
	}
	return 0, false
}

func toInt(v any) (int64, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case json.Number:
		return parseInt(string(v))
	case string:
		return parseInt(v)
	default:
		n, ok := exactInt(v)
		if !ok || n < -maxExactInt || n > maxExactInt {
			return 0, false
		}
		return n, true
	}
	return integral(f)
}

// parseInt parses s exactly when it is written as an integer, so that
// 9007199254740993 is refused rather than rounded into range.
func parseInt(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, -maxExactInt <= n && n <= maxExactInt
	}
	f, ok := parseDecimal(s)
	if !ok {
		return 0, false
	}
	return integral(f)
}

func toFloat(v any) (float64, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case json.Number:
		return parseDecimal(string(v))
	case string:
		return parseDecimal(v)
	default:
		n, ok := exactInt(v)
		if !ok {
			return 0, false
		}
		f = float64(n)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f + 0, true
}

func toBool(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		s := strings.TrimSpace(v)
		switch {
		case strings.EqualFold(s, "true"), strings.EqualFold(s, "on"):
			return true, true
		case strings.EqualFold(s, "false"), strings.EqualFold(s, "off"):
			return false, true
		}
	}
	return false, false
}

// Argv returns the parameter part of a container's argv, in the order svc
// declares its parameters: "--name value" for each one present in
// validated, "--name" alone for a bool that is true, nothing for a bool that
// is false. Floats are formatted with strconv.FormatFloat(v, 'g', -1, 64).
// validated must come from ValidateParams. The result is passed to the
// engine as a list and never through a shell.
func Argv(svc *gef.Service, validated map[string]any) []string {
	argv := []string{}
	if svc == nil {
		return argv
	}
	done := make(map[string]bool, len(svc.Params))
	for _, p := range svc.Params {
		v, ok := validated[p.Name]
		if !ok || done[p.Name] {
			continue
		}
		done[p.Name] = true
		flag := "--" + p.Name
		switch v := v.(type) {
		case bool:
			if v {
				argv = append(argv, flag)
			}
		case string:
			argv = append(argv, flag, v)
		case float64:
			argv = append(argv, flag, formatFloat(v))
		case json.Number:
			argv = append(argv, flag, string(v))
		default:
			if n, ok := exactInt(v); ok {
				argv = append(argv, flag, strconv.FormatInt(n, 10))
			} else {
				argv = append(argv, flag, fmt.Sprint(v))
			}
		}
	}
	return argv
}

// CanonicalParams encodes validated parameters as canonical JSON: keys
// sorted, no insignificant whitespace, no HTML escaping, integers without
// exponent. Equal requests give equal bytes, which provenance and the reuse
// of earlier results rely on. No parameters encode as {}.
func CanonicalParams(validated map[string]any) ([]byte, error) {
	if len(validated) == 0 {
		return []byte("{}"), nil
	}
	m := make(map[string]any, len(validated))
	for k, v := range validated {
		if f, ok := v.(float64); ok {
			v = f + 0 // -0 and 0 are the same parameter value
		}
		m[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("services: canonical params: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
