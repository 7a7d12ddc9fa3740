package ui

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type loginData struct {
	Next  string
	Name  string
	Token string
	Error string
}

// loginPage shows the sign-in form, or sends a signed-in visitor on.
func (u *UI) loginPage() gin.HandlerFunc {
	t := u.page("login")
	return func(c *gin.Context) {
		next := localPath(c.Query("next"))
		if !viewer(c).Anonymous() {
			c.Redirect(http.StatusSeeOther, next)
			return
		}
		u.render(c, http.StatusOK, t, u.view(c, "Sign in", "login", loginData{Next: next, Token: u.loginToken(c)}))
	}
}

// login checks a name and password and starts a session. Attempts are
// rate-limited per client together with the API's sign-in.
func (u *UI) login() gin.HandlerFunc {
	t := u.page("login")
	return func(c *gin.Context) {
		d := loginData{Next: localPath(c.PostForm("next")), Name: c.PostForm("name")}
		again := func(status int, msg string) {
			d.Token, d.Error = u.loginToken(c), msg
			u.render(c, status, t, u.view(c, "Sign in", "login", d))
		}
		if !u.sameOrigin(c.Request) {
			u.errorPage(c, http.StatusForbidden, "Refused", "This sign-in form was posted from another site, so GEF refused it.")
			return
		}
		if want, err := c.Cookie(loginCookie); err != nil || want == "" || want != c.PostForm(csrfField) {
			again(http.StatusForbidden, "The sign-in form expired, or your browser refuses cookies. Allow cookies for this site and sign in again.")
			return
		}
		if u.cfg.AllowLogin != nil && !u.cfg.AllowLogin(c.ClientIP()) {
			again(http.StatusTooManyRequests, "Too many sign-in attempts from your address. Wait a minute, then try again.")
			return
		}
		s, err := u.m.Login(c.Request.Context(), d.Name, c.PostForm("password"))
		if errors.Is(err, gef.ErrUnauthorized) {
			again(http.StatusUnauthorized, "Wrong user name or password.")
			return
		}
		if err != nil {
			u.fail(c, err)
			return
		}
		u.setSession(c, s)
		c.Redirect(http.StatusSeeOther, d.Next)
	}
}
