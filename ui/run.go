package ui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type runData struct {
	Service gef.Service
	Newest  bool // Service is the version a run without a version gets
	Fields  []field
	Errors  []string // problems that concern no single field
	// For services that answer HTTP, run as sessions.
	SessionName, Access, NameError string
}

// runForm shows the form generated from a service's labels.
func (u *UI) runForm() gin.HandlerFunc {
	t := u.page("run")
	return func(c *gin.Context) {
		svc, newest, datasets, ok := u.runTarget(c, c.Query("version"))
		if !ok {
			return
		}
		values := defaults(svc)
		if in := svc.DatasetInputs(); len(in) == 1 {
			// Arriving from a dataset's page preselects it.
			values[inputField(in[0].Name)] = c.Query("dataset")
		}
		d := runData{Service: svc, Newest: newest, Fields: formFields(svc, datasets, values, nil)}
		u.render(c, http.StatusOK, t, u.view(c, "Run "+svc.Title, "services", d))
	}
}

// run submits the form as a job and sends the browser to the job's page.
// A request the manager refuses comes back as the form, with each problem
// next to its field.
func (u *UI) run() gin.HandlerFunc {
	t := u.page("run")
	return func(c *gin.Context) {
		svc, newest, datasets, ok := u.runTarget(c, c.PostForm("version"))
		if !ok {
			return
		}
		// checkForm has read the posted form already.
		req, values := jobRequest(svc, c.Request.PostForm)
		if svc.HTTP != nil {
			u.startSession(c, t, svc, newest, datasets, req, values)
			return
		}
		job, err := u.m.Submit(c.Request.Context(), viewer(c), req)
		if errors.Is(err, gef.ErrInvalid) {
			byField, general := fieldErrors(svc, err)
			d := runData{Service: svc, Newest: newest, Fields: formFields(svc, datasets, values, byField), Errors: general}
			u.render(c, http.StatusUnprocessableEntity, t, u.view(c, "Run "+svc.Title, "services", d))
			return
		}
		if err != nil {
			u.fail(c, err)
			return
		}
		c.Redirect(http.StatusSeeOther, "/jobs/"+job.ID)
	}
}

// runTarget loads the service version a run form is for, and the datasets
// to pick from. It has answered the request when ok is false.
func (u *UI) runTarget(c *gin.Context, version string) (svc gef.Service, newest bool, datasets []gef.Dataset, ok bool) {
	ctx, p := c.Request.Context(), viewer(c)
	if !p.Is(gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser) {
		u.errorPage(c, http.StatusForbidden, "Not allowed", "Your role may not run services.")
		return svc, false, nil, false
	}
	name := c.Param("name")
	latest, err := u.m.Service(ctx, p, name, "")
	switch {
	case errors.Is(err, gef.ErrNotFound) && version == "":
		msg := publicMessage(err)
		if strings.Contains(msg, "deprecated") {
			msg = "Every version of " + name + " is deprecated. Pick one on the service's page to run it anyway."
		}
		u.errorPage(c, http.StatusNotFound, "Nothing to run", msg)
		return svc, false, nil, false
	case err != nil && !errors.Is(err, gef.ErrNotFound):
		u.fail(c, err)
		return svc, false, nil, false
	}
	svc = latest
	if version != "" && version != latest.Version {
		if svc, err = u.m.Service(ctx, p, name, version); err != nil {
			u.fail(c, err)
			return svc, false, nil, false
		}
	}
	datasets, err = u.m.Datasets(ctx, p)
	if err != nil {
		u.fail(c, err)
		return svc, false, nil, false
	}
	return svc, svc.Version == latest.Version, datasets, true
}
