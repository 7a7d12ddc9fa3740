package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

func init() {
	register(
		command{"publish", "--tarball FILE | --ref REGISTRY/REPO:TAG|@sha256:… | --image-id ID",
			"publish a service image: a docker save tarball (- for stdin), a registry image, or an image a node has", cmdPublish},
		command{"delete", "NAME VERSION", "delete a service version that no job references", cmdDelete},
		command{"build", "DIR | SPEC.json | CONTEXT.tar[.gz] [--follow] [--wait]",
			"build and publish a service: a directory with a Dockerfile, a build spec, or a context archive", cmdBuild},
		command{"builds", "[ID]", "list builds, or show one", cmdBuilds},
		command{"build-logs", "ID [-f]", "print a build's output; -f follows it live", cmdBuildLogs},
	)
}

func cmdPublish(ctx context.Context, e *env, args []string) error {
	fs := flags("publish")
	tarball := fs.String("tarball", "", "a docker save tarball of one image; - reads it from stdin")
	ref := fs.String("ref", "", "an image in a registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:…")
	imageID := fs.String("image-id", "", "the image ID (sha256:…) of an image a node holds")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	given := 0
	for _, v := range []string{*tarball, *ref, *imageID} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return usagef("usage: gefctl publish --tarball FILE | --ref REF | --image-id ID (exactly one)")
	}
	var (
		svc     gef.Service
		created = true
		err     error
	)
	switch {
	case *tarball != "":
		var r io.Reader = os.Stdin
		if *tarball != "-" {
			f, err := os.Open(*tarball)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		svc, created, err = e.c.PublishTarball(ctx, r)
	case *ref != "":
		svc, created, err = e.c.PublishRef(ctx, *ref)
	default:
		svc, err = e.c.RegisterImage(ctx, *imageID)
	}
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(svc)
	}
	verb := "published"
	if !created {
		verb = "already published"
	}
	fmt.Fprintf(e.out, "%s %s %s (%s)\n", verb, svc.Name, svc.Version, svc.Digest)
	if svc.RepoDigest != "" {
		fmt.Fprintf(e.out, "from %s\n", svc.RepoDigest)
	}
	return nil
}

func cmdDelete(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("delete"), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("usage: gefctl delete NAME VERSION")
	}
	if err := e.c.DeleteService(ctx, pos[0], pos[1]); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "deleted %s %s\n", pos[0], pos[1])
	return nil
}

func cmdBuild(ctx context.Context, e *env, args []string) error {
	fs := flags("build")
	follow := fs.Bool("follow", false, "print the build's output live and wait for it to end")
	wait := fs.Bool("wait", false, "wait for the build to end")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl build DIR | SPEC.json | CONTEXT.tar[.gz] [--follow]")
	}
	src := pos[0]
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	var (
		b      gef.Build
		reused bool
	)
	switch {
	case fi.IsDir():
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarDir(src, pw)) }()
		b, reused, err = e.c.SubmitBuildContext(ctx, pr)
		pr.Close()
	case strings.HasSuffix(src, ".json"):
		var spec gef.BuildSpec
		data, rerr := os.ReadFile(src)
		if rerr != nil {
			return rerr
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			return fmt.Errorf("%s: not a build spec: %w", src, err)
		}
		b, reused, err = e.c.SubmitBuild(ctx, spec)
	default:
		f, oerr := os.Open(src)
		if oerr != nil {
			return oerr
		}
		defer f.Close()
		b, reused, err = e.c.SubmitBuildContext(ctx, f)
	}
	if err != nil {
		return err
	}
	if reused {
		fmt.Fprintf(os.Stderr, "an identical build succeeded before; reusing build %s\n", b.ID)
	} else {
		fmt.Fprintf(os.Stderr, "build %s queued\n", b.ID)
	}
	if !reused && (*follow || *wait) {
		if *follow {
			if err := e.c.FollowBuildLogs(ctx, b.ID, os.Stderr); err != nil {
				return err
			}
		}
		if b, err = e.c.WaitBuild(ctx, b.ID, nil); err != nil {
			return err
		}
	}
	if e.json {
		return e.printJSON(b)
	}
	printBuild(e, b)
	if b.State == gef.BuildFailed {
		return errors.New("the build failed")
	}
	return nil
}

func printBuild(e *env, b gef.Build) {
	fmt.Fprintf(e.out, "build %s: %s\n", b.ID, b.State)
	if b.Service != "" {
		fmt.Fprintf(e.out, "  service %s %s (%s)\n", b.Service, b.Version, b.ImageDigest)
	}
	if b.Node != "" {
		fmt.Fprintf(e.out, "  on node %s\n", b.Node)
	}
	if b.Reason != "" {
		fmt.Fprintf(e.out, "  reason: %s\n", b.Reason)
	}
}

// tarDir writes dir as a build context, skipping .git.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, devices: not part of a context
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func cmdBuilds(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("builds"), args)
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		b, err := e.c.Build(ctx, pos[0])
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(b)
		}
		printBuild(e, b)
		return nil
	}
	page, err := e.c.Builds(ctx, client.BuildFilter{})
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(page)
	}
	var rows [][]string
	for _, b := range page.Items {
		rows = append(rows, []string{b.ID, string(b.State), b.Kind, strings.TrimSpace(b.Service + " " + b.Version), b.Node})
	}
	e.table("ID\tSTATE\tKIND\tSERVICE\tNODE", rows)
	return nil
}

func cmdBuildLogs(ctx context.Context, e *env, args []string) error {
	fs := flags("build-logs")
	follow := fs.Bool("f", false, "follow the output live until the build ends")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl build-logs ID [-f]")
	}
	if *follow {
		return e.c.FollowBuildLogs(ctx, pos[0], e.out)
	}
	b, err := e.c.BuildLogs(ctx, pos[0])
	if err != nil {
		return err
	}
	_, err = e.out.Write(b)
	return err
}
