package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/eudat-gef/gef"
)

func init() {
	register(
		command{"services", "[NAME]", "list the catalog, or the versions of one service", cmdServices},
		command{"versions", "NAME", "list the versions of a service", cmdServices},
		command{"service", "NAME [VERSION]", "show a service: inputs, outputs, parameters", cmdService},
		command{"deprecate", "NAME VERSION [--undo]", "hide a version from new runs", cmdDeprecate},
		command{"network", "NAME VERSION [--deny]", "let a service version reach the network (admin)", cmdNetwork},
		command{"datasets", "", "list datasets and where they are", cmdDatasets},
		command{"nodes", "", "list node agents", cmdNodes},
		command{"drain", "NODE [--undo]", "stop giving a node new jobs", cmdDrain},
	)
}

func cmdServices(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("services"), args)
	if err != nil {
		return err
	}
	name := ""
	if len(pos) > 0 {
		name = pos[0]
	}
	list, err := e.c.Services(ctx, name)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(list)
	}
	var rows [][]string
	for _, s := range list {
		state := ""
		if s.Deprecated {
			state = "deprecated"
		}
		rows = append(rows, []string{s.Name, s.Version, short(s.Digest), state, s.Title})
	}
	e.table("NAME\tVERSION\tDIGEST\tSTATE\tTITLE", rows)
	return nil
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

func cmdService(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("service"), args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("usage: gefctl service NAME [VERSION]")
	}
	version := ""
	if len(pos) == 2 {
		version = pos[1]
	}
	s, err := e.c.Service(ctx, pos[0], version)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(s)
	}
	fmt.Fprintf(e.out, "%s %s — %s\n%s\ndigest: %s\n", s.Name, s.Version, s.Title, s.Description, s.Digest)
	for _, in := range s.Inputs {
		fmt.Fprintf(e.out, "input  %-12s %s (%s)\n", in.Name, in.Path, in.Type)
	}
	for _, o := range s.Outputs {
		fmt.Fprintf(e.out, "output %-12s %s\n", o.Name, o.Path)
	}
	for _, p := range s.Params {
		var extra []string
		if p.Required {
			extra = append(extra, "required")
		}
		if p.Default != nil {
			extra = append(extra, fmt.Sprintf("default %v", p.Default))
		}
		if len(p.Values) > 0 {
			extra = append(extra, "one of "+strings.Join(p.Values, "|"))
		}
		if p.Min != nil || p.Max != nil {
			extra = append(extra, fmt.Sprintf("range %s..%s", bound(p.Min), bound(p.Max)))
		}
		fmt.Fprintf(e.out, "param  %-12s %-5s %s [%s]\n", p.Name, p.Type, p.Description, strings.Join(extra, ", "))
	}
	if s.OCI.Source != "" || s.OCI.Licenses != "" {
		fmt.Fprintf(e.out, "source: %s  license: %s\n", s.OCI.Source, s.OCI.Licenses)
	}
	return nil
}

func bound(f *float64) string {
	if f == nil {
		return ""
	}
	return fmt.Sprint(*f)
}

func cmdDeprecate(ctx context.Context, e *env, args []string) error {
	fs := flags("deprecate")
	undo := fs.Bool("undo", false, "make the version runnable by new jobs again")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("usage: gefctl deprecate NAME VERSION [--undo]")
	}
	s, err := e.c.Deprecate(ctx, pos[0], pos[1], !*undo)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%s %s deprecated=%v\n", s.Name, s.Version, s.Deprecated)
	return nil
}

func cmdDatasets(ctx context.Context, e *env, args []string) error {
	if _, err := parse(flags("datasets"), args); err != nil {
		return err
	}
	list, err := e.c.Datasets(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(list)
	}
	var rows [][]string
	for _, d := range list {
		rows = append(rows, []string{d.Name, fmt.Sprint(d.Files), humanBytes(d.Size), strings.Join(d.Nodes, ",")})
	}
	e.table("NAME\tFILES\tSIZE\tNODES", rows)
	return nil
}

func cmdNodes(ctx context.Context, e *env, args []string) error {
	if _, err := parse(flags("nodes"), args); err != nil {
		return err
	}
	list, err := e.c.Nodes(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(list)
	}
	var rows [][]string
	for _, n := range list {
		rows = append(rows, []string{n.Name, string(n.State), fmt.Sprintf("%d/%d", n.Running, n.Capacity),
			n.EngineVersion + " (API " + n.EngineAPI + ")", n.LastSeen.Format("2006-01-02 15:04:05"), strings.Join(n.Datasets, ",")})
	}
	e.table("NAME\tSTATE\tRUNNING\tENGINE\tLAST SEEN\tDATASETS", rows)
	return nil
}

func cmdDrain(ctx context.Context, e *env, args []string) error {
	fs := flags("drain")
	undo := fs.Bool("undo", false, "make the node ready again")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl drain NODE [--undo]")
	}
	state := gef.NodeDraining
	if *undo {
		state = gef.NodeReady
	}
	n, err := e.c.SetNodeState(ctx, pos[0], state)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "node %s is %s\n", n.Name, n.State)
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func cmdNetwork(ctx context.Context, e *env, args []string) error {
	fs := flags("network")
	deny := fs.Bool("deny", false, "take the network away again")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("usage: gefctl network NAME VERSION [--deny]")
	}
	s, err := e.c.AllowNetwork(ctx, pos[0], pos[1], !*deny)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%s %s network=%v\n", s.Name, s.Version, s.Network)
	return nil
}
