package ui

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

type datasetData struct {
	Dataset  gef.Dataset
	Versions []versionRow
	Jobs     []gef.Job
	More     bool
	// Runnable are the services that take exactly one dataset, so they can
	// be started on this one directly.
	Runnable []gef.Service
	// Access is the form that changes who may use the dataset (admins).
	Access *accessForm
}

// versionRow is one content a dataset was seen with.
type versionRow struct {
	gef.DatasetVersion
	Held bool // a node holds these bytes now
}

// accessForm edits a dataset's access list.
type accessForm struct {
	Restricted bool
	Users      string // names, separated by commas or spaces
	Groups     []groupChoice
	Error      string // about the users
}

type groupChoice struct {
	Name    string
	Checked bool
}

// dataset shows where a dataset is, how big it is, its content digest and
// versions, the latest jobs that read it and, to admins, who may use it.
func (u *UI) dataset() gin.HandlerFunc {
	t := u.page("dataset")
	return func(c *gin.Context) {
		u.showDataset(c, t, http.StatusOK, nil)
	}
}

func (u *UI) showDataset(c *gin.Context, t *template.Template, status int, form *accessForm) {
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
	d := datasetData{Dataset: ds, Jobs: jobs.Items, More: jobs.NextPageToken != "", Access: form}
	for _, v := range ds.Versions {
		d.Versions = append(d.Versions, versionRow{DatasetVersion: v, Held: v.GoneSince == nil && slices.Contains(ds.Digests, v.Digest)})
	}
	for _, e := range entries(svcs) {
		if !e.Retired && len(e.Current.DatasetInputs()) == 1 && len(e.Current.Inputs) == 1 {
			d.Runnable = append(d.Runnable, e.Current)
		}
	}
	if p.Is(gef.RoleAdmin) && d.Access == nil {
		groups, err := u.m.Groups(ctx, p)
		if err != nil {
			u.fail(c, err)
			return
		}
		d.Access = &accessForm{Restricted: ds.Access.Restricted, Users: strings.Join(ds.Access.Users, ", "),
			Groups: groupChoices(groups, ds.Access.Groups)}
	}
	u.render(c, status, t, u.view(c, "Dataset "+ds.Name, "datasets", d))
}

// groupChoices offers every group, and any the list names that is gone,
// checking those in chosen.
func groupChoices(groups []gef.Group, chosen []string) []groupChoice {
	names := slices.Clone(chosen)
	for _, g := range groups {
		names = append(names, g.Name)
	}
	sort.Strings(names)
	out := []groupChoice{}
	for _, n := range slices.Compact(names) {
		out = append(out, groupChoice{Name: n, Checked: slices.Contains(chosen, n)})
	}
	return out
}

// setAccess replaces who may use a dataset (admins). Names of users who do
// not exist are refused, as they are most likely typos.
func (u *UI) setAccess() gin.HandlerFunc {
	t := u.page("dataset")
	return func(c *gin.Context) {
		ctx, p, name := c.Request.Context(), viewer(c), c.Param("name")
		a := gef.DatasetAccess{Restricted: c.PostForm("restricted") == "true",
			Users: splitNames(c.PostForm("users")), Groups: c.PostFormArray("group")}
		groups, err := u.m.Groups(ctx, p)
		if err != nil {
			u.fail(c, err)
			return
		}
		form := &accessForm{Restricted: a.Restricted, Users: c.PostForm("users"), Groups: groupChoices(groups, a.Groups)}
		users, err := u.m.Users(ctx, p)
		if err != nil {
			u.fail(c, err)
			return
		}
		var unknown []string
		for _, n := range a.Users {
			if !slices.ContainsFunc(users, func(x gef.User) bool { return x.Name == n }) {
				unknown = append(unknown, n)
			}
		}
		if len(unknown) > 0 {
			form.Error = "There is no user " + strings.Join(unknown, ", ") + "."
			u.showDataset(c, t, http.StatusUnprocessableEntity, form)
			return
		}
		_, err = u.m.SetDatasetAccess(ctx, p, name, a)
		var inv *gef.InvalidError
		switch {
		case errors.As(err, &inv):
			form.Error = capitalize(inv.Reason) + "."
			u.showDataset(c, t, http.StatusUnprocessableEntity, form)
		case err != nil:
			u.fail(c, err)
		default:
			c.Redirect(http.StatusSeeOther, "/datasets/"+url.PathEscape(name)+"?notice=access-set")
		}
	}
}

// splitNames reads names separated by commas, spaces or new lines.
func splitNames(s string) []string {
	names := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	slices.Sort(names)
	return slices.Compact(names)
}
