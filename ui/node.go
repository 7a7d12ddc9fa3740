package ui

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type nodeData struct {
	Node   gef.Node
	Active []gef.Job // the jobs the node holds now
	Recent []gef.Job
}

// node shows one node with the jobs it runs now and ran last.
func (u *UI) node() gin.HandlerFunc {
	t := u.page("node")
	return func(c *gin.Context) {
		ctx, p, name := c.Request.Context(), viewer(c), c.Param("name")
		n, err := u.m.Node(ctx, p, name)
		if err != nil {
			u.fail(c, err)
			return
		}
		d := nodeData{Node: n}
		for _, s := range []gef.JobState{gef.JobAssigned, gef.JobFetchingImage, gef.JobRunning, gef.JobStaging} {
			page, err := u.m.Jobs(ctx, p, gef.JobFilter{Node: name, State: s, Limit: 100})
			if err != nil {
				u.fail(c, err)
				return
			}
			d.Active = append(d.Active, page.Items...)
		}
		slices.SortFunc(d.Active, func(a, b gef.Job) int { return strings.Compare(b.ID, a.ID) })
		recent, err := u.m.Jobs(ctx, p, gef.JobFilter{Node: name, Limit: 10})
		if err != nil {
			u.fail(c, err)
			return
		}
		d.Recent = recent.Items
		u.render(c, http.StatusOK, t, u.view(c, "Node "+n.Name, "nodes", d))
	}
}
