package ui

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// rerun runs a job again exactly, pinned to the data it ran on, and sends
// the browser to the new job. A rerun refused because the data changed
// comes back as the job's page naming both digests, with a form to run it
// on the data as it is now; that choice is recorded on the new job.
func (u *UI) rerun() gin.HandlerFunc {
	t := u.page("job")
	return func(c *gin.Context) {
		accept := c.PostForm("accept_changed_data") == "true"
		j, err := u.m.Rerun(c.Request.Context(), viewer(c), c.Param("id"), accept)
		var changed *manager.DataChangedError
		var inv *gef.InvalidError
		switch {
		case errors.As(err, &changed):
			r := &refusal{}
			for _, p := range changed.Problems {
				r.Problems = append(r.Problems, capitalize(p))
			}
			u.showJob(c, t, http.StatusConflict, r)
		case errors.Is(err, gef.ErrNotFound), isInvalidID(err):
			u.errorPage(c, http.StatusNotFound, "No such job", "There is no job "+c.Param("id")+" that you may see.")
		case errors.Is(err, gef.ErrConflict):
			u.showJob(c, t, http.StatusConflict, &refusal{Message: publicMessage(err) + "."})
		case errors.As(err, &inv):
			// A dataset the job read that the viewer may not use.
			u.showJob(c, t, http.StatusUnprocessableEntity, &refusal{Message: capitalize(inv.Reason) + "."})
		case err != nil:
			u.fail(c, err)
		default:
			c.Redirect(http.StatusSeeOther, "/jobs/"+j.ID+"?notice=rerun")
		}
	}
}

// visibility makes a job public, readable by anyone at its URL, or
// private again.
func (u *UI) visibility(c *gin.Context) {
	v := gef.Visibility(c.PostForm("visibility"))
	j, err := u.m.SetVisibility(c.Request.Context(), viewer(c), c.Param("id"), v)
	switch {
	case errors.Is(err, gef.ErrNotFound), isInvalidID(err):
		u.errorPage(c, http.StatusNotFound, "No such job", "There is no job "+c.Param("id")+" that you may see.")
	case err != nil:
		u.fail(c, err)
	default:
		c.Redirect(http.StatusSeeOther, "/jobs/"+j.ID+"?notice=made-"+string(j.Visibility))
	}
}

// isInvalidID reports an id that is not one: no such job, to the viewer.
func isInvalidID(err error) bool {
	var inv *gef.InvalidError
	return errors.As(err, &inv) && inv.Field == "id"
}
