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
		Name string   `json:"name"`
		Role gef.Role `json:"role"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	u, err := s.m.CreateUser(c.Request.Context(), principal(c), req.Name, req.Role)
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
