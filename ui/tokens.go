package ui

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

type tokensData struct {
	Tokens []tokenRow
	New    *manager.NewToken // just made: its secret is shown this once
	For    string            // whom New is for
	Form   tokenForm
	Errors map[string]string
}

type tokenRow struct {
	gef.Token
	Status string // active, expired or revoked
}

type tokenForm struct {
	Name string
	User string
	Days string
}

// tokenLifetimes are the choices of the form, in days; 0 never expires.
var tokenLifetimes = []string{"30", "90", "365", "0"}

// tokens lists the viewer's API tokens, with a form to make one.
func (u *UI) tokens() gin.HandlerFunc {
	t := u.page("tokens")
	return func(c *gin.Context) {
		u.showTokens(c, t, http.StatusOK, tokensData{Form: tokenForm{Days: "90"}})
	}
}

// createToken makes an API token, for the viewer or (admins) for another
// user such as a node, and shows its secret once.
func (u *UI) createToken() gin.HandlerFunc {
	t := u.page("tokens")
	return func(c *gin.Context) {
		f := tokenForm{Name: strings.TrimSpace(c.PostForm("name")), User: strings.TrimSpace(c.PostForm("user")), Days: c.PostForm("days")}
		d := tokensData{Form: f}
		days, err := strconv.Atoi(f.Days)
		if err != nil || days < 0 || days > 3650 {
			d.Errors = map[string]string{"days": "Choose how long the token lives."}
			u.showTokens(c, t, http.StatusUnprocessableEntity, d)
			return
		}
		tok, err := u.m.CreateToken(c.Request.Context(), viewer(c), f.User, f.Name, time.Duration(days)*24*time.Hour)
		var inv *gef.InvalidError
		switch {
		case errors.As(err, &inv):
			d.Errors = map[string]string{"name": capitalize(inv.Reason) + "."}
			u.showTokens(c, t, http.StatusUnprocessableEntity, d)
			return
		case errors.Is(err, gef.ErrNotFound) && f.User != "":
			d.Errors = map[string]string{"user": "There is no user " + f.User + "."}
			u.showTokens(c, t, http.StatusUnprocessableEntity, d)
			return
		case err != nil:
			u.fail(c, err)
			return
		}
		d.New, d.For, d.Form = &tok, f.User, tokenForm{Days: f.Days}
		if d.For == "" {
			d.For = viewer(c).Name
		}
		u.showTokens(c, t, http.StatusOK, d)
	}
}

// revokeToken revokes one of the viewer's tokens (admins: any token).
func (u *UI) revokeToken(c *gin.Context) {
	if err := u.m.RevokeToken(c.Request.Context(), viewer(c), c.Param("id")); err != nil {
		u.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/tokens?notice=token-revoked")
}

func (u *UI) showTokens(c *gin.Context, t *template.Template, status int, d tokensData) {
	list, err := u.m.Tokens(c.Request.Context(), viewer(c))
	if err != nil {
		u.fail(c, err)
		return
	}
	now := u.now()
	for _, tok := range list {
		r := tokenRow{Token: tok, Status: "active"}
		switch {
		case r.RevokedAt != nil:
			r.Status = "revoked"
		case r.ExpiresAt != nil && !now.Before(*r.ExpiresAt):
			r.Status = "expired"
		}
		d.Tokens = append(d.Tokens, r)
	}
	u.render(c, status, t, u.view(c, "API tokens", "tokens", d))
}
