package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// leanClient is the HTTP/1.1 client of the CRUD phase: kept-alive
// connections, one request at a time on each, written and parsed by hand,
// as load generators such as wrk do. It exists because the load generator
// shares the machine's cores with fhirgate and its store: Go's net/http
// client spends several times the CPU per request of the Mongo driver's
// own client (cmd/fhirbench prints both as "client µs/op"), and that CPU
// would be counted as fhirgate's overhead although a real client runs
// elsewhere. It speaks just enough HTTP/1.1 (RFC 9112) for fhirgate's
// answers: Content-Length or chunked bodies, and Connection: close.
type leanClient struct {
	addr    string // host:port
	host    string // Host header
	timeout time.Duration

	mu   sync.Mutex
	idle []*leanConn
}

type leanConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// leanResponse is what the CRUD phase reads of an answer.
type leanResponse struct {
	Status   int
	Location string
	Body     []byte
}

func newLeanClient(addr string) *leanClient {
	return &leanClient{addr: addr, host: addr, timeout: 60 * time.Second}
}

func (lc *leanClient) get() (*leanConn, bool, error) {
	lc.mu.Lock()
	if n := len(lc.idle); n > 0 {
		c := lc.idle[n-1]
		lc.idle = lc.idle[:n-1]
		lc.mu.Unlock()
		return c, true, nil
	}
	lc.mu.Unlock()
	c, err := net.DialTimeout("tcp", lc.addr, lc.timeout)
	if err != nil {
		return nil, false, err
	}
	return &leanConn{c: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 16<<10)}, false, nil
}

func (lc *leanClient) put(c *leanConn) {
	lc.mu.Lock()
	lc.idle = append(lc.idle, c)
	lc.mu.Unlock()
}

// close closes the idle connections.
func (lc *leanClient) close() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, c := range lc.idle {
		_ = c.c.Close()
	}
	lc.idle = nil
}

// Do sends one request (path is absolute, e.g. /fhir/Observation) with an
// optional JSON body and bearer token. An idempotent request on a
// kept-alive connection that the server closed meanwhile is retried once
// on a new one.
func (lc *leanClient) Do(method, path string, body []byte, token string) (leanResponse, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := lc.get()
		if err != nil {
			return leanResponse{}, err
		}
		resp, keep, sent, err := c.roundTrip(lc.host, method, path, body, token, lc.timeout)
		if err == nil {
			if keep {
				lc.put(c)
			} else {
				_ = c.c.Close()
			}
			return resp, nil
		}
		_ = c.c.Close()
		// A reused connection can be one the server has just closed. As
		// net/http does, only an idempotent request (RFC 9110 section
		// 9.2.2) is sent again, and only when nothing came back at all.
		if reused && !sent && attempt == 0 && method != "POST" && method != "PATCH" {
			continue
		}
		return leanResponse{}, err
	}
}

// errNoAnswer marks a connection that ended before any byte of an answer.
var errNoAnswer = errors.New("connection closed before an answer")

// roundTrip writes the request and reads the answer. keep reports whether
// the connection can carry another request; sent whether any byte of an
// answer arrived (if not, the server did not process the request).
func (c *leanConn) roundTrip(host, method, path string, body []byte, token string, timeout time.Duration) (resp leanResponse, keep, sent bool, err error) {
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	w := c.w
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\nAccept: application/fhir+json\r\n")
	if token != "" {
		w.WriteString("Authorization: Bearer ")
		w.WriteString(token)
		w.WriteString("\r\n")
	}
	if body != nil {
		w.WriteString("Content-Type: application/fhir+json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return resp, false, false, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
			return resp, false, false, errNoAnswer
		}
		return resp, false, len(line) > 0, err
	}
	// Status line: HTTP/1.1 SP 3DIGIT SP reason (RFC 9112 section 4).
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return resp, false, true, fmt.Errorf("bad status line %q", line)
	}
	resp.Status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return resp, false, true, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
	length, chunked := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return resp, false, true, fmt.Errorf("read header: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return resp, false, true, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case strings.EqualFold(string(name), "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return resp, false, true, fmt.Errorf("bad Content-Length %q", value)
			}
		case strings.EqualFold(string(name), "Transfer-Encoding"):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case strings.EqualFold(string(name), "Connection"):
			if bytes.Contains(bytes.ToLower(value), []byte("close")) {
				keep = false
			}
		case strings.EqualFold(string(name), "Location"):
			resp.Location = string(value)
		}
	}
	switch {
	case method == "HEAD" || resp.Status == 204 || resp.Status == 304 || resp.Status < 200:
	case chunked:
		resp.Body, err = readChunked(c.r)
	case length >= 0:
		resp.Body = make([]byte, length)
		_, err = io.ReadFull(c.r, resp.Body)
	default: // the body ends with the connection (RFC 9112 section 6.3)
		resp.Body, err = io.ReadAll(c.r)
		keep = false
	}
	if err != nil {
		return resp, false, true, fmt.Errorf("read body: %w", err)
	}
	return resp, keep, true, nil
}

// readChunked reads a chunked body (RFC 9112 section 7.1), trailers
// included and dropped.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailer section, then the final CRLF
				t, err := r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if crlf, err := r.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return nil, fmt.Errorf("chunk not followed by CRLF")
		}
	}
}
