package authz_test

// prompt=none (OpenID Connect Core 3.1.2.1 and 3.1.2.6), the staff
// invitation API, refresh requests of public clients (RFC 6749 section 6),
// and the development tokens of `fhirgate token` on the built-in issuer.

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

func TestPromptNone(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	none := oauth2.SetAuthURLParam("prompt", "none")
	b.authorize(cfg, none)
	if e, _ := b.appError(); e != "login_required" {
		t.Fatalf("not logged in: %q", e)
	}
	b.authorize(cfg)
	b.login("mia", miaPassword)
	b.must("approve") // logged in now, not approved yet
	b.authorize(cfg, none)
	if e, _ := b.appError(); e != "consent_required" {
		t.Fatalf("not approved: %q", e)
	}
	state, verifier := b.authorize(cfg)
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	b.code(state)
	state, verifier = b.authorize(cfg, none)
	if _, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("silent re-authorization: %v", err)
	}
	b.authorize(cfg, none, oauth2.SetAuthURLParam("prompt", "none login"))
	if e, _ := b.appError(); e != "invalid_request" {
		t.Fatalf("none with login: %q", e)
	}
}

func TestInvitationAPI(t *testing.T) {
	h := newHarness(t)
	h.seed()
	secret := h.client(authz.ClientSpec{ID: "desk", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}, Invitations: true})
	other := h.client(authz.ClientSpec{ID: "other", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}})
	resp, body := h.postForm("/invitations", url.Values{"fhir_user": {"RelatedPerson/mum-emma"}, "ttl": {"48h"}, "note": {"passport"}}, "desk", secret)
	if resp.StatusCode != 200 || body["code"] == nil || body["fhir_user"] != "RelatedPerson/mum-emma" {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if exp, _ := time.Parse(time.RFC3339, body["expires_at"].(string)); !exp.Equal(h.clock.Now().Add(48 * time.Hour).UTC()) {
		t.Fatalf("expires_at %v", body["expires_at"])
	}
	for name, tc := range map[string]struct {
		user, pass string
		v          url.Values
		status     int
	}{
		"not a desk":       {"other", other, url.Values{"fhir_user": {"Patient/emma"}}, 403},
		"missing resource": {"desk", secret, url.Values{"fhir_user": {"Patient/nobody"}}, 400},
		"not a user type":  {"desk", secret, url.Values{"fhir_user": {"Observation/obs-emma"}}, 400},
		"bad ttl":          {"desk", secret, url.Values{"fhir_user": {"Patient/emma"}, "ttl": {"soon"}}, 400},
		"wrong secret":     {"desk", "nope", url.Values{"fhir_user": {"Patient/emma"}}, 401},
	} {
		if resp, body := h.postForm("/invitations", tc.v, tc.user, tc.pass); resp.StatusCode != tc.status {
			t.Errorf("%s: %d %v, want %d", name, resp.StatusCode, body, tc.status)
		}
	}
	// The code registers an account.
	b := h.browser()
	b.get(h.iss + "/register")
	b.submit("/auth/register", map[string][]string{"code": {body["code"].(string)}, "username": {"mum"},
		"password": {"long enough password"}, "password2": {"long enough password"}})
	b.must("apps")
}

func TestPublicRefreshWithoutClientID(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	state, verifier := b.authorize(cfg)
	tok, err := cfg.Exchange(h.ctx(), approveAll(t, b, state, true), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "", "")
	if resp.StatusCode != 200 || body["refresh_token"] == nil {
		t.Fatalf("public refresh without client_id: %d %v", resp.StatusCode, body)
	}
	// A confidential client's refresh token needs its credentials.
	secret := h.client(authz.ClientSpec{ID: "conf", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}})
	conf := h.oauth("conf", secret, "launch/patient", "patient/*.rs", "offline_access")
	state, verifier = b.authorize(conf)
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	ctok, err := conf.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ctok.RefreshToken}}, "", "")
	if resp.StatusCode != 401 || body["error"] != "invalid_client" {
		t.Fatalf("confidential refresh without credentials: %d %v", resp.StatusCode, body)
	}
}

// `fhirgate token` keeps minting development tokens for the built-in
// issuer (same key file, same issuer URL).
func TestDevelopmentTokensOnBuiltInIssuer(t *testing.T) {
	h := newHarness(t)
	h.seed()
	iss, err := devissuer.New(devissuer.Config{DataDir: h.app.Opt.DataDir, Origin: app0(h), Audience: h.base, Path: authz.PathPrefix})
	if err != nil {
		t.Fatal(err)
	}
	if iss.URL() != h.iss {
		t.Fatalf("CLI issuer %s, server %s", iss.URL(), h.iss)
	}
	tok, err := iss.Mint(devissuer.MintOptions{Scope: "patient/*.rs", Patient: "emma", FHIRUser: "Patient/emma"})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := h.fhir("GET", "Observation/obs-emma", nil, tok); st != 200 {
		t.Fatalf("development token: %d", st)
	}
}

func app0(h *harness) string {
	u, _ := url.Parse(h.base)
	return u.Scheme + "://" + u.Host
}
