package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type homeData struct {
	Jobs     []gef.Job
	More     bool
	Services int
	Datasets int
}

// home is the start page: where to begin, and the latest jobs.
func (u *UI) home() gin.HandlerFunc {
	t := u.page("home")
	return func(c *gin.Context) {
		ctx, p := c.Request.Context(), viewer(c)
		page, err := u.m.Jobs(ctx, p, gef.JobFilter{Limit: 8})
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
		names := map[string]bool{}
		for _, s := range svcs {
			names[s.Name] = true
		}
		u.render(c, http.StatusOK, t, u.view(c, "Home", "home",
			homeData{Jobs: page.Items, More: page.NextPageToken != "", Services: len(names), Datasets: len(ds)}))
	}
}
