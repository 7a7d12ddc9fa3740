package ui

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type publishData struct {
	ImageID string
	Error   string   // about the image ID
	Labels  []string // every problem with the image's labels
}

// publishForm asks for the image to publish.
func (u *UI) publishForm() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		u.render(c, http.StatusOK, t, u.view(c, "Publish a service", "publish", publishData{}))
	}
}

// publish registers an image that a node already holds, by its ID. A
// refused image comes back with every label problem listed.
func (u *UI) publish() gin.HandlerFunc {
	t := u.page("publish")
	return func(c *gin.Context) {
		d := publishData{ImageID: strings.TrimSpace(c.PostForm("image_id"))}
		svc, created, err := u.m.RegisterService(c.Request.Context(), viewer(c), d.ImageID)
		if errors.Is(err, gef.ErrInvalid) {
			var multi interface{ Unwrap() []error }
			if errors.As(err, &multi) {
				for _, e := range multi.Unwrap() {
					d.Labels = append(d.Labels, e.Error())
				}
				d.Error = "The image's labels are not valid; see below."
			} else {
				var inv *gef.InvalidError
				if errors.As(err, &inv) && inv.Field == "image_id" {
					d.Error = capitalize(inv.Reason) + "."
				} else {
					d.Error = capitalize(err.Error()) + "."
				}
			}
			u.render(c, http.StatusUnprocessableEntity, t, u.view(c, "Publish a service", "publish", d))
			return
		}
		if err != nil {
			u.fail(c, err)
			return
		}
		notice := "already"
		if created {
			notice = "published"
		}
		c.Redirect(http.StatusSeeOther, "/services/"+url.PathEscape(svc.Name)+"?version="+url.QueryEscape(svc.Version)+"&notice="+notice)
	}
}
