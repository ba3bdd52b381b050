package notify_test

// Unit tests of the delivery worker: FHIRGATE_SMTP_URL (RFC 5321 with
// STARTTLS, RFC 8314 implicit TLS), the PHI-free templates, rest-hook
// delivery (R4 subscription.html#rest-hook: 2xx is delivered), backoff
// and giving up.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/sqlitestore"
)

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		addr     string
		implicit bool
		user     string
		bad      bool
	}{
		{url: "smtp://user:pa%40ss@mail.example.org:587?from=portal@example.org", addr: "mail.example.org:587", user: "user"},
		{url: "smtp://mail.example.org?from=portal@example.org", addr: "mail.example.org:587"},
		{url: "smtps://mail.example.org?from=Portal%20%3Cportal@example.org%3E", addr: "mail.example.org:465", implicit: true},
		{url: "smtp://mail.example.org:25", bad: true},           // no from
		{url: "http://mail.example.org?from=a@b.org", bad: true}, // scheme
		{url: "smtp://?from=a@b.org", bad: true},                 // host
		{url: "smtp://h?from=not-an-address", bad: true},
	} {
		c, err := notify.ParseSMTPURL(tc.url)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: accepted", tc.url)
			}
			continue
		}
		if err != nil || c.Addr != tc.addr || c.Implicit != tc.implicit || c.User != tc.user {
			t.Errorf("%s: %+v %v", tc.url, c, err)
		}
	}
	c, _ := notify.ParseSMTPURL("smtp://user:pa%40ss@h?from=a@b.org&starttls=require")
	if c.Password != "pa@ss" || !c.RequireStartTLS {
		t.Errorf("%+v", c)
	}
}

// Every template in every language: the fixed sentence, the link, the
// emergency notice, and nothing a caller could inject (the link is the
// only data, and HTML escapes it).
func TestTemplates(t *testing.T) {
	for _, lang := range notify.Langs {
		for _, name := range notify.Templates {
			e, err := notify.Render(name, lang, "https://portal.example.org/messages?x=<b>")
			if err != nil {
				t.Fatal(err)
			}
			if e.Subject == "" || !strings.Contains(e.Text, "https://portal.example.org/messages?x=<b>") ||
				!strings.Contains(e.HTML, "https://portal.example.org/messages?x=%3cb%3e") || strings.Contains(e.HTML, "<b>") {
				t.Errorf("%s/%s: %+v", name, lang, e)
			}
			if !strings.Contains(e.Text, "911") || !strings.Contains(e.HTML, "911") {
				t.Errorf("%s/%s: no emergency notice", name, lang)
			}
		}
	}
	if e, _ := notify.Render("message", "fr-CA", "x"); !strings.Contains(e.Text, "nouveau message") {
		t.Errorf("fr-CA: %q", e.Text)
	}
	if e, _ := notify.Render("message", "de", "x"); !strings.Contains(e.Text, "new message") {
		t.Errorf("unknown language falls back to English: %q", e.Text)
	}
	if _, err := notify.Render("lab-value", "en", "x"); err == nil {
		t.Error("unknown template rendered")
	}
}

func TestBackoff(t *testing.T) {
	base, max := time.Second, time.Minute
	for n := 1; n < 20; n++ {
		want := base << (n - 1)
		if want > max || want <= 0 {
			want = max
		}
		for range 20 {
			d := notify.Backoff(n, base, max)
			if d < base || d > want || d < want/2 {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

type sink struct {
	mu   sync.Mutex
	msgs []string
	tls  []bool
}

type sess struct {
	s   *sink
	tls bool
}

func (x *sess) Reset()                               {}
func (x *sess) Logout() error                        { return nil }
func (x *sess) Mail(string, *smtp.MailOptions) error { return nil }
func (x *sess) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *sess) Data(r io.Reader) error               { return x.s.add(r, x.tls) }
func (s *sink) add(r io.Reader, tlsOn bool) error {
	b, err := io.ReadAll(r)
	s.mu.Lock()
	s.msgs = append(s.msgs, string(b))
	s.tls = append(s.tls, tlsOn)
	s.mu.Unlock()
	return err
}

// testCert borrows httptest's certificate for 127.0.0.1.
func testCert(t *testing.T) *tls.Config {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	c := ts.TLS.Clone()
	ts.Close()
	return c
}

func smtpServer(t *testing.T, cfg *tls.Config, implicit bool) (*sink, string) {
	s := &sink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, on := c.TLSConnectionState()
		return &sess{s: s, tls: on}, nil
	}))
	srv.Domain, srv.TLSConfig, srv.AllowInsecureAuth = "localhost", cfg, true
	var l net.Listener
	var err error
	if implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", cfg)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s, l.Addr().String()
}

func TestMailerTLS(t *testing.T) {
	cfg := testCert(t)
	for _, tc := range []struct {
		name, scheme string
		tls          *tls.Config
		implicit     bool
		wantTLS      bool
	}{
		{"starttls offered", "smtp", cfg, false, true},
		{"no starttls", "smtp", nil, false, false},
		{"implicit", "smtps", cfg, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := smtpServer(t, tc.tls, tc.implicit)
			c, err := notify.ParseSMTPURL(tc.scheme + "://" + addr + "?from=portal@example.org&insecure=true")
			if err != nil {
				t.Fatal(err)
			}
			e, _ := notify.Render("message", "en", "https://portal.example.org/messages")
			if err := notify.NewMailer(c).Send(context.Background(), "p@example.org", e.Message("portal@example.org", "p@example.org", "date", "<id@x>")); err != nil {
				t.Fatal(err)
			}
			if len(s.msgs) != 1 || s.tls[0] != tc.wantTLS {
				t.Fatalf("msgs %d, tls %v, want %v", len(s.msgs), s.tls, tc.wantTLS)
			}
			if !strings.Contains(s.msgs[0], "You have a new message in your portal.") {
				t.Fatalf("%s", s.msgs[0])
			}
		})
	}
	// starttls=require refuses a server without STARTTLS.
	_, addr := smtpServer(t, nil, false)
	c, _ := notify.ParseSMTPURL("smtp://" + addr + "?from=portal@example.org&starttls=require")
	if err := notify.NewMailer(c).Send(context.Background(), "p@example.org", []byte("x")); err == nil {
		t.Fatal("sent without STARTTLS despite starttls=require")
	}
}

