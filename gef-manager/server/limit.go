package server

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter bounds how often one client may try something, such as signing
// in: n tries per window, refilled evenly.
type limiter struct {
	mu      sync.Mutex
	n       int
	every   rate.Limit
	clients map[string]*entry
}

type entry struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(n int, window time.Duration) *limiter {
	return &limiter{n: n, every: rate.Every(window / time.Duration(n)), clients: map[string]*entry{}}
}

// LoginLimit returns the limiter of the sign-in endpoints, so the web GUI
// shares it.
func (s *Server) LoginLimit() func(client string) bool { return s.loginLimit.allow }

func (l *limiter) allow(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	e, ok := l.clients[client]
	if !ok {
		if len(l.clients) > 10000 { // forget idle clients rather than grow
			for k, v := range l.clients {
				if now.Sub(v.seen) > time.Hour {
					delete(l.clients, k)
				}
			}
		}
		e = &entry{l: rate.NewLimiter(l.every, l.n)}
		l.clients[client] = e
	}
	e.seen = now
	return e.l.Allow()
}
