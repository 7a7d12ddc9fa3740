package server

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/eudat-gef/gef/gef-manager/auth"
)

// issuer is a small OpenID Connect provider: discovery, JWKS, an
// authorization endpoint that approves at once, and a token endpoint.
type issuer struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	clientID string
	subject  string
	username string
	mu       sync.Mutex
	nonces   map[string]string // code → nonce
	tamper   func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey)
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, clientID: "gef", subject: "sub-42", username: "Grace.Hopper", nonces: map[string]string{}}
	mux := http.NewServeMux()
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "authorization_endpoint": is.srv.URL + "/authorize", "token_endpoint": is.srv.URL + "/token",
			"jwks_uri": is.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		enc := base64.RawURLEncoding.EncodeToString
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": enc(key.N.Bytes()), "e": enc(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" || q.Get("client_id") != is.clientID {
			http.Error(w, "PKCE and client id required", http.StatusBadRequest)
			return
		}
		code := "code-" + q.Get("state")[:8]
		is.mu.Lock()
		is.nonces[code] = q.Get("nonce")
		is.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		is.mu.Lock()
		nonce, ok := is.nonces[r.Form.Get("code")]
		is.mu.Unlock()
		if !ok || r.Form.Get("code_verifier") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		claims := jwt.MapClaims{"iss": is.srv.URL, "aud": is.clientID, "sub": is.subject, "nonce": nonce,
			"preferred_username": is.username, "email": "grace@example.org",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
		signer := is.key
		if is.tamper != nil {
			claims, signer = is.tamper(claims)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = "k1"
		idt, err := tok.SignedString(signer)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "id_token": idt, "expires_in": 3600})
	})
	return is
}

// signIn runs the browser side of the flow and returns the final answer.
func signIn(t *testing.T, b *bundle) (*http.Client, *http.Response) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(b.url + "/api/v1/login/oidc?next=/api/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	return c, resp
}

func enableOIDC(t *testing.T, b *bundle, is *issuer) {
	t.Helper()
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, ClientID: is.clientID, ClientSecret: "s",
		RedirectURL: b.url + "/api/v1/login/oidc/callback", Label: "Test IdP"})
	if err != nil {
		t.Fatal(err)
	}
	b.srv.EnableOIDC(o)
}

func TestOIDCSignIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	is := newIssuer(t)
	enableOIDC(t, b, is)
	c, resp := signIn(t, b)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var who map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &who) != nil || who["name"] != "grace.hopper" || who["role"] != "user" {
		t.Fatalf("after sign-in, whoami = %d %s", resp.StatusCode, body)
	}
	// A second sign-in of the same identity is the same user.
	_, resp = signIn(t, b)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var again map[string]any
	_ = json.Unmarshal(body, &again)
	if again["id"] != who["id"] {
		t.Fatalf("second sign-in made another user: %v vs %v", again, who)
	}
	_ = c
}

func TestOIDCRefusals(t *testing.T) {
	t.Parallel()
	for name, tamper := range map[string]func(jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey){
		"wrong audience": func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) { c["aud"] = "someone-else"; return c, nil },
		"wrong issuer":   func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) { c["iss"] = "https://evil"; return c, nil },
		"expired": func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			return c, nil
		},
		"wrong nonce": func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) { c["nonce"] = "replayed"; return c, nil },
		"another key": func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) {
			k, _ := rsa.GenerateKey(rand.Reader, 2048)
			return c, k
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			is := newIssuer(t)
			is.tamper = func(c jwt.MapClaims) (jwt.MapClaims, *rsa.PrivateKey) {
				c, k := tamper(c)
				if k == nil {
					k = is.key
				}
				return c, k
			}
			enableOIDC(t, b, is)
			_, resp := signIn(t, b)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: sign-in answered %d", name, resp.StatusCode)
			}
		})
	}
	t.Run("forged state", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		enableOIDC(t, b, newIssuer(t))
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(b.url + "/api/v1/login/oidc")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp, err = c.Get(b.url + "/api/v1/login/oidc/callback?code=x&state=forged")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "does not belong") {
			t.Fatalf("forged state: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("open redirect", func(t *testing.T) {
		t.Parallel()
		for _, next := range []string{"https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)"} {
			if got := safeNext(next); got != "/" {
				t.Fatalf("safeNext(%q) = %q", next, got)
			}
		}
		if safeNext("/jobs?state=running") != "/jobs?state=running" {
			t.Fatal("a local path was refused")
		}
	})
}
