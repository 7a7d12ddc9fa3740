package ui

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// The two build forms: a Dockerfile with the files it copies, or a small
// spec that GEF turns into a Dockerfile. Either way a node builds the
// image and GEF publishes the service its labels declare.

// specFiles is how many files the spec form takes without JavaScript.
const specFiles = 3

type buildFormData struct {
	Dockerfile string
	Spec       specForm
	// DockerErrors and SpecErrors are the problems of each form, by field.
	DockerErrors, SpecErrors map[string]string
	General                  []string // problems that concern no one field
	Bases                    []string // published services, as NAME:VERSION
	MaxContext               int64
}

// specForm is the spec form as typed: lists are one item a line, or
// separated by spaces for packages.
type specForm struct {
	Base, Apt, Pip, Entrypoint, Cmd, Labels string
	Files                                   []specFile
}

type specFile struct{ Path, Content string }

// buildForm offers the two ways to build. ?base=NAME:VERSION fills in the
// spec's base, as the service page's "build a new version" link does.
func (u *UI) buildForm() gin.HandlerFunc {
	t := u.page("build-new")
	return func(c *gin.Context) {
		u.showBuildForm(c, t, http.StatusOK, buildFormData{Spec: specForm{Base: strings.TrimSpace(c.Query("base"))}})
	}
}

func (u *UI) showBuildForm(c *gin.Context, t *template.Template, status int, d buildFormData) {
	svcs, err := u.m.Services(c.Request.Context(), viewer(c), "")
	if err != nil {
		u.fail(c, err)
		return
	}
	for _, s := range svcs {
		d.Bases = append(d.Bases, s.Name+":"+s.Version)
	}
	for len(d.Spec.Files) < specFiles {
		d.Spec.Files = append(d.Spec.Files, specFile{})
	}
	_, d.MaxContext = u.m.UploadLimits()
	u.render(c, status, t, u.view(c, "Build an image", "builds", d))
}

// submitted sends the browser to a build just queued (or to the earlier
// build of the same thing, which GEF reuses).
func submitted(c *gin.Context, b gef.Build, reused bool) {
	target := "/builds/" + b.ID
	if reused {
		target += "?notice=build-reused"
	}
	c.Redirect(http.StatusSeeOther, target)
}

// createBuild builds from a Dockerfile, typed in the form, and a context
// tarball, uploaded; either may be left out if the other has what the
// build needs. The upload is streamed to the manager: when both are
// given, the typed Dockerfile replaces any in the tarball.
func (u *UI) createBuild() gin.HandlerFunc {
	t := u.page("build-new")
	return func(c *gin.Context) {
		d := buildFormData{DockerErrors: map[string]string{}}
		part, err := nextPart(c, "dockerfile")
		if err != nil {
			u.uploadFailed(c, err)
			return
		}
		text, err := io.ReadAll(io.LimitReader(part, maxDockerfile+1))
		if err != nil {
			u.uploadFailed(c, err)
			return
		}
		if len(text) > maxDockerfile {
			d.DockerErrors["dockerfile"] = fmt.Sprintf("A Dockerfile here is at most %d bytes; put a longer one in the context.", maxDockerfile)
			u.showBuildForm(c, t, http.StatusUnprocessableEntity, d)
			return
		}
		d.Dockerfile = lf(string(text))
		upload, err := nextPart(c, "context")
		switch {
		case errors.Is(err, io.EOF):
			upload = nil
		case err != nil:
			u.uploadFailed(c, err)
			return
		case upload.FileName() == "":
			upload = nil
		}
		var req manager.BuildRequest
		switch {
		case strings.TrimSpace(d.Dockerfile) == "" && upload == nil:
			d.DockerErrors["dockerfile"] = "Write a Dockerfile, or upload a context with one at its root."
			u.showBuildForm(c, t, http.StatusUnprocessableEntity, d)
			return
		case strings.TrimSpace(d.Dockerfile) == "":
			req.Context = upload
		default:
			var src io.Reader
			if upload != nil {
				src = upload
			}
			merged := contextWith([]byte(d.Dockerfile), src)
			defer merged.Close()
			req.Context = merged
		}
		b, reused, err := u.m.SubmitBuild(c.Request.Context(), viewer(c), req)
		var tooLarge *manager.TooLargeError
		var maxErr *http.MaxBytesError
		var inv *gef.InvalidError
		switch {
		case err == nil:
			submitted(c, b, reused)
		case errors.As(err, &tooLarge), errors.As(err, &maxErr):
			d.DockerErrors["context"] = "The context is larger than the " + humanBytes(d.MaxContext) + " GEF takes."
			u.showBuildForm(c, t, http.StatusRequestEntityTooLarge, d)
		case errors.As(err, &inv):
			d.DockerErrors["context"] = capitalize(inv.Reason) + "."
			u.showBuildForm(c, t, http.StatusUnprocessableEntity, d)
		case errors.Is(err, gef.ErrConflict):
			d.General = []string{publicMessage(err) + "."}
			u.showBuildForm(c, t, http.StatusConflict, d)
		default:
			u.uploadFailed(c, err)
		}
	}
}

// maxDockerfile bounds a Dockerfile typed into the form.
const maxDockerfile = 256 << 10

