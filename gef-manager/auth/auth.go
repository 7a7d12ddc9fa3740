// Package auth signs and verifies the manager's bearer tokens: JWTs signed
// with Ed25519. The algorithm is pinned, issuer, audience and expiry are
// checked, and each key carries a kid so keys can be rotated: the newest key
// signs, older ones still verify until they are dropped.
package auth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/eudat-gef/gef"
)

// Token kinds, in the "typ" claim.
const (
	KindAPI     = "api"     // a long-lived API token, also stored hashed and revocable
	KindSession = "session" // a short-lived browser session
	// KindScoped opens one thing only, named by its "scope" claim, such as
	// one service session. Verify refuses it; only VerifyScoped takes it.
	KindScoped = "scoped"
)

// Claims are the claims GEF puts in its tokens.
type Claims struct {
	jwt.RegisteredClaims
	Name string   `json:"name"`
	Role gef.Role `json:"role"`
	Kind string   `json:"typ"`
	// Scope is what a KindScoped token opens.
	Scope string `json:"scope,omitempty"`
}

// Key is one Ed25519 signing key and its id.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// NewKey makes a random key.
func NewKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("auth: generate key: %w", err)
	}
	return keyFrom(priv), nil
}

// keyFrom derives the kid from the public key, so it is stable across restarts.
func keyFrom(priv ed25519.PrivateKey) Key {
	sum := sha256.Sum256(priv.Public().(ed25519.PublicKey))
	return Key{ID: hex.EncodeToString(sum[:8]), Private: priv}
}

// LoadOrCreateKey reads a PEM (PKCS#8) Ed25519 key from path, creating one
// with mode 0600 if the file does not exist.
func LoadOrCreateKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := NewKey()
		if err != nil {
			return Key{}, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return Key{}, fmt.Errorf("auth: encode key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return Key{}, fmt.Errorf("auth: key dir: %w", err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			return Key{}, fmt.Errorf("auth: write key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return Key{}, fmt.Errorf("auth: read key: %w", err)
	}
	return ParseKey(b)
}

// ParseKey parses a PEM (PKCS#8) Ed25519 private key.
func ParseKey(pemBytes []byte) (Key, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return Key{}, errors.New("auth: key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("auth: key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("auth: key is %T, want Ed25519", k)
	}
	return keyFrom(priv), nil
}

// Issuer signs and verifies tokens.
type Issuer struct {
	keys     []Key // keys[0] signs
	issuer   string
	audience string
	now      func() time.Time
}

// NewIssuer signs with the first key and verifies with all of them.
func NewIssuer(issuer, audience string, keys ...Key) (*Issuer, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: no signing key")
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("auth: issuer and audience are required")
	}
	return &Issuer{keys: keys, issuer: issuer, audience: audience, now: time.Now}, nil
}

// Sign issues a token. A zero ttl makes a token that does not expire; only
// API tokens, which are also checked against the store, may be made so.
func (i *Issuer) Sign(id string, u gef.User, kind string, ttl time.Duration) (string, time.Time, error) {
	if kind == KindScoped {
		return "", time.Time{}, errors.New("auth: sign scoped tokens with SignScoped")
	}
	return i.sign(id, u, kind, "", ttl)
}

// SignScoped issues a token that opens only scope, and expires after ttl.
func (i *Issuer) SignScoped(id string, u gef.User, scope string, ttl time.Duration) (string, time.Time, error) {
	if scope == "" || ttl <= 0 {
		return "", time.Time{}, errors.New("auth: a scoped token needs a scope and an expiry")
	}
	return i.sign(id, u, KindScoped, scope, ttl)
}

func (i *Issuer) sign(id string, u gef.User, kind, scope string, ttl time.Duration) (string, time.Time, error) {
	now := i.now()
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			ID: id, Subject: u.ID, Issuer: i.issuer, Audience: jwt.ClaimStrings{i.audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		},
		Name: u.Name, Role: u.Role, Kind: kind, Scope: scope,
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl).Truncate(time.Second)
		c.ExpiresAt = jwt.NewNumericDate(exp)
	} else if kind != KindAPI {
		return "", time.Time{}, errors.New("auth: only API tokens may be made without expiry")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = i.keys[0].ID
	s, err := t.SignedString(i.keys[0].Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w", err)
	}
	return s, exp, nil
}

// ErrInvalidToken is wrapped by every refusal of Verify.
var ErrInvalidToken = fmt.Errorf("auth: invalid token: %w", gef.ErrUnauthorized)

// Verify checks a token's signature, algorithm, issuer, audience and times.
// It refuses scoped tokens, which open one thing only.
func (i *Issuer) Verify(token string) (*Claims, error) {
	c, err := i.verify(token)
	if err != nil {
		return nil, err
	}
	if c.Kind == KindScoped {
		return nil, fmt.Errorf("%w: a token scoped to %s opens nothing else", ErrInvalidToken, c.Scope)
	}
	return c, nil
}

// VerifyScoped checks a token as Verify does, and also takes a scoped
// token whose scope is one of scopes.
func (i *Issuer) VerifyScoped(token string, scopes ...string) (*Claims, error) {
	c, err := i.verify(token)
	if err != nil {
		return nil, err
	}
	if c.Kind == KindScoped && (c.Scope == "" || !slices.Contains(scopes, c.Scope)) {
		return nil, fmt.Errorf("%w: the token is scoped to %q", ErrInvalidToken, c.Scope)
	}
	return c, nil
}

func (i *Issuer) verify(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, i.keyFor,
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(i.issuer), jwt.WithAudience(i.audience),
		jwt.WithIssuedAt(), jwt.WithTimeFunc(i.now), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Kind != KindAPI && c.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: a %s token must expire", ErrInvalidToken, c.Kind)
	}
	if c.Kind != KindAPI && c.Kind != KindSession && c.Kind != KindScoped {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidToken, c.Kind)
	}
	if !c.Role.Valid() || c.Subject == "" || c.ID == "" {
		return nil, fmt.Errorf("%w: missing subject, id or role", ErrInvalidToken)
	}
	return &c, nil
}

func (i *Issuer) keyFor(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	for _, k := range i.keys {
		if k.ID == kid {
			return k.Private.Public(), nil
		}
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// HashToken is how API tokens are stored: the hex sha256 of the token. The
// token is a high-entropy signed string, so a fast hash is enough.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// MAC authenticates data with a key derived from the signing key, so every
// manager replica sharing the key can check it. It protects short-lived
// browser state such as sign-in redirects and CSRF tokens.
func (i *Issuer) MAC(purpose string, data []byte) []byte {
	seed := sha256.Sum256(append([]byte("gef-mac:"+purpose+":"), i.keys[0].Private.Seed()...))
	m := hmac.New(sha256.New, seed[:])
	m.Write(data)
	return m.Sum(nil)
}
