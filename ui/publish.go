package ui

import (
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// The ways to publish a service, as the publish page names its forms.
const (
	byTarball = "tarball" // upload a `docker save` tarball
	byRef     = "ref"     // pull from a registry
	byNode    = "node"    // an image a node already holds
)

type publishData struct {
	Way      string // the form the problem below is about
	ImageID  string
	Ref      string
	Error    string   // about the form's field
	Labels   []string // every problem with the image's labels
	MaxImage int64    // the largest tarball the manager takes
}

// publishForm offers the ways to publish a service.
func (u *UI) publishForm() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		u.showPublish(c, t, http.StatusOK, publishData{})
	}
}

func (u *UI) showPublish(c *gin.Context, t *template.Template, status int, d publishData) {
	d.MaxImage, _ = u.m.UploadLimits()
	u.render(c, status, t, u.view(c, "Publish a service", "publish", d))
}

// publish registers an image that a node already holds, by its ID.
func (u *UI) publish() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		d := publishData{Way: byNode, ImageID: strings.TrimSpace(c.PostForm("image_id"))}
		svc, created, err := u.m.RegisterService(c.Request.Context(), viewer(c), d.ImageID)
		u.published(c, t, d, svc, created, err)
	}
}

// publishRef publishes an image from a registry, resolved to its digest
// now and copied into GEF, so nodes never need the registry.
func (u *UI) publishRef() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		d := publishData{Way: byRef, Ref: strings.TrimSpace(c.PostForm("image_ref"))}
		if d.Ref == "" {
			d.Error = "Give an image reference, such as registry.example.org/climate/cdo:2.4."
			u.showPublish(c, t, http.StatusUnprocessableEntity, d)
			return
		}
		svc, created, err := u.m.PublishRef(c.Request.Context(), viewer(c), d.Ref)
		u.published(c, t, d, svc, created, err)
	}
}

// publishTarball publishes the image in an uploaded `docker save`
// tarball, streamed to the manager as it arrives.
func (u *UI) publishTarball() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		d := publishData{Way: byTarball}
		part, err := nextPart(c, "image")
		if errors.Is(err, io.EOF) || err == nil && part.FileName() == "" {
			d.Error = "Choose the image's tarball, as docker save writes it."
			u.showPublish(c, t, http.StatusUnprocessableEntity, d)
			return
		}
		if err != nil {
			u.uploadFailed(c, err)
			return
		}
		svc, created, err := u.m.PublishTarball(c.Request.Context(), viewer(c), part)
		u.published(c, t, d, svc, created, err)
	}
}

// published sends the browser to the service just published, or shows
// the form again with what was wrong: the field's problem, or every
// problem with the image's labels.
func (u *UI) published(c *gin.Context, t *template.Template, d publishData, svc gef.Service, created bool, err error) {
	var tooLarge *manager.TooLargeError
	var maxErr *http.MaxBytesError
	var inv *gef.InvalidError
	var multi interface{ Unwrap() []error }
	switch {
	case err == nil:
		notice := "already"
		if created {
			notice = "published"
		}
		c.Redirect(http.StatusSeeOther, "/services/"+url.PathEscape(svc.Name)+"?version="+url.QueryEscape(svc.Version)+"&notice="+notice)
		return
	case errors.As(err, &tooLarge), errors.As(err, &maxErr):
		d.MaxImage, _ = u.m.UploadLimits()
		d.Error = "The tarball is larger than the " + humanBytes(d.MaxImage) + " GEF takes."
		u.showPublish(c, t, http.StatusRequestEntityTooLarge, d)
	case errors.Is(err, gef.ErrInvalid) && errors.As(err, &multi):
		for _, e := range multi.Unwrap() {
			d.Labels = append(d.Labels, e.Error())
		}
		d.Error = "The image's labels are not valid; see below."
		u.showPublish(c, t, http.StatusUnprocessableEntity, d)
	case errors.As(err, &inv) && (inv.Field == "image_id" || inv.Field == "image_ref" || inv.Field == "image"):
		d.Error = capitalize(inv.Reason) + "."
		u.showPublish(c, t, http.StatusUnprocessableEntity, d)
	case errors.Is(err, gef.ErrInvalid):
		// A single bad label, or an image with nothing to run.
		d.Labels, d.Error = []string{err.Error()}, "The image's labels are not valid; see below."
		u.showPublish(c, t, http.StatusUnprocessableEntity, d)
	case errors.Is(err, gef.ErrConflict):
		d.Error = publicMessage(err) + "."
		u.showPublish(c, t, http.StatusConflict, d)
	case errors.Is(err, gef.ErrForbidden):
		d.Error = publicMessage(err) + "."
		u.showPublish(c, t, http.StatusForbidden, d)
	default:
		u.uploadFailed(c, err)
	}
}

// uploadFailed answers an upload that went wrong in transit or that no
// page of GEF's sends.
func (u *UI) uploadFailed(c *gin.Context, err error) {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		u.errorPage(c, http.StatusRequestEntityTooLarge, "Too large", "The upload is larger than GEF takes.")
	case errors.Is(err, errForm):
		u.errorPage(c, http.StatusBadRequest, "Not a GEF form", capitalize(err.Error())+".")
	default:
		u.fail(c, err)
	}
}
