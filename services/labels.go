// Package services reads a GEF service's contract from its Docker image
// labels, and checks the parameters of a run against that contract. It does
// no I/O and keeps no state: the same labels always give the same Service,
// or the same errors, and no input makes it panic.
//
// docs/service-labels.md is the reference for the label schema.
package services

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// LabelPrefix starts every GEF label key. Unknown keys under it are refused
// as likely typos; other labels are kept but not interpreted.
const LabelPrefix = "eudat.gef.service."

const ociPrefix = "org.opencontainers.image."

// Limits on label values.
const (
	maxTitleRunes = 256
	maxVersion    = 64
	maxIOName     = 64
	maxPath       = 4096
	maxFilename   = 255
	maxCPUs       = 256
	minMemory     = 4 << 20
	maxTimeout    = 30 * 24 * 60 * 60 // seconds
)

// The keys the schema knows, by the shape of what follows LabelPrefix.
var (
	topFields     = set("name", "description", "version")
	sectionFields = map[string]map[string]bool{
		"resources": set("cpus", "memory", "timeout"),
		"http":      set("port", "path"),
	}
	groupFields = map[string]map[string]bool{
		"input":  set("name", "path", "type", "filename"),
		"output": set("name", "path"),
		"param":  set("name", "type", "description", "default", "required", "values", "min", "max", "pattern"),
	}
)

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, it := range items {
		m[it] = true
	}
	return m
}

var (
	// paramName is strict: a name becomes a --name flag in argv.
	paramName  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	versionStr = regexp.MustCompile(`^[A-Za-z0-9._+-]+$`)
)

// Parse reads a service from its image labels. It fills Name (the slug of
// the title), Title, Version, Description, Inputs, Outputs, Params,
// Resources, HTTP, OCI and Labels (a copy of all labels); the caller fills
// Digest, Entrypoint and Cmd from the image. On failure the error is a
// LabelErrors with one *gef.InvalidError per problem, each naming the label
// key at fault, and errors.Is(err, gef.ErrInvalid) holds.
func Parse(labels map[string]string) (*gef.Service, error) {
	p := &parser{
		top:     make(map[string]string),
		section: make(map[string]map[string]string),
		groups:  make(map[string]map[int]map[string]string),
	}
	p.classify(labels)
	svc := &gef.Service{
		Labels:  maps.Clone(labels),
		Inputs:  []gef.Input{},
		Outputs: []gef.Output{},
		Params:  []gef.Param{},
	}
	p.oci(svc, labels)
	p.header(svc)
	ins := p.inputs(svc)
	p.outputs(svc, ins)
	p.params(svc)
	p.resources(svc)
	p.http(svc)
	if err := p.probs.err(); err != nil {
		return nil, err
	}
	return svc, nil
}

type parser struct {
	probs   problems
	top     map[string]string                    // field → value
	section map[string]map[string]string         // section → field → value
	groups  map[string]map[int]map[string]string // group → N → field → value
}

func (p *parser) fail(key, format string, args ...any) {
	p.probs.add(key, fmt.Sprintf(format, args...))
}

// classify files every GEF label by the part of the schema it belongs to, and
// refuses the keys the schema does not know.
func (p *parser) classify(labels map[string]string) {
	for _, key := range sortedKeys(labels) {
		if len(key) < len(LabelPrefix) || !strings.EqualFold(key[:len(LabelPrefix)], LabelPrefix) {
			continue
		}
		value := labels[key]
		if !strings.HasPrefix(key, LabelPrefix) {
			p.unknown(key)
			continue
		}
		parts := strings.SplitN(key[len(LabelPrefix):], ".", 4)
		switch len(parts) {
		case 1:
			if topFields[parts[0]] {
				p.top[parts[0]] = value
				continue
			}
		case 2:
			if sectionFields[parts[0]][parts[1]] {
				if p.section[parts[0]] == nil {
					p.section[parts[0]] = make(map[string]string)
				}
				p.section[parts[0]][parts[1]] = value
				continue
			}
		case 3:
			group, field := parts[0], parts[2]
			if groupFields[group][field] {
				n, reason := parseIndex(parts[1])
				if reason != "" {
					p.fail(key, "%s", reason)
					continue
				}
				if p.groups[group] == nil {
					p.groups[group] = make(map[int]map[string]string)
				}
				if p.groups[group][n] == nil {
					p.groups[group][n] = make(map[string]string)
				}
				p.groups[group][n][field] = value
				continue
			}
		}
		p.unknown(key)
	}
}

