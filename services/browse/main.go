// Command browse is GEF's dataset browser, a long-lived HTTP service: it
// serves the dataset mounted at its input, read-only, as web pages for
// people and as JSON for programs, with downloads that resume.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	root := flag.String("root", "/data", "the directory to serve")
	listen := flag.String("listen", ":8080", "the address to listen on")
	title := flag.String("title", "Dataset", "the title of the pages")
	flag.Parse()
	srv := &http.Server{Addr: *listen, Handler: &browser{root: *root, title: *title}, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	fmt.Printf("browse: serving %s on %s\n", *root, *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "browse:", err)
		os.Exit(1)
	}
	fmt.Println("browse: stopped")
}

type browser struct {
	root, title string
}

// Entry is one item of a folder listing.
type Entry struct {
	Name     string    `json:"name"`
	Dir      bool      `json:"dir"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// Listing is a folder, as JSON.
type Listing struct {
	Path     string  `json:"path"`
	ReadOnly bool    `json:"read_only"`
	Entries  []Entry `json:"entries"`
}

func (b *browser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dataset is read-only", http.StatusMethodNotAllowed)
		return
	}
	rel := path.Clean("/" + r.URL.Path)
	full := filepath.Join(b.root, filepath.FromSlash(rel))
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode()&fs.ModeSymlink != 0:
		http.NotFound(w, r)
		return
	case err != nil:
		http.Error(w, "cannot read "+rel, http.StatusForbidden)
		return
	}
	if !fi.IsDir() {
		f, err := os.Open(full)
		if err != nil {
			http.Error(w, "cannot read "+rel, http.StatusForbidden)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f) // ranges, so downloads resume
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/") {
		// Relative links in the page need the folder's trailing slash.
		http.Redirect(w, r, path.Base(rel)+"/", http.StatusMovedPermanently)
		return
	}
	list, err := b.list(full, rel)
	if err != nil {
		http.Error(w, "cannot list "+rel, http.StatusForbidden)
		return
	}
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(w, struct {
		Title string
		Listing
	}{b.title, list})
}

func (b *browser) list(dir, rel string) (Listing, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Path: rel, Entries: []Entry{}, ReadOnly: syscall.Access(b.root, 2) != nil}
	for _, d := range des {
		if d.Type()&fs.ModeSymlink != 0 {
			continue // never followed out of the dataset
		}
		info, err := d.Info()
		if err != nil {
			continue
		}
		e := Entry{Name: d.Name(), Dir: d.IsDir(), Modified: info.ModTime().UTC()}
		if !e.Dir {
			e.Size = info.Size()
		}
		l.Entries = append(l.Entries, e)
	}
	sort.Slice(l.Entries, func(i, j int) bool {
		if l.Entries[i].Dir != l.Entries[j].Dir {
			return l.Entries[i].Dir
		}
		return l.Entries[i].Name < l.Entries[j].Name
	})
	return l, nil
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"size": func(n int64) string {
		for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
			if n < 1024 || u == "GiB" {
				return fmt.Sprintf("%d %s", n, u)
			}
			n /= 1024
		}
		return ""
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}: {{.Path}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.2em 1em;text-align:left}td.n{text-align:right}</style>
</head><body>
<h1>{{.Title}}: {{.Path}}</h1>
{{if .ReadOnly}}<p>Read-only.</p>{{end}}
<table><tr><th>Name</th><th>Size</th><th>Modified</th></tr>
{{if ne .Path "/"}}<tr><td><a href="../">../</a></td><td></td><td></td></tr>{{end}}
{{range .Entries}}<tr><td><a href="{{.Name}}{{if .Dir}}/{{end}}">{{.Name}}{{if .Dir}}/{{end}}</a></td><td class="n">{{if not .Dir}}{{size .Size}}{{end}}</td><td>{{.Modified.Format "2006-01-02 15:04"}}</td></tr>
{{end}}</table>
</body></html>
`))
