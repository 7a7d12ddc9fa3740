package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// apiError is the body of every error answer:
// {"error": {"code": "...", "message": "...", "field": "...", "details": [...]}}.
type apiError struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Field   string        `json:"field,omitempty"`
	Details []fieldDetail `json:"details,omitempty"`
}

type fieldDetail struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func abort(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": apiError{Code: code, Message: msg}})
}

// fail answers with the status an error's kind calls for. Unexpected errors
// are logged and answered 500 without their text, which may hold internals.
func (s *Server) fail(c *gin.Context, err error) {
	var inv *gef.InvalidError
	var maxErr *http.MaxBytesError
	var tooLarge *manager.TooLargeError
	body := apiError{Message: publicMessage(err)}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &maxErr):
		status, body.Code = http.StatusRequestEntityTooLarge, "too_large"
		body.Message = fmt.Sprintf("the request body is larger than %d bytes", maxErr.Limit)
	case errors.As(err, &tooLarge):
		status, body.Code, body.Field = http.StatusRequestEntityTooLarge, "too_large", tooLarge.Field
		body.Message = tooLarge.Error()
	case errors.Is(err, gef.ErrInvalid):
		status, body.Code = http.StatusUnprocessableEntity, "invalid"
		if errors.As(err, &inv) {
			body.Field = inv.Field
		}
		body.Details = details(err)
	case errors.Is(err, errBadRequest):
		status, body.Code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, gef.ErrNotFound):
		status, body.Code = http.StatusNotFound, "not_found"
	case errors.Is(err, gef.ErrConflict):
		status, body.Code = http.StatusConflict, "conflict"
	case errors.Is(err, gef.ErrUnauthorized):
		status, body.Code = http.StatusUnauthorized, "unauthorized"
		c.Header("WWW-Authenticate", `Bearer realm="gef"`)
	case errors.Is(err, gef.ErrForbidden):
		status, body.Code = http.StatusForbidden, "forbidden"
	case errors.Is(err, gef.ErrUnavailable):
		status, body.Code = http.StatusServiceUnavailable, "unavailable"
		body.Message = "a service GEF depends on is unavailable; try again shortly"
		if errors.Is(err, store.ErrDatabaseUnavailable) {
			body.Message = "the database is unavailable; nothing that was accepted is lost; try again shortly"
		}
		c.Header("Retry-After", "5")
		s.log.Warn("dependency unavailable", "route", c.FullPath(), "err", err)
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		status, body.Code = 499, "canceled"
	default:
		body.Code, body.Message = "internal", "internal error; the manager's log has the details"
		s.log.Error("request failed", "route", c.FullPath(), "method", c.Request.Method, "err", err)
	}
	c.AbortWithStatusJSON(status, gin.H{"error": body})
}

// details lists every field error of a multi-error, for forms that show
// each next to its field.
func details(err error) []fieldDetail {
	var out []fieldDetail
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range multi.Unwrap() {
				walk(x)
			}
			return
		}
		var inv *gef.InvalidError
		if errors.As(e, &inv) {
			out = append(out, fieldDetail{Field: inv.Field, Message: inv.Reason})
		}
	}
	walk(err)
	if len(out) < 2 {
		return nil
	}
	return out
}

// publicMessage strips package prefixes and sentinel suffixes that mean
// nothing to a caller.
func publicMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{"store: ", "manager: ", "services: ", "auth: ", "unauthorized: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	for _, sentinel := range []error{gef.ErrConflict, gef.ErrUnauthorized, gef.ErrForbidden, gef.ErrInvalid} {
		msg = strings.TrimSuffix(msg, ": "+sentinel.Error())
	}
	return msg
}

var errBadRequest = errors.New("bad request")

// maxJSONBody bounds JSON request bodies.
const maxJSONBody = 1 << 20

// decode reads exactly one JSON object into v, refusing unknown fields so
// that a typo is an error rather than a silently ignored option.
func decode(c *gin.Context, v any) error {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, maxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &maxErr):
			return err
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: the request body is empty; send a JSON object", errBadRequest)
		case errors.As(err, &syn):
			return fmt.Errorf("%w: malformed JSON at byte %d: %v", errBadRequest, syn.Offset, syn)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: field %q must be %s, not JSON %s", errBadRequest, typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("%w: %s", errBadRequest, strings.TrimPrefix(err.Error(), "json: "))
		default:
			return fmt.Errorf("%w: malformed JSON: %v", errBadRequest, err)
		}
	}
	if dec.More() {
		return fmt.Errorf("%w: the body holds more than one JSON value", errBadRequest)
	}
	return nil
}
