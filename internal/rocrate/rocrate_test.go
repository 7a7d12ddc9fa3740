package rocrate

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, crate, fails string
	}{
		{"valid", `{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
			{"@id": "./", "@type": "Dataset", "name": "x", "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}}]}`, ""},
		{"undefined property", `{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
			{"@id": "./", "@type": "Dataset", "bogus": "x"}]}`, "did not expand"},
		{"undefined type", `{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
			{"@id": "./", "@type": "Bogus", "name": "x"}]}`, "no context defines"},
		{"remote context", `{"@context": "https://example.org/context", "@graph": []}`, "no network"},
		{"not JSON", `{`, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := Expand([]byte(tc.crate))
			if tc.fails == "" {
				if err != nil || len(Values(out, "http://schema.org/Dataset", "http://purl.org/dc/terms/conformsTo")) != 1 {
					t.Fatalf("valid crate: %v %v", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.fails) {
				t.Fatalf("got %v, want an error saying %q", err, tc.fails)
			}
		})
	}
}
