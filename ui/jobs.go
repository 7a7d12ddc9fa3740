package ui

import (
	"net/http"
	"net/url"
	"sort"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type jobsData struct {
	Filter   gef.JobFilter
	States   []gef.JobState
	Services []string
	Datasets []string
	Jobs     []gef.Job
	// NextURL is the page of older jobs; FirstURL the newest page, set
	// when this is not it.
	NextURL, FirstURL string
	Filtered          bool
}

// jobs lists jobs newest first, filtered by state, service, dataset, node
// and (for admins) owner. Pages follow the store's keyset on job ids, so the
// thousandth page costs what the first does.
func (u *UI) jobs() gin.HandlerFunc {
	t := u.page("jobs")
	return func(c *gin.Context) {
		ctx, p := c.Request.Context(), viewer(c)
		f := gef.JobFilter{State: gef.JobState(c.Query("state")), Service: c.Query("service"),
			Dataset: c.Query("dataset"), Owner: c.Query("owner"), Node: c.Query("node"), PageToken: c.Query("page"), Limit: u.cfg.PageSize}
		if !p.Is(gef.RoleAdmin) {
			f.Owner = "" // the manager shows others only their own jobs
		}
		page, err := u.m.Jobs(ctx, p, f)
		if err != nil {
			u.fail(c, err)
			return
		}
		svcs, err := u.m.Services(ctx, p, "")
		if err != nil {
			u.fail(c, err)
			return
		}
		ds, err := u.m.Datasets(ctx, p)
		if err != nil {
			u.fail(c, err)
			return
		}
		d := jobsData{Filter: f, States: gef.JobStates, Jobs: page.Items,
			Filtered: f.State != "" || f.Service != "" || f.Dataset != "" || f.Owner != "" || f.Node != ""}
		d.Services = names(f.Service, len(svcs), func(i int) string { return svcs[i].Name })
		d.Datasets = names(f.Dataset, len(ds), func(i int) string { return ds[i].Name })

		q := url.Values{}
		for k, v := range map[string]string{"state": string(f.State), "service": f.Service, "dataset": f.Dataset, "owner": f.Owner, "node": f.Node} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if f.PageToken != "" {
			d.FirstURL = "/jobs?" + q.Encode()
		}
		if page.NextPageToken != "" {
			q.Set("page", page.NextPageToken)
			d.NextURL = "/jobs?" + q.Encode()
		}
		u.render(c, http.StatusOK, t, u.view(c, "Jobs", "jobs", d))
	}
}

// names lists distinct names in order, with the current filter value among
// them even if nothing holds that name any more.
func names(current string, n int, at func(int) string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	add(current)
	for i := 0; i < n; i++ {
		add(at(i))
	}
	sort.Strings(out)
	return out
}
