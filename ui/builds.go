package ui

import (
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// buildStates lists the states of a build in life order.
var buildStates = []gef.BuildState{gef.BuildQueued, gef.BuildBuilding, gef.BuildPublishing, gef.BuildDone, gef.BuildFailed}

type buildsData struct {
	State             gef.BuildState
	States            []gef.BuildState
	Builds            []gef.Build
	NextURL, FirstURL string
}

// builds lists the viewer's builds (an admin's: everyone's), newest first.
func (u *UI) builds() gin.HandlerFunc {
	t := u.page("builds")
	return func(c *gin.Context) {
		f := store.BuildFilter{State: gef.BuildState(c.Query("state")), PageToken: c.Query("page"), Limit: u.cfg.PageSize}
		page, err := u.m.Builds(c.Request.Context(), viewer(c), f)
		if err != nil {
			u.fail(c, err)
			return
		}
		d := buildsData{State: f.State, States: buildStates, Builds: page.Items}
		q := url.Values{}
		if f.State != "" {
			q.Set("state", string(f.State))
		}
		if f.PageToken != "" {
			d.FirstURL = "/builds?" + q.Encode()
		}
		if page.NextPageToken != "" {
			q.Set("page", page.NextPageToken)
			d.NextURL = "/builds?" + q.Encode()
		}
		u.render(c, http.StatusOK, t, u.view(c, "Builds", "builds", d))
	}
}

// buildClass groups build states for styling, as stateClass does jobs'.
func buildClass(s gef.BuildState) string {
	switch s {
	case gef.BuildQueued:
		return "waiting"
	case gef.BuildBuilding, gef.BuildPublishing:
		return "active"
	case gef.BuildDone:
		return "ok"
	}
	return "bad"
}
