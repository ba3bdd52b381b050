package authz_test

// Remembered approvals and the approved-apps page; discovery documents
// (OpenID Connect Discovery 1.0, SMART App Launch 2.2 conformance.html)
// and CORS; audit events of the authorization server in the patient's
// audit trail; the external-provider mode left as it was.

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/app"
)

func TestApprovalRememberedAndRevoked(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	state, verifier := b.authorize(cfg)
	b.login("mia", miaPassword)
	b.must("approve")
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}, "scope": {"patient/*.rs", "offline_access"}})
	tok, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	// The same request again: no approval page, the same narrowed grant.
	state, verifier = b.authorize(cfg)
	tok2, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok2.Extra("scope") != tok.Extra("scope") {
		t.Fatalf("remembered grant %v, first %v", tok2.Extra("scope"), tok.Extra("scope"))
	}
	// Asking for more shows the page again.
	wider := *cfg
	wider.Scopes = append(slices.Clone(cfg.Scopes), "patient/Communication.cruds")
	b.authorize(&wider)
	b.must("approve")

	// The apps page lists the app; revoking ends its tokens at once.
	b.get(h.iss + "/apps")
	b.must("apps")
	if !strings.Contains(b.body, "Growth Chart app") || !strings.Contains(b.body, "See your whole health record") {
		t.Fatalf("apps page: %s", b.body)
	}
	if st, _ := h.fhir("GET", "Patient/mia", nil, tok.AccessToken); st != 200 {
		t.Fatal(st)
	}
	b.submit("/auth/apps/revoke", nil)
	b.must("apps")
	if !strings.Contains(b.body, "No app has access") {
		t.Fatalf("after revoke: %s", b.body)
	}
	for _, at := range []string{tok.AccessToken, tok2.AccessToken} {
		if st, _ := h.fhir("GET", "Patient/mia", nil, at); st != http.StatusUnauthorized {
			t.Fatalf("revoked app's token: %d", st)
		}
	}
	if _, err := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); err == nil {
		t.Fatal("revoked app's refresh token")
	}
	// And the next authorization asks again.
	b.authorize(cfg)
	b.must("approve")
	// Deny: access_denied to the app.
	b.submit("/auth/approve", map[string][]string{"action": {"deny"}})
	if e, _ := b.appError(); e != "access_denied" {
		t.Fatalf("deny: %q", e)
	}
	// Logout ends the session.
	b.get(h.iss + "/apps")
	b.submit("/auth/logout", nil)
	b.get(h.iss + "/apps")
	b.must("login")
}

func getJSON(t *testing.T, u string, hdr ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp, m
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDiscoveryAndCORS(t *testing.T) {
	h := newHarness(t)
	resp, sc := getJSON(t, h.base+"/.well-known/smart-configuration", "Origin", "https://app.example.org")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("smart-configuration %d %v", resp.StatusCode, resp.Header)
	}
	for k, want := range map[string]string{"issuer": h.iss, "authorization_endpoint": h.iss + "/authorize", "token_endpoint": h.iss + "/token",
		"jwks_uri": h.iss + "/jwks", "introspection_endpoint": h.iss + "/introspect", "revocation_endpoint": h.iss + "/revoke"} {
		if sc[k] != want {
			t.Errorf("%s = %v, want %s", k, sc[k], want)
		}
	}
	if m := strs(sc["code_challenge_methods_supported"]); !slices.Equal(m, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported %v: S256 only", m)
	}
	caps := strs(sc["capabilities"])
	for _, c := range []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
		"context-standalone-patient", "context-ehr-patient", "context-ehr-encounter", "sso-openid-connect", "permission-offline", "permission-v2"} {
		if !slices.Contains(caps, c) {
			t.Errorf("capability %s missing", c)
		}
	}
	for _, c := range []string{"context-standalone-encounter", "context-style"} {
		if slices.Contains(caps, c) {
			t.Errorf("capability %s is listed but does not work", c)
		}
	}
	if algs := strs(sc["token_endpoint_auth_signing_alg_values_supported"]); !slices.Contains(algs, "RS384") || !slices.Contains(algs, "ES384") {
		t.Errorf("assertion algs %v", algs)
	}
	_, oc := getJSON(t, h.iss+"/.well-known/openid-configuration")
	if oc["issuer"] != h.iss || oc["jwks_uri"] != h.iss+"/jwks" || oc["token_endpoint"] != h.iss+"/token" {
		t.Fatalf("openid-configuration %v", oc)
	}
	_, jwks := getJSON(t, h.iss+"/jwks")
	if keys := jwks["keys"].([]any); len(keys) != 1 || keys[0].(map[string]any)["d"] != nil {
		t.Fatalf("jwks %v: one public key", jwks)
	}
	// The CapabilityStatement names the endpoints (oauth-uris).
	_, cs := getJSON(t, h.base+"/metadata")
	b, _ := json.Marshal(cs)
	if !strings.Contains(string(b), h.iss+"/authorize") || !strings.Contains(string(b), h.iss+"/token") {
		t.Fatalf("CapabilityStatement security: %s", b)
	}

	// CORS preflight on the token endpoint and the FHIR API; none on pages.
	for _, u := range []string{h.iss + "/token", h.base + "/Observation", h.base + "/metadata"} {
		req, _ := http.NewRequest("OPTIONS", u, nil)
		req.Header.Set("Origin", "https://app.example.org")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight %s: %d %v", u, resp.StatusCode, resp.Header)
		}
	}
	resp, _ = getJSON(t, h.iss+"/login", "Origin", "https://evil.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("the login page must not be readable cross-origin")
	}
	resp, _ = getJSON(t, h.base+"/metadata", "Origin", "https://app.example.org")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Errorf("metadata CORS %v", resp.Header)
	}
}

