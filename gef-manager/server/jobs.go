package server

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

func (s *Server) createJob(c *gin.Context) {
	var req gef.JobRequest
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.m.Submit(c.Request.Context(), principal(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/jobs/"+j.ID)
	c.JSON(http.StatusCreated, j)
}

func (s *Server) listJobs(c *gin.Context) {
	f := gef.JobFilter{
		State: gef.JobState(c.Query("state")), Service: c.Query("service"), Dataset: c.Query("dataset"),
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
	page, err := s.m.Jobs(c.Request.Context(), principal(c), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) getJob(c *gin.Context) {
	j, err := s.m.Job(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, j)
}

func (s *Server) cancelJob(c *gin.Context) {
	j, err := s.m.Cancel(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, j)
}

// jobLogs serves a job's output: whole, followed live as plain text
// (?follow=true), or as server-sent events when the client asks for them.
func (s *Server) jobLogs(c *gin.Context) {
	ctx, p, id := c.Request.Context(), principal(c), c.Param("id")
	stream := c.Query("stream")
	if stream != "" && stream != "stdout" && stream != "stderr" {
		s.fail(c, gef.Invalid("stream", "must be stdout or stderr"))
		return
	}
	sse := strings.Contains(c.GetHeader("Accept"), "text/event-stream")
	follow, _ := strconv.ParseBool(c.Query("follow"))
	if !follow && !sse {
		// Check access before the first byte, so errors keep their status.
		if _, err := s.m.Job(ctx, p, id); err != nil {
			s.fail(c, err)
			return
		}
		c.Header("Content-Type", "text/plain; charset=utf-8")
		if err := s.m.Logs(ctx, p, id, stream, c.Writer); err != nil {
			s.log.Warn("serving logs", "job", id, "err", err)
		}
		return
	}
	if _, err := s.m.Job(ctx, p, id); err != nil {
		s.fail(c, err)
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
	err := s.m.FollowLogs(ctx, p, id, func(ch manager.LogChunk) error {
		if stream != "" && ch.Stream != stream {
			return nil
		}
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
		s.log.Warn("following logs", "job", id, "err", err)
		return
	}
	if sse {
		if j, err := s.m.Job(ctx, p, id); err == nil {
			b, _ := json.Marshal(gin.H{"state": j.State, "exit_code": j.ExitCode, "reason": j.Reason})
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
			w.Flush()
		}
	}
}

func (s *Server) jobOutput(c *gin.Context) {
	rel := strings.TrimPrefix(c.Param("path"), "/")
	rc, f, err := s.m.Output(c.Request.Context(), principal(c), c.Param("id"), c.Param("name"), rel)
	if err != nil {
		s.fail(c, err)
		return
	}
	defer rc.Close()
	c.Header("Content-Length", strconv.FormatInt(f.Size, 10))
	c.Header("Content-Type", "application/octet-stream")
	c.Header("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(f.Path)}))
	c.Header("X-Content-SHA256", f.SHA256)
	c.Header("ETag", `"`+f.SHA256+`"`)
	c.Status(http.StatusOK)
	if _, err := io.Copy(c.Writer, rc); err != nil {
		s.log.Warn("serving output", "job", c.Param("id"), "err", err)
	}
}

func (s *Server) setReaders(c *gin.Context) {
	var r gef.Readers
	if err := decode(c, &r); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.m.SetReaders(c.Request.Context(), principal(c), c.Param("id"), r)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, j)
}
