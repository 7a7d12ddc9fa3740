package ui

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

// role describes what a role may do, for the admin page.
type role struct {
	Role  gef.Role
	Text  string
	Count int
}

var roleText = []role{
	{Role: gef.RoleUser, Text: "Runs services on datasets, and sees their own jobs, logs and results."},
	{Role: gef.RoleMaintainer, Text: "Also publishes services and deprecates their versions."},
	{Role: gef.RoleAdmin, Text: "Everything: every job, the nodes, users and their API tokens."},
	{Role: gef.RoleNode, Text: "The credential of a gef-node agent. It signs in with an API token, never here."},
}

type usersData struct {
	Users  []gef.User
	Roles  []role
	Form   userForm
	Errors map[string]string
}

type userForm struct {
	Name string
	Role gef.Role
}

// users lists the users and offers a form to add one.
func (u *UI) users() gin.HandlerFunc {
	t := u.page("users")
	return func(c *gin.Context) {
		u.showUsers(c, t, http.StatusOK, userForm{Role: gef.RoleUser}, nil)
	}
}

// createUser adds a user with a role and, for people, a password.
func (u *UI) createUser() gin.HandlerFunc {
	t := u.page("users")
	return func(c *gin.Context) {
		f := userForm{Name: strings.TrimSpace(c.PostForm("name")), Role: gef.Role(c.PostForm("role"))}
		_, err := u.m.CreateUser(c.Request.Context(), viewer(c), f.Name, f.Role, c.PostForm("password"))
		var inv *gef.InvalidError
		switch {
		case errors.As(err, &inv):
			field := inv.Field
			if field != "name" && field != "role" && field != "password" {
				field = "name"
			}
			u.showUsers(c, t, http.StatusUnprocessableEntity, f, map[string]string{field: capitalize(inv.Reason) + "."})
		case errors.Is(err, gef.ErrConflict):
			u.showUsers(c, t, http.StatusConflict, f, map[string]string{"name": "A user with this name exists already."})
		case err != nil:
			u.fail(c, err)
		default:
			c.Redirect(http.StatusSeeOther, "/admin/users?notice=user-created")
		}
	}
}

func (u *UI) showUsers(c *gin.Context, t *template.Template, status int, f userForm, errs map[string]string) {
	list, err := u.m.Users(c.Request.Context(), viewer(c))
	if err != nil {
		u.fail(c, err)
		return
	}
	d := usersData{Users: list, Form: f, Errors: errs}
	for _, r := range roleText {
		for _, x := range list {
			if x.Role == r.Role {
				r.Count++
			}
		}
		d.Roles = append(d.Roles, r)
	}
	u.render(c, status, t, u.view(c, "Users", "admin", d))
}
