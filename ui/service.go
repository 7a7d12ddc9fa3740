package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type serviceData struct {
	entry
	Shown gef.Service // the version the page describes
}

// service describes one service: its versions, and one version in full.
func (u *UI) service() gin.HandlerFunc {
	t := u.page("service")
	return func(c *gin.Context) {
		name := c.Param("name")
		list, err := u.m.Services(c.Request.Context(), viewer(c), name)
		if err != nil {
			u.fail(c, err)
			return
		}
		if len(list) == 0 {
			u.errorPage(c, http.StatusNotFound, "No such service", "No service named "+name+" is published.")
			return
		}
		d := serviceData{entry: entries(list)[0]}
		d.Shown = d.Current
		if v := c.Query("version"); v != "" {
			found := false
			for _, s := range d.Versions {
				if s.Version == v {
					d.Shown, found = s, true
				}
			}
			if !found {
				u.errorPage(c, http.StatusNotFound, "No such version", "Service "+name+" has no version "+v+".")
				return
			}
		}
		u.render(c, http.StatusOK, t, u.view(c, d.Shown.Title, "services", d))
	}
}
