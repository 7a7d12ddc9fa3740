package ui

import (
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// entry is one service in the catalog: the version a run gets by default,
// and every version.
type entry struct {
	Current  gef.Service
	Versions []gef.Service
	// Retired is set when every version is deprecated: the service is
	// listed, but a run must name a version.
	Retired bool
}

type catalogData struct {
	Query      string
	Publisher  string
	Publishers []string
	Entries    []entry
	Total      int
}

// entries groups a list of service versions by service, in name order.
func entries(list []gef.Service) []entry {
	byName := map[string][]gef.Service{}
	var names []string
	for _, s := range list {
		if _, ok := byName[s.Name]; !ok {
			names = append(names, s.Name)
		}
		byName[s.Name] = append(byName[s.Name], s)
	}
	sort.Strings(names)
	out := make([]entry, 0, len(names))
	for _, n := range names {
		vs := byName[n]
		cur, ok := manager.Newest(vs)
		if !ok {
			cur = vs[0]
		}
		out = append(out, entry{Current: cur, Versions: vs, Retired: !ok})
	}
	return out
}

// matches reports whether e fits a search: every word of q appears in its
// name, title, description or in the name of an input, output or parameter.
func (e entry) matches(q, publisher string) bool {
	if publisher != "" {
		found := false
		for _, v := range e.Versions {
			found = found || v.Publisher == publisher
		}
		if !found {
			return false
		}
	}
	s := e.Current
	hay := []string{s.Name, s.Title, s.Description, s.OCI.Authors}
	for _, in := range s.Inputs {
		hay = append(hay, in.Name)
	}
	for _, o := range s.Outputs {
		hay = append(hay, o.Name)
	}
	for _, p := range s.Params {
		hay = append(hay, p.Name, p.Description)
	}
	text := strings.ToLower(strings.Join(hay, "\n"))
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// catalog lists the services, with a search and a filter by publisher.
func (u *UI) catalog() gin.HandlerFunc {
	t := u.page("services")
	return func(c *gin.Context) {
		list, err := u.m.Services(c.Request.Context(), viewer(c), "")
		if err != nil {
			u.fail(c, err)
			return
		}
		d := catalogData{Query: strings.TrimSpace(c.Query("q")), Publisher: c.Query("publisher")}
		pubs := map[string]bool{}
		for _, s := range list {
			if s.Publisher != "" {
				pubs[s.Publisher] = true
			}
		}
		for p := range pubs {
			d.Publishers = append(d.Publishers, p)
		}
		sort.Strings(d.Publishers)
		all := entries(list)
		d.Total = len(all)
		for _, e := range all {
			if e.matches(d.Query, d.Publisher) {
				d.Entries = append(d.Entries, e)
			}
		}
		u.render(c, http.StatusOK, t, u.view(c, "Services", "services", d))
	}
}
