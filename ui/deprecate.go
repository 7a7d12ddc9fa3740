package ui

import (
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"
)

// deprecate hides a service version from new runs, or shows it again.
// Jobs that ran it keep it, so they can still be read and rerun.
func (u *UI) deprecate(c *gin.Context) {
	deprecated := c.PostForm("deprecated") != "false"
	svc, err := u.m.DeprecateService(c.Request.Context(), viewer(c), c.Param("name"), c.Param("version"), deprecated)
	if err != nil {
		u.fail(c, err)
		return
	}
	notice := "restored"
	if svc.Deprecated {
		notice = "deprecated"
	}
	c.Redirect(http.StatusSeeOther, "/services/"+url.PathEscape(svc.Name)+"?version="+url.QueryEscape(svc.Version)+"&notice="+notice)
}
