package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

// multipartSlack is what a multipart body may carry beyond its file: the
// boundaries and part headers.
const multipartSlack = 1 << 20

// mediaType is the request's content type without parameters.
func mediaType(c *gin.Context) string {
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	return mt
}

// filePart streams the multipart field named field from the request body,
// which may hold at most limit bytes of it. It never holds the file in
// memory: the caller reads the part as it arrives. A field other than
// field is refused, as decode refuses unknown JSON fields.
func filePart(c *gin.Context, field string, limit int64) (io.Reader, error) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit+multipartSlack)
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("%w: malformed multipart body: %v", errBadRequest, err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, gef.Invalid(field, "is required: send the file in the multipart field %q", field)
		}
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: malformed multipart body: %v", errBadRequest, err)
		}
		if part.FormName() == field {
			return part, nil
		}
		name := part.FormName()
		part.Close()
		return nil, fmt.Errorf("%w: unknown multipart field %q; send the file in %q", errBadRequest, name, field)
	}
}

// publishService publishes a service version:
//   - multipart/form-data with the field "image": a `docker save` tarball;
//   - application/x-tar: the tarball as the whole body;
//   - JSON {"image_ref": "REGISTRY/REPO:TAG" or "REGISTRY/REPO@sha256:…"}:
//     an image in a registry, resolved to its digest now;
//   - JSON {"image_id": "sha256:…"}: an image a node already has.
//
// It answers 201 with the new version, or 200 if the same image was
// already published under the same name and version.
func (s *Server) publishService(c *gin.Context) {
	ctx, p := c.Request.Context(), principal(c)
	imageLimit, _ := s.m.UploadLimits()
	var (
		svc     gef.Service
		created bool
		err     error
	)
	switch mediaType(c) {
	case "multipart/form-data":
		var part io.Reader
		if part, err = filePart(c, "image", imageLimit); err == nil {
			svc, created, err = s.m.PublishTarball(ctx, p, part)
		}
	case "application/x-tar", "application/octet-stream":
		// One byte over the limit gets through, so the manager sees it and
		// names the field.
		body := http.MaxBytesReader(c.Writer, c.Request.Body, imageLimit+1)
		svc, created, err = s.m.PublishTarball(ctx, p, body)
	default:
		var req struct {
			ImageID  string `json:"image_id"`
			ImageRef string `json:"image_ref"`
		}
		if err := decode(c, &req); err != nil {
			s.fail(c, err)
			return
		}
		switch {
		case req.ImageID != "" && req.ImageRef != "":
			err = gef.Invalid("image_ref", "give image_ref or image_id, not both")
		case req.ImageRef != "":
			svc, created, err = s.m.PublishRef(ctx, p, req.ImageRef)
		case req.ImageID != "":
			svc, created, err = s.m.RegisterService(ctx, p, req.ImageID)
		default:
			err = gef.Invalid("image_ref", "is required: a registry reference, or upload a docker save tarball as the multipart field \"image\"")
		}
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.Header("Location", "/api/v1/services/"+svc.Name+"/"+svc.Version)
	}
	c.JSON(status, svc)
}

// deleteService removes a version no job references: 204, or 409 while
// jobs reference it.
func (s *Server) deleteService(c *gin.Context) {
	if err := s.m.DeleteService(c.Request.Context(), principal(c), c.Param("name"), c.Param("version")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
