package docker

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

type imageAPI interface {
	ImageInspect(ctx context.Context, id string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, opts build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageRemove(ctx context.Context, id string, opts image.RemoveOptions) ([]image.DeleteResponse, error)
	ImageSave(ctx context.Context, ids []string, opts ...client.ImageSaveOption) (io.ReadCloser, error)
}

// Image describes a local image; the error wraps gef.ErrNotFound when the
// engine does not have it.
func (r *Runtime) Image(ctx context.Context, id string) (agent.ImageInfo, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	return r.image(ctx, id)
}

func (r *Runtime) image(ctx context.Context, id string) (agent.ImageInfo, error) {
	img, err := r.api.ImageInspect(ctx, id)
	if err != nil {
		return agent.ImageInfo{}, wrap(err, "image %s", id)
	}
	info := agent.ImageInfo{ID: img.ID, RepoTags: img.RepoTags, Size: img.Size}
	if c := img.Config; c != nil {
		info.Labels = c.Labels
		info.Entrypoint = c.Entrypoint
		info.Cmd = c.Cmd
		info.User = c.User
	}
	return info, nil
}

// Images lists the local images carrying labelKey, or all if it is empty.
func (r *Runtime) Images(ctx context.Context, labelKey string) ([]agent.ImageInfo, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	opts := image.ListOptions{}
	if labelKey != "" {
		opts.Filters = filters.NewArgs(filters.Arg("label", labelKey))
	}
	list, err := r.api.ImageList(ctx, opts)
	if err != nil {
		return nil, wrap(err, "list images")
	}
	infos := make([]agent.ImageInfo, 0, len(list))
	for _, s := range list {
		// The summary lacks the config (entrypoint, user), so inspect.
		info, err := r.image(ctx, s.ID)
		if isNotFound(err) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// LoadImage loads a `docker save` tarball and returns the IDs of the images
// it held, whether they were saved by ID or by tag.
func (r *Runtime) LoadImage(ctx context.Context, tarball io.Reader) ([]string, error) {
	ctx, cancel := r.long(ctx)
	defer cancel()
	resp, err := r.api.ImageLoad(ctx, tarball, client.ImageLoadWithQuiet(false))
	if err != nil {
		return nil, wrap(err, "load image")
	}
	defer resp.Body.Close()

	var lines []string
	if resp.JSON {
		err = readStream(resp.Body, func(m *streamMessage) error {
			lines = append(lines, strings.Split(m.Stream, "\n")...)
			return nil
		})
	} else {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		err = sc.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("docker: load image: %w", err)
	}

	var ids []string
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if id, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
			ids = appendNew(ids, id)
		} else if ref, ok := strings.CutPrefix(line, "Loaded image: "); ok {
			// Saved by tag: the stream names the tag, not the ID.
			info, err := r.image(ctx, ref)
			if err != nil {
				return nil, err
			}
			ids = appendNew(ids, info.ID)
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("docker: load image: the engine reported no image loaded")
	}
	return ids, nil
}

func appendNew(ids []string, id string) []string {
	if slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

// Build builds an image from a context tarball with the classic builder,
// streaming its output to log, and returns the image ID.
func (r *Runtime) Build(ctx context.Context, contextTar io.Reader, tag string, log io.Writer) (string, error) {
	ctx, cancel := r.long(ctx)
	defer cancel()
	if log == nil {
		log = io.Discard
	}
	opts := build.ImageBuildOptions{
		// BuildKit would need a session; the classic builder is what 20.10
		// gives API clients anyway, so ask for it whatever the engine.
		Version:     build.BuilderV1,
		Remove:      true,
		ForceRemove: true, // intermediate containers go even if a step fails
	}
	if tag != "" {
		opts.Tags = []string{tag}
	}
	resp, err := r.api.ImageBuild(ctx, contextTar, opts)
	if err != nil {
		return "", wrap(err, "build %s", tag)
	}
	defer resp.Body.Close()

	var id, built string
	err = readStream(resp.Body, func(m *streamMessage) error {
		if m.Stream != "" {
			if _, err := io.WriteString(log, m.Stream); err != nil {
				return fmt.Errorf("build log: %w", err)
			}
			if s, ok := strings.CutPrefix(strings.TrimSpace(m.Stream), "Successfully built "); ok {
				built = s
			}
		}
		var aux struct{ ID string }
		if len(m.Aux) > 0 && json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
			id = aux.ID
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("docker: build %s: %w", tag, err)
	}
	if id != "" {
		return id, nil
	}
	// Older engines give no aux ID; the short ID or the tag names the image.
	ref := cmp.Or(built, tag)
	if ref == "" {
		return "", fmt.Errorf("docker: build: the engine reported no image ID")
	}
	info, err := r.image(ctx, ref)
	if err != nil {
		return "", err
	}
	return info.ID, nil
}

// SaveImage writes the image with ID id to w as a `docker save` tarball.
// Only an image ID is accepted: a tag would name whatever it points to now.
func (r *Runtime) SaveImage(ctx context.Context, id string, w io.Writer) error {
	if !imageID.MatchString(id) {
		return fmt.Errorf("docker: save image: %q is not an image ID (sha256:<64 hex>): %w", id, gef.ErrInvalid)
	}
	ctx, cancel := r.long(ctx)
	defer cancel()
	// Inspect first: the engine answers an unknown ID with a stream error
	// only after the response has begun.
	if _, err := r.image(ctx, id); err != nil {
		return err
	}
	rc, err := r.api.ImageSave(ctx, []string{id})
	if err != nil {
		return wrap(err, "save image %s", id)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("docker: save image %s: %w", id, err)
	}
	return nil
}

// RemoveImage deletes a local image. It does not force: an image still used
// by a container, or tagged in several repositories, is a conflict.
func (r *Runtime) RemoveImage(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	// Untagged parent images stay: they may be another image's base.
	if _, err := r.api.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: false}); err != nil {
		return wrap(err, "remove image %s", id)
	}
	return nil
}

// streamMessage is one line of the engine's JSON progress stream.
type streamMessage struct {
	Stream      string          `json:"stream"`
	Aux         json.RawMessage `json:"aux"`
	Error       string          `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readStream decodes a JSON progress stream, handing each message to fn and
// turning an error message from the engine into an error.
func readStream(r io.Reader, fn func(*streamMessage) error) error {
	dec := json.NewDecoder(r)
	for {
		var m streamMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read stream: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if err := fn(&m); err != nil {
			return err
		}
	}
}
