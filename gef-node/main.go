// Command gef-node is GEF's node agent. It runs beside the datasets it
// holds, dials out to the manager (no inbound port is needed), and runs the
// jobs it is given on the local Docker engine with the data mounted
// read-only, staging the results into the object store.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/volumes"
)

// Config is gef-node's configuration, from flags. The token is read from a
// file, never a flag, so that it does not show in ps.
type Config struct {
	ManagerURL string
	TokenFile  string
	CAFile     string // extra CA for the manager's TLS certificate
	Agent      agent.Config
	LogLevel   string
	LogJSON    bool
}

type datasetFlags []volumes.Dataset

func (d *datasetFlags) String() string {
	var s []string
	for _, x := range *d {
		s = append(s, x.Name+"="+x.Dir)
	}
	return strings.Join(s, ",")
}

func (d *datasetFlags) Set(v string) error {
	ds, err := volumes.ParseDataset(v)
	if err != nil {
		return err
	}
	*d = append(*d, ds)
	return nil
}

func parseFlags(args []string) (Config, error) {
	var c Config
	var ds datasetFlags
	var memMiB, maxMemMiB, logMiB, outMiB, sessionLogKiB int64
	fs := flag.NewFlagSet("gef-node", flag.ContinueOnError)
	fs.StringVar(&c.ManagerURL, "manager", "", "the manager's URL, e.g. https://gef.example.org")
	fs.StringVar(&c.TokenFile, "token-file", "", "file holding this node's API token")
	fs.StringVar(&c.CAFile, "ca-file", "", "CA certificate (PEM) to trust for the manager's TLS")
	fs.StringVar(&c.Agent.Name, "name", "", "this node's name; its token must be for this name")
	fs.Var(&ds, "dataset", "a dataset this node holds, NAME=DIR (repeatable)")
	fs.StringVar(&c.Agent.WorkDir, "work-dir", "gef-node-work", "directory for job outputs until they are staged")
	fs.IntVar(&c.Agent.Capacity, "capacity", 0, "jobs run at once (default: CPUs)")
	fs.Int64Var(&memMiB, "memory", 2048, "default container memory limit, MiB")
	fs.Int64Var(&maxMemMiB, "max-memory", 16384, "largest memory limit a service may ask for, MiB")
	fs.Float64Var(&c.Agent.DefaultCPUs, "cpus", 1, "default container CPU limit")
	fs.Int64Var(&c.Agent.PidsLimit, "pids", 512, "container process limit")
	fs.DurationVar(&c.Agent.DefaultTimeout, "timeout", 24*time.Hour, "default wall-time limit of a job")
	fs.DurationVar(&c.Agent.MaxTimeout, "max-timeout", 7*24*time.Hour, "largest wall-time limit a service may ask for")
	fs.Int64Var(&logMiB, "log-limit", 64, "output kept of one job's stdout and stderr, MiB")
	fs.Int64Var(&outMiB, "output-limit", 10240, "most a job may write to its outputs, MiB; a job writing more is killed")
	fs.DurationVar(&c.Agent.RescanInterval, "rescan", time.Minute, "how often to digest the datasets again, to learn of changes (negative: only at start)")
	fs.StringVar(&c.Agent.User, "container-user", "65534:65534", "uid:gid for containers whose image would run as root")
	fs.IntVar(&c.Agent.Sessions.Capacity, "session-capacity", 8, "long-lived service sessions run at once, besides jobs; -1 for none")
	fs.StringVar(&c.Agent.Sessions.Network, "session-network", "gef-sessions", "internal bridge network for session containers")
	fs.Int64Var(&sessionLogKiB, "session-log-size", 10240, "size of each rotated log file of a session, KiB")
	fs.IntVar(&c.Agent.Sessions.LogFiles, "session-log-files", 3, "rotated log files kept per session")
	fs.DurationVar(&c.Agent.StopGrace, "stop-grace", 10*time.Second, "time between SIGTERM and SIGKILL when stopping a container")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log in JSON")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c.Agent.Datasets = ds
	c.Agent.DefaultMemoryBytes, c.Agent.MaxMemoryBytes = memMiB<<20, maxMemMiB<<20
	c.Agent.LogLimitBytes, c.Agent.OutputLimitBytes = logMiB<<20, outMiB<<20
	c.Agent.Sessions.LogFileBytes = sessionLogKiB << 10
	return c, c.Validate()
}

// Validate reports a configuration the node cannot start with.
func (c Config) Validate() error {
	var errs []error
	if c.ManagerURL == "" {
		errs = append(errs, errors.New("-manager is required"))
	}
	if c.TokenFile == "" {
		errs = append(errs, errors.New("-token-file is required"))
	}
	if err := c.Agent.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gef-node:", err)
		os.Exit(2)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	log := slog.New(slog.NewTextHandler(os.Stderr, opts))
	if cfg.LogJSON {
		log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	log = log.With("node", cfg.Agent.Name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("gef-node stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	token, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	httpClient := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("ca file: no certificate found")
		}
		httpClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	rt, err := docker.New(ctx, docker.Options{})
	if err != nil {
		return err
	}
	cfg.Agent.Manager = cfg.ManagerURL
	mgr := client.New(cfg.ManagerURL, strings.TrimSpace(string(token)), client.WithHTTPClient(httpClient))
	a, err := agent.New(cfg.Agent, rt, mgr, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
