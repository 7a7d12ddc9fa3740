package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/eudat-gef/gef"
)

// SetVisibility makes a job public, so that anyone can read it at its
// stable URL without signing in (its record, provenance, citation, logs
// and outputs), or private again. Only its owner or an admin may.
func (m *Manager) SetVisibility(ctx context.Context, p Principal, id string, v gef.Visibility) (gef.Job, error) {
	if v != gef.Public && v != gef.Private {
		return gef.Job{}, gef.Invalid("visibility", "must be public or private")
	}
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return gef.Job{}, err
	}
	if err := mayChange(p, j); err != nil {
		return gef.Job{}, err
	}
	if err := m.store.SetVisibility(ctx, j.ID, v); err != nil {
		return gef.Job{}, err
	}
	m.log.Info("job visibility set", "job", j.ID, "visibility", v, "by", p.Name)
	return m.Job(ctx, p, id)
}

// Citation formats.
const (
	CiteBibTeX = "bibtex"
	CiteCSL    = "csl"
)

// Citation is a job's citation in a format, with its media type.
type Citation struct {
	ContentType string
	Text        []byte
}

// Cite returns a citation of a job the caller may see, as BibTeX or as
// CSL-JSON. The citable identifier is the job's stable URL.
func (m *Manager) Cite(ctx context.Context, p Principal, id, format string) (Citation, error) {
	if format == "" {
		format = CiteBibTeX
	}
	if format != CiteBibTeX && format != CiteCSL {
		return Citation{}, gef.Invalid("format", "must be bibtex or csl")
	}
	j, err := m.Job(ctx, p, id)
	if err != nil {
		return Citation{}, err
	}
	title := j.Service
	if svc, err := m.store.Service(ctx, j.Service, j.Version); err == nil && svc.Title != "" {
		title = svc.Title
	}
	var on []string
	for _, input := range sortedKeys(j.Inputs) {
		on = append(on, j.Inputs[input])
	}
	full := fmt.Sprintf("%s %s run on %s", title, j.Version, strings.Join(on, ", "))
	if len(on) == 0 {
		full = fmt.Sprintf("%s %s run", title, j.Version)
	}
	when := j.Timestamps.Queued
	if j.Timestamps.Finished != nil {
		when = *j.Timestamps.Finished
	}
	note := []string{"GEF job " + j.ID, "image " + j.ImageDigest}
	for _, input := range sortedKeys(j.DatasetDigests) {
		note = append(note, fmt.Sprintf("dataset %s %s", j.Inputs[input], j.DatasetDigests[input]))
	}
	publisher := "GEF"
	if u, err := url.Parse(m.cfg.PublicURL); err == nil && u.Host != "" {
		publisher = "GEF at " + u.Host
	}
	if format == CiteCSL {
		item := map[string]any{
			"id": "gef-" + j.ID, "type": "dataset", "title": full, "author": []map[string]string{{"literal": j.Owner}},
			"issued": map[string]any{"date-parts": [][]int{{when.Year(), int(when.Month()), when.Day()}}},
			"URL":    j.URL, "publisher": publisher, "version": j.Version, "note": strings.Join(note, "; "),
		}
		b, err := json.MarshalIndent([]any{item}, "", "  ")
		if err != nil {
			return Citation{}, fmt.Errorf("manager: citation: %w", err)
		}
		return Citation{ContentType: "application/vnd.citationstyles.csl+json", Text: append(b, '\n')}, nil
	}
	fields := [][2]string{
		{"title", "{" + bibEscape(full) + "}"},
		{"author", "{" + bibEscape(j.Owner) + "}"},
		{"year", fmt.Sprint(when.Year())},

		{"publisher", bibEscape(publisher)},
		{"version", bibEscape(j.Version)},
		{"url", j.URL},
		{"howpublished", `\url{` + j.URL + `}`},
		{"note", bibEscape(strings.Join(note, "; "))},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "@misc{gef-%s,\n", j.ID)
	for _, f := range fields {
		fmt.Fprintf(&b, "  %-12s = {%s},\n", f[0], f[1])
		if f[0] == "year" {
			// BibTeX's month macros, unbraced, let styles spell the month.
			fmt.Fprintf(&b, "  %-12s = %s,\n", "month", strings.ToLower(when.Month().String()[:3]))
		}
	}
	b.WriteString("}\n")
	return Citation{ContentType: "application/x-bibtex; charset=utf-8", Text: []byte(b.String())}, nil
}

// bibEscape escapes the characters BibTeX and LaTeX treat specially.
func bibEscape(s string) string {
	r := strings.NewReplacer(`\`, `\textbackslash{}`, `{`, `\{`, `}`, `\}`, `&`, `\&`, `%`, `\%`, `$`, `\$`,
		`#`, `\#`, `_`, `\_`, `~`, `\textasciitilde{}`, `^`, `\textasciicircum{}`)
	return r.Replace(s)
}
