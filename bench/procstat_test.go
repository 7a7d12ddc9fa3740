package main

import (
	"os"
	"testing"
)

func TestReadProcStat(t *testing.T) {
	t.Parallel()
	s, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.RChar <= 0 {
		t.Errorf("own accounting %+v: no resident set or reads", s)
	}
}
