package local

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/eudat-gef/gef"
)

// Handler serves the URLs made by PresignPut and PresignGet. Mount it where
// the base URL points, with the base path stripped (http.StripPrefix): it
// expects request paths of the form /<key>.
//
// A PUT stores the body under the key and answers 200 with an ETag of the
// body's hex SHA-256; a GET serves the object, honouring Range. A missing,
// tampered or expired signature is refused with 403, a body over
// MaxObjectBytes with 413.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/")
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err := s.verify(r.Method, key, r.URL.Query()); err != nil {
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPut {
		s.servePut(w, r, key)
	} else {
		s.serveGet(w, r, key)
	}
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request, key string) {
	limit := s.maxObjectBytes()
	if r.ContentLength > limit {
		http.Error(w, fmt.Sprintf("object larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	h := sha256.New()
	body := io.TeeReader(http.MaxBytesReader(w, r.Body, limit), h)
	if err := s.Put(r.Context(), key, body, r.ContentLength); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, fmt.Sprintf("object larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		case errors.Is(err, gef.ErrInvalid), errors.Is(err, io.ErrUnexpectedEOF):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case errors.Is(err, gef.ErrConflict):
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	w.Header().Set("ETag", `"`+hex.EncodeToString(h.Sum(nil))+`"`)
	w.WriteHeader(http.StatusOK)
}

func (s *Store) serveGet(w http.ResponseWriter, r *http.Request, key string) {
	f, info, err := s.open(r.Context(), key)
	if err != nil {
		switch {
		case errors.Is(err, gef.ErrNotFound):
			http.Error(w, "no such object", http.StatusNotFound)
		case errors.Is(err, gef.ErrInvalid):
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", info.Modified, f)
}
