package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

//go:embed templates/*.html
var templateFS embed.FS

// templates holds one parsed set per page: the layout and the partials
// (files named _*.html), then the page's own file.
type templates struct {
	pages map[string]*template.Template
}

// loadTemplates parses the templates of fsys. Partials are parsed first,
// so a partial that defines one of the empty blocks a page leaves for
// other features (the job page's "job-provenance", for one) fills it: an
// empty block never replaces a definition that has content.
func loadTemplates(fsys fs.FS, funcs template.FuncMap) *templates {
	base := template.Must(template.New("gef").Option("missingkey=zero").Funcs(funcs).ParseFS(fsys, "templates/_*.html"))
	files, err := fs.Glob(fsys, "templates/*.html")
	if err != nil {
		panic(err)
	}
	t := &templates{pages: map[string]*template.Template{}}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if strings.HasPrefix(name, "_") {
			continue
		}
		t.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(fsys, f))
	}
	return t
}

// page returns the named page's templates. Handlers call it when they are
// built, so a missing template stops the manager at start-up rather than
// failing a request later.
func (u *UI) page(name string) *template.Template {
	t, ok := u.tmpl.pages[name]
	if !ok {
		panic("ui: no template " + name + ".html")
	}
	return t
}

// view is what every page template gets.
type view struct {
	Title   string
	Nav     string // the section to mark current in the menu
	Path    string // the page's path, to come back to after signing in
	User    manager.Principal
	CSRF    string // the form token of this session
	Notice  string
	Version string
	Data    any
}

func (u *UI) view(c *gin.Context, title, nav string, data any) view {
	return view{Title: title, Nav: nav, Path: c.Request.URL.Path, User: viewer(c), CSRF: c.GetString(csrfKey),
		Notice: notices[c.Query("notice")], Version: gef.Version, Data: data}
}

// notices are the fixed messages a redirect after a form may ask for, so
// no text from the URL is ever shown.
var notices = map[string]string{
	"signed-out":       "You are signed out.",
	"published":        "The service is published.",
	"already":          "This image was already published; nothing changed.",
	"deprecated":       "The version is deprecated: new runs no longer pick it.",
	"restored":         "The version is no longer deprecated.",
	"cancel-asked":     "Cancel requested: the node is stopping the job.",
	"canceled":         "The job is canceled.",
	"user-created":     "The user is created.",
	"token-revoked":    "The token is revoked.",
	"rerun":            "This is a rerun: it repeats the job exactly, on the data the job ran on, and is judged against it when it ends.",
	"made-public":      "The job is public: anyone can read it at its URL, without signing in.",
	"access-set":       "Who may use the dataset is changed. Jobs waiting for a node are checked again when one claims them.",
	"group-created":    "The group is made.",
	"member-added":     "The user is added to the group.",
	"member-removed":   "The user is removed from the group.",
	"build-reused":     "The same build succeeded before, so GEF answered with that build rather than building again.",
	"deleted":          "The version is deleted.",
	"network-allowed":  "The version's containers may reach the network now.",
	"network-none":     "The version's containers run without a network now.",
	"session-started":  "The session is starting on the node that holds its data; open it once it runs.",
	"session-stopping": "The session is stopping.",
	"made-private":     "The job is private: only you and the administrators can read it.",
}

// render executes the page into a buffer first, so that a template error
// gives a clean error page rather than half a page.
func (u *UI) render(c *gin.Context, status int, t *template.Template, v view) {
	u.execute(c, status, t, "layout", v)
}

func (u *UI) execute(c *gin.Context, status int, t *template.Template, name string, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		u.log.Error("rendering a page", "template", t.Name(), "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8",
			[]byte("internal error; the manager's log has the details\n"))
		c.Abort()
		return
	}
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"bytes":      humanBytes,
		"rel":        func(t time.Time) string { return relative(t, u.now()) },
		"abs":        absolute,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"dur":        duration,
		"short":      shortDigest,
		"stateLabel": stateLabel,
		"stateClass": stateClass,
		"menu":       menuFor,
		"buildClass": buildClass,
		"inc":        func(i int) int { return i + 1 },
		"buildTook": func(b gef.Build) string {
			if b.Timestamps.Finished != nil {
				return duration(b.Timestamps.Finished.Sub(b.Timestamps.Queued))
			}
			return duration(u.now().Sub(b.Timestamps.Queued)) + " so far"
		},
		"outputURL": outputURL,
		"link":      safeLink,
		"static":    func(name string) string { return u.static.url(name) },
		"is": func(p manager.Principal, roles ...string) bool {
			for _, r := range roles {
				if p.Is(gef.Role(r)) {
					return true
				}
			}
			return false
		},
		"join": strings.Join,
		// json writes a value as compact JSON, as the API would.
		"json": func(v any) (string, error) {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			err := enc.Encode(v)
			return strings.TrimSuffix(b.String(), "\n"), err
		},
		"value": func(v any) string {
			if f, ok := v.(*float64); ok && f != nil {
				return valueString(*f)
			}
			return valueString(v)
		},
		"isSet": func(v any) bool { return v != nil },
		"hasFieldErrors": func(fs []field) bool {
			for _, f := range fs {
				if f.Error != "" {
					return true
				}
			}
			return false
		},
		"tokenLifetimes": func() []string { return tokenLifetimes },
		"seconds":        func(n int64) time.Duration { return time.Duration(n) * time.Second },
		"jobTook": func(j gef.Job) string {
			if j.Timestamps.Finished != nil {
				return duration(j.Timestamps.Finished.Sub(j.Timestamps.Queued))
			}
			return duration(u.now().Sub(j.Timestamps.Queued)) + " so far"
		},
		// dict passes several values to a partial: dict "Jobs" .Jobs "User" .User.
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict needs key and value pairs")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, errors.New("dict keys must be strings")
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
		"deref": func(t *time.Time) time.Time {
			if t == nil {
				return time.Time{}
			}
			return *t
		},
		"shortID": func(id string) string {
			if len(id) > 10 {
				return id[len(id)-10:]
			}
			return id
		},
	}
}
