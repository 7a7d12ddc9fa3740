package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:embed static
var staticFS embed.FS

// staticFiles are the stylesheet, script and icon, held in memory with a
// content hash: pages link them as /static/NAME?v=HASH, so a browser may
// cache them for good and still never runs a stale script after an upgrade.
type staticFiles struct {
	files map[string]staticFile
}

type staticFile struct {
	data  []byte
	ctype string
	hash  string
}

func loadStatic() *staticFiles {
	s := &staticFiles{files: map[string]staticFile{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		s.files[strings.TrimPrefix(p, "static/")] = staticFile{data: b, ctype: ctype, hash: hex.EncodeToString(sum[:8])}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return s
}

// url is the versioned URL of a static file. It panics on a name that is
// not embedded, which a template test catches.
func (s *staticFiles) url(name string) string {
	f, ok := s.files[name]
	if !ok {
		panic("ui: no static file " + name)
	}
	return "/static/" + name + "?v=" + f.hash
}

func (u *UI) serveStatic(c *gin.Context) {
	f, ok := u.static.files[strings.TrimPrefix(c.Param("file"), "/")]
	if !ok {
		c.Data(http.StatusNotFound, "text/plain; charset=utf-8", []byte("no such file\n"))
		return
	}
	etag := `"` + f.hash + `"`
	c.Header("ETag", etag)
	c.Header("X-Content-Type-Options", "nosniff")
	if c.Query("v") == f.hash {
		c.Header("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		c.Header("Cache-Control", "no-cache")
	}
	if c.GetHeader("If-None-Match") == etag {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, f.ctype, f.data)
}
