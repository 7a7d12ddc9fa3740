// Command websvc is the long-lived HTTP service the session tests run. It
// echoes what it received, streams, takes uploads, echoes websocket
// messages and writes output on demand, so a test can check what reached
// the container through the manager's proxy and the node's tunnel.
package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "the address to listen on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/bytes", bytesHandler)
	mux.HandleFunc("/upload", upload)
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/release", release)
	mux.HandleFunc("/log", logHandler)
	mux.HandleFunc("/ws", wsEcho)
	mux.HandleFunc("/setcookie", setCookie)
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo?from=redirect", http.StatusFound)
	})
	mux.HandleFunc("/data/", func(w http.ResponseWriter, r *http.Request) {
		http.StripPrefix("/data", http.FileServer(http.Dir("/data"))).ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Println("websvc: terminated")
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	fmt.Println("websvc: listening on", *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "websvc:", err)
		os.Exit(1)
	}
}

// Echo is what /echo answers: the request as the container saw it.
type Echo struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
	Cookies map[string]string   `json:"cookies"`
}

func echo(w http.ResponseWriter, r *http.Request) {
	e := Echo{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Headers: r.Header,
		Cookies: map[string]string{}}
	for _, c := range r.Cookies() {
		e.Cookies[c.Name] = c.Value
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(e)
}

// Pattern is the byte at offset i of /bytes: cheap to make on both ends,
// and never the same for long.
func Pattern(i int64) byte { return byte(i*31 + i>>9 + i>>17) }

func bytesHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "n must be a byte count", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, 64<<10)
	for off := int64(0); off < n; {
		k := min(int64(len(buf)), n-off)
		for j := int64(0); j < k; j++ {
			buf[j] = Pattern(off + j)
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		off += k
	}
}

func upload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
}

var (
	mu       sync.Mutex
	releases = map[string]chan struct{}{}
)

func gate(id string) chan struct{} {
	mu.Lock()
	defer mu.Unlock()
	ch, ok := releases[id]
	if !ok {
		ch = make(chan struct{})
		releases[id] = ch
	}
	return ch
}

// stream sends a first line at once and a second only once /release is
// called with the same id: a proxy that buffers never shows the first.
func stream(w http.ResponseWriter, r *http.Request) {
	ch := gate(r.URL.Query().Get("id"))
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, "first")
	w.(http.Flusher).Flush()
	select {
	case <-ch:
		fmt.Fprintln(w, "second")
	case <-time.After(time.Minute):
		fmt.Fprintln(w, "timeout")
	case <-r.Context().Done():
	}
}

func release(w http.ResponseWriter, r *http.Request) {
	ch := gate(r.URL.Query().Get("id"))
	mu.Lock()
	select {
	case <-ch:
	default:
		close(ch)
	}
	mu.Unlock()
	fmt.Fprintln(w, "released")
}

// logHandler writes kib KiB to stdout, in 1 KiB lines.
func logHandler(w http.ResponseWriter, r *http.Request) {
	kib, _ := strconv.Atoi(r.URL.Query().Get("kib"))
	out := bufio.NewWriter(os.Stdout)
	line := strings.Repeat("l", 1023) + "\n"
	for i := 0; i < kib; i++ {
		out.WriteString(line)
	}
	out.Flush()
	fmt.Fprintln(w, "logged", kib)
}

// setCookie sets cookies that try to escape the session's path, or to
// replace GEF's own.
func setCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: "app", Value: "1", Path: "/"})
	http.SetCookie(w, &http.Cookie{Name: "wide", Value: "2", Path: "/", Domain: "example.org"})
	http.SetCookie(w, &http.Cookie{Name: "gef_session", Value: "forged", Path: "/"})
	http.SetCookie(w, &http.Cookie{Name: "gef_access", Value: "forged", Path: "/"})
	fmt.Fprintln(w, "cookies set")
}

// wsEcho is a websocket echo server (RFC 6455), kept to what the test
// needs: it echoes text and binary frames, answers pings and closes.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	if rw.Flush() != nil {
		return
	}
	for {
		fin, op, payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		switch op {
		case 0x8: // close
			writeFrame(conn, true, 0x8, payload)
			return
		case 0x9: // ping
			writeFrame(conn, true, 0xA, payload)
		case 0x0, 0x1, 0x2:
			if writeFrame(conn, fin, op, payload) != nil {
				return
			}
		}
	}
}

func readFrame(r *bufio.Reader) (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 16<<20 {
		return false, 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return fin, op, payload, nil
}

func writeFrame(w net.Conn, fin bool, op byte, payload []byte) error {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	h := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		h = append(h, byte(n))
	case n < 1<<16:
		h = append(h, 126, byte(n>>8), byte(n))
	default:
		h = append(h, 127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	_, err := w.Write(append(h, payload...))
	return err
}
