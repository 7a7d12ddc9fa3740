package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

func TestCompareOutputs(t *testing.T) {
	t.Parallel()
	f := func(name, path, sum string, size int64) gef.OutputFile {
		return gef.OutputFile{Name: name, Path: path, SHA256: sum, Size: size}
	}
	for _, tc := range []struct {
		name            string
		original, rerun []gef.OutputFile
		want            string
	}{
		{"both empty", nil, nil, "[]"},
		{"identical, in another order", []gef.OutputFile{f("o", "a", "1", 1), f("o", "b", "2", 1)},
			[]gef.OutputFile{f("o", "b", "2", 1), f("o", "a", "1", 1)}, "[]"},
		{"changed bytes", []gef.OutputFile{f("o", "a", "1", 1)}, []gef.OutputFile{f("o", "a", "2", 1)}, "[{o/a changed}]"},
		{"changed size only", []gef.OutputFile{f("o", "a", "1", 1)}, []gef.OutputFile{f("o", "a", "1", 2)}, "[{o/a changed}]"},
		{"added and removed", []gef.OutputFile{f("o", "gone", "1", 1)}, []gef.OutputFile{f("o", "new", "1", 1)},
			"[{o/gone removed} {o/new added}]"},
		{"same path in another output", []gef.OutputFile{f("x", "a", "1", 1)}, []gef.OutputFile{f("y", "a", "1", 1)},
			"[{x/a removed} {y/a added}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(compareOutputs(tc.original, tc.rerun)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestReuseKey(t *testing.T) {
	t.Parallel()
	img := "sha256:" + fmt.Sprintf("%064d", 1)
	base := reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}})
	for name, other := range map[string]string{
		"image":    reuseKey("sha256:"+fmt.Sprintf("%064d", 2), []byte(`{"n":1}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}}),
		"params":   reuseKey(img, []byte(`{"n":2}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}}),
		"data":     reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d2"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}}),
		"input":    reuseKey(img, []byte(`{"n":1}`), map[string]string{"other": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}}),
		"text":     reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "y"}}),
		"no text":  reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d1"}, nil),
		"text dir": reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in2/t.txt", Content: "x"}}),
	} {
		if other == base {
			t.Errorf("a different %s gives the same key", name)
		}
	}
	if again := reuseKey(img, []byte(`{"n":1}`), map[string]string{"data": "d1"}, []gef.InputFile{{Path: "/in/t.txt", Content: "x"}}); again != base {
		t.Error("the same run gives another key")
	}
}

// sampleCrate is a crate as the manager writes it.
func sampleCrate(t testing.TB) []byte {
	m := &Manager{cfg: Config{PublicURL: "https://gef.example.org"}}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	code := 0
	rec := gef.Provenance{JobID: gef.NewID(), URL: "https://gef.example.org/jobs/x", Service: "svc", ServiceTitle: "Svc", Version: "1.0",
		ImageDigest: "sha256:" + fmt.Sprintf("%064x", 7), Params: []byte(`{"n":3,"s":"a b","ok":true}`), Argv: []string{"/x", "--n", "3"},
		Inputs:     []gef.ProvenanceInput{{Input: "data", Dataset: "climate", Digest: "sha256:" + fmt.Sprintf("%064x", 8)}},
		TextInputs: []gef.ProvenanceText{{Input: "note", Path: "/in/note.txt", Text: "hello", SHA256: "abc"}},
		Outputs:    []gef.OutputFile{{Name: "out", Path: "a/b c.txt", Size: 3, SHA256: "def"}},
		Node:       "n1", EngineVersion: "20.10", EngineAPI: "1.41", Runtime: "runc", ManagerVersion: gef.Version,
		Limits: &gef.Limits{MemoryBytes: 1, CPUs: 1}, Timestamps: gef.Timestamps{Queued: now, Running: &now, Finished: &now},
		State: gef.JobSucceeded, ExitCode: &code, Owner: "ada", SealedAt: now}
	svc := gef.Service{Params: []gef.Param{{Name: "n", Type: gef.ParamInt}, {Name: "s", Type: gef.ParamStr}, {Name: "ok", Type: gef.ParamBool}}}
	b, err := json.Marshal(m.crate(rec, svc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCrateRoundTrip(t *testing.T) {
	t.Parallel()
	cr, err := readCrate(sampleCrate(t))
	if err != nil {
		t.Fatal(err)
	}
	if cr.Image != "sha256:"+fmt.Sprintf("%064x", 7) || cr.Datasets["data"] != "climate" || cr.Digests["data"] != "sha256:"+fmt.Sprintf("%064x", 8) ||
		cr.Text["note"] != "hello" || fmt.Sprint(cr.Params["n"]) != "3" || cr.Params["s"] != "a b" || cr.Params["ok"] != true ||
		len(cr.Outputs) != 1 || cr.Outputs[0].Path != "a/b c.txt" || cr.Outputs[0].Size != 3 || cr.Outputs[0].SHA256 != "def" {
		t.Fatalf("read back: %+v", cr)
	}
}

// FuzzReadCrate feeds readCrate what a user might upload: it must refuse
// or accept, never panic, and what it accepts must be well formed.
func FuzzReadCrate(f *testing.F) {
	f.Add(sampleCrate(f))
	f.Add([]byte(`{"@graph":[{"@id":"#run","@type":"CreateAction","containerImage":{"@id":"#i"}},{"@id":"#i","sha256":"00"}]}`))
	f.Add([]byte(`{"@graph":[{"@id":"#run","@type":["CreateAction"],"object":[{"@id":"#run"}],"result":{"@id":"#nope"}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cr, err := readCrate(b)
		if err != nil {
			return
		}
		if !validImageID(cr.Image) {
			t.Fatalf("accepted image %q", cr.Image)
		}
		for _, o := range cr.Outputs {
			if validOutputPath(o.Name, o.Path) != nil {
				t.Fatalf("accepted output path %q", o.Path)
			}
		}
	})
}

func TestDataChangedErrorIsAConflict(t *testing.T) {
	t.Parallel()
	var err error = &DataChangedError{Problems: []string{"dataset a changed", "dataset b changed"}}
	err = fmt.Errorf("rerun: %w", err)
	var dc *DataChangedError
	if !errors.Is(err, gef.ErrConflict) || !errors.As(err, &dc) || len(dc.Problems) != 2 {
		t.Fatalf("%v is not a conflict carrying its problems", err)
	}
	if want := "rerun: dataset a changed. dataset b changed. To run on the data as it is now, rerun with accept_changed_data: conflict"; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
}