// The authorization server's events reach the patient's audit trail.
func TestAuditTrail(t *testing.T) {
	h := newHarness(t)
	h.seed()
	h.account("mia@example.org", mumPassword, "Person/mum")
	cfg := h.publicApp("growth", "openid", "fhirUser", "launch/patient", "offline_access", "patient/Observation.rs", "patient/AuditEvent.rs")
	b := h.browser()
	b.authorize(cfg)
	b.login("mia@example.org", "wrong password!!")
	state, verifier := b.authorize(cfg)
	b.login("mia@example.org", mumPassword)
	b.submit("/auth/pick", map[string][]string{"patient": {"emma"}, "action": {"pick"}})
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	tok, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	h.postForm("/revoke", map[string][]string{"token": {tok2.RefreshToken}, "client_id": {"growth"}}, "", "")
	if err := h.app.Audit.Flush(h.ctx()); err != nil {
		t.Fatal(err)
	}
	// The system sees every operation.
	st, bundle := h.fhir("GET", "AuditEvent?_count=100", nil, "")
	if st != 200 {
		t.Fatal(st)
	}
	ops := map[string]int{}
	for _, e := range bundle["entry"].([]any) {
		ae := e.(map[string]any)["resource"].(map[string]any)
		for _, en := range ae["entity"].([]any) {
			if n, ok := en.(map[string]any)["name"].(string); ok {
				ops[n]++
			}
		}
	}
	for _, op := range []string{"login-failed", "login", "approve", "token", "refresh", "revoke"} {
		if ops[op] == 0 {
			t.Errorf("no %s event; events: %v", op, ops)
		}
	}
	// The mother, acting for Emma, sees Emma's events: approval, token,
	// refresh, revocation, each naming her as the proxy.
	state, verifier = b.authorize(cfg)
	b.submit("/auth/pick", map[string][]string{"patient": {"emma"}, "action": {"pick"}})
	mumTok, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.app.Audit.Flush(h.ctx()); err != nil {
		t.Fatal(err)
	}
	st, bundle = h.fhir("GET", "AuditEvent?patient=emma&_count=100", nil, mumTok.AccessToken)
	if st != 200 {
		t.Fatal(st)
	}
	seen := map[string]bool{}
	for _, e := range bundle["entry"].([]any) {
		ae := e.(map[string]any)["resource"].(map[string]any)
		raw, _ := json.Marshal(ae)
		for _, en := range ae["entity"].([]any) {
			if n, ok := en.(map[string]any)["name"].(string); ok {
				seen[n] = true
				if !strings.Contains(string(raw), "Person/mum") {
					t.Errorf("%s event does not name the proxy: %s", n, raw)
				}
			}
		}
	}
	for _, op := range []string{"approve", "token", "refresh", "revoke"} {
		if !seen[op] {
			t.Errorf("Emma's trail lacks %s: %v", op, seen)
		}
	}
}

// With an external issuer the built-in server is off and the resource
// server behaves as before.
func TestExternalIssuerMode(t *testing.T) {
	h := newHarness(t, func(o *app.Options) { o.Issuers = []string{"https://idp.example.org"} })
	if h.app.Authz != nil || h.app.AuthzStore != nil || h.app.DevIssuer != nil {
		t.Fatal("the built-in server runs beside an external issuer")
	}
	resp, _ := getJSON(t, h.srv.URL+"/auth/.well-known/openid-configuration")
	if resp.StatusCode != 404 {
		t.Fatalf("/auth with an external issuer: %d", resp.StatusCode)
	}
}
