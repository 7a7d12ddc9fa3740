package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

func init() {
	register(
		command{"session", "start|list|show|stop|open ...", "long-lived HTTP services next to the data; gefctl session -h", cmdSession},
		command{"call", "SERVICE [--dataset D | --input NAME=D ...] [--param K=V ...] [--wait SECONDS]", "run a short service and print its output", cmdCall},
	)
}

const sessionUsage = `usage:
  gefctl session start SERVICE [--dataset D | --input NAME=D ...] [--param K=V ...] [--version V]
                       [--name NAME] [--access owner|users|public] [--user U ...] [--group G ...]
                       [--idle DURATION] [--lifetime DURATION] [--wait]
  gefctl session list [--state S] [--name NAME] [--service S] [--owner U] [--limit N] [--page TOKEN]
  gefctl session show ID
  gefctl session stop ID [--wait]
  gefctl session open ID      print a link that signs a browser in to the session`

func cmdSession(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("%s", sessionUsage)
	}
	sub := map[string]func(context.Context, *env, []string) error{
		"start": cmdSessionStart, "list": cmdSessionList, "show": cmdSessionShow, "stop": cmdSessionStop, "open": cmdSessionOpen,
	}[args[0]]
	if sub == nil {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprintln(e.out, sessionUsage)
			return nil
		}
		return usagef("unknown session command %q\n%s", args[0], sessionUsage)
	}
	return sub(ctx, e, args[1:])
}

func cmdSessionStart(ctx context.Context, e *env, args []string) error {
	fs := flags("session start")
	inputs, params := kvFlags{}, kvFlags{}
	var users, groups listFlag
	var req gef.SessionRequest
	fs.StringVar(&req.Version, "version", "", "service version (default: the newest not deprecated)")
	fs.StringVar(&req.Dataset, "dataset", "", "the dataset, for a service with one dataset input")
	fs.Var(inputs, "input", "bind an input: NAME=DATASET (repeatable)")
	fs.Var(params, "param", "a parameter: NAME=VALUE (repeatable)")
	fs.StringVar(&req.Name, "name", "", "a friendly name: the session is also at /s/NAME/, across restarts")
	access := fs.String("access", "owner", "who may reach it: owner, users (with --user) or public")
	fs.Var(&users, "user", "a user who may reach it, with --access users (repeatable)")
	fs.Var(&groups, "group", "a group whose members may reach it, with --access users (repeatable)")
	idle := fs.Duration("idle", 0, "end it after this long without traffic (default: the manager's)")
	lifetime := fs.Duration("lifetime", 0, "end it this long after it started (default: the manager's)")
	wait := fs.Bool("wait", false, "wait until it answers, or ends")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s", sessionUsage)
	}
	req.Service, req.Access, req.Users, req.Groups = pos[0], gef.SessionAccess(*access), users, groups
	req.IdleTimeoutSeconds = int64((*idle + time.Second - 1) / time.Second)
	req.MaxLifetimeSeconds = int64((*lifetime + time.Second - 1) / time.Second)
	if len(inputs) > 0 {
		req.Inputs = inputs
	}
	if len(params) > 0 {
		req.Params = map[string]any{}
		for k, v := range params {
			req.Params[k] = v
		}
	}
	s, err := e.c.StartSession(ctx, req)
	if err != nil {
		return err
	}
	if *wait {
		fmt.Fprintf(os.Stderr, "session %s: %s %s, waiting for it to start\n", s.ID, s.Service, s.Version)
		s, err = e.c.WaitSession(ctx, s.ID, func(s gef.Session) bool { return s.State != gef.SessionQueued && s.State != gef.SessionStarting })
		if err != nil {
			return err
		}
	}
	if e.json {
		return e.printJSON(s)
	}
	printSession(e, s)
	if s.State.Final() {
		return fmt.Errorf("session %s ended %s", s.ID, s.State)
	}
	return nil
}

func cmdSessionList(ctx context.Context, e *env, args []string) error {
	fs := flags("session list")
	var f gef.SessionFilter
	state := fs.String("state", "", "only sessions in this state")
	fs.StringVar(&f.Name, "name", "", "only sessions of this name")
	fs.StringVar(&f.Service, "service", "", "only sessions of this service")
	fs.StringVar(&f.Node, "node", "", "only sessions on this node")
	fs.StringVar(&f.Owner, "owner", "", "only sessions of this user (admins)")
	fs.IntVar(&f.Limit, "limit", 20, "sessions per page")
	fs.StringVar(&f.PageToken, "page", "", "the page token printed with the previous page")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	f.State = gef.SessionState(*state)
	page, err := e.c.Sessions(ctx, f)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(page)
	}
	var rows [][]string
	for _, s := range page.Items {
		started := "-"
		if t := s.Timestamps.Started; t != nil {
			started = t.Local().Format("2006-01-02 15:04:05")
		}
		rows = append(rows, []string{s.ID, string(s.State), s.Service + " " + s.Version, s.Node, accessOf(s), started, s.URL})
	}
	e.table("ID\tSTATE\tSERVICE\tNODE\tACCESS\tSTARTED\tURL", rows)
	if page.NextPageToken != "" {
		fmt.Fprintf(e.out, "next page: gefctl session list --page %s\n", page.NextPageToken)
	}
	return nil
}

