// Package testenv finds the real services the tests run against: PostgreSQL,
// MinIO and the Docker engine. scripts/test.sh installs and starts them and
// exports their addresses; the defaults below match what it starts.
//
// A missing service fails the test when CI is set. Elsewhere the test is
// skipped, loudly, so that a developer without Docker still sees it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"
	_ "github.com/lib/pq" // the PostgreSQL driver
)

// Defaults, matching scripts/testenv.sh.
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable"
	DefaultMinIO       = "127.0.0.1:59000"
	DefaultMinIOUser   = "gefminio"
	DefaultMinIOSecret = "gefminio-secret"
)

// InCI reports whether the tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") != "" }

// Unavailable stops t because a real service is missing: fatal under CI,
// a loud skip elsewhere.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is not available (%v); run scripts/test.sh to install and start it", what, err)
	if InCI() {
		t.Fatalf("CI=%s: %s", os.Getenv("CI"), msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING REAL-STACK TEST %s: %s ***\n\n", t.Name(), msg)
	t.Skip(msg)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// PostgresAdminDSN is the DSN of the test server's maintenance database.
func PostgresAdminDSN() string { return env("GEF_TEST_POSTGRES_DSN", DefaultPostgresDSN) }

// Postgres creates a fresh database for t, drops it when t ends, and
// returns its DSN.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminDSN()
	db, err := sql.Open("postgres", admin)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		Unavailable(t, "PostgreSQL at "+admin, err)
	}
	name := "gef_test_" + randomHex(6)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", admin, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MinIOConfig locates the test MinIO server.
type MinIOConfig struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
}

// MinIO returns the test MinIO server, after checking that it answers.
func MinIO(t testing.TB) MinIOConfig {
	t.Helper()
	c := MinIOConfig{
		Endpoint:  env("GEF_TEST_MINIO_ENDPOINT", DefaultMinIO),
		AccessKey: env("GEF_TEST_MINIO_ACCESS_KEY", DefaultMinIOUser),
		SecretKey: env("GEF_TEST_MINIO_SECRET_KEY", DefaultMinIOSecret),
	}
	conn, err := net.DialTimeout("tcp", c.Endpoint, 3*time.Second)
	if err != nil {
		Unavailable(t, "MinIO at "+c.Endpoint, err)
	}
	conn.Close()
	return c
}

// Docker checks that the Docker engine answers, negotiating the API version
// as the runtime does, and stops t through Unavailable if it does not.
func Docker(t testing.TB) {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		Unavailable(t, "the Docker engine", err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		Unavailable(t, "the Docker engine at "+cli.DaemonHost(), err)
	}
}

// Bucket returns a bucket name unique to this call, for test isolation.
func Bucket() string { return "gef-test-" + randomHex(6) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
