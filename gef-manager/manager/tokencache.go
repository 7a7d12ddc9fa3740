package manager

import (
	"sync"
	"time"
)

// tokenTTL is how long a checked API token is trusted without the
// database. A revocation on this manager takes effect at once; on other
// managers sharing the database, within this long.
const tokenTTL = time.Second

// tokenCacheMax bounds the cache; it is emptied when full.
const tokenCacheMax = 10000

// tokenCache remembers API tokens found valid, so that a client or node
// sending many requests costs one token lookup a second, not one each.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken // by token hash
}

type cachedToken struct {
	p       Principal
	until   time.Time  // trusted until
	expires *time.Time // the token's own expiry
}

func (c *tokenCache) get(hash string, now time.Time) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[hash]
	if !ok || !now.Before(t.until) || (t.expires != nil && !now.Before(*t.expires)) {
		return Principal{}, false
	}
	return t.p, true
}

func (c *tokenCache) put(hash string, p Principal, expires *time.Time, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = map[string]cachedToken{}
	}
	c.m[hash] = cachedToken{p: p, until: now.Add(tokenTTL), expires: expires}
}

// reset forgets every token, after a revocation.
func (c *tokenCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}
