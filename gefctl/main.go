// Command gefctl is GEF's command-line client. It reads the manager's URL
// from GEF_URL and an API token from GEF_TOKEN.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/eudat-gef/gef/client"
)

type command struct {
	name, args, help string
	run              func(ctx context.Context, e *env, args []string) error
}

// env is what every command gets.
type env struct {
	c    *client.Client
	out  io.Writer
	json bool
}

var commands []command

func register(c ...command) { commands = append(commands, c...) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gefctl [-json] COMMAND [ARGS]\n\nGEF_URL names the manager (default http://127.0.0.1:8080); GEF_TOKEN holds your API token.\n\nCommands:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	sorted := append([]command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("gefctl", flag.ContinueOnError)
	global.SetOutput(stderr)
	asJSON := global.Bool("json", false, "print JSON")
	global.Usage = func() { usage(stderr) }
	if err := global.Parse(args); err != nil {
		return 2
	}
	if global.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name, rest := global.Arg(0), global.Args()[1:]
	url := os.Getenv("GEF_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	e := &env{c: client.New(url, strings.TrimSpace(os.Getenv("GEF_TOKEN"))), out: stdout, json: *asJSON}
	for _, c := range commands {
		if c.name == name {
			err := c.run(ctx, e, rest)
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			if err != nil {
				fmt.Fprintln(stderr, "gefctl:", describe(err))
				var u usageError
				if errors.As(err, &u) {
					return 2
				}
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "gefctl: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// describe turns an API error into one readable line, with field details.
func describe(err error) string {
	var e *client.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	msg := e.Message
	for _, d := range e.Details {
		msg += fmt.Sprintf("\n  %s: %s", d.Field, d.Message)
	}
	return fmt.Sprintf("%s (%d %s)", msg, e.Status, e.Code)
}

// flags makes a flag set for a command that reports errors as usage errors.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gefctl "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parse parses args, allowing flags after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(e.out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
