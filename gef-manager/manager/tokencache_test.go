package manager

import (
	"testing"
	"time"
)

func TestTokenCache(t *testing.T) {
	t.Parallel()
	var c tokenCache
	now := time.Unix(1000, 0)
	p := Principal{UserID: "u1", Name: "ada", TokenID: "t1"}
	if _, ok := c.get("h", now); ok {
		t.Fatal("an empty cache had a token")
	}
	exp := now.Add(500 * time.Millisecond)
	c.put("h", p, &exp, now)
	if got, ok := c.get("h", now.Add(100*time.Millisecond)); !ok || got != p {
		t.Fatalf("get = %+v, %v", got, ok)
	}
	if _, ok := c.get("h", exp); ok {
		t.Error("an expired token was trusted")
	}
	c.put("h", p, nil, now)
	if _, ok := c.get("h", now.Add(tokenTTL)); ok {
		t.Error("a token was trusted past the cache's time")
	}
	c.put("h", p, nil, now)
	c.reset()
	if _, ok := c.get("h", now); ok {
		t.Error("a token was trusted after a reset")
	}
}
