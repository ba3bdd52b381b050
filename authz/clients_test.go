package authz_test

// Client authentication (RFC 6749 2.3.1, RFC 7523 2.2/3, SMART App Launch
// client-confidential-symmetric, client-confidential-asymmetric and
// backend-services.html), SMART Backend Services (client_credentials),
// revocation (RFC 7009) and introspection (RFC 7662, SMART
// token-introspection.html).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fhirgate/fhirgate/authz"
)

type keyPair struct {
	priv jose.JSONWebKey
	alg  jose.SignatureAlgorithm
}

func ecKey(t *testing.T, kid string) keyPair {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: "ES384", Use: "sig"}, alg: jose.ES384}
}

func rsaKey(t *testing.T, kid string) keyPair {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: "RS384", Use: "sig"}, alg: jose.RS384}
}

func (k keyPair) jwks() string {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.priv.Public()}})
	return string(b)
}

var jtiSeq atomic.Int64

// assertion signs a client assertion; edit changes the claims.
func (k keyPair) assertion(t *testing.T, h *harness, client string, edit func(map[string]any)) string {
	t.Helper()
	now := h.clock.Now()
	c := map[string]any{"iss": client, "sub": client, "aud": h.iss + "/token", "exp": now.Add(4 * time.Minute).Unix(),
		"iat": now.Unix(), "jti": "jti-" + time.Now().Format("150405.000000000") + "-" + string(rune('a'+jtiSeq.Add(1)%26))}
	if edit != nil {
		edit(c)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func backendForm(scope, assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
}

func TestBackendServices(t *testing.T) {
	h := newHarness(t)
	h.seed()
	key := ecKey(t, "emr-1")
	h.client(authz.ClientSpec{ID: "emr", Name: "EMR", Type: authz.TypeBackend, Scopes: []string{"system/*.rs", "system/Observation.cruds"}, JWKS: key.jwks()})

	resp, body := h.postForm("/token", backendForm("system/Observation.rs system/Patient.cruds patient/*.rs", key.assertion(t, h, "emr", nil)), "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if body["scope"] != "system/Observation.rs" || body["refresh_token"] != nil || body["token_type"] != "Bearer" {
		t.Fatalf("granted within the registration, no refresh token: %v", body)
	}
	at := body["access_token"].(string)
	if st, _ := h.fhir("GET", "Observation/obs-tom", nil, at); st != 200 {
		t.Fatalf("backend read: %d", st)
	}
	if st, _ := h.fhir("GET", "Patient/tom", nil, at); st != 403 {
		t.Fatalf("a scope not granted: %d", st)
	}

	same := key.assertion(t, h, "emr", nil)
	if resp, _ := h.postForm("/token", backendForm("system/*.rs", same), "", ""); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	other := ecKey(t, "emr-1")
	for _, tc := range []struct {
		name      string
		assertion string
		scope     string
		status    int
		error     string
	}{
		{"jti replay", same, "system/*.rs", 401, "invalid_client"},
		{"wrong aud", key.assertion(t, h, "emr", func(c map[string]any) { c["aud"] = h.base }), "system/*.rs", 401, "invalid_client"},
		{"aud is the issuer", key.assertion(t, h, "emr", func(c map[string]any) { c["aud"] = h.iss }), "system/*.rs", 401, "invalid_client"},
		{"expired", key.assertion(t, h, "emr", func(c map[string]any) { c["exp"] = h.clock.Now().Add(-2 * time.Minute).Unix() }), "system/*.rs", 401, "invalid_client"},
		{"exp too far", key.assertion(t, h, "emr", func(c map[string]any) { c["exp"] = h.clock.Now().Add(time.Hour).Unix() }), "system/*.rs", 401, "invalid_client"},
		{"no jti", key.assertion(t, h, "emr", func(c map[string]any) { delete(c, "jti") }), "system/*.rs", 401, "invalid_client"},
		{"sub differs", key.assertion(t, h, "emr", func(c map[string]any) { c["sub"] = "someone" }), "system/*.rs", 401, "invalid_client"},
		{"another key", other.assertion(t, h, "emr", nil), "system/*.rs", 401, "invalid_client"},
		{"unknown client", key.assertion(t, h, "nobody", nil), "system/*.rs", 401, "invalid_client"},
		{"HS256", hs256(t, h, "emr"), "system/*.rs", 401, "invalid_client"},
		{"alg none", algNone(h, "emr"), "system/*.rs", 401, "invalid_client"},
		{"no system scope", key.assertion(t, h, "emr", nil), "patient/*.rs", 400, "invalid_scope"},
		{"scope not registered", key.assertion(t, h, "emr", nil), "system/Patient.cruds", 400, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.postForm("/token", backendForm(tc.scope, tc.assertion), "", "")
			if resp.StatusCode != tc.status || body["error"] != tc.error {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, body, tc.status, tc.error)
			}
		})
	}
	// A backend client cannot use the authorization code grant.
	resp, body = h.postForm("/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {key.assertion(t, h, "emr", nil)}}, "", "")
	if body["error"] != "unauthorized_client" {
		t.Fatalf("wrong grant type for the client: %d %v", resp.StatusCode, body)
	}
}

func hs256(t *testing.T, h *harness, client string) string {
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	b, _ := json.Marshal(map[string]any{"iss": client, "sub": client, "aud": h.iss + "/token", "exp": h.clock.Now().Add(time.Minute).Unix(), "jti": "hs"})
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func algNone(h *harness, client string) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return strings.TrimRight(base64url(b), "=") }
	return enc(map[string]any{"alg": "none"}) + "." + enc(map[string]any{"iss": client, "sub": client, "aud": h.iss + "/token",
		"exp": h.clock.Now().Add(time.Minute).Unix(), "jti": "none"}) + "."
}

