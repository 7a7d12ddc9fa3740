package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// cancel stops a job: at once if it is queued, else once its node has
// stopped the container.
func (u *UI) cancel(c *gin.Context) {
	j, err := u.m.Cancel(c.Request.Context(), viewer(c), c.Param("id"))
	if err != nil {
		u.fail(c, err)
		return
	}
	notice := "cancel-asked"
	if j.State.Final() {
		notice = "canceled"
	}
	c.Redirect(http.StatusSeeOther, "/jobs/"+j.ID+"?notice="+notice)
}
