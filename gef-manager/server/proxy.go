package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// The session proxy serves each session at /s/REF/, REF its id or its
// friendly name. Every request is authenticated and checked against the
// session's access, then forwarded through the session's node's tunnel
// with httputil.ReverseProxy: streamed both ways, websockets included.

// ProxyCookie holds a browser's access token for one session. It is
// scoped to the session's path and never reaches the container.
const ProxyCookie = "gef_access"

// UserHeader tells a session's container who is calling; it is absent
// for anonymous callers of a public session. GEF sets it and removes any
// copy the caller sent, so the container may trust it.
const UserHeader = "X-GEF-User"

// sessionHost is the host name outbound requests to a session carry in
// their URL, before its id: the transport dials the tunnel by it. The
// .invalid domain never resolves.
const sessionHost = ".session.gef.invalid"

// identityHeaders are removed from every request before it reaches a
// container: GEF's own, and those that proxies commonly use to name a
// signed-in user, which a container might otherwise trust.
var identityHeaders = []string{"Authorization", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username",
	"X-Remote-User", "Remote-User", "X-Auth-Request-User", "X-Auth-Request-Email"}

type proxy struct {
	s         *Server
	transport *http.Transport
}

func newProxy(s *Server) *proxy {
	p := &proxy{s: s}
	p.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			id, ok := strings.CutSuffix(strings.ToLower(host), sessionHost)
			if !ok {
				return nil, errors.New("server: proxy: not a session address: " + addr)
			}
			// The transport may lower the case of the host; ids are upper case.
			return s.m.DialSession(ctx, strings.ToUpper(id))
		},
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Pass the service's own encodings through untouched.
		DisableCompression: true,
	}
	return p
}

// serve proxies one request to a session.
func (p *proxy) serve(c *gin.Context) {
	s, r := p.s, c.Request
	ctx := r.Context()
	if host := s.m.SessionHost(); host != "" && !strings.EqualFold(r.Host, host) {
		// Sessions live on their own host, apart from the API's cookies.
		c.Redirect(http.StatusPermanentRedirect, s.m.PublicURL()+r.URL.RequestURI())
		return
	}
	ref := c.Param("ref")
	sess, err := s.m.ResolveSession(ctx, ref)
	if err != nil {
		s.fail(c, err)
		return
	}
	who, fromQuery, err := p.caller(r, sess)
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.m.Reach(ctx, who, sess); err != nil {
		if errors.Is(err, gef.ErrUnavailable) {
			c.Header("Retry-After", "2")
		}
		s.fail(c, err)
		return
	}
	query, _ := withoutParam(r.URL.RawQuery, manager.TokenParam)
	if fromQuery && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// Move the link's token into a cookie for this session's path, so
		// it leaves the address bar, the history and the logs.
		tok, exp, err := s.m.SessionAccessToken(who, sess, ref)
		if err != nil {
			s.fail(c, err)
			return
		}
		http.SetCookie(c.Writer, &http.Cookie{Name: ProxyCookie, Value: tok, Path: manager.SessionPath(ref), Expires: exp,
			HttpOnly: true, Secure: r.TLS != nil || strings.HasPrefix(s.m.PublicURL(), "https:"), SameSite: http.SameSiteLaxMode})
		clean := r.URL.EscapedPath()
		if query != "" {
			clean += "?" + query
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusSeeOther, clean)
		return
	}
	prefix := strings.TrimSuffix(manager.SessionPath(ref), "/")
	rest := restOfPath(r.URL.EscapedPath())
	restPath, err := url.PathUnescape(rest)
	if err != nil {
		s.fail(c, gef.Invalid("path", "the path is not validly escaped"))
		return
	}
	rp := &httputil.ReverseProxy{
		Transport:     p.transport,
		FlushInterval: -1, // stream: every write reaches the caller at once
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme, out.URL.Host = "http", sess.ID+sessionHost
			out.URL.Path, out.URL.RawPath, out.URL.RawQuery = restPath, rest, query
			pr.SetXForwarded()
			out.Host = pr.In.Host // as the caller sent it, for the service's own origin checks
			scrub(out.Header)
			out.Header.Set("X-Forwarded-Prefix", prefix)
			if !who.Anonymous() {
				out.Header.Set(UserHeader, who.Name)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			confineCookies(resp.Header, prefix)
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", confineLocation(loc, prefix, r.Host))
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Err() != nil {
				return // the caller went away
			}
			s.log.Warn("session proxy", "session", sess.ID, "err", err)
			abort(c, http.StatusBadGateway, "bad_gateway", "session "+sess.ID+" did not answer: "+publicMessage(err))
		},
	}
	rp.ServeHTTP(c.Writer, r)
}

