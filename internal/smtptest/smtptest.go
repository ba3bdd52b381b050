// Package smtptest is a real SMTP server in-process (github.com/emersion/go-smtp)
// for the notification and eVisit tests: it keeps what it receives,
// decoded (headers, subject, every text and HTML part), and can be told
// to refuse mail, as a server that is down does (451).
package smtptest

import (
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one message received.
type Mail struct {
	From    string
	To      []string
	Data    string // the message as received
	Header  mail.Header
	Subject string // decoded
	Body    string // decoded text of every part
}

// Server is the SMTP server; Start it.
type Server struct {
	Addr    string
	mu      sync.Mutex
	msgs    []Mail
	failing bool
	refused int
	got     chan struct{}
}

// Start listens on a loopback port until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{got: make(chan struct{}, 1000)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

// URL is FHIRGATE_SMTP_URL for the server.
func (s *Server) URL() string { return "smtp://" + s.Addr + "?from=portal@example.org" }

// SetFailing makes the server refuse (451) or accept mail.
func (s *Server) SetFailing(f bool) {
	s.mu.Lock()
	s.failing = f
	s.mu.Unlock()
}

// Refused counts the messages refused while failing.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// All returns every message received.
func (s *Server) All() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.msgs...)
}

// To returns the messages with addr among the recipients.
func (s *Server) To(addr string) []Mail {
	var out []Mail
	for _, m := range s.All() {
		for _, t := range m.To {
			if t == addr {
				out = append(out, m)
			}
		}
	}
	return out
}

// Next waits (up to timeout) for the next message and returns it.
func (s *Server) Next(t testing.TB, timeout time.Duration) Mail {
	t.Helper()
	select {
	case <-s.got:
	case <-time.After(timeout):
		t.Fatal("no email arrived")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs[len(s.msgs)-1]
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.failing {
		x.s.refused++
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	m := Mail{From: x.from, To: x.to, Data: string(raw)}
	if msg, err := mail.ReadMessage(strings.NewReader(string(raw))); err == nil {
		m.Header = msg.Header
		m.Subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		m.Body = DecodeBody(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	}
	x.s.msgs = append(x.s.msgs, m)
	x.s.got <- struct{}{}
	return nil
}

// DecodeBody is the decoded text of a body: every part of a multipart one
// (text and HTML), quoted-printable decoded.
func DecodeBody(ctype, cte string, r io.Reader) string {
	mt, params, _ := mime.ParseMediaType(ctype)
	if strings.HasPrefix(mt, "multipart/") {
		var out strings.Builder
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextPart() // decodes quoted-printable parts
			if err != nil {
				break
			}
			out.WriteString(DecodeBody(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p))
			out.WriteString("\n")
		}
		return out.String()
	}
	if strings.EqualFold(cte, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}
