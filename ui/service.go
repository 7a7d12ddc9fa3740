package ui

import (
	"html/template"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type serviceData struct {
	entry
	Shown gef.Service // the version the page describes
	// MayMaintain is set for those who may deprecate and delete its
	// versions: admins, and the maintainer who publishes it.
	MayMaintain bool
	Refused     string // why a version was not deleted
}

// service describes one service: its versions, and one version in full.
func (u *UI) service() gin.HandlerFunc {
	t := u.page("service")
	return func(c *gin.Context) {
		u.showService(c, t, http.StatusOK, c.Query("version"), "")
	}
}

func (u *UI) showService(c *gin.Context, t *template.Template, status int, version, refused string) {
	name, p := c.Param("name"), viewer(c)
	list, err := u.m.Services(c.Request.Context(), p, name)
	if err != nil {
		u.fail(c, err)
		return
	}
	if len(list) == 0 {
		u.errorPage(c, http.StatusNotFound, "No such service", "No service named "+name+" is published.")
		return
	}
	d := serviceData{entry: entries(list)[0], Refused: refused}
	d.Shown = d.Current
	if version != "" {
		found := false
		for _, s := range d.Versions {
			if s.Version == version {
				d.Shown, found = s, true
			}
		}
		if !found {
			u.errorPage(c, http.StatusNotFound, "No such version", "Service "+name+" has no version "+version+".")
			return
		}
	}
	// As the manager judges it: a maintainer looks after the services
	// whose first version they published.
	first := list[0]
	for _, s := range list[1:] {
		if s.CreatedAt.Before(first.CreatedAt) {
			first = s
		}
	}
	d.MayMaintain = p.Is(gef.RoleAdmin) || p.Is(gef.RoleMaintainer) && first.Publisher == p.Name
	u.render(c, status, t, u.view(c, d.Shown.Title, "services", d))
}
