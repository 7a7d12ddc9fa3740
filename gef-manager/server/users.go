package server

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

func (s *Server) listUsers(c *gin.Context) {
	list, err := s.m.Users(c.Request.Context(), principal(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

func (s *Server) createUser(c *gin.Context) {
	var req struct {
		Name     string   `json:"name"`
		Role     gef.Role `json:"role"`
		Password string   `json:"password"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	u, err := s.m.CreateUser(c.Request.Context(), principal(c), req.Name, req.Role, req.Password)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, u)
}

func (s *Server) listTokens(c *gin.Context) {
	list, err := s.m.Tokens(c.Request.Context(), principal(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

// createToken makes an API token. The secret is in the answer only.
func (s *Server) createToken(c *gin.Context) {
	var req struct {
		User       string `json:"user"`
		Name       string `json:"name"`
		TTLSeconds int64  `json:"ttl_seconds"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 10*365*24*3600 {
		s.fail(c, gef.Invalid("ttl_seconds", "must be between 0 (no expiry) and ten years"))
		return
	}
	t, err := s.m.CreateToken(c.Request.Context(), principal(c), req.User, req.Name, time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, t)
}

func (s *Server) revokeToken(c *gin.Context) {
	if err := s.m.RevokeToken(c.Request.Context(), principal(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// login trades a user name and password for a session token.
func (s *Server) login(c *gin.Context) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if !s.loginLimit.allow(c.ClientIP()) {
		abort(c, http.StatusTooManyRequests, "too_many_requests", "too many sign-in attempts; wait a minute")
		return
	}
	sess, err := s.m.Login(c.Request.Context(), req.Name, req.Password)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, sess)
}

func (s *Server) setPassword(c *gin.Context) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.m.SetPassword(c.Request.Context(), principal(c), req.User, req.Password); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listGroups(c *gin.Context) {
	list, err := s.m.Groups(c.Request.Context(), principal(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

func (s *Server) createGroup(c *gin.Context) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.m.CreateGroup(c.Request.Context(), principal(c), req.Name); err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gef.Group{Name: req.Name, Members: []string{}})
}

func (s *Server) setGroupMember(c *gin.Context) {
	var req struct {
		User   string `json:"user"`
		Member *bool  `json:"member"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	member := req.Member == nil || *req.Member
	if err := s.m.SetGroupMember(c.Request.Context(), principal(c), c.Param("name"), req.User, member); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