func (p *parser) unknown(key string) {
	lower := strings.ToLower(key)
	if lower != key && knownKey(lower) {
		p.fail(key, "unknown label: keys are case-sensitive, did you mean %s?", lower)
		return
	}
	p.fail(key, "unknown label under %s (a typo?)", LabelPrefix)
}

func knownKey(key string) bool {
	rest, ok := strings.CutPrefix(key, LabelPrefix)
	if !ok {
		return false
	}
	parts := strings.SplitN(rest, ".", 4)
	switch len(parts) {
	case 1:
		return topFields[parts[0]]
	case 2:
		return sectionFields[parts[0]][parts[1]]
	case 3:
		_, reason := parseIndex(parts[1])
		return groupFields[parts[0]][parts[2]] && reason == ""
	}
	return false
}

// parseIndex reads the N of input.N.name. Leading zeros are refused so that
// each N has exactly one key.
func parseIndex(s string) (int, string) {
	switch {
	case !isDigits(s):
		return 0, fmt.Sprintf("the number in the key must be a positive whole number, got %s", quote(s))
	case s[0] == '0' && len(s) > 1:
		return 0, fmt.Sprintf("the number in the key must be written without leading zeros, got %s", quote(s))
	case s == "0":
		return 0, "numbering starts at 1, not 0"
	case len(s) > 9:
		return 0, fmt.Sprintf("the number in the key is too large, got %s", quote(s))
	}
	n, _ := strconv.Atoi(s)
	return n, ""
}

