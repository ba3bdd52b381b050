package authz_test

// Local accounts: argon2id passwords, lockout after consecutive failures,
// per-address throttling, TOTP (RFC 6238), registration by single-use
// expiring invitation, CSRF on every form, cookie attributes, security
// headers, English and French pages.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
)

func TestLoginLockout(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	b.authorize(cfg)
	b.must("login")
	unknown := func() string {
		b.login("nobody", "whatever it is")
		return strings.Join(texts(b.doc, "error"), "")
	}()
	for i := range 5 {
		b.login("mia", "wrong password!")
		if b.last.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, b.last.StatusCode)
		}
		if msg := strings.Join(texts(b.doc, "error"), ""); msg != unknown {
			t.Fatalf("a wrong password and an unknown user look alike: %q vs %q", msg, unknown)
		}
	}
	// Locked: even the right password fails, with the same message.
	b.login("mia", miaPassword)
	b.must("login")
	if b.last.StatusCode != 401 {
		t.Fatalf("locked account: %d", b.last.StatusCode)
	}
	h.clock.Add(16 * time.Minute)
	state, _ := b.authorize(cfg)
	b.login("mia", miaPassword)
	b.must("approve")
	_ = state
}

func TestLoginThrottle(t *testing.T) {
	h := newHarness(t, func(o *app.Options) { o.AuthServer.LoginsPerWindow = 3 })
	h.seed()
	h.account("mia", miaPassword, "Patient/mia")
	cfg := h.publicApp("app", "patient/*.rs", "launch/patient")
	b := h.browser()
	b.authorize(cfg)
	for range 3 {
		b.login("mia", "wrong password!")
	}
	b.login("mia", miaPassword)
	if b.last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("throttled address and username: %d", b.last.StatusCode)
	}
	// Any username from one address: ten times the limit.
	for i := range 26 {
		b.login(fmt.Sprintf("user%d", i), "y")
	}
	b.login("someone", "y")
	if b.last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("throttled address: %d", b.last.StatusCode)
	}
	h.clock.Add(11 * time.Minute)
	b.login("mia", miaPassword)
	b.must("approve")
}

func TestTOTP(t *testing.T) {
	h, cfg := patientApp(t)
	secret, uri, err := authz.EnableTOTP(context.Background(), h.app.AuthzStore, "mia", "fhirgate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secret) {
		t.Fatalf("uri %q", uri)
	}
	b := h.browser()
	state, _ := b.authorize(cfg)
	b.login("mia", miaPassword)
	b.must("otp")
	// Half logged in: the flow asks for the password again, not the approval.
	b.get(h.iss + "/apps")
	b.must("login")
	b.authorize(cfg)
	b.login("mia", miaPassword)
	b.must("otp")
	b.submit("/auth/login/otp", map[string][]string{"code": {"000000"}})
	b.must("otp")
	if b.last.StatusCode != 401 {
		t.Fatalf("wrong code: %d", b.last.StatusCode)
	}
	code, _ := authz.TOTPCode(secret, h.clock.Now())
	b.submit("/auth/login/otp", map[string][]string{"code": {code}})
	b.must("approve")
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	_ = state
	// A code is accepted once.
	b2 := h.browser()
	b2.authorize(cfg)
	b2.login("mia", miaPassword)
	b2.submit("/auth/login/otp", map[string][]string{"code": {code}})
	b2.must("otp")
}

