package services

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// LabelErrors is every problem found in a set of image labels, or in the
// parameters of a request, sorted by Field. Reporting all of them at once
// spares a maintainer one rebuild per typo; the fixed order keeps the
// message the same for the same input.
//
// errors.Is(err, gef.ErrInvalid) holds, and errors.As finds each
// *gef.InvalidError through Unwrap.
type LabelErrors []*gef.InvalidError

// Error lists the problems one per line.
func (e LabelErrors) Error() string {
	var b strings.Builder
	for _, x := range e {
		if x == nil {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		// A key or parameter name comes from outside and could hold a
		// newline that would break the one-per-line layout.
		field := x.Field
		if !printable(field) {
			field = strconv.Quote(field)
		}
		if field != "" {
			b.WriteString(field)
			b.WriteString(": ")
		}
		reason := x.Reason
		if !printable(reason) {
			reason = strings.Trim(strconv.Quote(reason), `"`)
		}
		b.WriteString(reason)
	}
	return b.String()
}

// Unwrap returns each problem, so errors.Is and errors.As see them all.
func (e LabelErrors) Unwrap() []error {
	errs := make([]error, 0, len(e))
	for _, x := range e {
		if x != nil {
			errs = append(errs, x)
		}
	}
	return errs
}

// problems collects InvalidErrors as a check goes along.
type problems struct {
	list []*gef.InvalidError
	seen map[string]bool
}

func (p *problems) add(field, reason string) {
	id := field + "\x00" + reason
	if p.seen[id] {
		return
	}
	if p.seen == nil {
		p.seen = make(map[string]bool)
	}
	p.seen[id] = true
	p.list = append(p.list, &gef.InvalidError{Field: field, Reason: reason})
}

// err returns nil when nothing was found, else the sorted LabelErrors.
// Problems on one field keep the order they were found in.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := slices.Clone(p.list)
	slices.SortStableFunc(list, func(a, b *gef.InvalidError) int { return compareKeys(a.Field, b.Field) })
	return LabelErrors(list)
}

// compareKeys orders dotted keys with numeric parts compared as numbers, so
// input.2 comes before input.10 as a maintainer would expect.
func compareKeys(a, b string) int {
	for a != "" || b != "" {
		var sa, sb string
		sa, a, _ = strings.Cut(a, ".")
		sb, b, _ = strings.Cut(b, ".")
		if c := compareSegments(sa, sb); c != 0 {
			return c
		}
	}
	return 0
}

func compareSegments(a, b string) int {
	if isDigits(a) && isDigits(b) {
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := len(ta) - len(tb); c != 0 {
			return c
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// quote shows a value from outside in a message, cut short so that a huge
// value cannot make a huge error.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// sortedKeys returns m's keys in a fixed order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
