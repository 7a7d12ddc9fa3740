package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/eudat-gef/gef"
)

// What a task has done is kept beside its outputs, in the job's directory,
// so that an agent that restarts can go on where the last one stopped:
// which output it has shipped, and which files it has uploaded.

// shipProgress is how far a job attempt's output has been put in the
// outbox. The container's output is read again from its start after a
// restart, and the bytes counted here are skipped.
type shipProgress struct {
	Seq    int   `json:"seq"`    // the next chunk's number
	Stdout int64 `json:"stdout"` // bytes of each stream read so far
	Stderr int64 `json:"stderr"`
	Total  int64 `json:"total"` // bytes kept, counted against the log limit
	Cut    bool  `json:"cut"`   // the log limit was reached
}

const (
	shipFile   = "ship.json"
	stagedFile = "staged.json"
)

// saveJSON writes v to path as JSON, whole. It is not synced to disk: what
// it counts (chunks in the outbox, files in the object store) is already
// kept when it is written, so losing it to a crash of the machine only
// makes the next run redo that work, as a crash of the agent between the
// two writes already can.
func saveJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFile(path, b, false)
}

// loadJSON reads path into v; a missing file leaves v as it is.
func loadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

func (t *task) loadProgress() (shipProgress, error) {
	var p shipProgress
	err := loadJSON(filepath.Join(t.dir, shipFile), &p)
	return p, err
}

// staged maps name/path to the files already uploaded, with their sums.
type staged map[string]gef.OutputFile

func (t *task) loadStaged() (staged, error) {
	s := staged{}
	err := loadJSON(filepath.Join(t.dir, stagedFile), &s)
	return s, err
}

func (t *task) saveStaged(s staged) error {
	return saveJSON(filepath.Join(t.dir, stagedFile), s)
}

// skipWriter drops the first n bytes written to it: the output an earlier
// run of the agent already shipped.
type skipWriter struct {
	w io.Writer
	n int64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	total := len(p)
	if s.n > 0 {
		k := min(int64(len(p)), s.n)
		s.n -= k
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return total, nil
}
