package ui

import (
	"errors"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// logTailBytes bounds the log a job's page shows without JavaScript; the
// whole log is a link away.
const logTailBytes = 64 << 10

type jobData struct {
	Job       gef.Job
	Phases    []phase
	Took      time.Duration // from queued to the end, or to now
	CanCancel bool
	// CanChange is set for the job's owner and the admins, who may cancel
	// it and make it public or private.
	CanChange bool
	// CanRerun is set once the job has ended, for someone signed in who
	// may run on every dataset it read.
	CanRerun bool
	// Retried is set once an attempt of the job has ended and another
	// runs or waits: the page lists the attempts.
	Retried bool
	Inputs  []kv
	Params  []kv
	Outputs int64 // bytes in all
	Log     string
	LogCut  bool // Log is only the tail

	// Reproducibility (docs/reproducibility.md).
	RerunOf, ReuseOf string
	Verdict          gef.Verdict // of a rerun that has ended, if judged
	Provenance       *gef.Provenance
	BibTeX, CSL      string
	Refused          *refusal // a rerun just refused
}

// refusal is why a rerun was not started: the datasets that changed since
// the job ran (a rerun may accept that), or another reason.
type refusal struct {
	Problems []string
	Message  string
}

type kv struct{ Key, Value string }

// phase is one step of a job's timeline.
type phase struct {
	Name   string
	Status string // done, current, pending, skipped or end
	Start  time.Time
	Took   time.Duration
}

// phases lays out a job's life from its timestamps: when it entered each
// phase and how long it stayed.
func phases(j gef.Job, now time.Time) []phase {
	ts := j.Timestamps
	queued := ts.Queued
	return timeline([]step{{"queued", &queued}, {"assigned", ts.Assigned}, {"fetching image", ts.FetchingImage},
		{"running", ts.Running}, {"staging", ts.Staging}}, ts.Finished, j.State.Final(), stateLabel(j.State), now)
}

// step is a phase and when it was entered, if it was.
type step struct {
	name string
	at   *time.Time
}

// timeline lays out phases from when each was entered, ending at finished
// with a last step named end.
func timeline(steps []step, finished *time.Time, final bool, end string, now time.Time) []phase {
	var out []phase
	for i, s := range steps {
		ph := phase{Name: s.name}
		if s.at == nil {
			// A phase the job went past without entering (no image to
			// fetch, or canceled before it) is skipped, not pending.
			ph.Status = "pending"
			if final {
				ph.Status = "skipped"
			}
			for _, n := range steps[i+1:] {
				if n.at != nil {
					ph.Status = "skipped"
				}
			}
			out = append(out, ph)
			continue
		}
		ph.Start = *s.at
		next := finished
		for _, n := range steps[i+1:] {
			if n.at != nil {
				next = n.at
				break
			}
		}
		if next != nil {
			ph.Status, ph.Took = "done", next.Sub(*s.at)
		} else {
			ph.Status, ph.Took = "current", now.Sub(*s.at)
		}
		out = append(out, ph)
	}
	if finished != nil {
		out = append(out, phase{Name: end, Status: "end", Start: *finished})
	}
	return out
}

// jobView gathers what the job page and its live part show.
func (u *UI) jobView(c *gin.Context) (jobData, bool) {
	j, err := u.m.Job(c.Request.Context(), viewer(c), c.Param("id"))
	if errors.Is(err, gef.ErrNotFound) && viewer(c).Anonymous() {
		// It may be a private job its visitor can see once signed in.
		u.signedIn(c)
		return jobData{}, false
	}
	if errors.Is(err, gef.ErrNotFound) || errors.Is(err, gef.ErrInvalid) {
		// Someone else's job is not found either, so ids do not leak.
		u.errorPage(c, http.StatusNotFound, "No such job", "There is no job "+c.Param("id")+" that you may see.")
		return jobData{}, false
	}
	if err != nil {
		u.fail(c, err)
		return jobData{}, false
	}
	now := u.now()
	p := viewer(c)
	d := jobData{Job: j, Phases: phases(j, now), CanChange: mayChange(p, j)}
	d.CanCancel = d.CanChange && !j.State.Final() && !j.CancelRequested
	end := now
	if j.Timestamps.Finished != nil {
		end = *j.Timestamps.Finished
	}
	d.Took = end.Sub(j.Timestamps.Queued)
	for k, v := range j.Inputs {
		d.Inputs = append(d.Inputs, kv{k, v})
	}
	sort.Slice(d.Inputs, func(a, b int) bool { return d.Inputs[a].Key < d.Inputs[b].Key })
	for k, v := range j.Params {
		d.Params = append(d.Params, kv{k, valueString(v)})
	}
	sort.Slice(d.Params, func(a, b int) bool { return d.Params[a].Key < d.Params[b].Key })
	for _, o := range j.Outputs {
		d.Outputs += o.Size
	}
	if n := len(j.Attempts); n > 1 || n == 1 && j.Attempts[0].State.Final() && !j.State.Final() {
		d.Retried = true
	}
	if j.RerunOf != nil {
		d.RerunOf = *j.RerunOf
	}
	if j.ReuseOf != nil {
		d.ReuseOf = *j.ReuseOf
	}
	if j.Verdict != nil {
		d.Verdict = *j.Verdict
	}
	if j.State.Final() {
		if err := u.ended(c, p, &d); err != nil {
			u.fail(c, err)
			return jobData{}, false
		}
	}
	return d, true
}

// ended adds what a job has once it has ended: its sealed provenance,
// its citation, and whether the viewer may rerun it.
func (u *UI) ended(c *gin.Context, p manager.Principal, d *jobData) error {
	ctx, id := c.Request.Context(), d.Job.ID
	prov, err := u.m.Provenance(ctx, p, id)
	if err != nil {
		return err
	}
	d.Provenance = &prov
	for _, f := range []struct {
		format string
		to     *string
	}{{manager.CiteBibTeX, &d.BibTeX}, {manager.CiteCSL, &d.CSL}} {
		cite, err := u.m.Cite(ctx, p, id, f.format)
		if err != nil {
			return err
		}
		*f.to = string(cite.Text)
	}
	d.CanRerun, err = u.mayRerun(c, p, d.Job)
	return err
}

// mayRerun reports whether p may rerun j, as manager.Rerun judges it: a
// person signed in, who may run on every dataset the job read. Reading a
// public job does not grant its data.
func (u *UI) mayRerun(c *gin.Context, p manager.Principal, j gef.Job) (bool, error) {
	if !p.Is(gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser) {
		return false, nil
	}
	for _, ds := range j.Inputs {
		_, err := u.m.Dataset(c.Request.Context(), p, ds)
		if errors.Is(err, gef.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// mayChange mirrors the manager's rule for who may act on a job (cancel
// it, change who reads it): its owner and the admins. The manager checks
// again; this only keeps the buttons from those who may not use them.
func mayChange(p manager.Principal, j gef.Job) bool {
	return p.Is(gef.RoleAdmin) || (!p.Anonymous() && !p.Is(gef.RoleNode) && j.Owner == p.Name)
}

// job shows one job: its state and timeline, what it ran on, its log and
// its outputs. The script follows the log and the state live.
func (u *UI) job() gin.HandlerFunc {
	t := u.page("job")
	return func(c *gin.Context) {
		// The page is the job's stable, citable URL: a client asking for
		// JSON-LD gets its RO-Crate, one asking for JSON its record.
		if accept := c.GetHeader("Accept"); strings.Contains(accept, manager.CrateMediaType) {
			crate, err := u.m.Crate(c.Request.Context(), viewer(c), c.Param("id"))
			if err != nil {
				u.fail(c, err)
				return
			}
			c.Data(http.StatusOK, manager.CrateMediaType, crate)
			return
		} else if strings.HasPrefix(accept, "application/json") {
			j, err := u.m.Job(c.Request.Context(), viewer(c), c.Param("id"))
			if err != nil {
				u.fail(c, err)
				return
			}
			c.JSON(http.StatusOK, j)
			return
		}
		u.showJob(c, t, http.StatusOK, nil)
	}
}

// showJob renders a job's page, with why a rerun was refused if it was.
func (u *UI) showJob(c *gin.Context, t *template.Template, status int, refused *refusal) {
	d, ok := u.jobView(c)
	if !ok {
		return
	}
	d.Refused = refused
	w := &tailWriter{max: logTailBytes}
	if err := u.m.Logs(c.Request.Context(), viewer(c), d.Job.ID, "", w); err != nil {
		u.fail(c, err)
		return
	}
	d.Log, d.LogCut = string(w.buf), w.cut
	u.render(c, status, t, u.view(c, d.Job.Service+" job "+d.Job.ID, "jobs", d))
}

// jobLive renders only the parts of the job page that change as the job
// runs, and those that appear when it ends, for the script to swap in.
func (u *UI) jobLive() gin.HandlerFunc {
	t := u.page("job")
	return func(c *gin.Context) {
		d, ok := u.jobView(c)
		if !ok {
			return
		}
		u.execute(c, http.StatusOK, t, "job-fresh", u.view(c, "", "jobs", d))
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
	cut bool
}

func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= w.max {
		w.buf = append(w.buf[:0], p[len(p)-w.max:]...)
		w.cut = true
		return n, nil
	}
	if over := len(w.buf) + len(p) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
		w.cut = true
	}
	w.buf = append(w.buf, p...)
	return n, nil
}
