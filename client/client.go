// Package client is a typed Go client for the GEF manager's HTTP API. The
// gefctl command, the gef-node agent and the end-to-end tests all use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

// Client talks to one manager.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client, e.g. for TLS settings. Long polls and
// followed logs need it to have no overall timeout; calls take a context.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New makes a client for the manager at baseURL (e.g. http://127.0.0.1:8080)
// that authenticates with token.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an error answer from the manager.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
	Details []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"details"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("gef: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is maps HTTP statuses to the gef sentinels, so callers can use errors.Is.
func (e *Error) Is(target error) bool {
	switch target {
	case gef.ErrNotFound:
		return e.Status == http.StatusNotFound
	case gef.ErrConflict:
		return e.Status == http.StatusConflict
	case gef.ErrInvalid:
		return e.Status == http.StatusUnprocessableEntity || e.Status == http.StatusBadRequest
	case gef.ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case gef.ErrForbidden:
		return e.Status == http.StatusForbidden
	case gef.ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway
	}
	return false
}

// Do sends a request and decodes a JSON answer into out, if out is not nil.
// body may be nil, an io.Reader sent as is, or a value sent as JSON.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("gef: decode %s %s: %w", method, path, err)
	}
	return nil
}

// typedBody is a request body with its content type.
type typedBody struct {
	r           io.Reader
	contentType string
}

