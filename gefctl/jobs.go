package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

func init() {
	register(
		command{"run", "SERVICE [--dataset D | --input NAME=D ...] [--param K=V ...] [--version V] [--no-reuse] [--wait] [--follow]", "run a service", cmdRun},
		command{"job", "ID", "show a job", cmdJob},
		command{"jobs", "[--state S] [--service S] [--dataset D] [--limit N] [--page TOKEN]", "list jobs, newest first", cmdJobs},
		command{"logs", "ID [-f]", "print a job's output; -f follows it live", cmdLogs},
		command{"cancel", "ID", "cancel a job", cmdCancel},
		command{"download", "ID [-o DIR]", "download a job's outputs and check their sha256", cmdDownload},
	)
}

type kvFlags map[string]string

func (k kvFlags) String() string { return fmt.Sprint(map[string]string(k)) }

func (k kvFlags) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	k[key] = val
	return nil
}

func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := flags("run")
	inputs, params := kvFlags{}, kvFlags{}
	version := fs.String("version", "", "service version (default: the newest not deprecated)")
	dataset := fs.String("dataset", "", "the dataset, for a service with one dataset input")
	fs.Var(inputs, "input", "bind an input: NAME=DATASET (repeatable)")
	fs.Var(params, "param", "a parameter: NAME=VALUE (repeatable)")
	noReuse := fs.Bool("no-reuse", false, "run even if an identical earlier run could be reused")
	wait := fs.Bool("wait", false, "wait for the job to end, showing its progress")
	follow := fs.Bool("follow", false, "print the job's output live while waiting")
	attempts := fs.Int("max-attempts", 0, "runs allowed when the job meets system errors (default: the manager's)")
	retryFailed := fs.Bool("retry-failed", false, "retry a non-zero exit of the service too")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl run SERVICE [--dataset D | --input NAME=D ...] [--param K=V ...] [--wait]")
	}
	req := gef.JobRequest{Service: pos[0], Version: *version, Dataset: *dataset, MaxAttempts: *attempts, RetryFailed: *retryFailed}
	if *noReuse {
		req.Reuse = new(bool)
	}
	if len(inputs) > 0 {
		req.Inputs = inputs
	}
	if len(params) > 0 {
		req.Params = map[string]any{}
		for k, v := range params {
			req.Params[k] = v
		}
	}
	j, err := e.c.Submit(ctx, req)
	if err != nil {
		return err
	}
	if !*wait && !*follow {
		if e.json {
			return e.printJSON(j)
		}
		fmt.Fprintln(e.out, j.ID)
		return nil
	}
	fmt.Fprintf(os.Stderr, "job %s: %s %s\n", j.ID, j.Service, j.Version)
	if *follow {
		go func() { _ = e.c.FollowLogs(ctx, j.ID, os.Stderr) }()
	}
	start := time.Now()
	j, err = e.c.Wait(ctx, j.ID, func(j gef.Job) {
		where := ""
		if j.Node != "" {
			where = " on " + j.Node
		}
		fmt.Fprintf(os.Stderr, "  %6.2fs  %s%s\n", time.Since(start).Seconds(), j.State, where)
	})
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(j)
	}
	printJob(e, j)
	if j.State != gef.JobSucceeded {
		return fmt.Errorf("job %s ended %s", j.ID, j.State)
	}
	return nil
}

func cmdJob(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("job"), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl job ID")
	}
	j, err := e.c.Job(ctx, pos[0])
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(j)
	}
	printJob(e, j)
	return nil
}

