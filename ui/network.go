package ui

import (
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"
)

// network lets a service version's containers reach the network, or takes
// that away (admins). Every other service runs with none.
func (u *UI) network(c *gin.Context) {
	allow := c.PostForm("network") == "true"
	svc, err := u.m.AllowNetwork(c.Request.Context(), viewer(c), c.Param("name"), c.Param("version"), allow)
	if err != nil {
		u.fail(c, err)
		return
	}
	notice := "network-none"
	if svc.Network {
		notice = "network-allowed"
	}
	c.Redirect(http.StatusSeeOther, "/services/"+url.PathEscape(svc.Name)+"?version="+url.QueryEscape(svc.Version)+"&notice="+notice)
}
