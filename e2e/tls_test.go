package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testimages"
)

// tlsFiles is a self-signed certificate for 127.0.0.1 and a client that
// trusts only it.
type tlsFiles struct {
	cert, key string
	client    *http.Client
}

func selfSigned(t *testing.T) *tlsFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gef test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &tlsFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(f.cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	f.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return f
}

// TestTLS runs a job with the manager serving HTTPS and the node trusting
// its certificate, and shows plain HTTP and untrusted clients get nowhere.
func TestTLS(t *testing.T) {
	s := newStackWith(t, stackConfig{tls: selfSigned(t)})
	imageID := image(t, s.rt, testimages.TestService)
	s.node("site-a", map[string]string{"d": dataset(t, map[string]string{"x": "x"})})
	svc := s.publish(imageID)
	j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "d"})
	if j.State != gef.JobSucceeded {
		t.Fatalf("job over TLS ended %s: %s", j.State, j.Reason)
	}
	if _, err := http.Get(s.url + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the certificate connected: %v", err)
	}
	plain := "http://" + strings.TrimPrefix(s.url, "https://")
	if resp, err := http.Get(plain + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("the manager answered plain HTTP")
	}
}
