package gef

import "testing"

func TestSessionStates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to SessionState
		ok       bool
	}{
		{SessionQueued, SessionStarting, true},
		{SessionStarting, SessionRunning, true},
		{SessionRunning, SessionStopping, true},
		{SessionStopping, SessionStopped, true},
		{SessionQueued, SessionStopped, true},
		{SessionStarting, SessionFailed, true},
		{SessionStopping, SessionRunning, false}, // a late "running" after a stop was asked
		{SessionRunning, SessionRunning, false},
		{SessionStopped, SessionFailed, false},
		{SessionFailed, SessionRunning, false},
		{SessionRunning, "bogus", false},
	} {
		if got := tc.from.CanMoveTo(tc.to); got != tc.ok {
			t.Errorf("%s -> %s: %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
	for _, s := range SessionStates {
		if !s.Valid() {
			t.Errorf("%s is not valid", s)
		}
		if s.Final() != (s == SessionStopped || s == SessionFailed) {
			t.Errorf("%s: Final() = %v", s, s.Final())
		}
	}
	if SessionState("bogus").Valid() || SessionAccess("friends").Valid() || !AccessPublic.Valid() {
		t.Error("validity of unknown values")
	}
}