// send sends a request and returns the response if its status is 2xx.
func (c *Client) send(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var (
		r           io.Reader
		contentType string
	)
	switch b := body.(type) {
	case nil:
	case typedBody:
		r, contentType = b.r, b.contentType
	case io.Reader:
		r, contentType = b, "application/octet-stream"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("gef: encode request: %w", err)
		}
		r, contentType = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("gef: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gef: %s %s: %w: %w", method, path, gef.ErrUnavailable, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	var wrapper struct {
		Error *Error `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &wrapper) == nil && wrapper.Error != nil {
		wrapper.Error.Status = resp.StatusCode
		e = wrapper.Error
	} else {
		e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(b))
	}
	return nil, e
}

// Services lists the catalog, or every version of one service.
func (c *Client) Services(ctx context.Context, name string) ([]gef.Service, error) {
	var page gef.Page[gef.Service]
	err := c.Do(ctx, http.MethodGet, "/api/v1/services?name="+url.QueryEscape(name), nil, &page)
	return page.Items, err
}

// Service returns a version of a service; "" means the newest runnable one.
func (c *Client) Service(ctx context.Context, name, version string) (gef.Service, error) {
	var svc gef.Service
	p := "/api/v1/services/" + url.PathEscape(name)
	if version != "" {
		p += "/" + url.PathEscape(version)
	}
	err := c.Do(ctx, http.MethodGet, p, nil, &svc)
	return svc, err
}

// RegisterImage publishes an image a node already has, by image ID.
func (c *Client) RegisterImage(ctx context.Context, imageID string) (gef.Service, error) {
	var svc gef.Service
	err := c.Do(ctx, http.MethodPost, "/api/v1/services", map[string]string{"image_id": imageID}, &svc)
	return svc, err
}

// Deprecate hides a service version from new runs, or shows it again.
func (c *Client) Deprecate(ctx context.Context, name, version string, deprecated bool) (gef.Service, error) {
	var svc gef.Service
	err := c.Do(ctx, http.MethodPost, "/api/v1/services/"+url.PathEscape(name)+"/"+url.PathEscape(version)+"/deprecate",
		map[string]bool{"deprecated": deprecated}, &svc)
	return svc, err
}

// AllowNetwork lets a service version reach the network, or not (admin).
func (c *Client) AllowNetwork(ctx context.Context, name, version string, allow bool) (gef.Service, error) {
	var svc gef.Service
	err := c.Do(ctx, http.MethodPost, "/api/v1/services/"+url.PathEscape(name)+"/"+url.PathEscape(version)+"/network",
		map[string]bool{"allow": allow}, &svc)
	return svc, err
}

// Datasets lists the datasets.
func (c *Client) Datasets(ctx context.Context) ([]gef.Dataset, error) {
	var page gef.Page[gef.Dataset]
	err := c.Do(ctx, http.MethodGet, "/api/v1/datasets", nil, &page)
	return page.Items, err
}

// Dataset returns one dataset.
func (c *Client) Dataset(ctx context.Context, name string) (gef.Dataset, error) {
	var d gef.Dataset
	err := c.Do(ctx, http.MethodGet, "/api/v1/datasets/"+url.PathEscape(name), nil, &d)
	return d, err
}

// SetDatasetAccess replaces who may use a dataset (admin).
func (c *Client) SetDatasetAccess(ctx context.Context, name string, a gef.DatasetAccess) (gef.Dataset, error) {
	var d gef.Dataset
	err := c.Do(ctx, http.MethodPut, "/api/v1/datasets/"+url.PathEscape(name)+"/access", a, &d)
	return d, err
}

// CreateGroup adds a group (admin).
func (c *Client) CreateGroup(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/groups", map[string]string{"name": name}, nil)
}

// SetGroupMember adds a user to a group, or removes it (admin).
func (c *Client) SetGroupMember(ctx context.Context, group, user string, member bool) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/groups/"+url.PathEscape(group)+"/members",
		map[string]any{"user": user, "member": member}, nil)
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]gef.Node, error) {
	var page gef.Page[gef.Node]
	err := c.Do(ctx, http.MethodGet, "/api/v1/nodes", nil, &page)
	return page.Items, err
}

// SetNodeState drains a node or makes it ready.
func (c *Client) SetNodeState(ctx context.Context, name string, state gef.NodeState) (gef.Node, error) {
	var n gef.Node
	err := c.Do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(name)+"/state", map[string]gef.NodeState{"state": state}, &n)
	return n, err
}

// Submit queues a job.
func (c *Client) Submit(ctx context.Context, req gef.JobRequest) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, "/api/v1/jobs", req, &j)
	return j, err
}

// Job returns a job.
func (c *Client) Job(ctx context.Context, id string) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// Jobs lists one page of jobs.
func (c *Client) Jobs(ctx context.Context, f gef.JobFilter) (gef.Page[gef.Job], error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", string(f.State))
	set("service", f.Service)
	set("dataset", f.Dataset)
	set("node", f.Node)
	set("owner", f.Owner)
	set("page_token", f.PageToken)
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var page gef.Page[gef.Job]
	err := c.Do(ctx, http.MethodGet, "/api/v1/jobs?"+q.Encode(), nil, &page)
	return page, err
}

// SetReaders names who may read a job besides its owner.
func (c *Client) SetReaders(ctx context.Context, id string, r gef.Readers) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPut, "/api/v1/jobs/"+url.PathEscape(id)+"/readers", r, &j)
	return j, err
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id string) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, &j)
	return j, err
}

// Wait follows a job until it reaches a final state or ctx ends, calling
// progress (if not nil) on each change of state. It long-polls the job's
// log stream, so it learns of the end at once rather than on a poll tick.
func (c *Client) Wait(ctx context.Context, id string, progress func(gef.Job)) (gef.Job, error) {
	last := gef.JobState("")
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if j.State != last && progress != nil {
			progress(j)
		}
		last = j.State
		if j.State.Final() {
			return j, nil
		}
		// The followed log ends when the job ends; a state change before
		// that is caught by the bounded wait.
		fctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_ = c.FollowLogs(fctx, id, io.Discard)
		cancel()
		if err := ctx.Err(); err != nil {
			return j, err
		}
	}
}

// Logs returns a job's whole output so far.
func (c *Client) Logs(ctx context.Context, id string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/logs", nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// FollowLogs copies a job's output to w, live, until the job ends.
func (c *Client) FollowLogs(ctx context.Context, id string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/logs?follow=true", nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Output opens one output file of a job.
func (c *Client) Output(ctx context.Context, id, name, path string) (io.ReadCloser, error) {
	p := "/api/v1/jobs/" + url.PathEscape(id) + "/outputs/" + url.PathEscape(name) + "/" + escapePath(path)
	resp, err := c.send(ctx, http.MethodGet, p, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// CreateUser adds a user (admin). An empty password makes a user who signs
// in with API tokens only.
func (c *Client) CreateUser(ctx context.Context, name string, role gef.Role, password string) (gef.User, error) {
	var u gef.User
	body := map[string]any{"name": name, "role": role}
	if password != "" {
		body["password"] = password
	}
	err := c.Do(ctx, http.MethodPost, "/api/v1/users", body, &u)
	return u, err
}

// Session is a signed-in session.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      gef.User  `json:"user"`
}

// Login trades a user name and password for a short-lived session token.
func (c *Client) Login(ctx context.Context, name, password string) (Session, error) {
	var s Session
	err := c.Do(ctx, http.MethodPost, "/api/v1/login", map[string]string{"name": name, "password": password}, &s)
	return s, err
}

// SetPassword sets your password, or another user's (admin).
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/password", map[string]string{"user": user, "password": password}, nil)
}

// NewToken is a created API token; Secret is its only copy.
type NewToken struct {
	gef.Token
	Secret string `json:"token"`
}

// CreateToken makes an API token for user ("" for yourself).
func (c *Client) CreateToken(ctx context.Context, user, name string, ttl time.Duration) (NewToken, error) {
	var t NewToken
	err := c.Do(ctx, http.MethodPost, "/api/v1/tokens",
		map[string]any{"user": user, "name": name, "ttl_seconds": int64(ttl / time.Second)}, &t)
	return t, err
}

// RevokeToken revokes an API token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// IsRetryable reports whether a failed call may succeed if repeated: the
// manager could not be reached or was briefly unavailable.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return errors.Is(err, gef.ErrUnavailable)
}
