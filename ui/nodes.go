package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// nodes shows every node agent: its state, heartbeat, load and engine.
func (u *UI) nodes() gin.HandlerFunc {
	t := u.page("nodes")
	return func(c *gin.Context) {
		list, err := u.m.Nodes(c.Request.Context(), viewer(c))
		if err != nil {
			u.fail(c, err)
			return
		}
		u.render(c, http.StatusOK, t, u.view(c, "Nodes", "nodes", list))
	}
}
