package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"

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

// Assignment re-reads the assignment of a job this node holds, for an agent
// that restarted and found the job's container.
func (c *Client) Assignment(ctx context.Context, id string) (gef.Assignment, error) {
	var a gef.Assignment
	err := c.Do(ctx, http.MethodGet, "/api/v1/node/jobs/"+url.PathEscape(id)+"/assignment", nil, &a)
	return a, err
}