// private_key_jwt with the JWKS at a URL (RS384), key rotation by kid.
func TestAsymmetricClientJWKSURL(t *testing.T) {
	h := newHarness(t)
	h.seed()
	k1, k2 := rsaKey(t, "k1"), rsaKey(t, "k2")
	var current atomic.Value
	current.Store(k1.jwks())
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(current.Load().(string)))
	}))
	defer jwks.Close()
	h.client(authz.ClientSpec{ID: "integrator", Type: authz.TypeBackend, Scopes: []string{"system/Patient.rs"}, JWKSURL: jwks.URL + "/jwks.json"})
	if resp, body := h.postForm("/token", backendForm("system/Patient.rs", k1.assertion(t, h, "integrator", nil)), "", ""); resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	// The client rotates to k2: an unknown kid fetches the set again (after 30 s).
	current.Store(k2.jwks())
	h.clock.Add(31 * time.Second)
	if resp, body := h.postForm("/token", backendForm("system/Patient.rs", k2.assertion(t, h, "integrator", nil)), "", ""); resp.StatusCode != 200 {
		t.Fatalf("after rotation: %d %v", resp.StatusCode, body)
	}
}

// A confidential app with a secret: Basic or in the body, never wrong.
func TestSymmetricClient(t *testing.T) {
	h := newHarness(t)
	h.seed()
	h.account("mia", miaPassword, "Patient/mia")
	secret := h.client(authz.ClientSpec{ID: "portal", Name: "Portal", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}})
	if len(secret) < 40 {
		t.Fatalf("secret %q", secret)
	}
	cfg := h.oauth("portal", secret, "launch/patient", "patient/*.rs", "offline_access")
	b := h.browser()
	state, verifier := b.authorize(cfg)
	tok, err := cfg.Exchange(h.ctx(), approveAll(t, b, state, true), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	// client_secret_post works too, for the refresh.
	post := *cfg
	post.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if _, err := post.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatal(err)
	}
	bad := *cfg
	bad.ClientSecret = "wrong"
	state, verifier = b.authorize(cfg)
	_, err = bad.Exchange(h.ctx(), approveAll(t, b, state, false), oauth2.VerifierOption(verifier))
	if re := retrieveErr(t, err); re.Response.StatusCode != 401 || re.ErrorCode != "invalid_client" ||
		!strings.HasPrefix(re.Response.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("wrong secret: %v %v", err, re.Response.Header)
	}
	// A confidential client cannot pass as public.
	resp, body := h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"portal"}, "refresh_token": {"x"}}, "", "")
	if resp.StatusCode != 401 || body["error"] != "invalid_client" {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	// Two methods at once are refused.
	resp, body = h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "client_secret": {secret}, "refresh_token": {"x"}}, "portal", secret)
	if resp.StatusCode != 400 || body["error"] != "invalid_request" {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	// Backend services with a secret: the oauth2 clientcredentials client.
	h.client(authz.ClientSpec{ID: "etl", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}})
	cc := clientcredentials.Config{ClientID: "etl", ClientSecret: "x", TokenURL: h.iss + "/token", Scopes: []string{"system/*.rs"}}
	if _, err := cc.Token(h.ctx()); err == nil {
		t.Fatal("a client without the client_credentials grant")
	}
}

