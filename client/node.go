package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/coder/websocket"

	"github.com/eudat-gef/gef"
)

// The node protocol, used by gef-node.

// Register tells the manager what this node holds.
func (c *Client) Register(ctx context.Context, reg gef.NodeRegistration) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/node/register", reg, nil)
}

// Poll waits for work; it returns when there is some or after req.WaitMS.
func (c *Client) Poll(ctx context.Context, req gef.PollRequest) (gef.PollResponse, error) {
	var resp gef.PollResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/poll", req, &resp)
	return resp, err
}

// Report moves a job forward.
func (c *Client) Report(ctx context.Context, id string, r gef.JobReport) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/jobs/"+url.PathEscape(id)+"/report", r, &j)
	return j, err
}

// AppendLog sends one chunk of a job's output.
func (c *Client) AppendLog(ctx context.Context, id string, attempt, seq int, stream string, data []byte) error {
	p := fmt.Sprintf("/api/v1/node/jobs/%s/logs?attempt=%d&seq=%d&stream=%s", url.PathEscape(id), attempt, seq, url.QueryEscape(stream))
	return c.Do(ctx, http.MethodPost, p, bytes.NewReader(data), nil)
}

// UploadURLs asks for presigned URLs for the output files of a job's
// attempt.
func (c *Client) UploadURLs(ctx context.Context, id string, attempt int, files []gef.OutputFile) (map[string]string, error) {
	var resp gef.UploadResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/jobs/"+url.PathEscape(id)+"/uploads",
		gef.UploadRequest{Files: files, Attempt: attempt}, &resp)
	return resp.URLs, err
}

// ImageDownload asks where to fetch a published image's tarball from.
func (c *Client) ImageDownload(ctx context.Context, digest string) (gef.ImageDownload, error) {
	var d gef.ImageDownload
	err := c.Do(ctx, http.MethodGet, "/api/v1/node/images/"+url.PathEscape(digest), nil, &d)
	return d, err
}

// ReportBuild moves a build forward.
func (c *Client) ReportBuild(ctx context.Context, id string, r gef.BuildReport) (gef.Build, error) {
	var b gef.Build
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/builds/"+url.PathEscape(id)+"/report", r, &b)
	return b, err
}

// AppendBuildLog sends one chunk of a build's output.
func (c *Client) AppendBuildLog(ctx context.Context, id string, attempt, seq int, stream string, data []byte) error {
	p := fmt.Sprintf("/api/v1/node/builds/%s/logs?attempt=%d&seq=%d&stream=%s", url.PathEscape(id), attempt, seq, url.QueryEscape(stream))
	return c.Do(ctx, http.MethodPost, p, bytes.NewReader(data), nil)
}

// BuildUploadURL asks for a URL to upload a built image's tarball to.
func (c *Client) BuildUploadURL(ctx context.Context, id string) (string, error) {
	var resp struct {
		URL string `json:"url"`
	}
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/builds/"+url.PathEscape(id)+"/upload", nil, &resp)
	return resp.URL, err
}

// ReportSession moves a session forward.
func (c *Client) ReportSession(ctx context.Context, id string, r gef.SessionReport) (gef.Session, error) {
	var s gef.Session
	err := c.Do(ctx, http.MethodPost, "/api/v1/node/sessions/"+url.PathEscape(id)+"/report", r, &s)
	return s, err
}

// Tunnel opens the node's tunnel: a websocket to the manager, as a
// net.Conn that lives until ctx ends or either side closes it. The node
// serves its sessions' connections over it.
func (c *Client) Tunnel(ctx context.Context) (net.Conn, error) {
	u := c.base + "/api/v1/node/tunnel"
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h,
		CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			e := &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: err.Error()}
			return nil, e
		}
		return nil, fmt.Errorf("gef: tunnel: %w: %w", gef.ErrUnavailable, err)
	}
	return websocket.NetConn(ctx, ws, websocket.MessageBinary), nil
}

// Assignment re-reads the assignment of a job this node holds, for an agent
// that restarted and found the job's container.
func (c *Client) Assignment(ctx context.Context, id string) (gef.Assignment, error) {
	var a gef.Assignment
	err := c.Do(ctx, http.MethodGet, "/api/v1/node/jobs/"+url.PathEscape(id)+"/assignment", nil, &a)
	return a, err
}
