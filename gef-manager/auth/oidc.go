package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/eudat-gef/gef"
)

// OIDCConfig configures sign-in through an external OpenID Connect
// provider, such as EUDAT B2ACCESS, EGI Check-in or Keycloak.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; empty disables OIDC sign-in.
	Issuer string
	// ClientID and ClientSecret are GEF's client registration.
	ClientID, ClientSecret string
	// RedirectURL is GEF's callback: PUBLIC_URL/api/v1/login/oidc/callback.
	RedirectURL string
	// UsernameClaim names the claim that becomes the GEF user name;
	// default preferred_username, falling back to email.
	UsernameClaim string
	// Label is the provider's name on the sign-in page.
	Label string
}

// Enabled reports whether OIDC sign-in is configured.
func (c OIDCConfig) Enabled() bool { return c.Issuer != "" }

// Validate reports a configuration that cannot work.
func (c OIDCConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.ClientID == "" || c.RedirectURL == "" {
		return errors.New("auth: OIDC needs a client id and a redirect URL")
	}
	if !strings.HasPrefix(c.Issuer, "https://") && !strings.HasPrefix(c.Issuer, "http://127.0.0.1") &&
		!strings.HasPrefix(c.Issuer, "http://localhost") {
		return errors.New("auth: the OIDC issuer must be an https URL")
	}
	return nil
}

// Identity is who an OIDC provider says signed in.
type Identity struct {
	Issuer, Subject string
	Username        string
	Email           string
	Name            string
}

// ExternalID identifies the identity across sign-ins.
func (i Identity) ExternalID() string { return i.Issuer + "|" + i.Subject }

// OIDC signs users in through an OpenID Connect provider, verifying ID
// tokens against the provider's published keys (JWKS).
type OIDC struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use, so start-up needs no provider
}

// NewOIDC makes an OIDC client; discovery happens on first use.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.Label == "" {
		cfg.Label = "single sign-on"
	}
	return &OIDC{cfg: cfg}, nil
}

// Label names the provider for people.
func (o *OIDC) Label() string { return o.cfg.Label }

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: OIDC discovery at %s: %w: %w", o.cfg.Issuer, gef.ErrUnavailable, err)
	}
	o.provider = p
	return p, nil
}

func (o *OIDC) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: o.cfg.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
}

// AuthURL is where to send the browser to sign in. state and nonce bind the
// answer to this browser; verifier is the PKCE secret.
func (o *OIDC) AuthURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.oauth(p).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange trades the provider's code for a verified identity: the ID
// token's signature, issuer, audience, expiry and nonce are all checked.
func (o *OIDC) Exchange(ctx context.Context, code, nonce, verifier string) (Identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := o.oauth(p).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: code exchange: %w", ErrInvalidToken, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, fmt.Errorf("%w: the provider sent no ID token", ErrInvalidToken)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: ID token: %w", ErrInvalidToken, err)
	}
	if idt.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: ID token nonce does not match", ErrInvalidToken)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: ID token claims: %w", ErrInvalidToken, err)
	}
	str := func(k string) string { s, _ := claims[k].(string); return s }
	id := Identity{Issuer: idt.Issuer, Subject: idt.Subject, Username: str(o.cfg.UsernameClaim), Email: str("email"), Name: str("name")}
	if id.Username == "" {
		id.Username, _, _ = strings.Cut(id.Email, "@")
	}
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("%w: ID token has no subject", ErrInvalidToken)
	}
	return id, nil
}
