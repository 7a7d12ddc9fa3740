package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// TestDevModeDemo runs the README's first command: gef-manager -dev -demo
// on its embedded default, SQLite and a local result store, with an
// in-process node on the local engine.
func TestDevModeDemo(t *testing.T) {
	engine(t)
	bin := binaries(t)
	dir := filepath.Join(t.TempDir(), "gef-data")
	addr := freeAddr(t)
	p := start(t, "gef-manager -dev -demo", nil, filepath.Join(bin, "gef-manager"), "-dev", "-demo", "-data", dir, "-addr", addr)
	eventually(t, 3*time.Minute, "the demo job succeeds", func() bool {
		return strings.Contains(p.output(), "succeeded on node local")
	})
	out := p.output()
	for _, want := range []string{"GEF is running in dev mode", "report/summary.json", `"files": 4`, "/jobs/"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("http://"+addr, strings.TrimSpace(string(tok)))
	page, err := c.Jobs(context.Background(), gef.JobFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].State != gef.JobSucceeded || len(page.Items[0].Outputs) != 2 {
		t.Fatalf("jobs after the demo: %+v %v", page, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gef.db")); err != nil {
		t.Fatalf("dev mode did not use SQLite under -data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "jobs", page.Items[0].ID, "report", "summary.json")); err != nil {
		t.Fatalf("the demo's result is not in the local store: %v", err)
	}
}
