package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/eudat-gef/gef"
)

// StartSession starts a session of a long-lived HTTP service.
func (c *Client) StartSession(ctx context.Context, req gef.SessionRequest) (gef.Session, error) {
	var s gef.Session
	err := c.Do(ctx, http.MethodPost, "/api/v1/sessions", req, &s)
	return s, err
}

// Session returns a session.
func (c *Client) Session(ctx context.Context, id string) (gef.Session, error) {
	var s gef.Session
	err := c.Do(ctx, http.MethodGet, "/api/v1/sessions/"+url.PathEscape(id), nil, &s)
	return s, err
}

// Sessions lists one page of sessions, newest first.
func (c *Client) Sessions(ctx context.Context, f gef.SessionFilter) (gef.Page[gef.Session], error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", string(f.State))
	set("service", f.Service)
	set("name", f.Name)
	set("node", f.Node)
	set("owner", f.Owner)
	set("page_token", f.PageToken)
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var page gef.Page[gef.Session]
	err := c.Do(ctx, http.MethodGet, "/api/v1/sessions?"+q.Encode(), nil, &page)
	return page, err
}

// StopSession stops a session. A running session ends once its node has
// stopped it; WaitSession follows it there.
func (c *Client) StopSession(ctx context.Context, id string) (gef.Session, error) {
	var s gef.Session
	err := c.Do(ctx, http.MethodPost, "/api/v1/sessions/"+url.PathEscape(id)+"/stop", nil, &s)
	return s, err
}

// SessionLink is a short-lived URL that signs a browser in to a session.
type SessionLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionLink makes a link that signs a browser in to a session as the
// client's user.
func (c *Client) SessionLink(ctx context.Context, id string) (SessionLink, error) {
	var l SessionLink
	err := c.Do(ctx, http.MethodPost, "/api/v1/sessions/"+url.PathEscape(id)+"/link", nil, &l)
	return l, err
}

// WaitSession polls a session until done says it is where the caller
// wants it, or ctx ends.
func (c *Client) WaitSession(ctx context.Context, id string, done func(gef.Session) bool) (gef.Session, error) {
	for wait := 50 * time.Millisecond; ; wait = min(wait*2, time.Second) {
		s, err := c.Session(ctx, id)
		if err != nil || done(s) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// CallResult is the answer to a synchronous run.
type CallResult struct {
	Job gef.Job `json:"job"`
	// Done is false when the job outlived the wait; follow Job.ID.
	Done bool `json:"done"`
	// Stdout is the job's standard output: its JSON value (decoded as
	// encoding/json does into an any) when the output is JSON, else a
	// string.
	Stdout          any  `json:"stdout"`
	StdoutIsJSON    bool `json:"stdout_is_json"`
	StdoutTruncated bool `json:"stdout_truncated"`
}

// Call runs a service as a job and waits up to wait (whole seconds, at most
// 300) for it to end, returning its final state and standard output, or,
// with Done false, the job to follow if it outlives the wait. req.Service
// names the service.
func (c *Client) Call(ctx context.Context, req gef.JobRequest, wait time.Duration) (CallResult, error) {
	body := map[string]any{}
	if req.Version != "" {
		body["version"] = req.Version
	}
	if len(req.Inputs) > 0 {
		body["inputs"] = req.Inputs
	}
	if req.Dataset != "" {
		body["dataset"] = req.Dataset
	}
	if len(req.Params) > 0 {
		body["params"] = req.Params
	}
	var res CallResult
	p := fmt.Sprintf("/api/v1/services/%s/run?wait=%d", url.PathEscape(req.Service), int(wait/time.Second))
	err := c.Do(ctx, http.MethodPost, p, body, &res)
	return res, err
}
