package services

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// size is a byte count with an optional k/m/g/t unit; the b, i and ib that
// people add out of habit (512mb, 2GiB) are tolerated.
var size = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+) ?(?:([kmgt])i?b?|b)?$`)

// parseMemory reads a memory hint in bytes; units are powers of 1024.
func parseMemory(raw string) (int64, string) {
	m := size.FindStringSubmatch(strings.ToLower(raw))
	if m == nil {
		return 0, fmt.Sprintf("must be a size such as 512m, 2g or 1073741824, got %s", quote(raw))
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Sprintf("must be a size such as 512m, 2g or 1073741824, got %s", quote(raw))
	}
	if m[2] != "" {
		f *= math.Pow(1024, float64(strings.Index("kmgt", m[2])+1))
	}
	f = math.Floor(f)
	switch {
	case f < minMemory:
		return 0, fmt.Sprintf("must be at least 4m (%d bytes), got %s", minMemory, quote(raw))
	case f >= math.MaxInt64: // also catches +Inf from a huge number
		return 0, fmt.Sprintf("is too large, got %s", quote(raw))
	}
	return int64(f), ""
}

// parseTimeout reads a timeout hint: a Go duration or whole seconds. A
// fraction of a second rounds up, so that a positive timeout never turns
// into 0, which means the node's default.
func parseTimeout(raw string) (int64, string) {
	const maxDays = maxTimeout / 86400
	var d time.Duration
	if isDigits(raw) {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n > maxTimeout {
			return 0, fmt.Sprintf("must be at most %d days, got %s", maxDays, quote(raw))
		}
		d = time.Duration(n) * time.Second
	} else {
		var err error
		d, err = time.ParseDuration(raw)
		if err != nil {
			return 0, fmt.Sprintf("must be a duration such as 90s or 1h30m, or whole seconds, got %s", quote(raw))
		}
	}
	switch {
	case d <= 0:
		return 0, fmt.Sprintf("must be longer than 0, got %s", quote(raw))
	case d > maxTimeout*time.Second:
		return 0, fmt.Sprintf("must be at most %d days, got %s", maxDays, quote(raw))
	}
	return int64((d + time.Second - 1) / time.Second), ""
}
