package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// sessionRoutes adds the session API, the synchronous run, the node
// tunnel and the session proxy at /s/.
func (s *Server) sessionRoutes(r *gin.Engine, v1 *gin.RouterGroup) {
	v1.POST("/sessions", s.startSession)
	v1.GET("/sessions", s.listSessions)
	v1.GET("/sessions/:id", s.getSession)
	v1.POST("/sessions/:id/stop", s.stopSession)
	v1.POST("/sessions/:id/link", s.sessionLink)
	v1.POST("/services/:name/run", s.callService)
	v1.GET("/node/tunnel", s.nodeTunnel)

	s.proxy = newProxy(s)
	r.Any("/s/:ref", func(c *gin.Context) {
		// The session's links are relative to its root, which ends in /.
		u := *c.Request.URL
		u.Path, u.RawPath = u.Path+"/", ""
		c.Redirect(http.StatusPermanentRedirect, u.RequestURI())
	})
	r.Any("/s/:ref/*path", s.proxy.serve)
}

func (s *Server) startSession(c *gin.Context) {
	var req gef.SessionRequest
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	sess, err := s.m.StartSession(c.Request.Context(), principal(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/sessions/"+sess.ID)
	c.JSON(http.StatusCreated, sess)
}

func (s *Server) listSessions(c *gin.Context) {
	f := gef.SessionFilter{
		State: gef.SessionState(c.Query("state")), Service: c.Query("service"), Name: c.Query("name"),
		Node: c.Query("node"), Owner: c.Query("owner"), PageToken: c.Query("page_token"),
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			s.fail(c, gef.Invalid("limit", "must be a whole number between 1 and 1000"))
			return
		}
		f.Limit = n
	}
	page, err := s.m.Sessions(c.Request.Context(), principal(c), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) getSession(c *gin.Context) {
	sess, err := s.m.Session(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, sess)
}

func (s *Server) stopSession(c *gin.Context) {
	sess, err := s.m.StopSession(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, sess)
}

// sessionLink makes a short-lived URL that signs a browser in to a session.
func (s *Server) sessionLink(c *gin.Context) {
	link, err := s.m.SessionLink(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, link)
}

// defaultCallWait is how long a synchronous run waits when not told.
const defaultCallWait = 30 * time.Second

// callService runs a service as a job and waits, up to ?wait=SECONDS, for
// it to end: 200 with its final state and standard output, or 202 with
// the job to follow if it outlives the wait.
func (s *Server) callService(c *gin.Context) {
	var body struct {
		Version     string            `json:"version,omitempty"`
		Inputs      map[string]string `json:"inputs,omitempty"`
		Dataset     string            `json:"dataset,omitempty"`
		Params      map[string]any    `json:"params,omitempty"`
		Reuse       *bool             `json:"reuse,omitempty"`
		MaxAttempts int               `json:"max_attempts,omitempty"`
		RetryFailed bool              `json:"retry_failed,omitempty"`
	}
	if c.Request.ContentLength != 0 {
		if err := decode(c, &body); err != nil {
			s.fail(c, err)
			return
		}
	}
	wait := defaultCallWait
	if w := c.Query("wait"); w != "" {
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 || time.Duration(n)*time.Second > manager.MaxCallWait {
			s.fail(c, gef.Invalid("wait", "must be a whole number of seconds from 0 to %d", int(manager.MaxCallWait/time.Second)))
			return
		}
		wait = time.Duration(n) * time.Second
	}
	req := gef.JobRequest{Service: c.Param("name"), Version: body.Version, Inputs: body.Inputs, Dataset: body.Dataset,
		Params: body.Params, Reuse: body.Reuse, MaxAttempts: body.MaxAttempts, RetryFailed: body.RetryFailed}
	res, err := s.m.Call(c.Request.Context(), principal(c), req, wait)
	if err != nil {
		if res.Job.ID != "" && c.Request.Context().Err() != nil {
			return // the caller left; the job runs on
		}
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/jobs/"+res.Job.ID)
	if !res.Done {
		c.JSON(http.StatusAccepted, res)
		return
	}
	c.JSON(http.StatusOK, res)
}

func (s *Server) nodeSessionReport(c *gin.Context) {
	var r gef.SessionReport
	if err := decode(c, &r); err != nil {
		s.fail(c, err)
		return
	}
	sess, err := s.m.ReportSession(c.Request.Context(), principal(c), c.Param("id"), r)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, sess)
}

// nodeTunnel upgrades a node's request to a websocket that carries its
// tunnel, and serves the tunnel until it closes.
func (s *Server) nodeTunnel(c *gin.Context) {
	p := principal(c)
	switch {
	case p.Anonymous():
		abort(c, http.StatusUnauthorized, "unauthorized", "sign in first")
		return
	case !p.Is(gef.RoleNode):
		abort(c, http.StatusForbidden, "forbidden", "only a node opens a tunnel")
		return
	}
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		s.log.Warn("node tunnel: websocket upgrade", "node", p.Name, "err", err)
		return // Accept has answered
	}
	ctx := c.Request.Context()
	conn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer conn.Close()
	if err := s.m.AttachTunnel(ctx, p, conn); err != nil {
		s.log.Warn("node tunnel", "node", p.Name, "err", err)
		ws.Close(websocket.StatusInternalError, "tunnel failed")
	}
}