// A rest-hook failing is retried with backoff, then delivered; one that
// keeps failing is given up after MaxAttempts and kept as failed.
func TestWorkerRestHook(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	var got atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer s3cret" || string(b) != `{"resourceType":"Bundle"}` {
			w.WriteHeader(400)
			return
		}
		got.Add(1)
		w.WriteHeader(int(status.Load()))
	}))
	defer hook.Close()
	st := memOutbox(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	var done []notify.State
	w := notify.NewWorker(notify.Options{Storage: st, Now: clock, MaxAttempts: 3, BackoffBase: time.Minute,
		Done: func(_ context.Context, it notify.Item, s notify.State, _ error) { done = append(done, s) }})
	ctx := context.Background()
	n := notify.Notification{Key: "sub/1/1", Channel: notify.RestHook, To: hook.URL, Headers: map[string]string{"Authorization": "Bearer s3cret"},
		Body: []byte(`{"resourceType":"Bundle"}`)}
	if err := w.Enqueue(ctx, n); err != nil {
		t.Fatal(err)
	}
	if c, err := w.RunOnce(ctx); err != nil || c != 1 {
		t.Fatalf("%d %v", c, err)
	}
	it, _ := st.Item(ctx, n.Key)
	if it.State != notify.Pending || it.Attempts != 1 || !it.Due.After(now) || it.Due.After(now.Add(time.Minute)) {
		t.Fatalf("after a 500: %+v", it)
	}
	if c, _ := w.RunOnce(ctx); c != 0 {
		t.Fatal("retried before its backoff")
	}
	status.Store(204)
	set(it.Due)
	if c, err := w.RunOnce(ctx); err != nil || c != 1 {
		t.Fatalf("%d %v", c, err)
	}
	if it, _ := st.Item(ctx, n.Key); it.State != notify.Delivered || got.Load() != 2 {
		t.Fatalf("after a 204: %+v (%d posts)", it, got.Load())
	}
	// Always failing: given up after 3 attempts.
	status.Store(503)
	n.Key = "sub/1/2"
	_ = w.Enqueue(ctx, n)
	for range 5 {
		_, _ = w.RunOnce(ctx)
		set(clock().Add(2 * time.Hour))
	}
	if it, _ := st.Item(ctx, n.Key); it.State != notify.Failed || it.Attempts != 2 || !strings.Contains(it.LastError, "gave up after 3 attempts") {
		t.Fatalf("always failing: %+v", it)
	}
	if len(done) != 2 || done[0] != notify.Delivered || done[1] != notify.Failed {
		t.Fatalf("done %v", done)
	}
	// Expired before delivery: failed, not sent.
	n.Key, n.Expires = "sub/1/3", clock().Add(-time.Second)
	_ = w.Enqueue(ctx, n)
	posts := got.Load()
	_, _ = w.RunOnce(ctx)
	if it, _ := st.Item(ctx, n.Key); it.State != notify.Failed || got.Load() != posts {
		t.Fatalf("expired: %+v", it)
	}
}

// memOutbox is an in-memory notification store, closed with the test.
func memOutbox(t *testing.T) *sqlitestore.Store {
	st, err := sqlitestore.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// cancelingStorage ends the worker's context as its Claim begins (Close
// arriving during a claim), and can report an error after claiming.
type cancelingStorage struct {
	*sqlitestore.Store
	cancel func()
	fail   error
}

func (c *cancelingStorage) Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]notify.Item, error) {
	if c.cancel != nil {
		c.cancel()
	}
	its, err := c.Store.Claim(ctx, now, lease, max)
	if err == nil {
		err = c.fail
	}
	return its, err
}

// A claim under way when the worker closes finishes and its items are
// delivered, and items a failing claim returned are delivered too: none is
// left leased, waiting out its lease after a restart.
func TestWorkerFinishesAClaimUnderWay(t *testing.T) {
	var got atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(204)
	}))
	defer hook.Close()
	st := memOutbox(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cs := &cancelingStorage{Store: st}
	w := notify.NewWorker(notify.Options{Storage: cs, Now: func() time.Time { return now }})
	for i, c := range []struct {
		name   string
		cancel bool
		fail   error
	}{{"closed during the claim", true, nil}, {"the claim failed after claiming", false, errors.New("lost the connection")}} {
		n := notify.Notification{Key: fmt.Sprintf("sub/1/%d", i), Channel: notify.RestHook, To: hook.URL, Body: []byte(`{}`)}
		if err := w.Enqueue(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cs.cancel, cs.fail = nil, c.fail
		if c.cancel {
			cs.cancel = cancel
		}
		claimed, err := w.RunOnce(ctx)
		cancel()
		if c.fail != nil && !errors.Is(err, c.fail) {
			t.Errorf("%s: RunOnce error %v, want the claim's", c.name, err)
		}
		if it, _ := st.Item(context.Background(), n.Key); claimed != 1 || it.State != notify.Delivered {
			t.Errorf("%s: claimed %d, item %+v: want it delivered", c.name, claimed, it)
		}
	}
	if got.Load() != 2 {
		t.Errorf("%d hooks posted, want 2", got.Load())
	}
}
