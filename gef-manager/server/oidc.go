package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/eudat-gef/gef/gef-manager/auth"
)

// Sign-in through an external OpenID Connect provider: the authorization
// code flow with PKCE, state and nonce. The pending sign-in lives in a
// short-lived cookie authenticated with the manager's key, so any replica
// can finish it.

const (
	oidcCookie = "gef_oidc"
	oidcPath   = "/api/v1/login/oidc"
	oidcTTL    = 10 * time.Minute
)

type pendingLogin struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// EnableOIDC turns on sign-in through an OIDC provider.
func (s *Server) EnableOIDC(o *auth.OIDC) {
	s.oidc = o
	s.engine.GET(oidcPath, s.oidcStart)
	s.engine.GET(oidcPath+"/callback", s.oidcCallback)
}

// OIDCLabel names the configured provider, or "" when there is none.
func (s *Server) OIDCLabel() string {
	if s.oidc == nil {
		return ""
	}
	return s.oidc.Label()
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safeNext keeps redirects after sign-in on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func secure(c *gin.Context) bool {
	return c.Request.TLS != nil || c.GetHeader("X-Forwarded-Proto") == "https"
}

func (s *Server) oidcStart(c *gin.Context) {
	p := pendingLogin{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(c.Query("next")), Expires: time.Now().Add(oidcTTL).Unix()}
	url, err := s.oidc.AuthURL(c.Request.Context(), p.State, p.Nonce, p.Verifier)
	if err != nil {
		s.fail(c, err)
		return
	}
	b, _ := json.Marshal(p)
	val := base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(s.m.MAC("oidc", b))
	http.SetCookie(c.Writer, &http.Cookie{Name: oidcCookie, Value: val, Path: oidcPath, MaxAge: int(oidcTTL / time.Second),
		HttpOnly: true, Secure: secure(c), SameSite: http.SameSiteLaxMode})
	c.Redirect(http.StatusFound, url)
}

func (s *Server) oidcCallback(c *gin.Context) {
	refuse := func(msg string) { abort(c, http.StatusUnauthorized, "unauthorized", "sign-in failed: "+msg) }
	if e := c.Query("error"); e != "" {
		refuse("the provider said " + e)
		return
	}
	ck, err := c.Cookie(oidcCookie)
	if err != nil {
		refuse("no sign-in is pending in this browser; start again")
		return
	}
	body, mac, ok := strings.Cut(ck, ".")
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	m, err2 := base64.RawURLEncoding.DecodeString(mac)
	var p pendingLogin
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(m, s.m.MAC("oidc", b)) || json.Unmarshal(b, &p) != nil {
		refuse("the pending sign-in was tampered with")
		return
	}
	if time.Now().Unix() > p.Expires {
		refuse("the sign-in took too long; start again")
		return
	}
	if subtle.ConstantTimeCompare([]byte(c.Query("state")), []byte(p.State)) != 1 {
		refuse("the answer does not belong to this browser's sign-in")
		return
	}
	id, err := s.oidc.Exchange(c.Request.Context(), c.Query("code"), p.Nonce, p.Verifier)
	if err != nil {
		s.log.Warn("OIDC sign-in refused", "err", err)
		s.fail(c, err)
		return
	}
	sess, err := s.m.LoginExternal(c.Request.Context(), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: oidcCookie, Value: "", Path: oidcPath, MaxAge: -1, HttpOnly: true, Secure: secure(c)})
	http.SetCookie(c.Writer, &http.Cookie{Name: SessionCookie, Value: sess.Token, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, Secure: secure(c), SameSite: http.SameSiteLaxMode})
	c.Redirect(http.StatusFound, p.Next)
}
