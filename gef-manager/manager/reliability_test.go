package manager

import (
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

func TestReliabilityConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    Reliability
		err  string
	}{
		{"defaults", Reliability{}, ""},
		{"default above the limit", Reliability{DefaultMaxAttempts: 5, MaxAttemptsLimit: 4}, "between 1 and the limit 4"},
		{"limit too high", Reliability{MaxAttemptsLimit: 101}, "at most 100"},
		{"staging below its stall", Reliability{StagingTimeout: time.Minute, StagingStallTimeout: time.Hour}, "must not be below"},
		{"negative", Reliability{RunGrace: -time.Second}, "run grace must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Reliability: tc.r}
			err := c.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.err)
			}
		})
	}
	var c Config
	c.setDefaults()
	if c.DefaultMaxAttempts != 3 || c.MaxAttemptsLimit != 10 || c.AssignedTimeout != 5*time.Minute || c.StagingTimeout != 24*time.Hour ||
		c.QueueTimeout != 7*24*time.Hour || c.SweepInterval != 15*time.Second {
		t.Fatalf("defaults: %+v", c.Reliability)
	}
}

func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	m := &Manager{}
	m.cfg.setDefaults()
	for _, tc := range []struct {
		ask, want int
		bad       bool
	}{{0, 3, false}, {1, 1, false}, {10, 10, false}, {11, 0, true}, {-1, 0, true}} {
		got, err := m.maxAttempts(gef.JobRequest{MaxAttempts: tc.ask})
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("max_attempts %d: %d %v", tc.ask, got, err)
		}
	}
}
