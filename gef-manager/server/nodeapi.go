package server

import (
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// The node protocol. Nodes dial out; these endpoints are all they use.

func (s *Server) nodeRegister(c *gin.Context) {
	var reg gef.NodeRegistration
	if err := decode(c, &reg); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.m.RegisterNode(c.Request.Context(), principal(c), reg); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) nodePoll(c *gin.Context) {
	var req gef.PollRequest
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	resp, err := s.m.Poll(c.Request.Context(), principal(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, resp)
}

func (s *Server) nodeReport(c *gin.Context) {
	var r gef.JobReport
	if err := decode(c, &r); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.m.Report(c.Request.Context(), principal(c), c.Param("id"), r)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, j)
}

// nodeLogs takes one raw chunk of output: ?attempt=&seq=&stream=.
func (s *Server) nodeLogs(c *gin.Context) {
	attempt, err1 := strconv.Atoi(c.Query("attempt"))
	seq, err2 := strconv.Atoi(c.Query("seq"))
	if err1 != nil || err2 != nil {
		s.fail(c, gef.Invalid("seq", "attempt and seq must be whole numbers"))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	if err != nil {
		s.fail(c, err)
		return
	}
	chunk := manager.LogChunk{Attempt: attempt, Seq: seq, Stream: c.Query("stream"), Data: data}
	if err := s.m.AppendLog(c.Request.Context(), principal(c), c.Param("id"), chunk); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) nodeUploads(c *gin.Context) {
	var req gef.UploadRequest
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	resp, err := s.m.UploadURLs(c.Request.Context(), principal(c), c.Param("id"), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, resp)
}

// nodeAssignment re-reads a held job's assignment, for a restarted agent.
func (s *Server) nodeAssignment(c *gin.Context) {
	a, err := s.m.NodeAssignment(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, a)
}
