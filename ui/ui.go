// Package ui is GEF's web GUI: server-rendered pages over the manager's
// core, for scientists (find a service, run it on a dataset, watch it, get
// the results), maintainers (publish, deprecate) and operators (nodes,
// users, tokens).
//
// Every page works without JavaScript. The small script in static/ only
// improves them: it follows a job's log and state live, keeps relative
// times fresh and checks form fields as they are typed. Templates and
// static files are embedded, so the manager binary is the whole GUI.
package ui

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// Config configures the GUI.
type Config struct {
	// PublicURL is how browsers reach the manager. Forms posted from its
	// origin (or from the request's own host) are accepted, and an https
	// URL marks the session cookie Secure even behind a TLS proxy.
	PublicURL string
	// AllowLogin reports whether a client (by IP) may try to sign in now.
	// The API's sign-in shares it, so the two cannot be played off each
	// other. nil allows every attempt.
	AllowLogin func(client string) bool
	// CSRFKey keys the per-session form tokens. Empty means a random key,
	// which makes forms open across a restart fail once, with a clear
	// message, and then work.
	CSRFKey []byte
	// PageSize is the number of jobs per page of the jobs list. Default 50.
	PageSize int
}

// Validate reports a configuration the GUI cannot work with.
func (c Config) Validate() error {
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("ui: public URL %q is not a URL", c.PublicURL)
		}
	}
	if c.PageSize < 0 || c.PageSize > 1000 {
		return errors.New("ui: page size must be between 1 and 1000")
	}
	return nil
}

// UI serves the web GUI.
type UI struct {
	m          *manager.Manager
	cfg        Config
	log        *slog.Logger
	publicHost string
	secure     bool
	tmpl       *templates
	static     *staticFiles
	now        func() time.Time
}

// New builds the GUI. It panics if an embedded template does not parse,
// which is a build defect, not a run-time condition.
func New(m *manager.Manager, cfg Config, log *slog.Logger) (*UI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 50
	}
	if len(cfg.CSRFKey) == 0 {
		cfg.CSRFKey = make([]byte, 32)
		if _, err := rand.Read(cfg.CSRFKey); err != nil {
			return nil, fmt.Errorf("ui: csrf key: %w", err)
		}
	}
	u := &UI{m: m, cfg: cfg, log: log, now: time.Now}
	if cfg.PublicURL != "" {
		p, _ := url.Parse(cfg.PublicURL)
		u.publicHost, u.secure = p.Host, p.Scheme == "https"
	}
	u.static = loadStatic()
	u.tmpl = loadTemplates(templateFS, u.funcs())
	return u, nil
}

// Mount adds the GUI's routes to r, beside the API under /api/v1. It takes
// over r's not-found and method-not-allowed answers: paths under /api/
// keep the API's JSON errors, every other path gets an HTML page.
func (u *UI) Mount(r *gin.Engine) {
	r.GET("/static/*file", u.serveStatic)
	r.HEAD("/static/*file", u.serveStatic)
	r.NoRoute(u.noRoute)
	r.NoMethod(u.noMethod)

	g := r.Group("/", u.headers, u.session)
	g.GET("/login", u.loginPage())
	g.POST("/login", u.login())
	g.POST("/logout", u.checkForm, u.logout)

	in := g.Group("/", u.signedIn)
	in.GET("/", u.home())
	in.GET("/services", u.catalog())
	in.GET("/services/:name", u.service())
	in.GET("/services/:name/run", u.runForm())
	in.POST("/services/:name/run", u.checkForm, u.run())
	in.GET("/datasets", u.datasets())
	in.GET("/datasets/:name", u.dataset())
	in.GET("/jobs", u.jobs())
	// A job's page is its citable URL: a public job is shown to anyone,
	// others send an anonymous visitor to sign in.
	g.GET("/jobs/:id", u.job())
	g.GET("/jobs/:id/live", u.jobLive())
	in.POST("/jobs/:id/cancel", u.checkForm, u.cancel)
	in.POST("/jobs/:id/rerun", u.checkForm, u.rerun())
	in.POST("/jobs/:id/visibility", u.checkForm, u.visibility)
	in.GET("/sessions", u.sessions())
	in.POST("/sessions/:id/stop", u.checkForm, u.stopSession)
	in.GET("/tokens", u.tokens())
	in.POST("/tokens", u.checkForm, u.createToken())
	in.POST("/tokens/:id/revoke", u.checkForm, u.revokeToken)

	maint := in.Group("/", u.require(gef.RoleAdmin, gef.RoleMaintainer))
	maint.GET("/publish", u.publishForm())
	maint.POST("/publish", u.checkForm, u.publish())
	maint.POST("/publish/ref", u.checkForm, u.publishRef())
	maint.POST("/publish/tarball", u.checkUpload(func() int64 { img, _ := u.m.UploadLimits(); return img }), u.publishTarball())
	maint.GET("/builds", u.builds())
	maint.GET("/builds/new", u.buildForm())
	maint.POST("/builds", u.checkUpload(func() int64 { _, ctx := u.m.UploadLimits(); return ctx + maxDockerfile }), u.createBuild())
	maint.POST("/builds/spec", u.checkForm, u.createSpecBuild())
	maint.GET("/builds/:id", u.build())
	maint.GET("/builds/:id/live", u.buildLive())
	maint.POST("/services/:name/versions/:version/deprecate", u.checkForm, u.deprecate)
	maint.POST("/services/:name/versions/:version/delete", u.checkForm, u.deleteVersion())

	admin := in.Group("/", u.require(gef.RoleAdmin))
	admin.GET("/nodes", u.nodes())
	admin.GET("/nodes/:name", u.node())
	admin.POST("/datasets/:name/access", u.checkForm, u.setAccess())
	admin.POST("/services/:name/versions/:version/network", u.checkForm, u.network)
	admin.GET("/admin/users", u.users())
	admin.POST("/admin/users", u.checkForm, u.createUser())
	admin.GET("/admin/groups", u.groups())
	admin.POST("/admin/groups", u.checkForm, u.createGroup())
	admin.POST("/admin/groups/:name/members", u.checkForm, u.setMember())
}