// indexes returns the Ns declared for group in order, and refuses gaps by
// naming the first missing key of each.
func (p *parser) indexes(group string) []int {
	ns := make([]int, 0, len(p.groups[group]))
	for n := range p.groups[group] {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	next := 1
	for _, n := range ns {
		if n > next {
			p.fail(groupKey(group, next, "name"),
				"missing: %s.%d is declared, and %ss are numbered from 1 with no gaps", group, n, group)
		}
		next = n + 1
	}
	return ns
}

func groupKey(group string, n int, field string) string {
	return LabelPrefix + group + "." + strconv.Itoa(n) + "." + field
}

func (p *parser) oci(svc *gef.Service, labels map[string]string) {
	get := func(field string) string { return strings.TrimSpace(labels[ociPrefix+field]) }
	svc.OCI = gef.OCI{
		Title:       get("title"),
		Description: get("description"),
		Version:     get("version"),
		Source:      get("source"),
		Licenses:    get("licenses"),
		Authors:     get("authors"),
		Revision:    get("revision"),
	}
}

func (p *parser) header(svc *gef.Service) {
	key := LabelPrefix + "name"
	title := strings.TrimSpace(p.top["name"])
	switch {
	case title == "":
		p.fail(key, "missing: every GEF service needs a name")
	case !printable(title):
		p.fail(key, "must be printable UTF-8 text without control characters")
	case utf8.RuneCountInString(title) > maxTitleRunes:
		p.fail(key, "must be at most %d characters", maxTitleRunes)
	default:
		svc.Title = title
		svc.Name = Slug(title)
		if svc.Name == "" {
			p.fail(key, "has no letters or digits to derive a URL-safe name from, got %s", quote(title))
		}
	}

	key = LabelPrefix + "version"
	version := strings.TrimSpace(p.top["version"])
	switch {
	case version == "":
		p.fail(key, "missing: every GEF service needs a version")
	case len(version) > maxVersion:
		p.fail(key, "must be at most %d characters", maxVersion)
	case !versionStr.MatchString(version):
		p.fail(key, "may contain only letters, digits and . _ + -, got %s", quote(version))
	default:
		svc.Version = version
	}

	svc.Description = strings.TrimSpace(p.top["description"])
	if svc.Description == "" {
		svc.Description = svc.OCI.Description
	}
}

// place is where an input or output sits in the container, kept with its
// label key for the overlap checks.
type place struct {
	key    string // the path label
	path   string // "" when the path label was invalid
	url    bool   // a dataset mount
	fkey   string // the filename label of a string input
	target string // path/filename of a string input; "" when invalid
}

func (p *parser) inputs(svc *gef.Service) []place {
	var places []place
	names := make(map[string]string)
	for _, n := range p.indexes("input") {
		f := p.groups["input"][n]
		key := func(field string) string { return groupKey("input", n, field) }
		in := gef.Input{
			Name: p.ioName(key("name"), f["name"], names),
			Path: p.path(key("path"), f["path"]),
			Type: strings.TrimSpace(f["type"]),
		}
		pl := place{key: key("path"), path: in.Path, fkey: key("filename")}
		switch in.Type {
		case "":
			in.Type = gef.InputURL
		case gef.InputURL, gef.InputString:
		default:
			p.fail(key("type"), "unknown input type %s; one of %s (the default) or %s", quote(in.Type), gef.InputURL, gef.InputString)
		}
		filename := strings.TrimSpace(f["filename"])
		switch {
		case in.Type == gef.InputString && filename == "":
			p.fail(key("filename"), "missing: an input of type string needs the file name its text is written to")
		case in.Type == gef.InputString:
			if reason := checkFilename(filename); reason != "" {
				p.fail(key("filename"), "%s", reason)
			} else {
				in.Filename = filename
				if in.Path != "" {
					pl.target = path.Join(in.Path, filename)
				}
			}
		case filename != "":
			p.fail(key("filename"), "only allowed for inputs of type string")
		}
		pl.url = in.Type == gef.InputURL
		for _, other := range places {
			p.inputOverlap(pl, other)
		}
		places = append(places, pl)
		svc.Inputs = append(svc.Inputs, in)
	}
	return places
}

// inputOverlap refuses a dataset mount that shares or nests with another
// input's path, and two string inputs written to one file. String inputs
// may share a directory.
func (p *parser) inputOverlap(a, b place) {
	if (a.url || b.url) && a.path != "" && b.path != "" && overlap(a.path, b.path) {
		p.fail(a.key, "%s overlaps %s (%s): a dataset is mounted there, and mounts must not overlap", a.path, b.key, b.path)
		return
	}
	if !a.url && !b.url && a.target != "" && a.target == b.target {
		p.fail(a.fkey, "writes to %s, as does the input at %s", a.target, b.fkey)
	}
}

func (p *parser) outputs(svc *gef.Service, ins []place) {
	var places []place
	names := make(map[string]string)
	for _, n := range p.indexes("output") {
		f := p.groups["output"][n]
		key := func(field string) string { return groupKey("output", n, field) }
		out := gef.Output{
			Name: p.ioName(key("name"), f["name"], names),
			Path: p.path(key("path"), f["path"]),
		}
		pl := place{key: key("path"), path: out.Path}
		if pl.path != "" {
			for _, in := range ins {
				if in.path != "" && overlap(pl.path, in.path) {
					p.fail(pl.key, "%s overlaps the input at %s (%s): a read-only input and a writable output must not overlap", pl.path, in.key, in.path)
				}
			}
			for _, other := range places {
				switch {
				case other.path == pl.path:
					p.fail(pl.key, "%s is also the path of %s: two outputs cannot share a directory", pl.path, other.key)
				case other.path != "" && overlap(pl.path, other.path):
					p.fail(pl.key, "%s nests with %s (%s): files would be staged as both outputs", pl.path, other.key, other.path)
				}
			}
		}
		places = append(places, pl)
		svc.Outputs = append(svc.Outputs, out)
	}
}

// overlap reports whether a and b, clean absolute paths, are the same
// directory or one holds the other.
func overlap(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// ioName checks the name of an input or output. It is lenient, as images
// made for the original GEF use names like "Input Directory".
func (p *parser) ioName(key, raw string, seen map[string]string) string {
	name := strings.TrimSpace(raw)
	switch {
	case name == "":
		p.fail(key, "missing: every input and output needs a name")
		return ""
	case len(name) > maxIOName:
		p.fail(key, "must be at most %d characters, got %d", maxIOName, len(name))
		return ""
	case name == "." || name == "..":
		p.fail(key, "must not be %s", quote(name))
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(" _-.", c) >= 0) {
			p.fail(key, "may contain only letters, digits, spaces and _ - ., got %s", quote(name))
			return ""
		}
	}
	if other, ok := seen[name]; ok {
		p.fail(key, "duplicate name %s, also used by %s", quote(name), other)
		return name
	}
	seen[name] = key
	return name
}

// path checks a container path and returns it, or "" when it is invalid.
func (p *parser) path(key, raw string) string {
	s := strings.TrimSpace(raw)
	// Some images made for the original GEF write /root/input/; one
	// trailing slash names the same directory, so it is dropped.
	if len(s) > 1 && strings.HasSuffix(s, "/") {
		s = s[:len(s)-1]
	}
	switch {
	case s == "":
		p.fail(key, "missing: every input and output needs a path")
	case len(s) > maxPath:
		p.fail(key, "must be at most %d bytes", maxPath)
	case !printable(s):
		p.fail(key, "must be printable UTF-8 without control characters")
	case s[0] != '/':
		p.fail(key, "must be an absolute path, got %s", quote(s))
	case s == "/":
		p.fail(key, "must not be the root directory /")
	case path.Clean(s) != s:
		p.fail(key, "must be a clean path such as %s, got %s", quote(path.Clean(s)), quote(s))
	default:
		return s
	}
	return ""
}

func checkFilename(s string) string {
	switch {
	case len(s) > maxFilename:
		return fmt.Sprintf("must be at most %d bytes", maxFilename)
	case !printable(s):
		return "must be printable UTF-8 without control characters"
	case strings.Contains(s, "/"):
		return fmt.Sprintf("must be a plain file name without /, got %s", quote(s))
	case s == "." || s == "..":
		return fmt.Sprintf("must be a file name, not %s", quote(s))
	}
	return ""
}

func (p *parser) params(svc *gef.Service) {
	names := make(map[string]string)
	for _, n := range p.indexes("param") {
		f := p.groups["param"][n]
		key := func(field string) string { return groupKey("param", n, field) }
		prm := gef.Param{
			Name:        strings.TrimSpace(f["name"]),
			Type:        strings.TrimSpace(f["type"]),
			Description: strings.TrimSpace(f["description"]),
		}
		switch {
		case prm.Name == "":
			p.fail(key("name"), "missing: every parameter needs a name")
		case !paramName.MatchString(prm.Name):
			p.fail(key("name"), "must match %s, as it becomes the --%s flag; got %s", paramName, prm.Name, quote(prm.Name))
		case names[prm.Name] != "":
			p.fail(key("name"), "duplicate parameter %s, also declared by %s", quote(prm.Name), names[prm.Name])
		default:
			names[prm.Name] = key("name")
		}

		// typed is true when the type is known, so the keys that only some
		// types allow can be checked; shaped stays true while the whole
		// declaration is sound enough to check the default against.
		typed := true
		switch prm.Type {
		case gef.ParamStr, gef.ParamInt, gef.ParamFloat, gef.ParamBool, gef.ParamEnum:
		case "":
			p.fail(key("type"), "missing: one of str, int, float, bool, enum")
			typed = false
		default:
			p.fail(key("type"), "unknown type %s; one of str, int, float, bool, enum", quote(prm.Type))
			typed = false
		}
		shaped := typed

		switch req := strings.TrimSpace(f["required"]); req {
		case "", "false":
		case "true":
			prm.Required = true
		default:
			p.fail(key("required"), "must be true or false, got %s", quote(req))
		}

		if !p.values(&prm, key("values"), f["values"], typed) {
			shaped = false
		}
		var ok bool
		if prm.Min, ok = p.bound(&prm, key("min"), f["min"], typed); !ok {
			shaped = false
		}
		if prm.Max, ok = p.bound(&prm, key("max"), f["max"], typed); !ok {
			shaped = false
		}
		if prm.Min != nil && prm.Max != nil && *prm.Min > *prm.Max {
			p.fail(key("min"), "min %s is greater than max %s", formatFloat(*prm.Min), formatFloat(*prm.Max))
			shaped = false
		}

		var re *regexp.Regexp
		if pattern := f["pattern"]; strings.TrimSpace(pattern) != "" {
			if typed && prm.Type != gef.ParamStr {
				p.fail(key("pattern"), "only allowed for type str")
				shaped = false
			} else if compiled, err := compilePattern(pattern); err != nil {
				p.fail(key("pattern"), "invalid regular expression: %s", patternError(err))
				shaped = false
			} else {
				prm.Pattern, re = pattern, compiled
			}
		}

		if def := f["default"]; strings.TrimSpace(def) != "" && shaped {
			// A str default is kept as written; spaces may be meant.
			if prm.Type != gef.ParamStr {
				def = strings.TrimSpace(def)
			}
			val, _, reason := normalise(&prm, re, def)
			if reason != "" {
				p.fail(key("default"), "%s", reason)
			} else {
				prm.Default = val
			}
		}
		svc.Params = append(svc.Params, prm)
	}
}

// values reads the comma-separated values of an enum.
func (p *parser) values(prm *gef.Param, key, raw string, typed bool) bool {
	raw = strings.TrimSpace(raw)
	switch {
	case raw == "" && prm.Type == gef.ParamEnum:
		p.fail(key, "missing: type enum needs its comma-separated values")
		return false
	case raw == "":
		return true
	case typed && prm.Type != gef.ParamEnum:
		p.fail(key, "only allowed for type enum")
		return false
	}
	seen := make(map[string]bool)
	ok := true
	for i, v := range strings.Split(raw, ",") {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
			p.fail(key, "entry %d is empty", i+1)
			ok = false
		case !printable(v) || len(v) > maxStringBytes:
			p.fail(key, "entry %d must be printable UTF-8 of at most %d bytes", i+1, maxStringBytes)
			ok = false
		case seen[v]:
			p.fail(key, "lists %s twice", quote(v))
			ok = false
		default:
			seen[v] = true
			prm.Values = append(prm.Values, v)
		}
	}
	return ok
}

