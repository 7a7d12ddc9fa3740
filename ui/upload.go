package ui

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Forms that upload a file are sent as multipart/form-data. They are
// guarded as checkForm guards the others, but their file is never read
// into memory or a temporary file by the GUI: each such form puts its
// token first, so the token is checked before any file byte is read, and
// the handler streams the parts that follow to the manager.

const (
	uploadKey = "gef.ui.upload"
	// multipartSlack is what an upload may carry beyond its files: the
	// token, other fields, boundaries and part headers.
	multipartSlack = 2 << 20
)

// checkUpload guards an upload form whose body may hold limit() bytes of
// files.
func (u *UI) checkUpload(limit func() int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if viewer(c).Anonymous() {
			c.Redirect(http.StatusSeeOther, "/login")
			c.Abort()
			return
		}
		if !u.sameOrigin(c.Request) {
			u.errorPage(c, http.StatusForbidden, "Refused", "This form was posted from another site, so GEF refused it.")
			return
		}
		if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt != "multipart/form-data" {
			u.errorPage(c, http.StatusBadRequest, "Not a file upload", "This form sends files, as multipart/form-data; GEF got "+mt+".")
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit()+multipartSlack)
		mr, err := c.Request.MultipartReader()
		var tok []byte
		if err == nil {
			var part *multipart.Part
			if part, err = mr.NextPart(); err == nil && part.FormName() == csrfField {
				tok, err = io.ReadAll(io.LimitReader(part, 256))
			}
		}
		want := c.GetString(csrfKey)
		if err != nil || want == "" || !hmac.Equal(tok, []byte(want)) {
			u.errorPage(c, http.StatusForbidden, "Form expired",
				"This form has expired or did not come from this GEF. Go back, reload the page and try again.")
			return
		}
		c.Set(uploadKey, mr)
	}
}

// nextPart returns the next part of an upload checkUpload let through,
// which must be the field named name; io.EOF if the form has no more.
func nextPart(c *gin.Context, name string) (*multipart.Part, error) {
	mr, _ := c.MustGet(uploadKey).(*multipart.Reader)
	part, err := mr.NextPart()
	if err != nil {
		return nil, err
	}
	if part.FormName() != name {
		return nil, fmt.Errorf("%w: the form sent the field %q where %q belongs", errForm, part.FormName(), name)
	}
	return part, nil
}

// errForm is a form GEF's own pages never send.
var errForm = errors.New("malformed form")
