// Command jsonsvc is a short batch service for the synchronous run tests:
// it describes its dataset as JSON on stdout, after an optional sleep.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

func main() {
	sleep := flag.Float64("sleep", 0, "seconds to sleep first")
	label := flag.String("label", "", "a label to echo back")
	in := flag.String("in", "/data", "the dataset")
	flag.Parse()
	if *sleep > 0 {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		select {
		case <-time.After(time.Duration(*sleep * float64(time.Second))):
		case <-term:
			os.Exit(143)
		}
	}
	var names []string
	var total int64
	filepath.WalkDir(*in, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(*in, p)
			names = append(names, filepath.ToSlash(rel))
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "jsonsvc: done")
	json.NewEncoder(os.Stdout).Encode(map[string]any{"files": names, "bytes": total, "label": *label})
}
