package visit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/notify"
)

// MailOutbox is a notify.Outbox that sends "invitation" emails at once
// through SMTP (FHIRGATE_SMTP_URL), with the PHI-free text of this
// package. It stands in until the durable notify outbox is wired: it does
// not retry, and a key is remembered (sent once) only for the process's
// lifetime. An Enqueue that fails returns the error, so $invite answers
// 503 and stores no invitation.
type MailOutbox struct {
	// URL is smtp://[user:password@]host:port (STARTTLS when the server
	// offers it; credentials are sent only over TLS or to localhost).
	URL string
	// From is the sender address. Keep it neutral (no clinic or
	// physician name): it is part of what the recipient sees.
	From string
	Now  func() time.Time

	mu   sync.Mutex
	sent map[string]bool
}

var _ notify.Outbox = (*MailOutbox)(nil)

// Enqueue sends each email notification with template "invitation".
func (m *MailOutbox) Enqueue(ctx context.Context, ns ...notify.Notification) error {
	u, err := url.Parse(m.URL)
	if err != nil || u.Scheme != "smtp" || u.Host == "" {
		return errors.New("visit: the SMTP URL must be smtp://[user:password@]host:port")
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "25")
	}
	var auth smtp.Auth
	if u.User != nil {
		pw, _ := u.User.Password()
		h, _, _ := net.SplitHostPort(host)
		auth = smtp.PlainAuth("", u.User.Username(), pw, h)
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	for _, n := range ns {
		if n.Channel != notify.Email || n.Template != "invitation" {
			return fmt.Errorf("visit: the mail outbox sends invitation emails only, not %s/%s", n.Channel, n.Template)
		}
		if !n.Expires.IsZero() && !now().Before(n.Expires) {
			continue // dropped: not delivered by its expiry (notify.Notification.Expires)
		}
		m.mu.Lock()
		done := m.sent[n.Key]
		m.mu.Unlock()
		if done {
			continue
		}
		if strings.ContainsAny(n.To, "\r\n<>,") || strings.ContainsAny(m.From, "\r\n") {
			return errors.New("visit: bad email address")
		}
		msgBytes, err := InvitationEmail(m.From, n.To, n.Lang, n.Link, now())
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := smtp.SendMail(host, auth, m.From, []string{n.To}, msgBytes); err != nil {
			return fmt.Errorf("visit: send invitation email: %w", err)
		}
		m.mu.Lock()
		if m.sent == nil {
			m.sent = map[string]bool{}
		}
		m.sent[n.Key] = true
		m.mu.Unlock()
	}
	return nil
}

// InvitationEmail is the whole message (RFC 5322, quoted-printable UTF-8
// text) of an invitation: a fixed text and the link, nothing else — no
// name, clinic, physician, time, contact details or PIN.
func InvitationEmail(from, to, lang, link string, now time.Time) ([]byte, error) {
	if lang != "fr" {
		lang = "en"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@fhirgate>\r\n",
		from, to, mime.QEncoding.Encode("utf-8", msg(lang, "mail.subject")), now.UTC().Format(time.RFC1123Z), newToken())
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Language: %s\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", lang)
	qp := quotedprintable.NewWriter(&b)
	if _, err := fmt.Fprintf(qp, msg(lang, "mail.body"), link); err != nil {
		return nil, fmt.Errorf("visit: email: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("visit: email: %w", err)
	}
	return b.Bytes(), nil
}
