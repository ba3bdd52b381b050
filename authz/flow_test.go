package authz_test

// SMART App Launch 2.2 standalone launch (app-launch.html) end to end with
// golang.org/x/oauth2 as the app: login, patient picker built from the
// resource server's proxy rules (smart.Grants), approval with narrowing,
// code exchange with PKCE S256, the token response (RFC 6749 5.1 + SMART
// launch context), refresh rotation (OAuth 2.0 Security BCP 4.14), and
// the resource server accepting exactly what was granted.

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const mumPassword = "correct horse battery"

func TestStandaloneLaunchMotherPicksChild(t *testing.T) {
	h := newHarness(t)
	h.seed()
	h.account("mia@example.org", mumPassword, "Person/mum")
	scopes := []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/Observation.rs", "patient/Appointment.rs", "system/*.cruds"}
	cfg := h.publicApp("growth", scopes...)

	b := h.browser()
	state, verifier := b.authorize(cfg)
	b.must("login")
	if !strings.Contains(b.body, "Growth Chart growth") {
		t.Errorf("the login page names the app: %s", b.body)
	}
	b.login("mia@example.org", mumPassword)
	b.must("picker")
	names := texts(b.doc, "name")
	if !slices.Equal(names, []string{"Emma Lee", "Ann Roy"}) {
		t.Fatalf("picker offers %q, want Emma (8, parental) and Ann (Consent); Tom (14) must not be offered", names)
	}
	if !strings.Contains(b.body, "only: appointments") {
		t.Errorf("Ann's Consent limits are shown: %s", b.body)
	}
	b.submit("/auth/pick", map[string][]string{"patient": {"emma"}, "action": {"pick"}})
	b.must("approve")
	if !strings.Contains(b.body, "Emma Lee") || !strings.Contains(b.body, "See results and measurements") {
		t.Errorf("approval names the patient and the scopes in plain language: %s", b.body)
	}
	if strings.Contains(b.body, "system/") {
		t.Errorf("system/ scopes are never offered to a user's app: %s", b.body)
	}
	// The mother narrows: no appointments.
	b.submit("/auth/approve", map[string][]string{"action": {"approve"},
		"scope": {"offline_access", "patient/Observation.rs"}})
	code := b.code(state)

	tok, err := cfg.Exchange(h.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "emma" || tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token response: patient %v, type %q, refresh %q, expiry %v", tok.Extra("patient"), tok.TokenType, tok.RefreshToken, tok.Expiry)
	}
	granted := strings.Fields(tok.Extra("scope").(string))
	want := []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/Observation.rs"}
	if !slices.Equal(granted, want) {
		t.Fatalf("granted %q, want %q (narrowed, a subset of requested)", granted, want)
	}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatal("no id_token for openid")
	}
	ic := jwtClaims(t, idt)
	if ic["fhirUser"] != h.base+"/Person/mum" || ic["aud"] != "growth" || ic["iss"] != h.iss {
		t.Fatalf("id_token claims %v", ic)
	}
	at := jwtClaims(t, tok.AccessToken)
	if at["patient"] != "emma" || at["fhirUser"] != "Person/mum" || at["aud"] != h.base || at["client_id"] != "growth" {
		t.Fatalf("access token claims %v", at)
	}

	// The resource server accepts the token exactly as granted.
	if st, _ := h.fhir("GET", "Observation/obs-emma", nil, tok.AccessToken); st != 200 {
		t.Fatalf("Emma's Observation: %d", st)
	}
	if st, _ := h.fhir("GET", "Observation/obs-tom", nil, tok.AccessToken); st != 404 {
		t.Fatalf("Tom's Observation: %d, want 404", st)
	}
	if st, _ := h.fhir("GET", "Appointment/appt-ann", nil, tok.AccessToken); st != 403 && st != 404 {
		t.Fatalf("an unchecked scope grants nothing: %d", st)
	}

	// Refresh rotates the refresh token; the old one replayed revokes all.
	ts := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken})
	tok2, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken {
		t.Fatal("refresh must rotate the refresh token")
	}
	if tok2.Extra("patient") != "emma" {
		t.Fatalf("refreshed token keeps the patient: %v", tok2.Extra("patient"))
	}
	if st, _ := h.fhir("GET", "Observation/obs-emma", nil, tok2.AccessToken); st != 200 {
		t.Fatalf("refreshed token: %d", st)
	}
	resp, body := h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"growth"}}, "", "")
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replayed refresh token: %d %v", resp.StatusCode, body)
	}
	for _, at := range []string{tok.AccessToken, tok2.AccessToken} {
		if st, _ := h.fhir("GET", "Observation/obs-emma", nil, at); st != http.StatusUnauthorized {
			t.Fatalf("after reuse detection every access token of the family is refused: %d", st)
		}
	}
	resp, body = h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "client_id": {"growth"}}, "", "")
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("the family's newest refresh token is revoked too: %d %v", resp.StatusCode, body)
	}
}
