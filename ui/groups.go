package ui

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type groupsData struct {
	Groups []gef.Group
	Users  []string // for the member fields' suggestions
	Name   string   // the new group's name, as typed
	Error  string   // about it
	// Member is the add-member form that was refused, if one was.
	Member groupMember
}

type groupMember struct {
	Group, User, Error string
}

// groups lists the groups, which dataset access lists name, with forms
// to make one and to add and remove members.
func (u *UI) groups() gin.HandlerFunc {
	t := u.page("groups")
	return func(c *gin.Context) {
		u.showGroups(c, t, http.StatusOK, groupsData{})
	}
}

// createGroup makes a group.
func (u *UI) createGroup() gin.HandlerFunc {
	t := u.page("groups")
	return func(c *gin.Context) {
		d := groupsData{Name: strings.TrimSpace(c.PostForm("name"))}
		err := u.m.CreateGroup(c.Request.Context(), viewer(c), d.Name)
		var inv *gef.InvalidError
		switch {
		case errors.As(err, &inv):
			d.Error = capitalize(inv.Reason) + "."
			u.showGroups(c, t, http.StatusUnprocessableEntity, d)
		case errors.Is(err, gef.ErrConflict):
			d.Error = "A group with this name exists already."
			u.showGroups(c, t, http.StatusConflict, d)
		case err != nil:
			u.fail(c, err)
		default:
			c.Redirect(http.StatusSeeOther, "/admin/groups?notice=group-created#group-"+url.QueryEscape(d.Name))
		}
	}
}

// setMember adds a user to a group, or removes them.
func (u *UI) setMember() gin.HandlerFunc {
	t := u.page("groups")
	return func(c *gin.Context) {
		ctx, p, group := c.Request.Context(), viewer(c), c.Param("name")
		user := strings.TrimSpace(c.PostForm("user"))
		add := c.PostForm("action") != "remove"
		groups, err := u.m.Groups(ctx, p)
		if err != nil {
			u.fail(c, err)
			return
		}
		if !slices.ContainsFunc(groups, func(g gef.Group) bool { return g.Name == group }) {
			u.errorPage(c, http.StatusNotFound, "No such group", "There is no group "+group+".")
			return
		}
		err = u.m.SetGroupMember(ctx, p, group, user, add)
		switch {
		case errors.Is(err, gef.ErrNotFound):
			msg := "There is no user " + user + "."
			if user == "" {
				msg = "Name a user."
			}
			u.showGroups(c, t, http.StatusUnprocessableEntity, groupsData{Member: groupMember{Group: group, User: user, Error: msg}})
		case err != nil:
			u.fail(c, err)
		case add:
			c.Redirect(http.StatusSeeOther, "/admin/groups?notice=member-added#group-"+url.QueryEscape(group))
		default:
			c.Redirect(http.StatusSeeOther, "/admin/groups?notice=member-removed#group-"+url.QueryEscape(group))
		}
	}
}

func (u *UI) showGroups(c *gin.Context, t *template.Template, status int, d groupsData) {
	ctx, p := c.Request.Context(), viewer(c)
	var err error
	if d.Groups, err = u.m.Groups(ctx, p); err != nil {
		u.fail(c, err)
		return
	}
	users, err := u.m.Users(ctx, p)
	if err != nil {
		u.fail(c, err)
		return
	}
	for _, x := range users {
		if x.Role != gef.RoleNode {
			d.Users = append(d.Users, x.Name)
		}
	}
	u.render(c, status, t, u.view(c, "Groups", "groups", d))
}
