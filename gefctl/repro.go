package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/eudat-gef/gef"
)

func init() {
	register(
		command{"rerun", "ID [--accept-changed-data] [--wait]", "run a job again exactly and compare its outputs with the original's", cmdRerun},
		command{"provenance", "ID [--record] [--from FILE [--accept-changed-data] [--wait]]",
			"print a job's Workflow Run RO-Crate; --from runs again the job a crate describes", cmdProvenance},
		command{"cite", "ID [--format bibtex|csl]", "print a citation of a job", cmdCite},
		command{"visibility", "ID public|private", "let anyone read a job at its URL, or only you", cmdVisibility},
	)
}

func cmdRerun(ctx context.Context, e *env, args []string) error {
	fs := flags("rerun")
	accept := fs.Bool("accept-changed-data", false, "run even if a dataset changed since the job ran (recorded in the rerun)")
	wait := fs.Bool("wait", false, "wait for the rerun to end and print its verdict")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl rerun ID [--accept-changed-data] [--wait]")
	}
	j, err := e.c.Rerun(ctx, pos[0], *accept)
	if err != nil {
		return err
	}
	return e.finish(ctx, j, *wait)
}

// finish prints a new job, or waits for it and prints how it ended.
func (e *env) finish(ctx context.Context, j gef.Job, wait bool) error {
	if !wait {
		if e.json {
			return e.printJSON(j)
		}
		fmt.Fprintln(e.out, j.ID)
		return nil
	}
	fmt.Fprintf(os.Stderr, "job %s: %s %s\n", j.ID, j.Service, j.Version)
	start := time.Now()
	j, err := e.c.Wait(ctx, j.ID, func(j gef.Job) {
		fmt.Fprintf(os.Stderr, "  %6.2fs  %s\n", time.Since(start).Seconds(), j.State)
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

func cmdProvenance(ctx context.Context, e *env, args []string) error {
	fs := flags("provenance")
	record := fs.Bool("record", false, "print GEF's provenance record instead of the RO-Crate")
	from := fs.String("from", "", "run again the job the crate in FILE (ro-crate-metadata.json) describes")
	accept := fs.Bool("accept-changed-data", false, "with --from: run even if a dataset changed")
	wait := fs.Bool("wait", false, "with --from: wait for the run and print its verdict")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *from != "" {
		if len(pos) != 0 {
			return usagef("usage: gefctl provenance --from FILE [--accept-changed-data] [--wait]")
		}
		crate, err := os.ReadFile(*from)
		if err != nil {
			return err
		}
		j, err := e.c.FromProvenance(ctx, crate, *accept)
		if err != nil {
			return err
		}
		return e.finish(ctx, j, *wait)
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl provenance ID [--record]")
	}
	if *record {
		rec, err := e.c.ProvenanceRecord(ctx, pos[0])
		if err != nil {
			return err
		}
		return e.printJSON(rec)
	}
	b, err := e.c.Provenance(ctx, pos[0])
	if err != nil {
		return err
	}
	_, err = e.out.Write(b)
	return err
}

func cmdCite(ctx context.Context, e *env, args []string) error {
	fs := flags("cite")
	format := fs.String("format", "bibtex", "bibtex or csl (CSL-JSON)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl cite ID [--format bibtex|csl]")
	}
	b, err := e.c.Citation(ctx, pos[0], *format)
	if err != nil {
		return err
	}
	_, err = e.out.Write(b)
	return err
}

func cmdVisibility(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("visibility"), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("usage: gefctl visibility ID public|private")
	}
	j, err := e.c.SetVisibility(ctx, pos[0], gef.Visibility(pos[1]))
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(j)
	}
	fmt.Fprintf(e.out, "job %s is %s: %s\n", j.ID, j.Visibility, j.URL)
	return nil
}

// printRepro shows what a job records of its reproducibility.
func printRepro(e *env, j gef.Job) {
	inputs := make([]string, 0, len(j.DatasetDigests))
	for in := range j.DatasetDigests {
		inputs = append(inputs, in)
	}
	sort.Strings(inputs)
	for _, in := range inputs {
		fmt.Fprintf(e.out, "data     %s = %s %s\n", in, j.Inputs[in], j.DatasetDigests[in])
	}
	if j.ReuseOf != nil {
		fmt.Fprintf(e.out, "reused   the results of job %s; nothing ran\n", *j.ReuseOf)
	}
	if j.RerunOf != nil {
		fmt.Fprintf(e.out, "rerun of %s", *j.RerunOf)
		if j.AcceptChangedData {
			fmt.Fprint(e.out, " (changed data accepted)")
		}
		fmt.Fprintln(e.out)
	}
	if j.Verdict != nil {
		fmt.Fprintf(e.out, "verdict  %s\n", *j.Verdict)
		for _, d := range j.Differences {
			fmt.Fprintf(e.out, "  %-8s %s\n", d.Change, d.Path)
		}
	} else if j.RerunOf != nil && j.State.Final() {
		fmt.Fprintln(e.out, "verdict  none: the rerun did not run to its end")
	}
	fmt.Fprintf(e.out, "access   %s", j.Visibility)
	if j.URL != "" {
		fmt.Fprintf(e.out, "  %s", j.URL)
	}
	fmt.Fprintln(e.out)
}
