package ui

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type sessionsData struct {
	Sessions []sessionRow
	NextURL  string
}

type sessionRow struct {
	gef.Session
	CanStop         bool
	Open            string // where to open it, while it runs
	Started, EndsBy time.Time
}

// sessions lists the caller's sessions (everyone's for admins), newest
// first: the long-lived services they started beside the data.
func (u *UI) sessions() gin.HandlerFunc {
	t := u.page("sessions")
	return func(c *gin.Context) {
		p := viewer(c)
		page, err := u.m.Sessions(c.Request.Context(), p, gef.SessionFilter{PageToken: c.Query("page"), Limit: u.cfg.PageSize})
		if err != nil {
			u.fail(c, err)
			return
		}
		d := sessionsData{}
		for _, s := range page.Items {
			r := sessionRow{Session: s, CanStop: !s.State.Final() && !s.StopRequested && (s.Owner == p.Name || p.Is(gef.RoleAdmin))}
			if s.State == gef.SessionRunning && s.Owner == p.Name {
				r.Open = s.URL
			}
			if s.Timestamps.Started != nil {
				r.Started = *s.Timestamps.Started
			}
			if s.ExpiresAt != nil && !s.State.Final() {
				r.EndsBy = *s.ExpiresAt
			}
			d.Sessions = append(d.Sessions, r)
		}
		if page.NextPageToken != "" {
			d.NextURL = "/sessions?page=" + url.QueryEscape(page.NextPageToken)
		}
		u.render(c, http.StatusOK, t, u.view(c, "Sessions", "sessions", d))
	}
}

// stopSession stops a session: SIGTERM, then a kill after a grace period.
func (u *UI) stopSession(c *gin.Context) {
	if _, err := u.m.StopSession(c.Request.Context(), viewer(c), c.Param("id")); err != nil {
		u.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/sessions?notice=session-stopping")
}

// startSession starts a service that answers HTTP as a session, from the
// run form. Problems come back as the form, next to their fields.
func (u *UI) startSession(c *gin.Context, t *template.Template, svc gef.Service, newest bool, datasets []gef.Dataset,
	req gef.JobRequest, values map[string]string) {
	access := gef.AccessOwner
	if c.PostForm("access") == string(gef.AccessPublic) {
		access = gef.AccessPublic
	}
	name := c.PostForm("session_name")
	_, err := u.m.StartSession(c.Request.Context(), viewer(c), gef.SessionRequest{JobRequest: req, Name: name, Access: access})
	if errors.Is(err, gef.ErrInvalid) || errors.Is(err, gef.ErrConflict) {
		byField, general := fieldErrors(svc, err)
		d := runData{Service: svc, Newest: newest, Fields: formFields(svc, datasets, values, byField), Errors: general,
			SessionName: name, Access: string(access)}
		if errors.Is(err, gef.ErrConflict) {
			d.NameError, d.Errors = publicMessage(err), nil
		}
		u.render(c, http.StatusUnprocessableEntity, t, u.view(c, "Start "+svc.Title, "services", d))
		return
	}
	if err != nil {
		u.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/sessions?notice=session-started")
}
