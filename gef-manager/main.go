// Command gef-manager is GEF's central manager: the HTTP API and web GUI,
// the job records, and the dispatch of jobs to the node agents that sit
// beside the data. With -dev it runs a whole GEF in one process.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/server"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/objstore/local"
	"github.com/eudat-gef/gef/objstore/s3"
	"github.com/eudat-gef/gef/ui"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gef-manager:", err)
		os.Exit(2)
	}
	log := newLogger(cfg.LogLevel, cfg.LogJSON)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("gef-manager stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger(level string, json bool) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	st, err := openStore(ctx, cfg.Database, log)
	if err != nil {
		return err
	}
	defer st.Close()

	objects, blobs, err := openObjects(ctx, cfg)
	if err != nil {
		return err
	}
	issuer, err := openIssuer(cfg)
	if err != nil {
		return err
	}
	m, err := manager.New(cfg.Manager, st, objects, issuer, log.With("component", "manager"))
	if err != nil {
		return err
	}
	srv := server.New(m, log.With("component", "http"), blobs)
	if err := srv.TrustProxies(cfg.TrustedProxies); err != nil {
		return err
	}
	if cfg.OIDC.Enabled() {
		o, err := auth.NewOIDC(cfg.OIDC)
		if err != nil {
			return err
		}
		srv.EnableOIDC(o)
	}
	gui, err := ui.New(m, ui.Config{PublicURL: cfg.PublicURL, AllowLogin: srv.LoginLimit()}, log.With("component", "ui"))
	if err != nil {
		return err
	}
	gui.Mount(srv.Engine())

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			serveErr <- httpSrv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			serveErr <- httpSrv.Serve(ln)
		}
	}()
	if cfg.PprofAddr != "" {
		if err := servePprof(cfg.PprofAddr, log); err != nil {
			return err
		}
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() { _ = m.Run(runCtx) }()
	log.Info("gef-manager listening", "addr", ln.Addr().String(), "url", cfg.PublicURL, "database", string(st.Dialect()),
		"version", gef.Version)

	var admin manager.NewToken
	if cfg.AdminTokenFile != "" {
		admin, err = m.Bootstrap(ctx, "admin", gef.RoleAdmin)
		if err != nil {
			return err
		}
		if err := writeSecret(cfg.AdminTokenFile, admin.Secret); err != nil {
			return err
		}
		log.Info("admin API token written", "file", cfg.AdminTokenFile)
	}

	var devDone <-chan error
	if cfg.Dev {
		devDone, err = startDev(runCtx, cfg, m, admin.Secret, log)
		if err != nil {
			return err
		}
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http: %w", err)
	case err := <-devDone:
		if err != nil {
			return err
		}
		<-ctx.Done()
	}
	log.Info("shutting down")
	// Release held polls and followers first, so Shutdown does not wait
	// out their timeouts.
	m.Shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	cancelRun()
	waitDev(shutCtx)
	return nil
}

// openStore opens the database, waiting for it while it cannot be reached:
// a manager started during a database outage comes up once it ends.
func openStore(ctx context.Context, dsn string, log *slog.Logger) (*store.Store, error) {
	wait := 200 * time.Millisecond
	for {
		st, err := store.Open(ctx, dsn, log.With("component", "store"))
		if err == nil || !errors.Is(err, gef.ErrUnavailable) {
			return st, err
		}
		log.Warn("waiting for the database", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func openObjects(ctx context.Context, cfg Config) (gef.ObjectStore, http.Handler, error) {
	if cfg.S3Endpoint != "" {
		s, err := s3.New(ctx, s3.Config{Endpoint: cfg.S3Endpoint, AccessKey: cfg.s3Access, SecretKey: cfg.s3Secret,
			Bucket: cfg.S3Bucket, UseSSL: cfg.S3SSL})
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, err
	}
	s, err := local.New(filepath.Join(cfg.DataDir, "objects"), cfg.PublicURL+"/api/v1/blobs", key)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Handler(), nil
}

func openIssuer(cfg Config) (*auth.Issuer, error) {
	key, err := auth.LoadOrCreateKey(cfg.JWTKeyFile)
	if err != nil {
		return nil, err
	}
	keys := []auth.Key{key}
	for _, f := range cfg.JWTOldKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("old key: %w", err)
		}
		k, err := auth.ParseKey(b)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return auth.NewIssuer("gef", "gef-api", keys...)
}

// writeSecret writes a secret readable by its owner only, atomically.
func writeSecret(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.TrimSpace(secret)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// servePprof serves Go's runtime profiles on addr, on a mux of their own so
// nothing of the API is reachable there, for the life of the process.
func servePprof(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving runtime profiles", "addr", ln.Addr().String())
	return nil
}
