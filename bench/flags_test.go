package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		check   func(config) bool
		wantErr string
	}{
		{nil, func(c config) bool {
			return !c.Short && c.Runs == 30 && c.DrainJobs == 1000 && c.Out == "bench-results.json"
		}, ""},
		{[]string{"-short"}, func(c config) bool { return c.Short && c.Runs < 30 }, ""},
		{[]string{"-runs", "50", "-out", ""}, func(c config) bool { return c.Runs == 50 && c.Out == "" }, ""},
		{[]string{"-only", "drain, scale"}, func(c config) bool { return slices.Equal(c.Only, []string{"drain", "scale"}) }, ""},
		{[]string{"-only", "speed"}, nil, `no figure "speed"`},
		{[]string{"extra"}, nil, "unexpected arguments"},
	}
	for _, tt := range tests {
		c, err := parseFlags(tt.args)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.check(c) {
			t.Errorf("%v: %+v, %v", tt.args, c, err)
		}
	}
}
