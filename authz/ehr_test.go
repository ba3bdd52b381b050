package authz_test

// EHR launch (SMART App Launch 2.2 app-launch.html#launch-app-ehr-launch):
// the EHR creates a launch context and gets an opaque, short-lived,
// single-use launch value; the app's authorization with it gets the
// EHR's patient and encounter.

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/authz"
)

func TestEHRLaunch(t *testing.T) {
	h := newHarness(t)
	h.seed()
	h.account("drno", "doctor's password", "Practitioner/drno")
	h.account("mia", miaPassword, "Patient/mia")
	key := ecKey(t, "ehr")
	h.client(authz.ClientSpec{ID: "ehr", Name: "The EHR", Type: authz.TypeBackend, Scopes: []string{"system/*.rs"}, JWKS: key.jwks(), EHRLaunch: true})
	h.client(authz.ClientSpec{ID: "other-backend", Type: authz.TypeBackend, Scopes: []string{"system/*.rs"}, JWKS: key.jwks()})
	cfg := h.publicApp("chart", "launch", "openid", "fhirUser", "user/*.rs", "patient/*.rs")

	launch := func(t *testing.T, client string, v url.Values) (int, map[string]any) {
		t.Helper()
		v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		v.Set("client_assertion", key.assertion(t, h, client, nil))
		resp, body := h.postForm("/launch", v, "", "")
		return resp.StatusCode, body
	}
	st, body := launch(t, "ehr", url.Values{"patient": {"emma"}, "encounter": {"visit-1"}, "user": {"Practitioner/drno"}, "need_patient_banner": {"false"}})
	if st != 200 || body["launch"] == nil || body["expires_in"] != float64(300) {
		t.Fatalf("launch: %d %v", st, body)
	}
	lv := body["launch"].(string)

	b := h.browser()
	state, verifier := b.authorize(cfg, oauth2.SetAuthURLParam("launch", lv))
	b.must("login")
	b.login("drno", "doctor's password")
	b.must("approve") // no picker: the EHR chose the patient
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	tok, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "emma" || tok.Extra("encounter") != "visit-1" || tok.Extra("need_patient_banner") != nil {
		t.Fatalf("launch context: patient %v encounter %v banner %v", tok.Extra("patient"), tok.Extra("encounter"), tok.Extra("need_patient_banner"))
	}
	if !strings.Contains(tok.Extra("scope").(string), "launch") {
		t.Fatalf("scope %v", tok.Extra("scope"))
	}
	if st, _ := h.fhir("GET", "Observation/obs-emma", nil, tok.AccessToken); st != 200 {
		t.Fatalf("the practitioner's app reads the launch patient: %d", st)
	}

	// Single use.
	b.authorize(cfg, oauth2.SetAuthURLParam("launch", lv))
	if e, _ := b.appError(); e != "invalid_request" {
		t.Fatalf("a used launch: %q", e)
	}
	// Expired.
	_, body = launch(t, "ehr", url.Values{"patient": {"emma"}})
	h.clock.Add(6 * time.Minute)
	b.authorize(cfg, oauth2.SetAuthURLParam("launch", body["launch"].(string)))
	if e, _ := b.appError(); e != "invalid_request" {
		t.Fatalf("an expired launch: %q", e)
	}
	// The launch scope is required with a launch value.
	_, body = launch(t, "ehr", url.Values{"patient": {"emma"}})
	b.authorize(h.oauth("chart", "", "patient/*.rs"), oauth2.SetAuthURLParam("launch", body["launch"].(string)))
	if e, _ := b.appError(); e != "invalid_scope" {
		t.Fatalf("launch without the launch scope: %q", e)
	}
	// A launch for Dr No cannot be used by Mia, and Mia may not open Emma's record.
	_, body = launch(t, "ehr", url.Values{"patient": {"emma"}, "user": {"Practitioner/drno"}})
	mb := h.browser()
	st2, _ := mb.authorize(cfg, oauth2.SetAuthURLParam("launch", body["launch"].(string)))
	mb.login("mia", miaPassword)
	if e, s := mb.appError(); e != "access_denied" || s != st2 {
		t.Fatalf("a launch for another user: %q", e)
	}
	_, body = launch(t, "ehr", url.Values{"patient": {"emma"}})
	mb.authorize(cfg, oauth2.SetAuthURLParam("launch", body["launch"].(string)))
	if e, _ := mb.appError(); e != "access_denied" {
		t.Fatalf("a patient launched into someone else's record: %q", e)
	}
	// A launch for one app only.
	h.client(clientSpecPublic("another"))
	_, body = launch(t, "ehr", url.Values{"patient": {"emma"}, "app": {"another"}})
	b.authorize(cfg, oauth2.SetAuthURLParam("launch", body["launch"].(string)))
	if e, _ := b.appError(); e != "invalid_request" {
		t.Fatalf("a launch for another app: %q", e)
	}

	// Who may create launches, and what they must name.
	for name, tc := range map[string]struct {
		client string
		v      url.Values
		status int
	}{
		"not an EHR":        {"other-backend", url.Values{"patient": {"emma"}}, 403},
		"unknown patient":   {"ehr", url.Values{"patient": {"nobody"}}, 400},
		"unknown encounter": {"ehr", url.Values{"patient": {"emma"}, "encounter": {"nope"}}, 400},
		"unknown app":       {"ehr", url.Values{"patient": {"emma"}, "app": {"nope"}}, 400},
	} {
		if st, body := launch(t, tc.client, tc.v); st != tc.status {
			t.Errorf("%s: %d %v, want %d", name, st, body, tc.status)
		}
	}
	if resp, _ := h.postForm("/launch", url.Values{"patient": {"emma"}, "client_id": {"chart"}}, "", ""); resp.StatusCode != 403 {
		t.Errorf("a public app creating a launch: %d", resp.StatusCode)
	}
}
