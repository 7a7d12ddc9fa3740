package ui

import (
	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// navItem is one entry of the main menu.
type navItem struct {
	Key   string // the view's Nav that marks it as the current section
	Label string
	Path  string
	Roles []gef.Role // who sees it; none means everyone signed in
}

var (
	admins      = []gef.Role{gef.RoleAdmin}
	maintainers = []gef.Role{gef.RoleAdmin, gef.RoleMaintainer}
)

// menu is the main menu in order. A new section adds its line here; the
// routes still check the roles, the menu only hides what is not allowed.
var menu = []navItem{
	{Key: "services", Label: "Services", Path: "/services"},
	{Key: "jobs", Label: "Jobs", Path: "/jobs"},
	{Key: "datasets", Label: "Datasets", Path: "/datasets"},
	{Key: "sessions", Label: "Sessions", Path: "/sessions"},
	{Key: "nodes", Label: "Nodes", Path: "/nodes", Roles: admins},
	{Key: "publish", Label: "Publish", Path: "/publish", Roles: maintainers},
	{Key: "builds", Label: "Builds", Path: "/builds", Roles: maintainers},
	{Key: "admin", Label: "Users", Path: "/admin/users", Roles: admins},
	{Key: "groups", Label: "Groups", Path: "/admin/groups", Roles: admins},
}

// menuFor returns the menu entries p may open.
func menuFor(p manager.Principal) []navItem {
	if p.Anonymous() {
		return nil
	}
	var out []navItem
	for _, it := range menu {
		if len(it.Roles) == 0 || p.Is(it.Roles...) {
			out = append(out, it)
		}
	}
	return out
}
