// Command testsvc is the service image the end-to-end tests run. Its
// behaviour is chosen by parameters, and it records what it saw in its
// output so a test can assert on it.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	exit := flag.Int("exit", 0, "exit with this code")
	sleep := flag.Float64("sleep", 0, "seconds to sleep before finishing")
	writeDataset := flag.Bool("write_dataset", false, "try to write into the dataset")
	lines := flag.Int("lines", 0, "print this many numbered lines to stdout")
	size := flag.Int("bytes", 1024, "size of the generated output file")
	message := flag.String("message", "", "print this to stderr")
	writeTime := flag.Bool("write_time", false, "write the current time to time.txt, so no two runs agree")
	files := flag.Int("files", 0, "write this many more files, of sizes from 4 KiB to file_max, under files/")
	fileMax := flag.Int("file_max", 1<<20, "size of the largest of those files")
	in := flag.String("in", "/data", "the dataset")
	out := flag.String("out", "/out", "the output directory")
	flag.Parse()

	must(writeJSON(filepath.Join(*out, "argv.json"), os.Args))
	must(os.WriteFile(filepath.Join(*out, "listing.txt"), []byte(listing(*in)), 0o644))
	if *writeDataset {
		err := os.WriteFile(filepath.Join(*in, "written-by-job"), []byte("x"), 0o644)
		result := "write succeeded"
		if err != nil {
			result = "write failed: " + err.Error()
		}
		must(os.WriteFile(filepath.Join(*out, "write-attempt.txt"), []byte(result+"\n"), 0o644))
	}
	must(os.MkdirAll(filepath.Join(*out, "nested", "deep"), 0o755))
	must(writePattern(filepath.Join(*out, "nested", "deep", "data.bin"), int64(*size), 0))
	if *files > 0 {
		must(os.MkdirAll(filepath.Join(*out, "files"), 0o755))
		for k := range *files {
			must(writePattern(filepath.Join(*out, "files", fmt.Sprintf("%05d.bin", k)), smallSize(k, *files, *fileMax), byte(k)))
		}
	}
	if *writeTime {
		must(os.WriteFile(filepath.Join(*out, "time.txt"), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o644))
	}

	w := bufio.NewWriter(os.Stdout)
	for i := 1; i <= *lines; i++ {
		fmt.Fprintf(w, "line %d\n", i)
	}
	w.Flush()
	if *message != "" {
		fmt.Fprintln(os.Stderr, *message)
	}
	fmt.Println("testsvc: started")
	if *sleep > 0 {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		select {
		case <-time.After(time.Duration(*sleep * float64(time.Second))):
		case <-term:
			fmt.Println("testsvc: terminated")
			os.Exit(143)
		}
	}
	fmt.Println("testsvc: done")
	os.Exit(*exit)
}

// smallSize is the size of the k-th of n files: a ramp from 4 KiB to max,
// so the sizes spread evenly over that range.
func smallSize(k, n, max int) int64 {
	const least = 4 << 10
	if n == 1 || max <= least {
		return int64(max)
	}
	return least + int64(max-least)*int64(k)/int64(n-1)
}

// writePattern writes size bytes, the i-th being byte(i*7)+shift, in
// chunks, so a large file needs no memory of its size.
func writePattern(path string, size int64, shift byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10) // a multiple of the pattern's period, 256
	for i := range buf {
		buf[i] = byte(i*7) + shift
	}
	for size > 0 {
		n := min(size, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		size -= n
	}
	return f.Close()
}

func listing(dir string) string {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(files)
	return strings.Join(files, "\n") + "\n"
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsvc:", err)
		os.Exit(70)
	}
}
