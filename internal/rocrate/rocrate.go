// Package rocrate reads RO-Crate metadata as a JSON-LD processor does,
// offline, so that tests can check GEF's provenance crates are valid
// JSON-LD that means what it says.
package rocrate

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/piprate/json-gold/ld"
)

// ContextURL is the RO-Crate 1.1 context.
const ContextURL = "https://w3id.org/ro/crate/1.1/context"

//go:embed context-1.1.jsonld
var context11 []byte

// Loader serves the RO-Crate 1.1 context from an embedded excerpt and
// refuses every other URL: nothing is fetched from the network.
type Loader struct{}

// LoadDocument implements ld.DocumentLoader.
func (Loader) LoadDocument(u string) (*ld.RemoteDocument, error) {
	if strings.TrimSuffix(u, "/") != ContextURL {
		return nil, ld.NewJsonLdError(ld.LoadingDocumentFailed, "rocrate: no network: will not load "+u)
	}
	var doc any
	if err := json.Unmarshal(context11, &doc); err != nil {
		return nil, ld.NewJsonLdError(ld.LoadingDocumentFailed, err)
	}
	return &ld.RemoteDocument{DocumentURL: ContextURL, Document: doc}, nil
}

// Expand expands crate metadata. It fails on any property that does not
// expand to an absolute IRI, and on any @type that does not: a term the
// contexts do not define would otherwise be dropped without a word.
func Expand(metadata []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(metadata))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("rocrate: not JSON: %w", err)
	}
	opts := ld.NewJsonLdOptions("")
	opts.DocumentLoader = Loader{}
	opts.SafeMode = true
	expanded, err := ld.NewJsonLdProcessor().Expand(doc, opts)
	if err != nil {
		return nil, fmt.Errorf("rocrate: expand: %w", err)
	}
	for _, n := range expanded {
		m, _ := n.(map[string]any)
		types, _ := m["@type"].([]any)
		for _, t := range types {
			if s, _ := t.(string); !strings.Contains(s, ":") {
				return nil, fmt.Errorf("rocrate: %v has @type %q, which no context defines", m["@id"], s)
			}
		}
	}
	return expanded, nil
}

// Values returns every value of property (an absolute IRI) on the nodes
// of type typ (an absolute IRI, or "" for any): literals by their value,
// references by their @id.
func Values(expanded []any, typ, property string) []string {
	var out []string
	for _, n := range expanded {
		m, _ := n.(map[string]any)
		if typ != "" && !hasType(m, typ) {
			continue
		}
		vals, _ := m[property].([]any)
		for _, v := range vals {
			vm, _ := v.(map[string]any)
			if x, ok := vm["@value"]; ok {
				out = append(out, fmt.Sprint(x))
			} else if id, ok := vm["@id"].(string); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

func hasType(m map[string]any, typ string) bool {
	types, _ := m["@type"].([]any)
	for _, t := range types {
		if t == typ {
			return true
		}
	}
	return false
}
