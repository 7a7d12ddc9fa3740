package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// Config is gef-manager's configuration. Flags set it; secrets come only
// from the environment or from files, never from flags, which show in ps.
type Config struct {
	// Addr is where the HTTP API listens.
	Addr string
	// PublicURL is how nodes and browsers reach the manager; default
	// http(s)://Addr.
	PublicURL string
	// Dev runs everything in one process: SQLite, a local object store, an
	// in-process node agent on the local Docker engine and a demo service.
	Dev bool
	// Demo, in dev mode, runs the demo job once the manager is up.
	Demo bool
	// DataDir holds the SQLite database, the local object store, keys and
	// the admin token in dev mode.
	DataDir string
	// Database is postgres://… or sqlite:PATH (env GEF_DATABASE_URL).
	// Default in dev mode: sqlite:DataDir/gef.db.
	Database string
	// S3 selects MinIO/S3 for results; empty means a local directory store
	// under DataDir. Credentials: GEF_S3_ACCESS_KEY, GEF_S3_SECRET_KEY (or
	// the files named by GEF_S3_ACCESS_KEY_FILE, GEF_S3_SECRET_KEY_FILE).
	S3Endpoint, S3Bucket string
	S3SSL                bool
	s3Access, s3Secret   string
	// JWTKeyFile holds the Ed25519 signing key (PEM, PKCS#8); it is made
	// if missing. Default DataDir/keys/jwt.pem.
	JWTKeyFile string
	// JWTOldKeyFiles still verify tokens after a key rotation.
	JWTOldKeyFiles []string
	// AdminTokenFile, if set, receives an API token for the admin user at
	// start-up. Dev mode sets DataDir/admin.token.
	AdminTokenFile string
	// TLSCert and TLSKey make the manager serve HTTPS.
	TLSCert, TLSKey string
	// Manager tunes the core.
	Manager manager.Config
	// LogLevel is debug, info, warn or error; LogJSON switches to JSON logs.
	LogLevel string
	LogJSON  bool
	// Node settings for the in-process node of dev mode.
	NodeCapacity int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client; by default none is trusted.
	TrustedProxies []string
	// OIDC enables sign-in through an OpenID Connect provider; its client
	// secret comes from GEF_OIDC_CLIENT_SECRET (or _FILE).
	OIDC auth.OIDCConfig
	// PprofAddr, if set, serves Go's runtime profiles (net/http/pprof) on
	// this address, apart from the API. It must be a loopback address:
	// profiles show internals and are not for the network.
	PprofAddr string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func parseFlags(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("gef-manager", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&c.PublicURL, "public-url", "", "the URL nodes and browsers use (default http://ADDR)")
	fs.StringVar(&c.Manager.Sessions.PublicURL, "session-url", "",
		"a URL on a host name of its own for sessions, e.g. https://sessions.example.org (default: -public-url)")
	fs.DurationVar(&c.Manager.Sessions.DefaultIdle, "session-idle", time.Hour, "idle timeout of a session that names none")
	fs.DurationVar(&c.Manager.Sessions.DefaultLifetime, "session-lifetime", 24*time.Hour, "maximum lifetime of a session that names none")
	fs.DurationVar(&c.Manager.Sessions.MaxLifetime, "session-max-lifetime", 30*24*time.Hour, "the longest lifetime a session may ask for")
	fs.BoolVar(&c.Dev, "dev", false, "run everything in one process: SQLite, local results, an in-process node, a demo service")
	fs.BoolVar(&c.Demo, "demo", false, "with -dev, run the demo job and print its result")
	fs.StringVar(&c.DataDir, "data", "", "data directory (default ./gef-data in dev mode)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "MinIO/S3 endpoint host:port for results (default: a local directory)")
	fs.StringVar(&c.S3Bucket, "s3-bucket", "gef", "bucket for results, logs and images")
	fs.BoolVar(&c.S3SSL, "s3-ssl", false, "use HTTPS to reach S3")
	fs.StringVar(&c.JWTKeyFile, "jwt-key-file", "", "Ed25519 signing key, made if missing (default DATA/keys/jwt.pem)")
	var old, proxies multiFlag
	fs.Var(&proxies, "trusted-proxy", "a reverse proxy (address or CIDR) whose X-Forwarded-For names the client (repeatable)")
	fs.Var(&old, "jwt-old-key-file", "a previous signing key that still verifies tokens (repeatable)")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "write an admin API token here at start-up")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key (PEM)")
	fs.DurationVar(&c.Manager.NodeTimeout, "node-timeout", 25*time.Second, "mark a node down after this long without a heartbeat")
	fs.DurationVar(&c.Manager.PollWait, "poll-wait", 10*time.Second, "longest a node's poll is held open")
	var imageMiB, contextMiB int64
	fs.Int64Var(&imageMiB, "max-image-mib", 8192, "largest service image tarball taken (uploaded, pulled or built), MiB")
	fs.Int64Var(&contextMiB, "max-context-mib", 512, "largest build context taken, MiB")
	fs.StringVar(&c.Manager.TempDir, "tmp-dir", "", "where image tarballs are spooled while checked (default: the system's)")
	r := &c.Manager.Reliability
	fs.IntVar(&r.DefaultMaxAttempts, "max-attempts", 3, "runs of a job that meets system errors, unless its request says")
	fs.IntVar(&r.MaxAttemptsLimit, "max-attempts-limit", 10, "most runs a request may ask for")
	fs.DurationVar(&r.RetryAvoid, "retry-avoid", time.Minute, "keep a retried job off the node it failed on this long, if another holds its data")
	fs.DurationVar(&r.QueueTimeout, "queue-timeout", 7*24*time.Hour, "end a job no node took within this long")
	fs.DurationVar(&r.AssignedTimeout, "assigned-timeout", 5*time.Minute, "retry a job its node did not start within this long")
	fs.DurationVar(&r.FetchTimeout, "fetch-timeout", 30*time.Minute, "retry a job whose image was not fetched within this long")
	fs.DurationVar(&r.MaxRunTime, "max-run-time", 7*24*time.Hour, "wall time of a job whose service sets none")
	fs.DurationVar(&r.RunGrace, "run-grace", 15*time.Minute, "retry a job still running this long past its wall time")
	fs.DurationVar(&r.StagingStallTimeout, "staging-stall-timeout", 30*time.Minute, "retry a job in staging whose node said nothing this long")
	fs.DurationVar(&r.StagingTimeout, "staging-timeout", 24*time.Hour, "retry a job still staging this long after staging began")
	fs.DurationVar(&r.CancelTimeout, "cancel-timeout", 5*time.Minute, "end a job as canceled if its node did not confirm the stop within this long")
	fs.DurationVar(&r.SweepInterval, "sweep-interval", 15*time.Second, "how often state limits are enforced")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log in JSON")
	fs.IntVar(&c.NodeCapacity, "node-capacity", 0, "jobs the dev-mode node runs at once (default: CPUs)")
	fs.StringVar(&c.OIDC.Issuer, "oidc-issuer", "", "sign in through this OpenID Connect provider (issuer URL)")
	fs.StringVar(&c.OIDC.ClientID, "oidc-client-id", "", "GEF's client id at the OIDC provider")
	fs.StringVar(&c.OIDC.Label, "oidc-label", "", "the provider's name on the sign-in page, e.g. B2ACCESS")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060")
	fs.StringVar(&c.OIDC.UsernameClaim, "oidc-username-claim", "preferred_username", "the ID token claim that names the user")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c.JWTOldKeyFiles = old
	c.TrustedProxies = proxies
	c.Manager.MaxImageBytes, c.Manager.MaxContextBytes = imageMiB<<20, contextMiB<<20
	c.Database = os.Getenv("GEF_DATABASE_URL")
	var err error
	if c.s3Access, err = secret("GEF_S3_ACCESS_KEY"); err != nil {
		return c, err
	}
	if c.s3Secret, err = secret("GEF_S3_SECRET_KEY"); err != nil {
		return c, err
	}
	if c.OIDC.ClientSecret, err = secret("GEF_OIDC_CLIENT_SECRET"); err != nil {
		return c, err
	}
	c.setDefaults()
	return c, c.Validate()
}

// secret reads NAME from the environment, or the file named by NAME_FILE.
func secret(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	if f := os.Getenv(name + "_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

func (c *Config) setDefaults() {
	if c.Dev && c.DataDir == "" {
		c.DataDir = "gef-data"
	}
	if c.DataDir != "" {
		if abs, err := filepath.Abs(c.DataDir); err == nil {
			c.DataDir = abs
		}
	}
	if c.Dev && c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "gef.db")
	}
	if c.Dev && c.AdminTokenFile == "" {
		c.AdminTokenFile = filepath.Join(c.DataDir, "admin.token")
	}
	if c.JWTKeyFile == "" && c.DataDir != "" {
		c.JWTKeyFile = filepath.Join(c.DataDir, "keys", "jwt.pem")
	}
	if c.PublicURL == "" {
		scheme := "http"
		if c.TLSCert != "" {
			scheme = "https"
		}
		c.PublicURL = scheme + "://" + c.Addr
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.OIDC.Enabled() {
		c.OIDC.RedirectURL = c.PublicURL + "/api/v1/login/oidc/callback"
	}
	c.Manager.PublicURL = c.PublicURL
	if c.Manager.Sessions.PublicURL == "" {
		c.Manager.Sessions.PublicURL = c.PublicURL
	} else {
		c.Manager.Sessions.OwnHost = true
	}
}

// Validate reports a configuration the manager cannot start with.
func (c Config) Validate() error {
	var errs []error
	if c.Database == "" {
		errs = append(errs, errors.New("no database: set GEF_DATABASE_URL (postgres://… or sqlite:PATH), or use -dev"))
	}
	if c.S3Endpoint == "" && c.DataDir == "" {
		errs = append(errs, errors.New("no result store: give -s3-endpoint, or -data for a local directory store"))
	}
	if c.S3Endpoint != "" && (c.s3Access == "" || c.s3Secret == "") {
		errs = append(errs, errors.New("S3 credentials are missing: set GEF_S3_ACCESS_KEY and GEF_S3_SECRET_KEY (or their _FILE variants)"))
	}
	if c.JWTKeyFile == "" {
		errs = append(errs, errors.New("no signing key: give -jwt-key-file or -data"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("give both -tls-cert and -tls-key, or neither"))
	}
	if c.Demo && !c.Dev {
		errs = append(errs, errors.New("-demo needs -dev"))
	}
	if u, err := url.Parse(c.Manager.Sessions.PublicURL); c.Manager.Sessions.OwnHost && (err != nil || u.Host == "") {
		errs = append(errs, fmt.Errorf("-session-url %q is not a URL", c.Manager.Sessions.PublicURL))
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("-public-url %q is not a URL", c.PublicURL))
	}
	if err := c.OIDC.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.PprofAddr != "" && !loopback(c.PprofAddr) {
		errs = append(errs, fmt.Errorf("-pprof-addr %q must be a loopback address, such as 127.0.0.1:6060", c.PprofAddr))
	}
	if err := c.Manager.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loopback reports whether addr is host:port with a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
