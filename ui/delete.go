package ui

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

// deleteVersion removes a service version that no job ran. A version jobs
// ran stays, so that they can be read and rerun: the page says so, and
// offers to deprecate it instead.
func (u *UI) deleteVersion() gin.HandlerFunc {
	t := u.page("service")
	return func(c *gin.Context) {
		ctx, p, name, version := c.Request.Context(), viewer(c), c.Param("name"), c.Param("version")
		err := u.m.DeleteService(ctx, p, name, version)
		switch {
		case errors.Is(err, gef.ErrConflict):
			u.showService(c, t, http.StatusConflict, version, publicMessage(err)+".")
			return
		case err != nil:
			u.fail(c, err)
			return
		}
		left, err := u.m.Services(ctx, p, name)
		if err != nil {
			u.fail(c, err)
			return
		}
		if len(left) == 0 {
			c.Redirect(http.StatusSeeOther, "/services?notice=deleted")
			return
		}
		c.Redirect(http.StatusSeeOther, "/services/"+url.PathEscape(name)+"?notice=deleted")
	}
}
