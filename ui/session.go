package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/server"
)

// A browser session is the session token that manager.Login issues, kept
// in an HttpOnly cookie that the API accepts too. Every state-changing form
// carries a token derived from that cookie with a server key, and posts
// from another origin are refused outright.

const (
	principalKey = "gef.ui.principal"
	csrfKey      = "gef.ui.csrf"
	// loginCookie holds the random value the sign-in form must echo, as no
	// session exists yet to derive a token from.
	loginCookie = "gef_login"
	csrfField   = "csrf"
)

// viewer is who the current request is from; anonymous if no one.
func viewer(c *gin.Context) manager.Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(manager.Principal)
	return pr
}

// headers sets the security headers of every GUI response. The policy
// allows only this origin's own scripts and styles: the templates hold no
// inline script or style at all.
func (u *UI) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// session reads the session cookie into the request's principal. A cookie
// that no longer verifies (expired, signed with a retired key) is dropped
// and the request goes on anonymous.
func (u *UI) session(c *gin.Context) {
	p := manager.Principal{}
	tok, err := c.Cookie(server.SessionCookie)
	if err == nil && tok != "" {
		p, err = u.m.Authenticate(c.Request.Context(), tok)
		switch {
		case errors.Is(err, gef.ErrUnauthorized):
			u.clearSession(c)
			p = manager.Principal{}
		case err != nil:
			u.fail(c, err)
			return
		default:
			c.Set(csrfKey, u.csrfToken(tok))
		}
	}
	c.Set(principalKey, p)
}

// signedIn sends anonymous visitors to the sign-in page, and back here
// afterwards.
func (u *UI) signedIn(c *gin.Context) {
	p := viewer(c)
	if p.Anonymous() {
		target := "/login"
		if c.Request.Method == http.MethodGet && c.Request.URL.Path != "/" {
			target += "?next=" + url.QueryEscape(c.Request.URL.RequestURI())
		}
		c.Redirect(http.StatusSeeOther, target)
		c.Abort()
		return
	}
	if p.Is(gef.RoleNode) {
		u.errorPage(c, http.StatusForbidden, "Not for nodes", "This credential belongs to a node agent, which has no use for the web GUI.")
		return
	}
}

// require refuses, with 403, anyone without one of roles.
func (u *UI) require(roles ...gef.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !viewer(c).Is(roles...) {
			u.errorPage(c, http.StatusForbidden, "Not allowed",
				"Your role ("+string(viewer(c).Role)+") may not open this page. Ask an administrator if you need it.")
		}
	}
}

// csrfToken derives the form token of a session from its cookie.
func (u *UI) csrfToken(session string) string {
	mac := hmac.New(sha256.New, u.cfg.CSRFKey)
	mac.Write([]byte("gef-ui-form\x00"))
	mac.Write([]byte(session))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkForm guards every state-changing form of a signed-in session: the
// post must come from this origin and carry the session's form token.
func (u *UI) checkForm(c *gin.Context) {
	if viewer(c).Anonymous() {
		c.Redirect(http.StatusSeeOther, "/login")
		c.Abort()
		return
	}
	if !u.sameOrigin(c.Request) {
		u.errorPage(c, http.StatusForbidden, "Refused", "This form was posted from another site, so GEF refused it.")
		return
	}
	want := c.GetString(csrfKey)
	got := c.PostForm(csrfField)
	if want == "" || !hmac.Equal([]byte(got), []byte(want)) {
		u.errorPage(c, http.StatusForbidden, "Form expired",
			"This form has expired or did not come from this GEF. Go back, reload the page and try again.")
		return
	}
}

// sameOrigin reports whether a post comes from this site. Browsers send
// Origin (or at least Sec-Fetch-Site) with every post; a client that sends
// neither is not a browser and still needs the form token.
func (u *UI) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
		if origin == "" {
			return true
		}
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false // includes "null", sent by sandboxed and privacy-sensitive contexts
	}
	return strings.EqualFold(o.Host, r.Host) || (u.publicHost != "" && strings.EqualFold(o.Host, u.publicHost))
}

func (u *UI) secureCookie(r *http.Request) bool { return u.secure || r.TLS != nil }

func (u *UI) setSession(c *gin.Context, s manager.Session) {
	http.SetCookie(c.Writer, &http.Cookie{Name: server.SessionCookie, Value: s.Token, Path: "/",
		Expires: s.ExpiresAt, HttpOnly: true, Secure: u.secureCookie(c.Request), SameSite: http.SameSiteLaxMode})
}

func (u *UI) clearSession(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: server.SessionCookie, Value: "", Path: "/", MaxAge: -1,
		Expires: time.Unix(1, 0), HttpOnly: true, Secure: u.secureCookie(c.Request), SameSite: http.SameSiteLaxMode})
}

// loginToken returns the sign-in form's token, setting its cookie if the
// browser has none yet.
func (u *UI) loginToken(c *gin.Context) string {
	if v, err := c.Cookie(loginCookie); err == nil && len(v) == 43 {
		return v
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(c.Writer, &http.Cookie{Name: loginCookie, Value: v, Path: "/login", HttpOnly: true,
		Secure: u.secureCookie(c.Request), SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
	return v
}

// localPath returns next if it is a path on this site, else "/": the
// sign-in page must not be a way to send people elsewhere.
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	if strings.HasPrefix(u.Path, "/login") || strings.HasPrefix(u.Path, "/logout") {
		return "/"
	}
	return next
}