func TestRegistrationByInvitation(t *testing.T) {
	h := newHarness(t)
	h.seed()
	cfg := h.publicApp("app", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	ctx := context.Background()
	code, inv, err := authz.Invite(ctx, h.app.AuthzStore, "RelatedPerson/mum-emma", "front desk", "ID checked", 72*time.Hour, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if inv.FHIRUser != "RelatedPerson/mum-emma" || len(strings.ReplaceAll(code, "-", "")) != 16 {
		t.Fatalf("%q %+v", code, inv)
	}
	b := h.browser()
	state, _ := b.authorize(cfg)
	b.must("login")
	b.get(h.srv.URL + texts2href(b, "/auth/register"))
	b.must("register")
	for name, f := range map[string]map[string][]string{
		"short password": {"code": {code}, "username": {"mum"}, "password": {"short"}, "password2": {"short"}},
		"mismatch":       {"code": {code}, "username": {"mum"}, "password": {"long enough password"}, "password2": {"long enough passw0rd"}},
		"wrong code":     {"code": {"AAAA-BBBB-CCCC-DDDD"}, "username": {"mum"}, "password": {"long enough password"}, "password2": {"long enough password"}},
	} {
		b.submit("/auth/register", f)
		if b.last.StatusCode/100 != 4 || b.page() != "register" {
			t.Fatalf("%s: %d %q", name, b.last.StatusCode, b.page())
		}
	}
	// Lower case and no dashes work too (the code is read aloud or typed).
	b.submit("/auth/register", map[string][]string{"code": {strings.ToLower(strings.ReplaceAll(code, "-", " "))}, "username": {"Mum@Example.org"},
		"password": {"long enough password"}, "password2": {"long enough password"}})
	// Registered and logged in: the flow goes on (one child: no picker).
	b.must("approve")
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	b.code(state)

	// Single use.
	b3 := h.browser()
	b3.get(h.iss + "/register")
	b3.submit("/auth/register", map[string][]string{"code": {code}, "username": {"mum2"}, "password": {"long enough password"}, "password2": {"long enough password"}})
	if b3.last.StatusCode != 400 {
		t.Fatalf("reused invitation: %d", b3.last.StatusCode)
	}
	// Expiring.
	code2, _, _ := authz.Invite(ctx, h.app.AuthzStore, "Patient/tom", "front desk", "", time.Hour, h.clock.Now())
	h.clock.Add(2 * time.Hour)
	b3.get(h.iss + "/register")
	b3.submit("/auth/register", map[string][]string{"code": {code2}, "username": {"tom"}, "password": {"long enough password"}, "password2": {"long enough password"}})
	if b3.last.StatusCode != 400 {
		t.Fatalf("expired invitation: %d", b3.last.StatusCode)
	}
	// The account logs in with the normalised username.
	b4 := h.browser()
	b4.authorize(cfg)
	b4.login("mum@example.org", "long enough password")
	if b4.appHit == nil {
		t.Fatalf("remembered approval: %d %s", b4.last.StatusCode, b4.body)
	}
}

// texts2href finds a link starting with prefix.
func texts2href(b *browser, prefix string) string {
	i := strings.Index(b.body, `href="`+prefix)
	if i < 0 {
		b.h.t.Fatalf("no link to %s", prefix)
	}
	s := b.body[i+6:]
	return strings.ReplaceAll(s[:strings.IndexByte(s, '"')], "&amp;", "&")
}

func TestPagesAreSafe(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	b.authorize(cfg)
	b.must("login")
	hd := b.last.Header
	csp := hd.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "form-action 'self' https://app.example.org"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if hd.Get("X-Frame-Options") != "DENY" || hd.Get("Cache-Control") != "no-store" || hd.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", hd)
	}
	if strings.Contains(b.body, "<script") {
		t.Error("pages carry no script")
	}
	for _, c := range hd.Values("Set-Cookie") {
		if !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Lax") {
			t.Errorf("cookie %q", c)
		}
	}
	// Every form has the CSRF field; a post without it is refused.
	form := formValues(findForm(b.doc, "/auth/login"))
	if form.Get("csrf") == "" {
		t.Fatal("no csrf field")
	}
	b.submit("/auth/login", map[string][]string{"csrf": {"forged"}, "username": {"mia"}, "password": {miaPassword}})
	if b.last.StatusCode != 403 {
		t.Fatalf("forged CSRF: %d", b.last.StatusCode)
	}
	// Another browser's token does not work either.
	other := h.browser()
	other.get(h.iss + "/login")
	tokenOfOther := formValues(findForm(other.doc, "/auth/login")).Get("csrf")
	b.authorize(cfg)
	b.submit("/auth/login", map[string][]string{"csrf": {tokenOfOther}, "username": {"mia"}, "password": {miaPassword}})
	if b.last.StatusCode != 403 {
		t.Fatalf("CSRF token of another browser: %d", b.last.StatusCode)
	}
	// A request started in one browser cannot be continued in another.
	b.authorize(cfg)
	flow := b.last.Request.URL.String()
	other.get(flow)
	if other.last.StatusCode != 400 {
		t.Fatalf("another browser continuing the flow: %d", other.last.StatusCode)
	}
	// Labels for every input.
	for _, id := range []string{"username", "password"} {
		if !strings.Contains(b.body, `<label for="`+id+`">`) {
			t.Errorf("no label for %s", id)
		}
	}
}

func TestFrench(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	b.lang = "fr-CA,fr;q=0.9"
	b.authorize(cfg)
	b.must("login")
	if !strings.Contains(b.body, `<html lang="fr">`) || !strings.Contains(b.body, "Connexion") || !strings.Contains(b.body, "Mot de passe") {
		t.Fatalf("French login page: %s", b.body)
	}
	b.login("mia", miaPassword)
	b.must("approve")
	if !strings.Contains(b.body, "Voir tout votre dossier de santé dans le dossier de Mia Lee") {
		t.Fatalf("French scopes: %s", b.body)
	}
	// The language link switches to English.
	u := texts2href(b, "/auth/flow?")
	b.get(h.srv.URL + u)
	if !strings.Contains(b.body, `<html lang="en">`) {
		t.Fatalf("language switch: %s", b.body)
	}
}

// Every message exists in both languages; no page shows a key.
func TestMessagesComplete(t *testing.T) {
	h, cfg := patientApp(t)
	for _, lang := range []string{"en", "fr"} {
		b := h.browser()
		b.lang = lang
		for _, u := range []string{h.iss + "/login", h.iss + "/register", h.iss + "/nope", h.iss + "/flow?r=x"} {
			b.get(u)
			for _, k := range []string{"login.", "register.", "error.", "site.", "lang."} {
				if strings.Contains(b.body, ">"+k) || strings.Contains(b.body, " "+k) {
					t.Errorf("%s %s shows a message key %s", lang, u, k)
				}
			}
		}
		b.authorize(cfg)
		b.login("mia", miaPassword)
		if strings.Contains(b.body, "scope.") || strings.Contains(b.body, "approve.") {
			t.Errorf("%s approval shows a key: %s", lang, b.body)
		}
	}
	_ = url.Values{}
}
