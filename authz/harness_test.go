package authz_test

// The harness runs the whole fhirgate (internal/app: embedded FerretDB,
// the built-in authorization server on an in-memory SQLite database, the
// real gin engine) behind httptest, with a scripted browser (cookie jar,
// HTML forms parsed with golang.org/x/net/html) and golang.org/x/oauth2
// as the app.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/smart/devissuer"

	"github.com/fhirgate/fhirgate/internal/browsertest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fastPasswords keeps argon2id cheap in tests (the parameters travel
// with each hash, so verification uses them too).
var fastPasswords = authz.PasswordParams{Memory: 64, Time: 1, Threads: 1}

type harness struct {
	t     *testing.T
	app   *app.App
	srv   *httptest.Server
	base  string // FHIR base URL
	iss   string // issuer
	clock *clock
}

func newHarness(t *testing.T, opts ...func(*app.Options)) *harness {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String() + "/fhir"
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	o := app.Options{
		BaseURL: base, DataDir: t.TempDir(), MaxBody: 1 << 20, Now: clk.Now, AuthzDB: ":memory:",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		AuthServer: authz.Config{Password: fastPasswords, LoginsPerWindow: 1000},
	}
	if os.Getenv("FHIRGATE_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := app.New(context.Background(), o)
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	ts.Config.Handler = a.Handler
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	h := &harness{t: t, app: a, srv: ts, base: base, clock: clk}
	if a.Authz != nil {
		h.iss = a.Authz.Issuer()
	}
	return h
}

func (h *harness) systemToken() string {
	tok, err := h.app.DevIssuer.Mint(devissuer.MintOptions{Scope: "system/*.cruds", Client: "test-emr", TTL: time.Hour})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// fhir sends a FHIR request with token ("" = a system token).
func (h *harness) fhir(method, path string, body any, token string) (int, map[string]any) {
	h.t.Helper()
	if token == "" {
		token = h.systemToken()
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.base+"/"+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func (h *harness) put(resource map[string]any) {
	h.t.Helper()
	path := resource["resourceType"].(string) + "/" + resource["id"].(string)
	if st, body := h.fhir("PUT", path, resource, ""); st != 200 && st != 201 {
		h.t.Fatalf("PUT %s: %d %v", path, st, body)
	}
}

// world is the data of the proxy scenarios: a mother (Person/mum linked
// to her RelatedPersons) of Emma (8) and Tom (14), Ann (an adult) who
// delegated appointments to the mother by Consent, and a practitioner.
type world struct {
	emma, tom, ann string
}

func (h *harness) seed() world {
	for _, r := range browsertest.Family(h.clock.Now()) {
		h.put(r)
	}
	return world{emma: "emma", tom: "tom", ann: "ann"}
}

func obs(id, patient string) map[string]any { return browsertest.Observation(id, patient) }

func (h *harness) account(username, password, fhirUser string) {
	h.t.Helper()
	if _, err := authz.CreateAccount(context.Background(), h.app.AuthzStore, username, password, fhirUser, fastPasswords, h.clock.Now()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) client(spec authz.ClientSpec) string {
	h.t.Helper()
	_, secret, err := authz.AddClient(context.Background(), h.app.AuthzStore, spec, h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return secret
}

const appRedirect = "https://app.example.org/callback"

// publicApp registers a public app and returns its oauth2 config.
func (h *harness) publicApp(id string, scopes ...string) *oauth2.Config {
	h.client(authz.ClientSpec{ID: id, Name: "Growth Chart " + id, Type: authz.TypePublic, RedirectURIs: []string{appRedirect}})
	return h.oauth(id, "", scopes...)
}

func (h *harness) oauth(id, secret string, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: appRedirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: h.iss + "/authorize", TokenURL: h.iss + "/token", AuthStyle: style}}
}

// ctx is the context for oauth2 calls (the test server's client).
func (h *harness) ctx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second})
}

// browser is a scripted user agent: it keeps cookies, follows redirects
// inside the server and stops at the app's redirect URI.
type browser struct {
	h      *harness
	c      *http.Client
	lang   string
	last   *http.Response
	body   string
	doc    *html.Node
	appHit *url.URL // the redirect to the app, when reached
	allow  []string // other origins the browser follows (an identity provider)
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{h: h, lang: "en"}
	b.c = &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !b.inside(req.URL.String()) {
			b.appHit = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

func (b *browser) inside(u string) bool {
	if strings.HasPrefix(u, b.h.srv.URL) {
		return true
	}
	for _, a := range b.allow {
		if strings.HasPrefix(u, a) {
			return true
		}
	}
	return false
}

func (b *browser) do(req *http.Request) {
	b.h.t.Helper()
	req.Header.Set("Accept-Language", b.lang)
	b.appHit = nil
	resp, err := b.c.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	b.last, b.body = resp, string(raw)
	if resp.StatusCode/100 == 3 && b.appHit == nil {
		if loc, err := resp.Location(); err == nil && !b.inside(loc.String()) {
			b.appHit = loc
		}
	}
	b.doc, _ = html.Parse(strings.NewReader(b.body))
}

func (b *browser) get(u string) {
	b.h.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	b.do(req)
}

// submit fills the form whose action ends with action (fields override
// and add values; a nil value removes one) and posts it.
func (b *browser) submit(action string, fields map[string][]string) {
	b.h.t.Helper()
	form := findForm(b.doc, action)
	if form == nil {
		b.h.t.Fatalf("no form %s on the page (status %d): %s", action, b.last.StatusCode, b.body)
	}
	vals := formValues(form)
	for k, v := range fields {
		if v == nil {
			vals.Del(k)
		} else {
			vals[k] = v
		}
	}
	method := strings.ToUpper(attr(form, "method"))
	target, _ := url.Parse(b.h.srv.URL)
	target = target.ResolveReference(&url.URL{Path: attr(form, "action")})
	var req *http.Request
	if method == "GET" {
		target.RawQuery = vals.Encode()
		req, _ = http.NewRequest("GET", target.String(), nil)
	} else {
		req, _ = http.NewRequest("POST", target.String(), strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	b.do(req)
}

func (b *browser) login(user, pw string) {
	b.h.t.Helper()
	b.submit("/auth/login", map[string][]string{"username": {user}, "password": {pw}})
}

// page is the id of the page shown ("login", "picker", ...), from the form it holds.
func (b *browser) page() string {
	for _, p := range []struct{ action, name string }{
		{"/auth/login", "login"}, {"/auth/login/otp", "otp"}, {"/auth/pick", "picker"}, {"/auth/approve", "approve"},
		{"/auth/register", "register"}, {"/auth/apps/revoke", "apps"}, {"/auth/logout", "apps"},
	} {
		if findForm(b.doc, p.action) != nil {
			return p.name
		}
	}
	return ""
}

func (b *browser) must(page string) {
	b.h.t.Helper()
	if got := b.page(); got != page {
		app := ""
		if b.appHit != nil {
			app = b.appHit.String()
		}
		b.h.t.Fatalf("page %q, want %q (status %d, app redirect %q): %s", got, page, b.last.StatusCode, app, b.body)
	}
}

// code returns the code of the app redirect, failing on an error redirect.
func (b *browser) code(state string) string {
	b.h.t.Helper()
	if b.appHit == nil {
		b.h.t.Fatalf("no redirect to the app; page %q status %d: %s", b.page(), b.last.StatusCode, b.body)
	}
	q := b.appHit.Query()
	if q.Get("state") != state {
		b.h.t.Fatalf("state %q, want %q (%s)", q.Get("state"), state, b.appHit)
	}
	if q.Get("iss") != b.h.iss {
		b.h.t.Fatalf("iss %q, want %q", q.Get("iss"), b.h.iss)
	}
	if q.Get("code") == "" {
		b.h.t.Fatalf("no code: %s", b.appHit)
	}
	return q.Get("code")
}

// appError returns the error of the app redirect.
func (b *browser) appError() (string, string) {
	b.h.t.Helper()
	if b.appHit == nil {
		b.h.t.Fatalf("no redirect to the app; page %q status %d: %s", b.page(), b.last.StatusCode, b.body)
	}
	return b.appHit.Query().Get("error"), b.appHit.Query().Get("state")
}

func findForm(n *html.Node, action string) *html.Node {
	if n == nil {
		return nil
	}
	if n.Type == html.ElementNode && n.Data == "form" && attr(n, "action") == action {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findForm(c, action); f != nil {
			return f
		}
	}
	return nil
}

func attr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, k string) bool {
	for _, a := range n.Attr {
		if a.Key == k {
			return true
		}
	}
	return false
}

// formValues are what a browser would send without user changes (the
// first submit button is not included; tests set "action").
func formValues(form *html.Node) url.Values {
	v := url.Values{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			name := attr(n, "name")
			switch attr(n, "type") {
			case "radio", "checkbox":
				if hasAttr(n, "checked") {
					v.Add(name, attr(n, "value"))
				}
			default:
				if name != "" {
					v.Add(name, attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(form)
	return v
}

// texts returns the text of every element with the class.
func texts(n *html.Node, class string) []string {
	var out []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+class+" ") {
			out = append(out, strings.TrimSpace(textOf(n)))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func textOf(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(textOf(c))
	}
	return b.String()
}

// pkce returns a verifier and its S256 challenge.
func pkce() (string, string) {
	v := oauth2.GenerateVerifier()
	s := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(s[:])
}

func randomState() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return fmt.Sprintf("st-%x", b)
}

// authorize opens the app's authorize URL in the browser with PKCE S256
// and aud, and returns the state and verifier.
func (b *browser) authorize(cfg *oauth2.Config, extra ...oauth2.AuthCodeOption) (state, verifier string) {
	state = randomState()
	verifier = oauth2.GenerateVerifier()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", b.h.base)}, extra...)
	b.get(cfg.AuthCodeURL(state, opts...))
	return state, verifier
}

// jwtClaims decodes a JWT's payload without verification (tests only).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// postForm posts a form to an authorization server endpoint.
func (h *harness) postForm(path string, v url.Values, basicUser, basicPass string) (*http.Response, map[string]any) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.iss+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func clientSpecPublic(id string) authz.ClientSpec {
	return authz.ClientSpec{ID: id, Name: id, Type: authz.TypePublic, RedirectURIs: []string{appRedirect}}
}

func base64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
