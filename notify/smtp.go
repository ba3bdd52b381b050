package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"time"
)

// SMTPConfig is a parsed FHIRGATE_SMTP_URL:
//
//	smtp://user:pass@host:587?from=portal@example.org   STARTTLS when the server offers it
//	smtps://user:pass@host:465?from=portal@example.org  implicit TLS (RFC 8314)
//
// Credentials are sent (AUTH PLAIN) only over TLS or to a loopback host.
// Query parameters: from (required), starttls=require (refuse a server
// that does not offer STARTTLS), insecure=true (do not verify the
// server's certificate; tests only).
type SMTPConfig struct {
	Addr            string // host:port
	Host            string
	Implicit        bool
	RequireStartTLS bool
	User, Password  string
	From            string
	TLS             *tls.Config
	Timeout         time.Duration // whole session (default 30 s)
}

// ParseSMTPURL parses FHIRGATE_SMTP_URL.
func ParseSMTPURL(s string) (SMTPConfig, error) {
	var c SMTPConfig
	u, err := url.Parse(s)
	if err != nil {
		return c, fmt.Errorf("notify: smtp url: %w", err)
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		c.Implicit = true
	default:
		return c, fmt.Errorf("notify: smtp url: scheme %q is not smtp or smtps", u.Scheme)
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return c, errors.New("notify: smtp url: no host")
	}
	port := u.Port()
	if port == "" {
		port = map[bool]string{false: "587", true: "465"}[c.Implicit]
	}
	c.Addr = net.JoinHostPort(c.Host, port)
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q := u.Query()
	c.From = q.Get("from")
	if c.From == "" {
		return c, errors.New("notify: smtp url: the from parameter (sender address) is required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return c, fmt.Errorf("notify: smtp url: from %q: %w", c.From, err)
	}
	c.RequireStartTLS = q.Get("starttls") == "require"
	c.TLS = &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	if q.Get("insecure") == "true" {
		c.TLS.InsecureSkipVerify = true
	}
	return c, nil
}

// Mailer sends emails through one SMTP server.
type Mailer struct {
	cfg SMTPConfig
}

// NewMailer returns a Mailer for c.
func NewMailer(c SMTPConfig) *Mailer {
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	return &Mailer{cfg: c}
}

// From is the sender address.
func (m *Mailer) From() string { return m.cfg.From }

// Send delivers msg to one recipient (RFC 5321): one connection per
// message, STARTTLS when offered (or implicit TLS), AUTH when configured.
func (m *Mailer) Send(ctx context.Context, to string, msg []byte) (err error) {
	c := m.cfg
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	d := net.Dialer{}
	var conn net.Conn
	if c.Implicit {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: c.TLS}).DialContext(ctx, "tcp", c.Addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.Addr)
	}
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", c.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cl, err := smtp.NewClient(conn, c.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp: %s: %w", c.Addr, err)
	}
	defer cl.Close()
	if err := cl.Hello("localhost"); err != nil {
		return fmt.Errorf("smtp: hello: %w", err)
	}
	if !c.Implicit {
		if ok, _ := cl.Extension("STARTTLS"); ok {
			if err := cl.StartTLS(c.TLS); err != nil {
				return fmt.Errorf("smtp: starttls: %w", err)
			}
		} else if c.RequireStartTLS {
			return errors.New("smtp: the server does not offer STARTTLS (starttls=require)")
		}
	}
	if c.User != "" {
		if ok, _ := cl.Extension("AUTH"); ok {
			// PlainAuth refuses to send credentials unencrypted, except to localhost.
			if err := cl.Auth(smtp.PlainAuth("", c.User, c.Password, c.Host)); err != nil {
				return fmt.Errorf("smtp: auth: %w", err)
			}
		}
	}
	if err := cl.Mail(addrOnly(c.From)); err != nil {
		return fmt.Errorf("smtp: mail from: %w", err)
	}
	if err := cl.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: rcpt to: %w", err)
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("smtp: data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: data: %w", err)
	}
	_ = cl.Quit()
	return nil
}

func addrOnly(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address
	}
	return s
}

// quotedPrintable encodes s with CRLF line ends.
func quotedPrintable(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
	_ = w.Close()
	return b.String()
}
