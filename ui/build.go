package ui

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type buildData struct {
	Build  gef.Build
	Phases []phase
	Took   time.Duration
	Files  []string // the paths of a spec's files
	Labels []kv     // a spec's labels, by key
	Log    string
	LogCut bool
}

// buildView gathers what a build's page and its live part show.
func (u *UI) buildView(c *gin.Context) (buildData, bool) {
	b, err := u.m.Build(c.Request.Context(), viewer(c), c.Param("id"))
	if errors.Is(err, gef.ErrNotFound) || isInvalidID(err) {
		// Another maintainer's build is not found either.
		u.errorPage(c, http.StatusNotFound, "No such build", "There is no build "+c.Param("id")+" that you may see.")
		return buildData{}, false
	}
	if err != nil {
		u.fail(c, err)
		return buildData{}, false
	}
	now, ts := u.now(), b.Timestamps
	queued := ts.Queued
	d := buildData{Build: b, Phases: timeline([]step{{"queued", &queued}, {"building", ts.Building}, {"publishing", ts.Publishing}},
		ts.Finished, b.State.Final(), string(b.State), now)}
	end := now
	if ts.Finished != nil {
		end = *ts.Finished
	}
	d.Took = end.Sub(ts.Queued)
	if s := b.Spec; s != nil {
		for p := range s.Files {
			d.Files = append(d.Files, p)
		}
		sort.Strings(d.Files)
		for k, v := range s.Labels {
			d.Labels = append(d.Labels, kv{k, v})
		}
		sort.Slice(d.Labels, func(i, j int) bool { return d.Labels[i].Key < d.Labels[j].Key })
	}
	return d, true
}

// build shows one build: its state and timeline, its output, followed
// live by the script, what it builds and, once done, the service it
// published.
func (u *UI) build() gin.HandlerFunc {
	t := u.page("build")
	return func(c *gin.Context) {
		d, ok := u.buildView(c)
		if !ok {
			return
		}
		w := &tailWriter{max: logTailBytes}
		if err := u.m.BuildLogs(c.Request.Context(), viewer(c), d.Build.ID, w); err != nil {
			u.fail(c, err)
			return
		}
		d.Log, d.LogCut = string(w.buf), w.cut
		u.render(c, http.StatusOK, t, u.view(c, "Build "+d.Build.ID, "builds", d))
	}
}

// buildLive renders the parts of a build's page that change as it runs.
func (u *UI) buildLive() gin.HandlerFunc {
	t := u.page("build")
	return func(c *gin.Context) {
		d, ok := u.buildView(c)
		if !ok {
			return
		}
		u.execute(c, http.StatusOK, t, "build-live", u.view(c, "", "builds", d))
	}
}