// bound reads a min or max. ok is false when the label is set but unusable.
func (p *parser) bound(prm *gef.Param, key, raw string, typed bool) (b *float64, ok bool) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, true
	}
	if typed && prm.Type != gef.ParamInt && prm.Type != gef.ParamFloat {
		p.fail(key, "only allowed for types int and float")
		return nil, false
	}
	f, isNum := parseDecimal(raw)
	if !isNum {
		p.fail(key, "must be a finite decimal number, got %s", quote(raw))
		return nil, false
	}
	if prm.Type == gef.ParamInt {
		if _, isInt := integral(f); !isInt {
			p.fail(key, "must be an integer between %d and %d for type int, got %s", -maxExactInt, maxExactInt, quote(raw))
			return nil, false
		}
	}
	return &f, true
}

func (p *parser) resources(svc *gef.Service) {
	r := p.section["resources"]
	if raw := strings.TrimSpace(r["cpus"]); raw != "" {
		key := LabelPrefix + "resources.cpus"
		if f, ok := parseDecimal(raw); !ok || f <= 0 || f > maxCPUs {
			p.fail(key, "must be a number greater than 0 and at most %d, got %s", maxCPUs, quote(raw))
		} else {
			svc.Resources.CPUs = f
		}
	}
	if raw := strings.TrimSpace(r["memory"]); raw != "" {
		if n, reason := parseMemory(raw); reason != "" {
			p.fail(LabelPrefix+"resources.memory", "%s", reason)
		} else {
			svc.Resources.MemoryBytes = n
		}
	}
	if raw := strings.TrimSpace(r["timeout"]); raw != "" {
		if n, reason := parseTimeout(raw); reason != "" {
			p.fail(LabelPrefix+"resources.timeout", "%s", reason)
		} else {
			svc.Resources.TimeoutSeconds = n
		}
	}
}

func (p *parser) http(svc *gef.Service) {
	h := p.section["http"]
	port := strings.TrimSpace(h["port"])
	urlPath := strings.TrimSpace(h["path"])
	var hp gef.HTTPPort
	ok := true
	if port != "" {
		n, err := strconv.Atoi(port)
		if !isDigits(port) || err != nil || n < 1 || n > 65535 {
			p.fail(LabelPrefix+"http.port", "must be a port number from 1 to 65535, got %s", quote(port))
			ok = false
		}
		hp.Port = n
	}
	if urlPath != "" {
		key := LabelPrefix + "http.path"
		switch {
		case port == "":
			p.fail(key, "only allowed with %shttp.port", LabelPrefix)
			ok = false
		case urlPath[0] != '/':
			p.fail(key, "must start with /, got %s", quote(urlPath))
			ok = false
		case !printable(urlPath) || strings.ContainsAny(urlPath, " \t"):
			p.fail(key, "must be a URL path without spaces or control characters, got %s", quote(urlPath))
			ok = false
		}
		hp.Path = urlPath
	}
	if port != "" && ok {
		svc.HTTP = &hp
	}
}
