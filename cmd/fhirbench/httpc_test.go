package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLeanClient checks the CRUD phase's HTTP/1.1 client against Go's
// server: the request it writes (RFC 9112 section 3) and every body
// framing of an answer (section 6.3).
func TestLeanClient(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/fhir/echo":
			w.Header().Set("Location", "http://x/fhir/Observation/1/_history/1")
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(201)
			fmt.Fprintf(w, "%s %s %s %s %q", r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Host, body)
		case "/fhir/chunked":
			// Several flushes: net/http sends Transfer-Encoding: chunked.
			for i := 0; i < 3; i++ {
				io.WriteString(w, big[:1000*(i+1)])
				w.(http.Flusher).Flush()
			}
		case "/fhir/big":
			io.WriteString(w, big)
		case "/fhir/none":
			w.WriteHeader(204)
		case "/fhir/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	lc := newLeanClient(srv.Listener.Addr().String())
	defer lc.close()

	r, err := lc.Do("POST", "/fhir/echo", []byte(`{"a":1}`), "tok")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("POST Bearer tok application/fhir+json %s %q", srv.Listener.Addr(), `{"a":1}`)
	if r.Status != 201 || r.Location != "http://x/fhir/Observation/1/_history/1" || string(r.Body) != want {
		t.Fatalf("echo: %d %q %q, want 201 and %q", r.Status, r.Location, r.Body, want)
	}
	r, err = lc.Do("GET", "/fhir/echo", nil, "")
	if err != nil || string(r.Body) != fmt.Sprintf("GET   %s %q", srv.Listener.Addr(), "") {
		t.Fatalf("GET echo: %v %q", err, r.Body)
	}
	r, err = lc.Do("GET", "/fhir/chunked", nil, "")
	if err != nil || string(r.Body) != big[:1000]+big[:2000]+big[:3000] {
		t.Fatalf("chunked: %v, %d bytes", err, len(r.Body))
	}
	r, err = lc.Do("GET", "/fhir/big", nil, "")
	if err != nil || string(r.Body) != big {
		t.Fatalf("big: %v, %d bytes", err, len(r.Body))
	}
	r, err = lc.Do("DELETE", "/fhir/none", nil, "")
	if err != nil || r.Status != 204 || len(r.Body) != 0 {
		t.Fatalf("204: %v %d %q", err, r.Status, r.Body)
	}
	// Everything so far on one kept-alive connection.
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 kept alive", n)
	}
	r, err = lc.Do("GET", "/fhir/close", nil, "")
	if err != nil || string(r.Body) != "bye" {
		t.Fatalf("close: %v %q", err, r.Body)
	}
	if len(lc.idle) != 0 {
		t.Fatalf("a connection the server closes must not be reused")
	}
	// The server drops idle connections: the next request retries on a new one.
	if _, err := lc.Do("GET", "/fhir/none", nil, ""); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	if r, err := lc.Do("GET", "/fhir/big", nil, ""); err != nil || string(r.Body) != big {
		t.Fatalf("after the server closed an idle connection: %v", err)
	}
	// A POST is not sent twice: it fails on a connection the server
	// closed, and the next request goes on a new connection.
	before := conns.Load()
	srv.CloseClientConnections()
	if _, err := lc.Do("POST", "/fhir/echo", []byte("{}"), ""); err == nil {
		t.Fatalf("a POST on a closed connection was sent again")
	}
	if r, err := lc.Do("POST", "/fhir/echo", []byte("{}"), ""); err != nil || r.Status != 201 || conns.Load() != before+1 {
		t.Fatalf("POST after a failed one: %v %d, %d new connections", err, r.Status, conns.Load()-before)
	}
	// Concurrent use.
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				r, err := lc.Do("POST", "/fhir/echo", []byte(fmt.Sprint(w, i)), "")
				if err != nil || !bytes.HasSuffix(r.Body, []byte(fmt.Sprintf("%q", fmt.Sprint(w, i)))) {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d concurrent requests got another's answer or failed", bad.Load())
	}
}

// TestLeanClientRejectsGarbage: an answer that is not HTTP/1.1 is an
// error, not a status.
func TestLeanClientRejectsGarbage(t *testing.T) {
	for _, answer := range []string{
		"SSH-2.0-OpenSSH\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = http.ReadRequest(bufio.NewReader(c))
			io.WriteString(c, answer)
			c.Close()
		}()
		lc := newLeanClient(l.Addr().String())
		if r, err := lc.Do("GET", "/fhir/x", nil, ""); err == nil {
			t.Errorf("answer %q: got status %d and no error", answer, r.Status)
		}
		l.Close()
	}
}
