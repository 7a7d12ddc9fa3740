// Package server is the manager's HTTP API: gin handlers over the manager's
// core, under /api/v1, plus health, readiness and metrics endpoints.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/api"
	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// SessionCookie carries a browser session's token.
const SessionCookie = "gef_session"

// Server routes HTTP requests to the manager.
type Server struct {
	m          *manager.Manager
	log        *slog.Logger
	engine     *gin.Engine
	loginLimit *limiter
	oidc       *auth.OIDC
	proxy      *proxy
}

// New builds the router. blobs, if not nil, serves presigned URLs of a local
// object store under /api/v1/blobs/.
func New(m *manager.Manager, log *slog.Logger, blobs http.Handler) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{m: m, log: log, engine: gin.New(), loginLimit: newLimiter(10, time.Minute)}
	r := s.engine
	r.HandleMethodNotAllowed = true
	// Trust no proxy's X-Forwarded-For unless told to (TrustProxies):
	// otherwise any client could pick the address rate limits see.
	_ = r.SetTrustedProxies(nil)
	r.Use(s.recover, s.observe)
	r.NoRoute(func(c *gin.Context) { abort(c, http.StatusNotFound, "not_found", "no such path: "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	r.GET("/readyz", s.ready)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.Metrics().Registry, promhttp.HandlerOpts{})))

	v1 := r.Group("/api/v1", s.authenticate)
	v1.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", api.OpenAPI) })
	v1.GET("/whoami", s.whoami)

	v1.GET("/services", s.listServices)
	v1.POST("/services", s.publishService)
	v1.GET("/services/:name", s.getService)
	v1.GET("/services/:name/:version", s.getServiceVersion)
	v1.POST("/services/:name/:version/deprecate", s.deprecateService)
	v1.POST("/services/:name/:version/network", s.setServiceNetwork)
	v1.DELETE("/services/:name/:version", s.deleteService)

	v1.GET("/builds", s.listBuilds)
	v1.POST("/builds", s.createBuild)
	v1.GET("/builds/:id", s.getBuild)
	v1.GET("/builds/:id/logs", s.buildLogs)

	v1.GET("/datasets", s.listDatasets)
	v1.GET("/datasets/:name", s.getDataset)
	v1.PUT("/datasets/:name/access", s.setDatasetAccess)
	v1.GET("/nodes", s.listNodes)
	v1.GET("/nodes/:name", s.getNode)
	v1.POST("/nodes/:name/state", s.setNodeState)

	v1.GET("/jobs", s.listJobs)
	v1.POST("/jobs", s.createJob)
	v1.GET("/jobs/:id", s.getJob)
	v1.POST("/jobs/:id/cancel", s.cancelJob)
	v1.PUT("/jobs/:id/readers", s.setReaders)
	v1.GET("/jobs/:id/logs", s.jobLogs)
	v1.GET("/jobs/:id/outputs/:name/*path", s.jobOutput)
	s.routeRepro(v1)

	v1.POST("/login", s.login)
	v1.POST("/password", s.setPassword)
	v1.GET("/users", s.listUsers)
	v1.POST("/users", s.createUser)
	v1.GET("/groups", s.listGroups)
	v1.POST("/groups", s.createGroup)
	v1.POST("/groups/:name/members", s.setGroupMember)
	v1.GET("/tokens", s.listTokens)
	v1.POST("/tokens", s.createToken)
	v1.DELETE("/tokens/:id", s.revokeToken)

	node := v1.Group("/node")
	node.POST("/register", s.nodeRegister)
	node.POST("/poll", s.nodePoll)
	node.POST("/jobs/:id/report", s.nodeReport)
	node.POST("/jobs/:id/logs", s.nodeLogs)
	node.POST("/jobs/:id/uploads", s.nodeUploads)
	node.GET("/images/:digest", s.nodeImage)
	node.POST("/builds/:id/report", s.nodeBuildReport)
	node.POST("/builds/:id/logs", s.nodeBuildLogs)
	node.POST("/builds/:id/upload", s.nodeBuildUpload)
	node.POST("/sessions/:id/report", s.nodeSessionReport)
	s.sessionRoutes(r, v1)
	node.GET("/jobs/:id/assignment", s.nodeAssignment)

	if blobs != nil {
		// Presigned URLs carry their own signature; no bearer token.
		h := gin.WrapH(http.StripPrefix("/api/v1/blobs", blobs))
		r.PUT("/api/v1/blobs/*key", h)
		r.GET("/api/v1/blobs/*key", h)
	}
	return s
}

// TrustProxies names the reverse proxies (addresses or CIDRs) whose
// X-Forwarded-For gives the client's address.
func (s *Server) TrustProxies(proxies []string) error {
	if err := s.engine.SetTrustedProxies(proxies); err != nil {
		return fmt.Errorf("server: trusted proxies: %w", err)
	}
	return nil
}

// Engine exposes the router so that the web GUI can add its routes.
func (s *Server) Engine() *gin.Engine { return s.engine }

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

const principalKey = "gef.principal"

// authenticate turns a bearer token or session cookie into the request's
// principal. No credential means anonymous, which each operation judges;
// a bad credential is refused at once.
func (s *Server) authenticate(c *gin.Context) {
	token := ""
	if h := c.GetHeader("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			c.Header("WWW-Authenticate", `Bearer realm="gef"`)
			abort(c, http.StatusUnauthorized, "unauthorized", "the Authorization header must be: Bearer <token>")
			return
		}
		token = strings.TrimSpace(rest)
	} else if ck, err := c.Cookie(SessionCookie); err == nil && ck != "" {
		token = ck
	}
	if token == "" {
		c.Set(principalKey, manager.Principal{})
		return
	}
	p, err := s.m.Authenticate(c.Request.Context(), token)
	if err != nil {
		s.fail(c, err)
		return
	}
	if p.Is(gef.RoleNode) && !nodeMayUse(c.Request.URL.Path) {
		abort(c, http.StatusForbidden, "forbidden", "a node credential may use the node protocol only")
		return
	}
	c.Set(principalKey, p)
}

// nodeMayUse reports whether a node credential may call path: the node
// protocol, and the few endpoints that say who it is and how to talk.
func nodeMayUse(path string) bool {
	return strings.HasPrefix(path, "/api/v1/node/") || path == "/api/v1/whoami" || path == "/api/v1/openapi.yaml"
}

func principal(c *gin.Context) manager.Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(manager.Principal)
	return pr
}

// recover turns a panic into a logged 500, so one bad request cannot take
// the manager down.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic serving request", "route", c.FullPath(), "method", c.Request.Method, "panic", r)
			abort(c, http.StatusInternalServerError, "internal", "internal error; the manager's log has the details")
		}
	}()
	c.Next()
}

func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.m.Metrics().HTTP.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).
		Observe(time.Since(start).Seconds())
}

func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	if err := s.m.Ready(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		abort(c, http.StatusServiceUnavailable, "unavailable", "not ready: "+publicMessage(err))
		return
	}
	c.String(http.StatusOK, "ready\n")
}

func (s *Server) whoami(c *gin.Context) {
	p := principal(c)
	if p.Anonymous() {
		abort(c, http.StatusUnauthorized, "unauthorized", "no credential was given")
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": p.UserID, "name": p.Name, "role": p.Role})
}

// items wraps a list in the shape every list endpoint answers with.
func items[T any](list []T) gin.H {
	if list == nil {
		list = []T{}
	}
	return gin.H{"items": list, "next_page_token": ""}
}