func printJob(e *env, j gef.Job) {
	fmt.Fprintf(e.out, "job      %s\nstate    %s", j.ID, j.State)
	if j.ExitCode != nil {
		fmt.Fprintf(e.out, " (exit %d)", *j.ExitCode)
	}
	if j.Reason != "" {
		fmt.Fprintf(e.out, ": %s", j.Reason)
	}
	if j.Status != "" {
		fmt.Fprintf(e.out, "\nstatus   %s", j.Status)
	}
	fmt.Fprintf(e.out, "\nservice  %s %s\nimage    %s\nnode     %s\nowner    %s\n", j.Service, j.Version, j.ImageDigest, j.Node, j.Owner)
	if len(j.Attempts) > 1 || j.MaxAttempts > 1 {
		fmt.Fprintf(e.out, "attempts %d of %d\n", len(j.Attempts), j.MaxAttempts)
		for _, a := range j.Attempts {
			fmt.Fprintf(e.out, "  %d  %-12s on %s", a.Attempt, a.State, a.Node)
			if a.Reason != "" {
				fmt.Fprintf(e.out, ": %s", a.Reason)
			}
			fmt.Fprintln(e.out)
		}
	}
	for in, ds := range j.Inputs {
		fmt.Fprintf(e.out, "input    %s = %s\n", in, ds)
	}
	fmt.Fprintf(e.out, "argv     %q\n", j.Argv)
	ts := j.Timestamps
	phase := func(name string, from, to *time.Time) {
		if from != nil && to != nil {
			fmt.Fprintf(e.out, "  %-14s %s\n", name, to.Sub(*from).Round(time.Millisecond))
		}
	}
	fmt.Fprintln(e.out, "timing")
	queued := ts.Queued
	phase("queued", &queued, ts.Assigned)
	phase("starting", ts.Assigned, first(ts.FetchingImage, ts.Running))
	phase("fetching image", ts.FetchingImage, ts.Running)
	phase("running", ts.Running, first(ts.Staging, ts.Finished))
	phase("staging", ts.Staging, ts.Finished)
	phase("total", &queued, ts.Finished)
	for _, o := range j.Outputs {
		fmt.Fprintf(e.out, "output   %s/%s  %s  sha256:%s\n", o.Name, o.Path, humanBytes(o.Size), o.SHA256)
	}
	printRepro(e, j)
}

func first(ts ...*time.Time) *time.Time {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

func cmdJobs(ctx context.Context, e *env, args []string) error {
	fs := flags("jobs")
	var f gef.JobFilter
	state := fs.String("state", "", "only jobs in this state")
	fs.StringVar(&f.Service, "service", "", "only jobs of this service")
	fs.StringVar(&f.Dataset, "dataset", "", "only jobs on this dataset")
	fs.StringVar(&f.Node, "node", "", "only jobs on this node")
	fs.StringVar(&f.Owner, "owner", "", "only jobs of this user (admins)")
	fs.IntVar(&f.Limit, "limit", 20, "jobs per page")
	fs.StringVar(&f.PageToken, "page", "", "the page token printed with the previous page")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	f.State = gef.JobState(*state)
	page, err := e.c.Jobs(ctx, f)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(page)
	}
	var rows [][]string
	for _, j := range page.Items {
		rows = append(rows, []string{j.ID, string(j.State), j.Service + " " + j.Version, j.Node, j.Owner,
			j.Timestamps.Queued.Local().Format("2006-01-02 15:04:05")})
	}
	e.table("ID\tSTATE\tSERVICE\tNODE\tOWNER\tSUBMITTED", rows)
	if page.NextPageToken != "" {
		fmt.Fprintf(e.out, "next page: gefctl jobs --page %s\n", page.NextPageToken)
	}
	return nil
}

func cmdLogs(ctx context.Context, e *env, args []string) error {
	fs := flags("logs")
	follow := fs.Bool("f", false, "follow the output until the job ends")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl logs ID [-f]")
	}
	if *follow {
		return e.c.FollowLogs(ctx, pos[0], e.out)
	}
	b, err := e.c.Logs(ctx, pos[0])
	if err != nil {
		return err
	}
	_, err = e.out.Write(b)
	return err
}

func cmdCancel(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("cancel"), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl cancel ID")
	}
	j, err := e.c.Cancel(ctx, pos[0])
	if err != nil {
		return err
	}
	if j.State.Final() {
		fmt.Fprintf(e.out, "job %s %s\n", j.ID, j.State)
	} else {
		fmt.Fprintf(e.out, "job %s is stopping on node %s\n", j.ID, j.Node)
	}
	return nil
}

func cmdDownload(ctx context.Context, e *env, args []string) error {
	fs := flags("download")
	dir := fs.String("o", "", "directory to write into (default ./ID)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl download ID [-o DIR]")
	}
	j, err := e.c.Job(ctx, pos[0])
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = j.ID
	}
	for _, o := range j.Outputs {
		dst := filepath.Join(*dir, o.Name, filepath.FromSlash(o.Path))
		// The manager refuses paths that leave the output, but check anyway:
		// this writes to the user's disk.
		if rel, err := filepath.Rel(*dir, dst); err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("output path %q leaves %s", o.Path, *dir)
		}
		if err := download(ctx, e, j.ID, o, dst); err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s  %s\n", o.SHA256, dst)
	}
	return nil
}

func download(ctx context.Context, e *env, id string, o gef.OutputFile, dst string) error {
	rc, err := e.c.Output(ctx, id, o.Name, o.Path)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst + ".part")
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != o.SHA256 || n != o.Size {
		return fmt.Errorf("%s/%s: got %d bytes with sha256 %s, the record says %d bytes and %s", o.Name, o.Path, n, sum, o.Size, o.SHA256)
	}
	return os.Rename(dst+".part", dst)
}
