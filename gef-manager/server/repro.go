package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// routeRepro adds the endpoints of reproducibility: rerun, provenance,
// citation, visibility, and the stable URL of every job.
func (s *Server) routeRepro(v1 *gin.RouterGroup) {
	v1.POST("/jobs/from-provenance", s.jobFromProvenance)
	v1.POST("/jobs/:id/rerun", s.rerunJob)
	v1.GET("/jobs/:id/provenance", s.jobProvenance)
	v1.GET("/jobs/:id/citation", s.jobCitation)
	v1.POST("/jobs/:id/visibility", s.setJobVisibility)
	s.engine.GET("/jobs/:id", s.authenticate, s.jobPage)
}

// rerunRequest is the optional body of a rerun.
type rerunRequest struct {
	AcceptChangedData bool `json:"accept_changed_data"`
}

func (s *Server) rerunJob(c *gin.Context) {
	var req rerunRequest
	if err := decodeOptional(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.m.Rerun(c.Request.Context(), principal(c), c.Param("id"), req.AcceptChangedData)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/jobs/"+j.ID)
	c.JSON(http.StatusCreated, j)
}

// decodeOptional decodes a JSON body if there is one.
func decodeOptional(c *gin.Context, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxJSONBody))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	return decode(c, v)
}

func (s *Server) jobFromProvenance(c *gin.Context) {
	accept, err := boolQuery(c, "accept_changed_data")
	if err != nil {
		s.fail(c, err)
		return
	}
	crate, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, manager.MaxCrateBytes))
	if err != nil {
		s.fail(c, err)
		return
	}
	if len(bytes.TrimSpace(crate)) == 0 {
		s.fail(c, fmt.Errorf("%w: send the crate's ro-crate-metadata.json as the body", errBadRequest))
		return
	}
	j, err := s.m.JobFromCrate(c.Request.Context(), principal(c), crate, accept)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", "/api/v1/jobs/"+j.ID)
	c.JSON(http.StatusCreated, j)
}

func boolQuery(c *gin.Context, name string) (bool, error) {
	v := c.Query(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, gef.Invalid(name, "must be true or false")
	}
	return b, nil
}

func (s *Server) jobProvenance(c *gin.Context) {
	ctx, p, id := c.Request.Context(), principal(c), c.Param("id")
	switch c.Query("format") {
	case "", "ro-crate":
		crate, err := s.m.Crate(ctx, p, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Header("Content-Disposition", `inline; filename="ro-crate-metadata.json"`)
		c.Data(http.StatusOK, manager.CrateMediaType, crate)
	case "record":
		rec, err := s.m.Provenance(ctx, p, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.JSON(http.StatusOK, rec)
	default:
		s.fail(c, gef.Invalid("format", "must be ro-crate or record"))
	}
}

func (s *Server) jobCitation(c *gin.Context) {
	cite, err := s.m.Cite(c.Request.Context(), principal(c), c.Param("id"), c.Query("format"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Data(http.StatusOK, cite.ContentType, cite.Text)
}

func (s *Server) setJobVisibility(c *gin.Context) {
	var req struct {
		Visibility gef.Visibility `json:"visibility"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.m.SetVisibility(c.Request.Context(), principal(c), c.Param("id"), req.Visibility)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, j)
}

// jobPage answers a job's stable URL, /jobs/ID: its RO-Crate for a client
// that asks for JSON-LD, its record otherwise.
func (s *Server) jobPage(c *gin.Context) {
	if strings.Contains(c.GetHeader("Accept"), manager.CrateMediaType) {
		s.jobProvenance(c)
		return
	}
	j, err := s.m.Job(c.Request.Context(), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", append(b, '\n'))
}
