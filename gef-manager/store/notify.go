package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"

	"github.com/eudat-gef/gef"
)

// ErrDatabaseUnavailable is the error of a store call that could not reach
// the database. It wraps gef.ErrUnavailable.
var ErrDatabaseUnavailable = fmt.Errorf("the database is unavailable: %w", gef.ErrUnavailable)

// connectionLost reports whether err means the database could not be
// reached or dropped the connection, as opposed to refusing a statement.
func connectionLost(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, sql.ErrConnDone), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "bad connection", "broken pipe", "connection reset",
		"the database system is", "no such host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Notify tells every manager on the database payload on channel. On SQLite,
// which serves one process, it does nothing.
func (s *Store) Notify(ctx context.Context, channel, payload string) error {
	if s.dialect != Postgres {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("store: notify %s: %w", channel, classify(err))
	}
	return nil
}

// CanNotify reports whether Notify reaches other processes.
func (s *Store) CanNotify() bool { return s.dialect == Postgres }

// Listen calls fn with the payload of each notification on channel until
// ctx ends. It keeps its own connection and makes it again when it is
// lost; since notifications sent meanwhile are gone, fn is then called
// with "*". up is told whenever notifications start or stop flowing.
func (s *Store) Listen(ctx context.Context, channel string, log *slog.Logger, fn func(payload string), up func(bool)) error {
	if s.dialect != Postgres {
		return errors.New("store: notifications need PostgreSQL")
	}
	l := pq.NewListener(s.dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		// The first connection counts once LISTEN has run, below; a
		// reconnection listens again before it is announced.
		switch ev {
		case pq.ListenerEventReconnected:
			up(true)
			fn("*")
		case pq.ListenerEventDisconnected:
			up(false)
			log.Warn("notification connection lost; polling until it is back", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			up(false)
		}
	})
	defer l.Close()
	listening := make(chan error, 1)
	go func() { listening <- l.Listen(channel) }()
	select {
	case err := <-listening:
		if err != nil {
			return fmt.Errorf("store: listen %s: %w", channel, err)
		}
		up(true)
	case <-ctx.Done():
		return nil
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-l.NotificationChannel():
			if n == nil { // reconnected; handled by the event
				continue
			}
			fn(n.Extra)
		case <-ping.C:
			// A dead connection is only noticed when used.
			_ = l.Ping()
		}
	}
}

// Exclusive runs fn unless another manager on the database runs work of
// the same name, and reports whether it ran. It holds a PostgreSQL
// advisory lock, released when fn returns or the holder's connection
// ends; on SQLite, which serves one process, fn always runs.
func (s *Store) Exclusive(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error) {
	if s.dialect != Postgres {
		return true, fn(ctx)
	}
	h := fnv.New64a()
	h.Write([]byte("gef:" + name))
	key := int64(h.Sum64())
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return false, fmt.Errorf("store: lock %s: %w", name, classify(err))
	}
	defer conn.Close()
	var got bool
	if err := conn.GetContext(ctx, &got, `SELECT pg_try_advisory_lock($1)`, key); err != nil {
		return false, fmt.Errorf("store: lock %s: %w", name, classify(err))
	}
	if !got {
		return false, nil
	}
	defer func() {
		// A failed unlock leaves the lock to end with the connection.
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return true, fn(ctx)
}