// caller authenticates a request to a session. A credential in the
// Authorization header or the gef_token parameter must be valid; cookies
// that are not (expired, or for another session) are ignored, so that a
// public session stays reachable. fromQuery reports that the credential
// came from gef_token.
func (p *proxy) caller(r *http.Request, sess gef.Session) (who manager.Principal, fromQuery bool, err error) {
	ctx, m := r.Context(), p.s.m
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, _ := strings.Cut(h, " "); strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
			who, err = m.AuthenticateSession(ctx, strings.TrimSpace(tok), sess)
			return who, false, err
		}
	}
	if _, tok := withoutParam(r.URL.RawQuery, manager.TokenParam); tok != "" {
		who, err = m.AuthenticateSession(ctx, tok, sess)
		if err != nil {
			return who, true, fmt.Errorf("the link has expired or is not valid; ask for a new one: %w", err)
		}
		return who, true, nil
	}
	for _, ck := range r.CookiesNamed(ProxyCookie) {
		if who, err := m.AuthenticateSession(ctx, ck.Value, sess); err == nil {
			return who, false, nil
		}
	}
	for _, ck := range r.CookiesNamed(SessionCookie) {
		if who, err := m.Authenticate(ctx, ck.Value); err == nil {
			return who, false, nil
		}
	}
	return manager.Principal{}, false, nil
}

// scrub removes GEF's credentials and any identity header the caller sent
// from a request bound for a container.
func scrub(h http.Header) {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Gef-") {
			delete(h, k)
		}
	}
	for _, k := range identityHeaders {
		h.Del(k)
	}
	stripCookies(h, ProxyCookie, SessionCookie)
}

// stripCookies removes the named cookies from a request's Cookie headers,
// keeping the others as they were sent.
func stripCookies(h http.Header, names ...string) {
	var kept []string
	for _, line := range h.Values("Cookie") {
		for _, part := range strings.Split(line, ";") {
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			if part == "" || slices.Contains(names, strings.TrimSpace(name)) {
				continue
			}
			kept = append(kept, part)
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// withoutParam removes every occurrence of the query parameter name from
// a raw query, keeping the rest as it was, and returns the first value.
func withoutParam(raw, name string) (rest, value string) {
	if raw == "" {
		return "", ""
	}
	var kept []string
	found := false
	for _, part := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == name {
			if !found {
				value, _ = url.QueryUnescape(v)
				found = true
			}
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&"), value
}

// restOfPath is what follows /s/REF in an escaped path: the path the
// container sees, starting with /.
func restOfPath(escaped string) string {
	p := strings.TrimPrefix(escaped, "/s/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[i:]
	}
	return "/"
}

// confineCookies keeps the cookies a container sets within its session's
// path on the manager's host: it drops their Domain, moves their Path
// under prefix, and drops any that would shadow GEF's own cookies.
func confineCookies(h http.Header, prefix string) {
	set := h.Values("Set-Cookie")
	if len(set) == 0 {
		return
	}
	h.Del("Set-Cookie")
	for _, line := range set {
		ck, err := http.ParseSetCookie(line)
		if err != nil || ck.Name == SessionCookie || ck.Name == ProxyCookie {
			continue
		}
		ck.Domain = ""
		if ck.Path != "" {
			if !strings.HasPrefix(ck.Path, "/") {
				ck.Path = "/" + ck.Path
			}
			ck.Path = prefix + ck.Path
		}
		if v := ck.String(); v != "" {
			h.Add("Set-Cookie", v)
		}
	}
}

// confineLocation moves a redirect that a container aims at its own root
// under the session's prefix: /login becomes /s/REF/login. Redirects to
// other sites, and relative ones, are left alone.
func confineLocation(loc, prefix, host string) string {
	switch {
	case strings.HasPrefix(loc, "//"):
		return loc
	case strings.HasPrefix(loc, "/"):
		if loc == prefix || strings.HasPrefix(loc, prefix+"/") {
			return loc
		}
		return prefix + loc
	}
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() || !strings.EqualFold(u.Host, host) {
		return loc
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if p == prefix || strings.HasPrefix(p, prefix+"/") {
		return loc
	}
	u.Path, u.RawPath = prefix+"/"+strings.TrimPrefix(u.Path, "/"), prefix+p
	return u.String()
}