func accessOf(s gef.Session) string {
	if s.Access == gef.AccessUsers {
		who := s.Users
		for _, g := range s.Groups {
			who = append(who, "group "+g)
		}
		return "users:" + strings.Join(who, ",")
	}
	return string(s.Access)
}

func cmdSessionShow(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("session show"), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl session show ID")
	}
	s, err := e.c.Session(ctx, pos[0])
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(s)
	}
	printSession(e, s)
	return nil
}

func printSession(e *env, s gef.Session) {
	fmt.Fprintf(e.out, "session  %s\n", s.ID)
	if s.Name != "" {
		fmt.Fprintf(e.out, "name     %s\n", s.Name)
	}
	fmt.Fprintf(e.out, "state    %s", s.State)
	if s.ExitCode != nil {
		fmt.Fprintf(e.out, " (exit %d)", *s.ExitCode)
	}
	if s.Reason != "" {
		fmt.Fprintf(e.out, ": %s", s.Reason)
	}
	fmt.Fprintf(e.out, "\nurl      %s\naccess   %s\nservice  %s %s\nimage    %s\nnode     %s\nowner    %s\n",
		s.URL, accessOf(s), s.Service, s.Version, s.ImageDigest, s.Node, s.Owner)
	for in, ds := range s.Inputs {
		fmt.Fprintf(e.out, "input    %s = %s\n", in, ds)
	}
	fmt.Fprintf(e.out, "argv     %q\nidle     ends after %s without traffic\nlifetime %s\n",
		s.Argv, time.Duration(s.IdleTimeoutSeconds)*time.Second, time.Duration(s.MaxLifetimeSeconds)*time.Second)
	ts := s.Timestamps
	show := func(name string, t *time.Time) {
		if t != nil {
			fmt.Fprintf(e.out, "%-8s %s\n", name, t.Local().Format("2006-01-02 15:04:05"))
		}
	}
	show("created", &ts.Created)
	show("started", ts.Started)
	show("active", ts.LastActive)
	show("expires", s.ExpiresAt)
	show("ended", ts.Ended)
}

func cmdSessionStop(ctx context.Context, e *env, args []string) error {
	fs := flags("session stop")
	wait := fs.Bool("wait", false, "wait until it has ended")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl session stop ID [--wait]")
	}
	s, err := e.c.StopSession(ctx, pos[0])
	if err != nil {
		return err
	}
	if *wait && !s.State.Final() {
		if s, err = e.c.WaitSession(ctx, s.ID, func(s gef.Session) bool { return s.State.Final() }); err != nil {
			return err
		}
	}
	if e.json {
		return e.printJSON(s)
	}
	if s.State.Final() {
		fmt.Fprintf(e.out, "session %s %s\n", s.ID, s.State)
	} else {
		fmt.Fprintf(e.out, "session %s is stopping on node %s\n", s.ID, s.Node)
	}
	return nil
}

func cmdSessionOpen(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("session open"), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl session open ID")
	}
	l, err := e.c.SessionLink(ctx, pos[0])
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(l)
	}
	fmt.Fprintln(e.out, l.URL)
	fmt.Fprintf(os.Stderr, "open it in a browser before %s; it signs the browser in to this session only\n",
		l.ExpiresAt.Local().Format("15:04:05"))
	return nil
}

func cmdCall(ctx context.Context, e *env, args []string) error {
	fs := flags("call")
	inputs, params := kvFlags{}, kvFlags{}
	var req gef.JobRequest
	fs.StringVar(&req.Version, "version", "", "service version (default: the newest not deprecated)")
	fs.StringVar(&req.Dataset, "dataset", "", "the dataset, for a service with one dataset input")
	fs.Var(inputs, "input", "bind an input: NAME=DATASET (repeatable)")
	fs.Var(params, "param", "a parameter: NAME=VALUE (repeatable)")
	wait := fs.Int("wait", 60, "seconds to wait for the end, at most 300")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl call SERVICE [--dataset D | --input NAME=D ...] [--param K=V ...] [--wait SECONDS]")
	}
	req.Service = pos[0]
	if len(inputs) > 0 {
		req.Inputs = inputs
	}
	if len(params) > 0 {
		req.Params = map[string]any{}
		for k, v := range params {
			req.Params[k] = v
		}
	}
	res, err := e.c.Call(ctx, req, time.Duration(*wait)*time.Second)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	if !res.Done {
		fmt.Fprintf(os.Stderr, "job %s is still %s; follow it with: gefctl job %s\n", res.Job.ID, res.Job.State, res.Job.ID)
		fmt.Fprintln(e.out, res.Job.ID)
		return nil
	}
	switch out := res.Stdout.(type) {
	case string:
		fmt.Fprint(e.out, out)
	default:
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(e.out, string(b))
	}
	if res.Job.State != gef.JobSucceeded {
		return fmt.Errorf("job %s ended %s: %s", res.Job.ID, res.Job.State, res.Job.Reason)
	}
	return nil
}
