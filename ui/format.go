package ui

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

// humanBytes shows a size in binary units, as file managers do: 1.5 KiB.
func humanBytes(n int64) string {
	if n < 1024 {
		if n == 1 {
			return "1 byte"
		}
		return fmt.Sprintf("%d bytes", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f %s", math.Floor(f*10)/10, units[i])
	}
	return fmt.Sprintf("%.0f %s", math.Floor(f), units[i])
}

// relative says how long ago (or how far ahead) t is from now, in the
// largest whole unit: "just now", "3 min ago", "in 2 h", "5 days ago".
func relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d/time.Hour))
	case d < 60*24*time.Hour:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	default:
		return t.UTC().Format("2 Jan 2006")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// absolute is the exact time, in UTC so that everyone reading a page (and
// the logs) sees the same clock.
func absolute(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// duration shows how long something took: 850 ms, 4.2 s, 3 min 5 s, 2 h.
func duration(d time.Duration) string {
	two := func(a int, ua string, b int, ub string) string {
		if b == 0 {
			return fmt.Sprintf("%d %s", a, ua)
		}
		return fmt.Sprintf("%d %s %d %s", a, ua, b, ub)
	}
	switch {
	case d < 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", math.Floor(d.Seconds()*10)/10)
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return two(int(d.Minutes()), "min", int(d.Seconds())%60, "s")
	case d < 48*time.Hour:
		return two(int(d.Hours()), "h", int(d.Minutes())%60, "min")
	}
	return two(int(d.Hours())/24, "days", int(d.Hours())%24, "h")
}

// shortDigest cuts an image ID to the 12 hex digits people quote.
func shortDigest(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// outputURL is where the API serves one output file of a job.
func outputURL(job string, f gef.OutputFile) string {
	parts := strings.Split(f.Path, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/api/v1/jobs/" + url.PathEscape(job) + "/outputs/" + url.PathEscape(f.Name) + "/" + strings.Join(parts, "/")
}

// stateLabel words a job state for people.
func stateLabel(s gef.JobState) string {
	switch s {
	case gef.JobFetchingImage:
		return "fetching image"
	case gef.JobSystemError:
		return "system error"
	}
	return string(s)
}

// stateClass groups states for styling: waiting, active, ok, bad, off.
func stateClass(s gef.JobState) string {
	switch s {
	case gef.JobQueued:
		return "waiting"
	case gef.JobAssigned, gef.JobFetchingImage, gef.JobRunning, gef.JobStaging:
		return "active"
	case gef.JobSucceeded:
		return "ok"
	case gef.JobFailed, gef.JobSystemError:
		return "bad"
	}
	return "off"
}

// safeLink returns u when it is an http(s) URL, so that a label value
// such as javascript:… is never made a link.
func safeLink(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return ""
	}
	return p.String()
}
