package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// createBuild starts a build:
//   - JSON: a build spec (base image, packages, files, entrypoint, labels);
//   - multipart/form-data with the field "context": a tar or tar.gz with a
//     Dockerfile at its root;
//   - application/x-tar or application/gzip: that context as the body.
//
// It answers 202 with the queued build, or 200 with an earlier successful
// build of the same spec or context, which is reused rather than rebuilt.
func (s *Server) createBuild(c *gin.Context) {
	ctx, p := c.Request.Context(), principal(c)
	_, contextLimit := s.m.UploadLimits()
	var req manager.BuildRequest
	switch mediaType(c) {
	case "multipart/form-data":
		part, err := filePart(c, "context", contextLimit)
		if err != nil {
			s.fail(c, err)
			return
		}
		req.Context = part
	case "application/x-tar", "application/gzip", "application/x-gzip", "application/octet-stream":
		req.Context = http.MaxBytesReader(c.Writer, c.Request.Body, contextLimit+1)
	default:
		var spec gef.BuildSpec
		if err := decode(c, &spec); err != nil {
			s.fail(c, err)
			return
		}
		req.Spec = &spec
	}
	b, reused, err := s.m.SubmitBuild(ctx, p, req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/builds/"+b.ID)
	if reused {
		c.JSON(http.StatusOK, b)
		return
	}
	c.JSON(http.StatusAccepted, b)
}

func (s *Server) listBuilds(c *gin.Context) {
	f := store.BuildFilter{State: gef.BuildState(c.Query("state")), Owner: c.Query("owner"), PageToken: c.Query("page_token")}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, gef.Invalid("limit", "must be a whole number between 1 and 1000"))
			return
		}
		f.Limit = n
	}
	page, err := s.m.Builds(c.Request.Context(), principal(c), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) getBuild(c *gin.Context) {
	b, err := s.m.Build(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, b)
}

// buildLogs serves a build's output: whole, followed live as plain text
// (?follow=true), or as server-sent events when the client asks for them.
func (s *Server) buildLogs(c *gin.Context) {
	ctx, p, id := c.Request.Context(), principal(c), c.Param("id")
	if _, err := s.m.Build(ctx, p, id); err != nil {
		s.fail(c, err)
		return
	}
	sse := strings.Contains(c.GetHeader("Accept"), "text/event-stream")
	follow, _ := strconv.ParseBool(c.Query("follow"))
	if !follow && !sse {
		c.Header("Content-Type", "text/plain; charset=utf-8")
		if err := s.m.BuildLogs(ctx, p, id, c.Writer); err != nil {
			s.log.Warn("serving build logs", "build", id, "err", err)
		}
		return
	}
	w := c.Writer
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(http.StatusOK)
	w.Flush()
	err := s.m.FollowBuildLogs(ctx, p, id, func(ch manager.LogChunk) error {
		if sse {
			b, _ := json.Marshal(struct {
				Stream string `json:"stream"`
				Text   string `json:"text"`
			}{ch.Stream, string(ch.Data)})
			if _, err := fmt.Fprintf(w, "event: log\ndata: %s\n\n", b); err != nil {
				return err
			}
		} else if _, err := w.Write(ch.Data); err != nil {
			return err
		}
		w.Flush()
		return nil
	})
	if err != nil {
		s.log.Warn("following build logs", "build", id, "err", err)
		return
	}
	if sse {
		if b, err := s.m.Build(ctx, p, id); err == nil {
			j, _ := json.Marshal(gin.H{"state": b.State, "reason": b.Reason, "service": b.Service, "version": b.Version})
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", j)
			w.Flush()
		}
	}
}

// The node's side of builds and image distribution.

func (s *Server) nodeImage(c *gin.Context) {
	d, err := s.m.ImageDownload(c.Request.Context(), principal(c), c.Param("digest"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) nodeBuildReport(c *gin.Context) {
	var r gef.BuildReport
	if err := decode(c, &r); err != nil {
		s.fail(c, err)
		return
	}
	b, err := s.m.ReportBuild(c.Request.Context(), principal(c), c.Param("id"), r)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, b)
}

// nodeBuildLogs takes one raw chunk of build output: ?attempt=&seq=&stream=.
func (s *Server) nodeBuildLogs(c *gin.Context) {
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
	if err := s.m.AppendBuildLog(c.Request.Context(), principal(c), c.Param("id"), chunk); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) nodeBuildUpload(c *gin.Context) {
	u, err := s.m.BuildUploadURL(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"url": u})
}
