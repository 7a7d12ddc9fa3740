package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/eudat-gef/gef"
)

// Function-style calls: a short batch service run as a normal job, with its
// record and provenance, whose caller waits for the end and gets the
// output inline.

// MaxCallWait bounds how long a synchronous call may wait.
const MaxCallWait = 300 * time.Second

// maxInlineStdout bounds the output a synchronous call returns inline; the
// whole output stays available from the job's logs.
const maxInlineStdout = 1 << 20

// CallResult is the answer to a synchronous call.
type CallResult struct {
	Job gef.Job `json:"job"`
	// Done is false when the job outlived the wait; then only Job is set.
	Done bool `json:"done"`
	// Stdout is the job's standard output: its JSON value when the output
	// is JSON, else a string.
	Stdout          any  `json:"stdout,omitempty"`
	StdoutIsJSON    bool `json:"stdout_is_json,omitempty"`
	StdoutTruncated bool `json:"stdout_truncated,omitempty"`
}

// callRecheck is how often a synchronous call re-reads its job, to learn of
// an end that another manager replica recorded.
const callRecheck = 2 * time.Second

// Call submits a job and waits up to wait for it to end. If it ends in time,
// the result holds its final state and its standard output; if not, the
// job runs on and the result holds it as it is, to be followed by its id.
func (m *Manager) Call(ctx context.Context, p Principal, req gef.JobRequest, wait time.Duration) (CallResult, error) {
	if wait < 0 || wait > MaxCallWait {
		return CallResult{}, gef.Invalid("wait", "must be between 0 and %d seconds", int(MaxCallWait/time.Second))
	}
	j, err := m.Submit(ctx, p, req)
	if err != nil {
		return CallResult{}, err
	}
	// Subscribe before reading the state, so an end in between is seen.
	_, ended, cancel := m.logs.subscribe(j.ID)
	defer cancel()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(callRecheck)
	defer tick.Stop()
	for {
		if j, err = m.store.Job(ctx, j.ID); err != nil {
			return CallResult{}, err
		}
		if j.State.Final() {
			return m.callResult(ctx, j)
		}
		select {
		case <-ended:
			ended = nil
		case <-tick.C:
		case <-deadline.C:
			return CallResult{Job: j}, nil
		case <-ctx.Done():
			return CallResult{Job: j}, ctx.Err()
		}
	}
}

func (m *Manager) callResult(ctx context.Context, j gef.Job) (CallResult, error) {
	logsOf := j.ID
	if j.ReuseOf != nil {
		// Nothing ran: the output is the reused job's.
		logsOf = *j.ReuseOf
	}
	chunks, err := m.storedChunks(ctx, logsOf, "")
	if err != nil {
		return CallResult{}, err
	}
	res := CallResult{Job: j, Done: true}
	var out []byte
	for _, c := range chunks {
		if c.Stream != "stdout" {
			continue
		}
		if len(out)+len(c.Data) > maxInlineStdout {
			out = append(out, c.Data[:maxInlineStdout-len(out)]...)
			res.StdoutTruncated = true
			break
		}
		out = append(out, c.Data...)
	}
	if trimmed := bytes.TrimSpace(out); !res.StdoutTruncated && len(trimmed) > 0 && json.Valid(trimmed) {
		res.Stdout, res.StdoutIsJSON = json.RawMessage(trimmed), true
	} else {
		res.Stdout = string(out)
	}
	return res, nil
}
