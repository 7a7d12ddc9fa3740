package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// logout ends the browser session by dropping its cookie. The session
// token itself lives until it expires (manager.Config.SessionTTL); the
// browser no longer holds it.
func (u *UI) logout(c *gin.Context) {
	u.clearSession(c)
	c.Redirect(http.StatusSeeOther, "/login?notice=signed-out")
}