// createSpecBuild builds from the spec form.
func (u *UI) createSpecBuild() gin.HandlerFunc {
	t := u.page("build-new")
	return func(c *gin.Context) {
		f := specForm{Base: strings.TrimSpace(c.PostForm("base")), Apt: c.PostForm("apt"), Pip: c.PostForm("pip"),
			Entrypoint: lf(c.PostForm("entrypoint")), Cmd: lf(c.PostForm("cmd")), Labels: lf(c.PostForm("labels"))}
		d := buildFormData{Spec: f, SpecErrors: map[string]string{}}
		spec := gef.BuildSpec{Base: f.Base, Apt: strings.Fields(f.Apt), Pip: strings.Fields(f.Pip),
			Entrypoint: lines(f.Entrypoint), Cmd: lines(f.Cmd)}
		for i := 1; i <= specFiles; i++ {
			file := specFile{Path: strings.TrimSpace(c.PostForm(fmt.Sprintf("file.%d.path", i))), Content: lf(c.PostForm(fmt.Sprintf("file.%d.content", i)))}
			d.Spec.Files = append(d.Spec.Files, file)
			switch {
			case file.Path == "" && file.Content == "":
			case file.Path == "":
				d.SpecErrors["files"] = "Give each file's path in the image."
			default:
				if spec.Files == nil {
					spec.Files = map[string]string{}
				}
				spec.Files[file.Path] = file.Content
			}
		}
		for n, line := range strings.Split(f.Labels, "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.TrimSpace(k) == "" {
				d.SpecErrors["labels"] = fmt.Sprintf("Line %d: write each label as KEY=VALUE.", n+1)
				break
			}
			if spec.Labels == nil {
				spec.Labels = map[string]string{}
			}
			spec.Labels[strings.TrimSpace(k)] = v
		}
		if len(d.SpecErrors) > 0 {
			u.showBuildForm(c, t, http.StatusUnprocessableEntity, d)
			return
		}
		b, reused, err := u.m.SubmitBuild(c.Request.Context(), viewer(c), manager.BuildRequest{Spec: &spec})
		switch {
		case err == nil:
			submitted(c, b, reused)
		case errors.Is(err, gef.ErrInvalid):
			d.SpecErrors, d.General = specErrors(err)
			u.showBuildForm(c, t, http.StatusUnprocessableEntity, d)
		case errors.Is(err, gef.ErrConflict):
			d.General = []string{publicMessage(err) + "."}
			u.showBuildForm(c, t, http.StatusConflict, d)
		default:
			u.fail(c, err)
		}
	}
}

// specErrors puts each problem with a spec next to the field it concerns.
// Problems with labels, including those the label schema finds in the
// image the spec would make, are named by their key.
func specErrors(err error) (map[string]string, []string) {
	byField := map[string]string{}
	var general []string
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range multi.Unwrap() {
				walk(x)
			}
			return
		}
		var inv *gef.InvalidError
		if !errors.As(e, &inv) {
			general = append(general, publicMessage(e)+".")
			return
		}
		field, msg := inv.Field, capitalize(inv.Reason)
		switch {
		case field == "base" || field == "apt" || field == "pip" || field == "entrypoint" || field == "cmd":
		case field == "files" || strings.HasPrefix(field, "files."):
			if p := strings.TrimPrefix(field, "files."); p != field {
				msg = p + ": " + inv.Reason
			}
			field = "files"
		case strings.HasPrefix(field, "labels."):
			msg, field = strings.TrimPrefix(field, "labels.")+": "+inv.Reason, "labels"
		case strings.Contains(field, "."):
			msg, field = field+": "+inv.Reason, "labels" // a key of the label schema
		default:
			general = append(general, capitalize(inv.Error())+".")
			return
		}
		if !strings.HasSuffix(msg, ".") {
			msg += "."
		}
		if byField[field] != "" {
			byField[field] += " "
		}
		byField[field] += msg
	}
	walk(err)
	return byField, general
}

// lines splits text into its non-empty lines, each as written.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// lf undoes the CRLF line ends browsers send for text areas, which would
// break a script's #! line or a Dockerfile's instructions.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// contextWith streams a build context of dockerfile and, if upload is not
// nil, the entries of the uploaded context (a tar, gzipped or not) except
// a Dockerfile at its root. Close it once done with it: that stops the
// copy and waits for it, so no read of the upload outlives the request.
func contextWith(dockerfile []byte, upload io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeContext(pw, dockerfile, upload))
	}()
	return &streamed{PipeReader: pr, done: done}
}

type streamed struct {
	*io.PipeReader
	done chan struct{}
}

func (s *streamed) Close() error {
	s.PipeReader.CloseWithError(errors.New("ui: build context no longer read"))
	<-s.done
	return nil
}

func writeContext(w io.Writer, dockerfile []byte, upload io.Reader) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(dockerfile); err != nil {
		return err
	}
	if upload != nil {
		br := bufio.NewReader(upload)
		var r io.Reader = br
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return gef.Invalid("context", "is not a gzipped tar archive: %v", err)
			}
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return gef.Invalid("context", "is not a tar archive: %v", err)
			}
			if path.Clean(hdr.Name) == "Dockerfile" {
				continue // the typed one replaces it
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return gef.Invalid("context", "entry %q: %v", hdr.Name, err)
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
