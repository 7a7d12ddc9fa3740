package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

// errorData is what the error page shows.
type errorData struct {
	Status  int
	Heading string
	Message string
}

// errorPage answers with an HTML error page and stops the request.
func (u *UI) errorPage(c *gin.Context, status int, heading, msg string) {
	u.render(c, status, u.page("error"), u.view(c, heading, "", errorData{Status: status, Heading: heading, Message: msg}))
	c.Abort()
}

// fail answers with the page an error's kind calls for. Unexpected errors
// are logged and shown without their text, which may hold internals.
func (u *UI) fail(c *gin.Context, err error) {
	switch {
	case errors.Is(err, gef.ErrUnauthorized):
		u.clearSession(c)
		c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.Path))
		c.Abort()
	case errors.Is(err, gef.ErrNotFound):
		u.errorPage(c, http.StatusNotFound, "Not found", publicMessage(err))
	case errors.Is(err, gef.ErrForbidden):
		u.errorPage(c, http.StatusForbidden, "Not allowed", publicMessage(err))
	case errors.Is(err, gef.ErrInvalid):
		u.errorPage(c, http.StatusUnprocessableEntity, "Not valid", publicMessage(err))
	case errors.Is(err, gef.ErrConflict):
		u.errorPage(c, http.StatusConflict, "Conflict", publicMessage(err))
	case errors.Is(err, gef.ErrUnavailable):
		u.log.Warn("dependency unavailable", "path", c.Request.URL.Path, "err", err)
		u.errorPage(c, http.StatusServiceUnavailable, "Unavailable",
			"A service GEF depends on is unavailable. Try again in a moment.")
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		c.Abort() // the browser went away
	default:
		u.log.Error("page failed", "path", c.Request.URL.Path, "method", c.Request.Method, "err", err)
		u.errorPage(c, http.StatusInternalServerError, "Something went wrong",
			"GEF could not show this page. The manager's log has the details.")
	}
}

// publicMessage strips package prefixes and sentinel suffixes that mean
// nothing to a reader, as the API does.
func publicMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{"store: ", "manager: ", "services: ", "auth: ", "unauthorized: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	for _, sentinel := range []error{gef.ErrConflict, gef.ErrUnauthorized, gef.ErrForbidden, gef.ErrInvalid} {
		msg = strings.TrimSuffix(msg, ": "+sentinel.Error())
	}
	return capitalize(msg)
}

// isAPI reports whether a path belongs to the JSON API, whose clients
// expect its error shape rather than a page.
func isAPI(path string) bool { return path == "/api" || strings.HasPrefix(path, "/api/") }

// apiError writes the API's error shape, {"error": {"code", "message"}}.
func apiError(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": gin.H{"code": code, "message": msg}})
}

func (u *UI) noRoute(c *gin.Context) {
	if isAPI(c.Request.URL.Path) {
		apiError(c, http.StatusNotFound, "not_found", "no such path: "+c.Request.URL.Path)
		return
	}
	u.headers(c)
	u.session(c)
	if c.IsAborted() {
		return
	}
	u.errorPage(c, http.StatusNotFound, "Page not found", "There is no page at "+c.Request.URL.Path+".")
}

func (u *UI) noMethod(c *gin.Context) {
	if isAPI(c.Request.URL.Path) {
		apiError(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
		return
	}
	u.headers(c)
	u.session(c)
	if c.IsAborted() {
		return
	}
	u.errorPage(c, http.StatusMethodNotAllowed, "Not allowed here", c.Request.Method+" is not allowed on "+c.Request.URL.Path+".")
}
