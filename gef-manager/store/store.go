// Package store keeps the manager's state in PostgreSQL, or in SQLite for
// the embedded default. Both run the same SQL through sqlx; the few places
// where the dialects differ are marked. Every query the manager makes lives
// in this package.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"

	"github.com/eudat-gef/gef"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect names a supported database.
type Dialect string

// Supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// Store is the manager's database.
type Store struct {
	db      *sqlx.DB
	dialect Dialect
	dsn     string // for the notification listener's own connection
	jobs    jobWriter
}

// Open connects to dsn and migrates the schema to the newest version. A dsn
// starting with postgres:// or postgresql:// selects PostgreSQL; a dsn of
// the form sqlite:PATH selects SQLite at PATH.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	var (
		s   = &Store{dsn: dsn}
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.dialect = Postgres
		s.db, err = sqlx.Open("postgres", oneRoundTrip(dsn))
		if err == nil {
			s.db.SetMaxOpenConns(32)
			s.db.SetMaxIdleConns(16)
		}
	case strings.HasPrefix(dsn, "sqlite:"):
		s.dialect = SQLite
		path := strings.TrimPrefix(dsn, "sqlite:")
		// WAL lets readers run beside the writer; an immediate transaction
		// takes the write lock up front, so two writers queue on the busy
		// timeout instead of failing with SQLITE_BUSY halfway through.
		s.db, err = sqlx.Open("sqlite", "file:"+path+
			"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)"+
			"&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err == nil {
			s.db.SetMaxOpenConns(4)
		}
	default:
		return nil, fmt.Errorf("store: unsupported database %q: want postgres://… or sqlite:PATH", redact(dsn))
	}
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: connect: %w", classify(err))
	}
	if err := s.migrate(ctx, log); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	// Out-of-order versions are allowed: features land in any order.
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	dialect := goose.DialectSQLite3
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Managers that start together must not migrate at once.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, s.db.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// Dialect reports which database s is on.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w: %w", ErrDatabaseUnavailable, err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the pool to tests and benchmarks of this package's users.
func (s *Store) DB() *sqlx.DB { return s.db }

// q rebinds a query written with ? placeholders for the dialect.
func (s *Store) q(query string) string { return s.db.Rebind(query) }

// tx runs fn in a transaction, committing if it returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tx1(ctx, fn)
		if attempt == txAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

// txAttempts bounds the runs of a transaction PostgreSQL rolled back to
// break a deadlock or a serialization conflict.
const txAttempts = 4

// retryable reports whether PostgreSQL rolled a transaction back only
// because of others running beside it (SQLSTATE class 40), so that
// running it again can succeed.
func retryable(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code.Class() == "40"
}

func (s *Store) tx1(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", classify(err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", classify(err))
	}
	return nil
}

// classify adds gef sentinels to driver errors the API must tell apart.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return gef.ErrNotFound
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code.Class() {
		case "23": // integrity constraint violation
			return fmt.Errorf("%w: %w", gef.ErrConflict, err)
		case "08", "57": // connection exception, operator intervention
			return fmt.Errorf("%w: %w", ErrDatabaseUnavailable, err)
		}
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "FOREIGN KEY constraint failed") {
		return fmt.Errorf("%w: %w", gef.ErrConflict, err)
	}
	if connectionLost(err) {
		return fmt.Errorf("%w: %w", ErrDatabaseUnavailable, err)
	}
	return err
}

func redact(dsn string) string {
	if i := strings.Index(dsn, "@"); i >= 0 {
		if j := strings.Index(dsn, "://"); j >= 0 && j < i {
			return dsn[:j+3] + "…" + dsn[i:]
		}
	}
	return dsn
}

// Times are stored as unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func optMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func optTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMicros(n.Int64)
	return &t
}

// oneRoundTrip asks lib/pq to send a query with arguments in one round trip
// (parse, bind and execute together) rather than preparing it first and
// waiting for the answer: half the round trips of every query. It changes
// only how []byte arguments travel, and the schema has no bytea. A dsn that
// sets binary_parameters itself keeps its choice.
func oneRoundTrip(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // sqlx.Open reports it
	}
	q := u.Query()
	if q.Has("binary_parameters") {
		return dsn
	}
	q.Set("binary_parameters", "yes")
	u.RawQuery = q.Encode()
	return u.String()
}
