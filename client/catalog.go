package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"time"

	"github.com/eudat-gef/gef"
)

// Publishing and builds.

// doStatus sends a request, decodes a JSON answer into out and returns the
// status code, for calls whose success codes mean different things.
func (c *Client) doStatus(ctx context.Context, method, path string, body, out any) (int, error) {
	resp, err := c.send(ctx, method, path, body, "")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("gef: decode %s %s: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

// multipartFile streams r as the one file field of a multipart body,
// without holding it in memory.
func multipartFile(field, filename string, r io.Reader) typedBody {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile(field, filename)
		if err == nil {
			_, err = io.Copy(part, r)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	return typedBody{r: pr, contentType: mw.FormDataContentType()}
}

// PublishTarball publishes the image in a `docker save` tarball, which is
// streamed to the manager. created is false when the same image was
// already published under its name and version.
func (c *Client) PublishTarball(ctx context.Context, tarball io.Reader) (svc gef.Service, created bool, err error) {
	code, err := c.doStatus(ctx, http.MethodPost, "/api/v1/services", multipartFile("image", "image.tar", tarball), &svc)
	return svc, code == http.StatusCreated, err
}

// PublishRef publishes an image from a registry, REGISTRY/REPO:TAG or
// REGISTRY/REPO@sha256:…, resolved to its digest by the manager.
func (c *Client) PublishRef(ctx context.Context, ref string) (svc gef.Service, created bool, err error) {
	code, err := c.doStatus(ctx, http.MethodPost, "/api/v1/services", map[string]string{"image_ref": ref}, &svc)
	return svc, code == http.StatusCreated, err
}

// DeleteService removes a service version that no job references.
func (c *Client) DeleteService(ctx context.Context, name, version string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/services/"+url.PathEscape(name)+"/"+url.PathEscape(version), nil, nil)
}

// SubmitBuild starts a build from a spec. reused is true when an earlier
// successful build of the same spec is returned instead.
func (c *Client) SubmitBuild(ctx context.Context, spec gef.BuildSpec) (b gef.Build, reused bool, err error) {
	code, err := c.doStatus(ctx, http.MethodPost, "/api/v1/builds", spec, &b)
	return b, code == http.StatusOK, err
}

// SubmitBuildContext starts a build from a context: a tar, gzipped or not,
// with a Dockerfile at its root. reused is as for SubmitBuild.
func (c *Client) SubmitBuildContext(ctx context.Context, contextTar io.Reader) (b gef.Build, reused bool, err error) {
	code, err := c.doStatus(ctx, http.MethodPost, "/api/v1/builds", multipartFile("context", "context.tar", contextTar), &b)
	return b, code == http.StatusOK, err
}

// Build returns a build.
func (c *Client) Build(ctx context.Context, id string) (gef.Build, error) {
	var b gef.Build
	err := c.Do(ctx, http.MethodGet, "/api/v1/builds/"+url.PathEscape(id), nil, &b)
	return b, err
}

// BuildFilter selects builds for a list; empty fields match everything.
type BuildFilter struct {
	State     gef.BuildState
	Owner     string
	Limit     int
	PageToken string
}

// Builds lists one page of builds, newest first.
func (c *Client) Builds(ctx context.Context, f BuildFilter) (gef.Page[gef.Build], error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", string(f.State))
	}
	if f.Owner != "" {
		q.Set("owner", f.Owner)
	}
	if f.PageToken != "" {
		q.Set("page_token", f.PageToken)
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var page gef.Page[gef.Build]
	err := c.Do(ctx, http.MethodGet, "/api/v1/builds?"+q.Encode(), nil, &page)
	return page, err
}

// BuildLogs returns a build's output so far.
func (c *Client) BuildLogs(ctx context.Context, id string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/builds/"+url.PathEscape(id)+"/logs", nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// FollowBuildLogs copies a build's output to w, live, until the build ends.
func (c *Client) FollowBuildLogs(ctx context.Context, id string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/builds/"+url.PathEscape(id)+"/logs?follow=true", nil, "")
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

// WaitBuild follows a build until it ends or ctx does, calling progress
// (if not nil) on each change of state.
func (c *Client) WaitBuild(ctx context.Context, id string, progress func(gef.Build)) (gef.Build, error) {
	last := gef.BuildState("")
	for {
		b, err := c.Build(ctx, id)
		if err != nil {
			return b, err
		}
		if b.State != last && progress != nil {
			progress(b)
		}
		last = b.State
		if b.State.Final() {
			return b, nil
		}
		// The followed log ends when the build does.
		fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_ = c.FollowBuildLogs(fctx, id, io.Discard)
		cancel()
		if err := ctx.Err(); err != nil {
			return b, err
		}
	}
}
