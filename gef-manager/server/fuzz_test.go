package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// FuzzAPIBodies sends arbitrary bodies to every endpoint that takes JSON:
// whatever arrives, the answer is never a 5xx.
func FuzzAPIBodies(f *testing.F) {
	endpoints := []string{
		"POST /api/v1/jobs", "POST /api/v1/services", "POST /api/v1/users", "POST /api/v1/tokens",
		"POST /api/v1/login", "POST /api/v1/password", "POST /api/v1/nodes/n1/state",
		"POST /api/v1/services/x/1/deprecate", "POST /api/v1/node/register", "POST /api/v1/node/poll",
		"POST /api/v1/node/jobs/" + gef.NewID() + "/report", "POST /api/v1/node/jobs/" + gef.NewID() + "/uploads",
	}
	for i := range endpoints {
		f.Add(uint8(i), `{}`)
		f.Add(uint8(i), `{"service":"s","dataset":"d","params":{"a":1e400}}`)
		f.Add(uint8(i), `{"name":"x","role":"admin","password":"`+strings.Repeat("p", 100)+`"}`)
		f.Add(uint8(i), `{"files":[{"name":"../..","path":"/etc/passwd"}]}`)
		f.Add(uint8(i), `[`)
	}
	b := setup(f)
	token := adminToken(f, b)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		method, path, _ := strings.Cut(endpoints[int(which)%len(endpoints)], " ")
		req, err := http.NewRequest(method, b.url+path, strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: %d", method, path, body, resp.StatusCode)
		}
	})
}
