package authz_test

// Every error path of the authorization and token endpoints, with
// golang.org/x/oauth2 as the app where it can express the request:
// RFC 6749 4.1.2.1 (errors redirected to a verified redirect URI only),
// 4.1.3 and 5.2 (token errors), RFC 7636 4.4-4.6 (PKCE, S256 only),
// SMART App Launch 2.2 (aud, state), OAuth 2.0 Security BCP 4.14 (code
// and refresh token replay).

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const miaPassword = "mia's long password"

// patientApp: Mia (an adult patient, one choice: no picker) and an app.
func patientApp(t *testing.T) (*harness, *oauth2.Config) {
	h := newHarness(t)
	h.seed()
	h.account("mia", miaPassword, "Patient/mia")
	return h, h.publicApp("app", "openid", "fhirUser", "launch/patient", "patient/*.rs", "offline_access")
}

// approveAll logs in (if asked) and approves everything; returns the code.
func approveAll(t *testing.T, b *browser, state string, login bool) string {
	t.Helper()
	if login {
		b.must("login")
		b.login("mia", miaPassword)
	}
	if b.appHit == nil {
		b.must("approve")
		b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	}
	return b.code(state)
}

func retrieveErr(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a token endpoint error", err)
	}
	return re
}

func TestAuthorizeErrors(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	// Log in once; every case below then reaches the decision quickly.
	state, _ := b.authorize(cfg)
	approveAll(t, b, state, true)

	base := func() url.Values {
		_, ch := pkce()
		return url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {appRedirect},
			"scope": {"launch/patient patient/*.rs"}, "state": {"s1"}, "aud": {h.base},
			"code_challenge": {ch}, "code_challenge_method": {"S256"}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(url.Values)
		error string
	}{
		{"missing PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(v url.Values) {
			v.Set("code_challenge_method", "plain")
			v.Set("code_challenge", strings.Repeat("a", 43))
		}, "invalid_request"},
		{"no method (RFC 7636 default plain)", func(v url.Values) { v.Del("code_challenge_method") }, "invalid_request"},
		{"unknown method", func(v url.Values) { v.Set("code_challenge_method", "S512") }, "invalid_request"},
		{"malformed challenge", func(v url.Values) { v.Set("code_challenge", "short") }, "invalid_request"},
		{"wrong aud", func(v url.Values) { v.Set("aud", "https://evil.example/fhir") }, "invalid_request"},
		{"missing aud", func(v url.Values) { v.Del("aud") }, "invalid_request"},
		{"aud of another path", func(v url.Values) { v.Set("aud", h.base+"/Patient") }, "invalid_request"},
		{"response_type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"no grantable scope", func(v url.Values) { v.Set("scope", "system/*.cruds profile") }, "invalid_scope"},
		{"unknown launch", func(v url.Values) { v.Set("launch", "nope"); v.Set("scope", "launch patient/*.rs") }, "invalid_request"},
		{"missing state", func(v url.Values) { v.Del("state") }, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.edit(v)
			b.get(h.iss + "/authorize?" + v.Encode())
			e, st := b.appError()
			if e != tc.error {
				t.Fatalf("error %q, want %q (%s)", e, tc.error, b.appHit)
			}
			if v.Get("state") != "" && st != v.Get("state") {
				t.Fatalf("state %q not echoed", st)
			}
			if b.appHit.Query().Get("code") != "" {
				t.Fatal("a code was issued")
			}
		})
	}
	// An unknown client or an unregistered redirect URI: an error page,
	// never a redirect.
	for name, edit := range map[string]func(url.Values){
		"unregistered redirect": func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") },
		"redirect prefix":       func(v url.Values) { v.Set("redirect_uri", appRedirect+"/more") },
		"redirect with query":   func(v url.Values) { v.Set("redirect_uri", appRedirect+"?x=1") },
		"unknown client":        func(v url.Values) { v.Set("client_id", "nobody") },
		"repeated parameter":    func(v url.Values) { v.Add("state", "s2") },
	} {
		t.Run(name, func(t *testing.T) {
			v := base()
			edit(v)
			b.get(h.iss + "/authorize?" + v.Encode())
			if b.appHit != nil || b.last.StatusCode != 400 {
				t.Fatalf("status %d, redirect %v: want a 400 page and no redirect", b.last.StatusCode, b.appHit)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	state, verifier := b.authorize(cfg)
	code := approveAll(t, b, state, true)

	// A replayed code revokes the tokens issued from it.
	tok, err := cfg.Exchange(h.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := h.fhir("GET", "Observation/obs-mia", nil, tok.AccessToken); st != 200 {
		t.Fatalf("before replay: %d", st)
	}
	_, err = cfg.Exchange(h.ctx(), code, oauth2.VerifierOption(verifier))
	if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
		t.Fatalf("replayed code: %v", err)
	}
	if st, _ := h.fhir("GET", "Observation/obs-mia", nil, tok.AccessToken); st != http.StatusUnauthorized {
		t.Fatalf("the access token of a replayed code is refused: %d", st)
	}
	if _, err := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the refresh token of a replayed code is revoked")
	}

	t.Run("wrong verifier", func(t *testing.T) {
		st, _ := b.authorize(cfg)
		c := approveAll(t, b, st, false)
		_, err := cfg.Exchange(h.ctx(), c, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("missing verifier", func(t *testing.T) {
		st, _ := b.authorize(cfg)
		c := approveAll(t, b, st, false)
		_, err := cfg.Exchange(h.ctx(), c)
		if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("wrong redirect_uri", func(t *testing.T) {
		st, v := b.authorize(cfg)
		c := approveAll(t, b, st, false)
		other := *cfg
		other.RedirectURL = "https://app.example.org/other"
		_, err := other.Exchange(h.ctx(), c, oauth2.VerifierOption(v))
		if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("code of another client", func(t *testing.T) {
		h.client(clientSpecPublic("other"))
		st, v := b.authorize(cfg)
		c := approveAll(t, b, st, false)
		_, err := h.oauth("other", "").Exchange(h.ctx(), c, oauth2.VerifierOption(v))
		if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		st, v := b.authorize(cfg)
		c := approveAll(t, b, st, false)
		h.clock.Add(2 * 60e9)
		_, err := cfg.Exchange(h.ctx(), c, oauth2.VerifierOption(v))
		if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})

	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		error  string
	}{
		{"unknown grant type", url.Values{"grant_type": {"password"}, "client_id": {"app"}, "username": {"mia"}}, 400, "unsupported_grant_type"},
		{"missing grant type", url.Values{"client_id": {"app"}}, 400, "invalid_request"},
		{"public client_credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "scope": {"system/*.rs"}}, 400, "unauthorized_client"},
		{"unknown client", url.Values{"grant_type": {"authorization_code"}, "client_id": {"nobody"}, "code": {"x"}}, 401, "invalid_client"},
		{"no client", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 401, "invalid_client"},
		{"unknown code", url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {"x"}, "redirect_uri": {appRedirect}}, 400, "invalid_grant"},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {"x"}}, 400, "invalid_grant"},
		{"repeated parameter", url.Values{"grant_type": {"refresh_token", "refresh_token"}, "client_id": {"app"}}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.postForm("/token", tc.form, "", "")
			if resp.StatusCode != tc.status || body["error"] != tc.error {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, body, tc.status, tc.error)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
				t.Fatalf("error responses are not cached either: %v", resp.Header)
			}
		})
	}
}

// A refresh may narrow the scopes, never widen them (RFC 6749 section 6).
func TestRefreshScopes(t *testing.T) {
	h, cfg := patientApp(t)
	b := h.browser()
	state, verifier := b.authorize(cfg)
	tok, err := cfg.Exchange(h.ctx(), approveAll(t, b, state, true), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"},
		"refresh_token": {tok.RefreshToken}, "scope": {"patient/*.cruds"}}, "", "")
	if resp.StatusCode != 400 || body["error"] != "invalid_scope" {
		t.Fatalf("widening: %d %v", resp.StatusCode, body)
	}
	// The refused attempt used the token: it is rotated, and replaying it
	// now revokes the family. A new authorization gives a fresh token.
	state, verifier = b.authorize(cfg)
	tok, err = cfg.Exchange(h.ctx(), approveAll(t, b, state, false), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"},
		"refresh_token": {tok.RefreshToken}, "scope": {"patient/*.rs offline_access"}}, "", "")
	if resp.StatusCode != 200 || body["scope"] != "patient/*.rs offline_access" {
		t.Fatalf("narrowing: %d %v", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
		t.Fatalf("token response headers %v", resp.Header)
	}
}
