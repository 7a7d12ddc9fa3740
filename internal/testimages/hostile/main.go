// Command hostile is a test service that tries to break out of GEF's
// sandbox in the way its --attack parameter names, and writes what
// happened to /out/attack.txt and stdout.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	attack := flag.String("attack", "sleep", "write-dataset, write-root, network, symlink, forkbomb, memory, time, fill, flood, sleep or child")
	flag.Parse()
	var result string
	switch *attack {
	case "write-dataset":
		result = try(os.WriteFile("/data/pwned", []byte("x"), 0o644))
		result += " / mkdir: " + try(os.Mkdir("/data/pwned-dir", 0o755))
	case "write-root":
		result = try(os.WriteFile("/etc/pwned", []byte("x"), 0o644))
	case "network":
		var parts []string
		for _, addr := range []string{"1.1.1.1:53", "172.17.0.1:22", "deb.debian.org:80"} {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				c.Close()
			}
			parts = append(parts, addr+": "+try(err))
		}
		result = strings.Join(parts, "; ")
	case "symlink":
		_ = os.WriteFile("/out/ok.txt", []byte("fine\n"), 0o644)
		e1 := os.Symlink("/etc/passwd", "/out/passwd")
		e2 := os.Symlink("../../../../../../../../etc", "/out/etc")
		result = "links: " + try(e1) + ", " + try(e2)
	case "forkbomb":
		self, _ := os.Executable()
		n := 0
		var err error
		for ; n < 100000; n++ {
			cmd := exec.Command(self, "--attack=child")
			if err = cmd.Start(); err != nil {
				break
			}
		}
		result = fmt.Sprintf("started %d processes, then: %v", n, err)
		fmt.Println(result)
		_ = os.WriteFile("/out/attack.txt", []byte(result+"\n"), 0o644)
		os.Exit(1)
	case "child":
		time.Sleep(time.Hour)
	case "memory":
		var hold [][]byte
		for i := 0; i < 4096; i++ { // up to 4 GiB, 1 MiB at a time, touched
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			hold = append(hold, b)
		}
		result = fmt.Sprintf("allocated %d MiB", len(hold))
	case "time", "sleep":
		time.Sleep(time.Hour)
	case "fill":
		f, err := os.Create("/out/fill.bin")
		if err != nil {
			result = try(err)
			break
		}
		chunk := make([]byte, 1<<20)
		for i := 0; i < 1024; i++ { // up to 1 GiB, slowly enough to be caught
			if _, err := f.Write(chunk); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.Close()
		result = "filled"
	case "flood":
		line := []byte(strings.Repeat("flood ", 170) + "\n") // ~1 KiB
		for i := 0; i < 200*1024; i++ {                      // ~200 MiB
			os.Stdout.Write(line)
		}
		result = "flooded"
	default:
		result = "unknown attack " + *attack
	}
	fmt.Println(result)
	_ = os.WriteFile(filepath.Join("/out", "attack.txt"), []byte(result+"\n"), 0o644)
}

func try(err error) string {
	if err != nil {
		return "refused: " + err.Error()
	}
	return "SUCCEEDED"
}
