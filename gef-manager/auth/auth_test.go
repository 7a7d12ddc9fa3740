package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/eudat-gef/gef"
)

var ada = gef.User{ID: "u1", Name: "ada", Role: gef.RoleUser}

func issuer(t *testing.T, keys ...Key) *Issuer {
	t.Helper()
	if len(keys) == 0 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = []Key{k}
	}
	i, err := NewIssuer("gef", "gef-api", keys...)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	i := issuer(t)
	tok, exp, err := i.Sign("tok1", ada, KindSession, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := i.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "u1" || c.Name != "ada" || c.Role != gef.RoleUser || c.ID != "tok1" || !c.ExpiresAt.Time.Equal(exp) {
		t.Fatalf("claims = %+v", c)
	}
}

// forge signs claims with an arbitrary method and key.
func forge(t *testing.T, m jwt.SigningMethod, key any, c Claims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	good := issuer(t)
	kid := good.keys[0].ID
	pub := good.keys[0].Private.Public()
	now := time.Now()
	claims := func(mod func(*Claims)) Claims {
		c := Claims{RegisteredClaims: jwt.RegisteredClaims{ID: "t", Subject: "u1", Issuer: "gef",
			Audience: jwt.ClaimStrings{"gef-api"}, IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Name: "ada", Role: gef.RoleAdmin, Kind: KindSession}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	other, _ := NewKey()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(nil), kid)
	if _, err := good.Verify(valid); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	parts := strings.Split(valid, ".")

	cases := map[string]string{
		"alg none":                forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil), kid),
		"another key":             forge(t, jwt.SigningMethodEdDSA, other.Private, claims(nil), kid),
		"another key and its kid": forge(t, jwt.SigningMethodEdDSA, other.Private, claims(nil), other.ID),
		// HS/RS confusion: an HMAC keyed with the verifier's public key.
		"HS256 with the public key": forge(t, jwt.SigningMethodHS256, []byte(pub.(ed25519.PublicKey)), claims(nil), kid),
		"RS256":                     forge(t, jwt.SigningMethodRS256, rsaKey, claims(nil), kid),
		"expired": forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
		}), kid),
		"wrong audience": forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) {
			c.Audience = jwt.ClaimStrings{"someone-else"}
		}), kid),
		"wrong issuer":           forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) { c.Issuer = "evil" }), kid),
		"session without expiry": forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) { c.ExpiresAt = nil }), kid),
		"unknown role":           forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) { c.Role = "root" }), kid),
		"unknown kind":           forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) { c.Kind = "x" }), kid),
		"issued in the future": forge(t, jwt.SigningMethodEdDSA, good.keys[0].Private, claims(func(c *Claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
		}), kid),
		"tampered payload": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(
			`{"sub":"u1","iss":"gef","aud":["gef-api"],"role":"admin","typ":"session","jti":"t","exp":9999999999}`)) + "." + parts[2],
		"garbage": "not.a.token",
		"empty":   "",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := good.Verify(tok)
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, gef.ErrUnauthorized) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, _ := NewKey()
	tok, _, err := issuer(t, old).Sign("t", ada, KindSession, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewKey()
	rotated := issuer(t, fresh, old)
	if _, err := rotated.Verify(tok); err != nil {
		t.Fatalf("token of the previous key refused after rotation: %v", err)
	}
	newTok, _, _ := rotated.Sign("t2", ada, KindSession, time.Hour)
	if _, err := issuer(t, old).Verify(newTok); err == nil {
		t.Fatal("a verifier without the new key accepted its token")
	}
	if _, err := issuer(t, fresh).Verify(tok); err == nil {
		t.Fatal("a dropped key still verifies")
	}
}

func TestOnlyAPITokensMayBeUnbounded(t *testing.T) {
	t.Parallel()
	i := issuer(t)
	if _, _, err := i.Sign("t", ada, KindSession, 0); err == nil {
		t.Fatal("session token without expiry was signed")
	}
	tok, exp, err := i.Sign("t", ada, KindAPI, 0)
	if err != nil || !exp.IsZero() {
		t.Fatalf("api token: %v %v", exp, err)
	}
	if _, err := i.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateKeyPersists(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "jwt.pem")
	a, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || !a.Private.Equal(b.Private) {
		t.Fatal("the key changed between loads")
	}
	if _, err := ParseKey([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Fatal("garbage key parsed")
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	if HashToken("a") == HashToken("b") || len(HashToken("a")) != 64 || HashToken("a") != HashToken("a") {
		t.Fatal("HashToken is not a stable sha256 hex")
	}
}

func TestScopedTokensOpenOnlyTheirScope(t *testing.T) {
	t.Parallel()
	i := issuer(t)
	tok, _, err := i.SignScoped("tok2", ada, "session:S1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify(scoped) = %v, want ErrInvalidToken", err)
	}
	if _, err := i.VerifyScoped(tok, "session:S2", "name:viewer"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("VerifyScoped(other scopes) = %v, want ErrInvalidToken", err)
	}
	c, err := i.VerifyScoped(tok, "name:viewer", "session:S1")
	if err != nil || c.Kind != KindScoped || c.Scope != "session:S1" || c.Name != "ada" {
		t.Errorf("VerifyScoped = %+v, %v", c, err)
	}
	// Other tokens pass VerifyScoped as they pass Verify.
	api, _, _ := i.Sign("tok3", ada, KindAPI, 0)
	if c, err := i.VerifyScoped(api, "session:S1"); err != nil || c.Kind != KindAPI {
		t.Errorf("VerifyScoped(api token) = %+v, %v", c, err)
	}
	if _, _, err := i.Sign("tok4", ada, KindScoped, time.Hour); err == nil {
		t.Error("Sign made a scoped token without a scope")
	}
	if _, _, err := i.SignScoped("tok5", ada, "session:S1", 0); err == nil {
		t.Error("SignScoped made a token that never expires")
	}
	// A scoped claim forged without a scope is refused.
	k, _ := NewKey()
	i2 := issuer(t, k)
	c2 := Claims{RegisteredClaims: jwt.RegisteredClaims{ID: "x", Subject: "u1", Issuer: "gef", Audience: jwt.ClaimStrings{"gef-api"},
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Name: "ada", Role: gef.RoleUser, Kind: KindScoped}
	if _, err := i2.VerifyScoped(forge(t, jwt.SigningMethodEdDSA, k.Private, c2, k.ID), ""); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("VerifyScoped(no scope) = %v, want ErrInvalidToken", err)
	}
}