// Revocation (RFC 7009) and introspection (RFC 7662).
func TestRevocationAndIntrospection(t *testing.T) {
	h, cfg := patientApp(t)
	key := ecKey(t, "rs")
	h.client(authz.ClientSpec{ID: "rs", Type: authz.TypeBackend, Scopes: []string{"system/Patient.rs"}, JWKS: key.jwks()})
	rsSecret := h.client(authz.ClientSpec{ID: "rs2", Type: authz.TypeSymmetric, RedirectURIs: []string{appRedirect}})
	introspect := func(tok string) map[string]any {
		t.Helper()
		resp, body := h.postForm("/introspect", url.Values{"token": {tok}}, "rs2", rsSecret)
		if resp.StatusCode != 200 {
			t.Fatalf("introspect: %d %v", resp.StatusCode, body)
		}
		return body
	}
	b := h.browser()
	state, verifier := b.authorize(cfg)
	tok, err := cfg.Exchange(h.ctx(), approveAll(t, b, state, true), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	in := introspect(tok.AccessToken)
	if in["active"] != true || in["patient"] != "mia" || in["client_id"] != "app" || in["fhirUser"] != h.base+"/Patient/mia" ||
		!strings.Contains(in["scope"].(string), "patient/*.rs") || in["exp"] == nil {
		t.Fatalf("introspection %v", in)
	}
	for name, v := range map[string]string{"garbage": "garbage", "empty": "", "id token": tok.Extra("id_token").(string),
		"foreign JWT": hs256(t, h, "app"), "refresh of another client": tok.RefreshToken} {
		if in := introspect(v); len(in) != 1 || in["active"] != false {
			t.Errorf("%s: %v, want exactly {\"active\":false}", name, in)
		}
	}
	// Introspection needs an authenticated client.
	if resp, _ := h.postForm("/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {"app"}}, "", ""); resp.StatusCode != 401 {
		t.Fatalf("public client introspection: %d", resp.StatusCode)
	}
	if resp, _ := h.postForm("/introspect", url.Values{"token": {tok.AccessToken}}, "", ""); resp.StatusCode != 401 {
		t.Fatalf("anonymous introspection: %d", resp.StatusCode)
	}

	// Revoking the access token: refused on the next FHIR request, inactive.
	if st, _ := h.fhir("GET", "Patient/mia", nil, tok.AccessToken); st != 200 {
		t.Fatal(st)
	}
	if resp, _ := h.postForm("/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {"rs"}}, "", ""); resp.StatusCode != 401 {
		t.Fatalf("revocation needs the client's credentials: %d", resp.StatusCode)
	}
	resp, _ := h.postForm("/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {"app"}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if st, _ := h.fhir("GET", "Patient/mia", nil, tok.AccessToken); st != http.StatusUnauthorized {
		t.Fatalf("revoked access token: %d", st)
	}
	if in := introspect(tok.AccessToken); in["active"] != false {
		t.Fatalf("revoked token introspects %v", in)
	}
	// Another client's revocation of this app's token does nothing (but 200).
	tok2, err := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = h.postForm("/revoke", url.Values{"token": {tok2.AccessToken}}, "rs2", rsSecret)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if st, _ := h.fhir("GET", "Patient/mia", nil, tok2.AccessToken); st != 200 {
		t.Fatalf("another client cannot revoke: %d", st)
	}
	// Revoking the refresh token revokes its family's access tokens.
	resp, _ = h.postForm("/revoke", url.Values{"token": {tok2.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {"app"}}, "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if st, _ := h.fhir("GET", "Patient/mia", nil, tok2.AccessToken); st != http.StatusUnauthorized {
		t.Fatalf("access token of a revoked refresh token: %d", st)
	}
	if _, err := cfg.TokenSource(h.ctx(), &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); err == nil {
		t.Fatal("revoked refresh token still works")
	}
	// Unknown tokens: 200 (RFC 7009 2.2).
	if resp, _ := h.postForm("/revoke", url.Values{"token": {"nope"}, "client_id": {"app"}}, "", ""); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}
