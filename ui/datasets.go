package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// datasets lists the datasets the nodes hold.
func (u *UI) datasets() gin.HandlerFunc {
	t := u.page("datasets")
	return func(c *gin.Context) {
		list, err := u.m.Datasets(c.Request.Context(), viewer(c))
		if err != nil {
			u.fail(c, err)
			return
		}
		u.render(c, http.StatusOK, t, u.view(c, "Datasets", "datasets", list))
	}
}
