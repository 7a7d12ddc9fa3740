package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat is a process's accounting, read from /proc.
type procStat struct {
	CPU       time.Duration // user and system time so far
	RSSBytes  int64         // resident set now
	ReadBytes int64         // bytes it caused to be fetched from storage
	RChar     int64         // bytes it read through read(2) and the like, from any file or socket
	WChar     int64
}

// clockTick is USER_HZ, which Linux fixes at 100 for /proc/PID/stat.
const clockTick = 100

func readProcStat(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces; the fields follow its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64) // pages
	s.CPU = time.Duration(utime+stime) * time.Second / clockTick
	s.RSSBytes = rss * int64(os.Getpagesize())
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "read_bytes":
			s.ReadBytes = n
		case "rchar":
			s.RChar = n
		case "wchar":
			s.WChar = n
		}
	}
	return s, nil
}
