package ui

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type datasetData struct {
	Dataset gef.Dataset
	Jobs    []gef.Job
	More    bool
	// Runnable are the services that take exactly one dataset, so they can
	// be started on this one directly.
	Runnable []gef.Service
}

// dataset shows where a dataset is, how big it is, and the latest jobs
// that read it.
func (u *UI) dataset() gin.HandlerFunc {
	t := u.page("dataset")
	return func(c *gin.Context) {
		ctx, p, name := c.Request.Context(), viewer(c), c.Param("name")
		ds, err := u.m.Dataset(ctx, p, name)
		if err != nil {
			u.fail(c, err)
			return
		}
		jobs, err := u.m.Jobs(ctx, p, gef.JobFilter{Dataset: name, Limit: 10})
		if err != nil {
			u.fail(c, err)
			return
		}
		svcs, err := u.m.Services(ctx, p, "")
		if err != nil {
			u.fail(c, err)
			return
		}
		d := datasetData{Dataset: ds, Jobs: jobs.Items, More: jobs.NextPageToken != ""}
		for _, e := range entries(svcs) {
			if !e.Retired && len(e.Current.DatasetInputs()) == 1 && len(e.Current.Inputs) == 1 {
				d.Runnable = append(d.Runnable, e.Current)
			}
		}
		u.render(c, http.StatusOK, t, u.view(c, "Dataset "+ds.Name, "datasets", d))
	}
}
