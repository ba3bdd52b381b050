package devissuer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const aud = "http://localhost:8080/fhir"

var (
	keyOnce sync.Once
	keyJSON []byte
)

// dataDir returns a fresh data directory holding a key generated once per
// test binary (RSA generation dominates the test time).
func dataDir(t *testing.T) string {
	t.Helper()
	keyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "devissuer")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if _, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "http://x"}); err != nil {
			panic(err)
		}
		if keyJSON, err = os.ReadFile(filepath.Join(dir, devissuer.KeyFile)); err != nil {
			panic(err)
		}
	})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, devissuer.KeyFile), keyJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The development issuer's tokens verify with the production Verifier
// (discovery + JWKS over HTTP, RFC 9068 access tokens).
func TestMintVerify(t *testing.T) {
	dir := t.TempDir()
	var iss *devissuer.Issuer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { iss.ServeHTTP(w, r) }))
	defer srv.Close()
	iss, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: srv.URL + "/", Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	if iss.URL() != srv.URL+"/dev-issuer" {
		t.Fatalf("issuer %s", iss.URL())
	}
	fi, err := os.Stat(filepath.Join(dir, devissuer.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}

	tok, err := iss.Mint(devissuer.MintOptions{Scope: "launch/patient  patient/*.rs", Patient: "123", FHIRUser: "RelatedPerson/7", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, err := smart.NewVerifier(context.Background(), smart.Config{Issuers: []string{iss.URL()}, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != iss.URL() || p.Patient != "123" || p.FHIRUser != "RelatedPerson/7" || p.Subject != "RelatedPerson/7" ||
		p.ClientID != "fhirgate-cli" || len(p.Scopes) != 2 || p.Scopes[1].Raw != "patient/*.rs" {
		t.Fatalf("principal %+v", p)
	}
	if d := time.Until(p.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute+time.Second {
		t.Fatalf("expires %v", p.ExpiresAt)
	}

	// Another audience is refused by the verifier.
	other, err := iss.Mint(devissuer.MintOptions{Scope: "system/*.rs", Audience: "https://elsewhere/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), other); err == nil {
		t.Fatal("token for another audience accepted")
	}

	// Restart: the key is reused, so old tokens stay valid.
	again, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: srv.URL, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	if again.KeyID() != iss.KeyID() || again.KeyID() == "" {
		t.Fatalf("kid changed across restart: %s vs %s", again.KeyID(), iss.KeyID())
	}
}

func TestMintExpired(t *testing.T) {
	past := time.Now().Add(-2 * time.Hour)
	iss, err := devissuer.New(devissuer.Config{DataDir: dataDir(t), Origin: "http://fhirgate.invalid", Audience: aud, Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(devissuer.MintOptions{Scope: "system/*.rs"})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: iss.Transport(nil)}
	v, err := smart.NewVerifier(context.Background(), smart.Config{Issuers: []string{iss.URL()}, Audience: aud, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v", err)
	}
}

// Transport serves discovery and JWKS in-process: the public origin need
// not be reachable from the server (fhirgate.invalid never resolves).
func TestTransportInProcess(t *testing.T) {
	iss, err := devissuer.New(devissuer.Config{DataDir: dataDir(t), Origin: "http://fhirgate.invalid", Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: iss.Transport(nil)}
	v, err := smart.NewVerifier(context.Background(), smart.Config{Issuers: []string{iss.URL()}, Audience: aud, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(devissuer.MintOptions{Scope: "user/*.rs", FHIRUser: "Practitioner/1", Client: "cli", Subject: "dr-who"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "dr-who" || p.ClientID != "cli" || p.FHIRUser != "Practitioner/1" {
		t.Fatalf("%+v", p)
	}
	ep, err := v.Endpoints(context.Background())
	if err != nil || ep.JWKSURI != "http://fhirgate.invalid/dev-issuer/jwks" || ep.Issuer != iss.URL() {
		t.Fatalf("%+v %v", ep, err)
	}
}

func TestHandler(t *testing.T) {
	iss, err := devissuer.New(devissuer.Config{DataDir: dataDir(t), Origin: "https://portal.example.org", Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		iss.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	rec := get("GET", "/dev-issuer/.well-known/openid-configuration")
	var disc map[string]any
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &disc) != nil || disc["issuer"] != "https://portal.example.org/dev-issuer" ||
		disc["jwks_uri"] != "https://portal.example.org/dev-issuer/jwks" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	rec = get("GET", "/base/dev-issuer/jwks")
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &jwks) != nil || len(jwks.Keys) != 1 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	k := jwks.Keys[0]
	if k["kid"] != iss.KeyID() || k["kty"] != "RSA" || k["alg"] != "RS256" {
		t.Fatalf("%v", k)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := k[private]; ok {
			t.Fatalf("JWKS leaks private parameter %q", private)
		}
	}
	if rec := get("GET", "/dev-issuer/other"); rec.Code != 404 {
		t.Fatalf("%d", rec.Code)
	}
	if rec := get("POST", "/dev-issuer/jwks"); rec.Code != 405 {
		t.Fatalf("%d", rec.Code)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := devissuer.New(devissuer.Config{Origin: "http://x"}); err == nil {
		t.Fatal("no data dir accepted")
	}
	if _, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "localhost:8080"}); err == nil {
		t.Fatal("origin without scheme accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, devissuer.KeyFile), []byte(`{"kty":"oct","k":"AAAA"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "http://x"}); err == nil {
		t.Fatal("symmetric key file accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, devissuer.KeyFile), []byte(`not json`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "http://x"}); err == nil {
		t.Fatal("corrupt key file accepted")
	}
	fresh := t.TempDir()
	iss, err := devissuer.New(devissuer.Config{DataDir: fresh, Origin: "http://x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Mint(devissuer.MintOptions{}); err == nil {
		t.Fatal("mint without audience")
	}
	if _, err := iss.Mint(devissuer.MintOptions{Audience: aud, TTL: -time.Second}); err == nil {
		t.Fatal("negative ttl")
	}
	entries, _ := os.ReadDir(fresh)
	if len(entries) != 1 || slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".dev-issuer-key-") }) {
		t.Fatal("temporary key file left behind")
	}
}

// The built-in authorization server uses the key under its own path and
// signs ID tokens (typ JWT) beside access tokens (typ at+jwt).
func TestPathAndSignJWT(t *testing.T) {
	dir := dataDir(t)
	iss, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "https://portal.example.org", Audience: aud, Path: "/auth"})
	if err != nil {
		t.Fatal(err)
	}
	if iss.URL() != "https://portal.example.org/auth" {
		t.Fatalf("issuer %s", iss.URL())
	}
	for _, typ := range []string{"at+jwt", "JWT"} {
		tok, err := iss.SignJWT(typ, map[string]any{"iss": iss.URL(), "sub": "x"})
		if err != nil {
			t.Fatal(err)
		}
		hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		var h map[string]any
		if err := json.Unmarshal(hdr, &h); err != nil || h["typ"] != typ || h["kid"] != iss.KeyID() || h["alg"] != "RS256" {
			t.Fatalf("%s header %s", typ, hdr)
		}
	}
	if ks := iss.PublicKeys().Keys; len(ks) != 1 || !ks[0].IsPublic() {
		t.Fatalf("public keys %+v", ks)
	}
	for _, p := range []string{"auth", "/auth/", ""} {
		if _, err := devissuer.New(devissuer.Config{DataDir: dir, Origin: "https://x", Path: p}); (err == nil) != (p == "") {
			t.Errorf("path %q: %v", p, err)
		}
	}
	rec := httptest.NewRecorder()
	iss.ServeHTTP(rec, httptest.NewRequest("GET", "/auth/jwks", nil))
	if rec.Code != 200 {
		t.Fatalf("jwks under the path: %d", rec.Code)
	}
}
