package smart

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/fhir"
)

func newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scopeStrings(p *Principal) []string {
	var s []string
	for _, sc := range p.Scopes {
		s = append(s, sc.Raw)
	}
	return s
}

// wantInvalid asserts a 401 invalid_token challenge (RFC 6750 section 3.1).
func wantInvalid(t *testing.T, p *Principal, err error, descPart string) {
	t.Helper()
	if p != nil {
		t.Fatalf("accepted: %+v", p)
	}
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != fhir.KindUnauthorized {
		t.Fatalf("err = %v, want 401", err)
	}
	h := fe.Header["WWW-Authenticate"]
	if !strings.HasPrefix(h, `Bearer realm="fhirgate", error="invalid_token", error_description="`) {
		t.Fatalf("WWW-Authenticate = %q", h)
	}
	if !strings.Contains(h, descPart) {
		t.Fatalf("WWW-Authenticate = %q, want it to mention %q", h, descPart)
	}
}

func wantKind(t *testing.T, err error, k fhir.Kind) {
	t.Helper()
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != k {
		t.Fatalf("err = %v, want kind %v", err, k)
	}
}

// Token verification against a real OpenID provider (zitadel op):
// RFC 9068 JWT access tokens, RFC 7519 claims, RFC 8725 algorithm rules.
func TestVerifyZitadel(t *testing.T) {
	o := newTestOP(t)
	ctx := context.Background()
	v := newVerifier(t, Config{Issuers: []string{o.URL}})
	scope := "openid fhirUser launch/patient patient/Observation.rs user/Patient.read"
	tok := o.token(t, "app", "app-secret", scope)

	t.Run("valid", func(t *testing.T) {
		p, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if p.Issuer != o.URL || p.Subject != "app" || p.ClientID != "app" || p.Patient != "123" ||
			p.FHIRUser != "Practitioner/1" || p.Token != tok {
			t.Fatalf("principal = %+v", p)
		}
		if got := scopeStrings(p); !slices.Equal(got, []string{"openid", "fhirUser", "launch/patient", "patient/Observation.rs", "user/Patient.read"}) {
			t.Fatalf("scopes = %v", got)
		}
		if d := time.Until(p.ExpiresAt); d < 59*time.Minute || d > time.Hour+time.Minute {
			t.Fatalf("ExpiresAt = %v", p.ExpiresAt)
		}
	})
	t.Run("expired", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "expired")
	})
	t.Run("expired within skew accepted", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Now: func() time.Time { return time.Now().Add(time.Hour + 30*time.Second) }})
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expired short-lived token", func(t *testing.T) {
		short := o.token(t, "short", "short-secret", "system/*.rs")
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Skew: time.Second, Now: func() time.Time { return time.Now().Add(3 * time.Second) }})
		p, err := v.Verify(ctx, short)
		wantInvalid(t, p, err, "expired")
	})
	t.Run("not yet valid", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }})
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "not yet valid")
	})
	t.Run("wrong audience", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Audience: "https://other.example.org/fhir"})
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "aud")
	})
	t.Run("audience with trailing slash", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, Audience: testAudience + "/"})
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong issuer", func(t *testing.T) {
		other := newTestOP(t)
		v := newVerifier(t, Config{Issuers: []string{other.URL}})
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "issuer is not trusted")
	})
	t.Run("token of another provider claiming the trusted issuer", func(t *testing.T) {
		// Signed by a key the trusted issuer never published, same kid.
		forged := sign(t, jose.RS256, rsaKey(t, 2), o.kid, validClaims(o))
		p, err := v.Verify(ctx, forged)
		wantInvalid(t, p, err, "bad signature")
	})
}

func validClaims(o *testOP) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": o.URL, "sub": "app", "aud": []string{testAudience}, "client_id": "app",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"scope": "patient/*.cruds", "patient": "123",
	}
}

// RFC 8725 section 2.1 and 3.1: no "none", no HMAC keyed with the public
// key, signatures must verify.
func TestVerifyAttacks(t *testing.T) {
	o := newTestOP(t)
	ctx := context.Background()
	v := newVerifier(t, Config{Issuers: []string{o.URL}})
	claims := validClaims(o)

	// Sanity: the same claims signed with the OP's real key are accepted,
	// so every rejection below is due to the attack alone.
	good := sign(t, jose.RS256, o.private, o.kid, claims)
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	parts := strings.Split(good, ".")

	pubDER, err := x509.MarshalPKIXPublicKey(&o.private.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &o.private.PublicKey, KeyID: o.kid, Algorithm: "RS256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(alg string, key []byte) string {
		signing := b64(map[string]any{"alg": alg, "kid": o.kid, "typ": "at+jwt"}) + "." + parts[1]
		m := hmac.New(sha256.New, key)
		m.Write([]byte(signing))
		return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	flip := func(s string) string {
		b, _ := base64.RawURLEncoding.DecodeString(s)
		b[len(b)/2] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tampered := map[string]any{}
	for k, x := range claims {
		tampered[k] = x
	}
	tampered["patient"] = "999"

	attacks := map[string]string{
		"alg none":                    b64(map[string]any{"alg": "none", "kid": o.kid}) + "." + parts[1] + ".",
		"alg none with signature":     b64(map[string]any{"alg": "none", "kid": o.kid}) + "." + parts[1] + "." + parts[2],
		"alg NONE":                    b64(map[string]any{"alg": "NONE"}) + "." + parts[1] + ".",
		"HS256 with public key PEM":   hs("HS256", pubPEM),
		"HS256 with public key DER":   hs("HS256", pubDER),
		"HS256 with public JWK":       hs("HS256", jwk),
		"tampered signature":          parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"tampered payload":            parts[0] + "." + b64(tampered) + "." + parts[2],
		"missing signature":           parts[0] + "." + parts[1] + ".",
		"header swapped to RS512":     b64(map[string]any{"alg": "RS512", "kid": o.kid}) + "." + parts[1] + "." + parts[2],
		"unknown kid never published": sign(t, jose.RS256, rsaKey(t, 1), "key-unknown", claims),
		"header changed (crit added)": b64(map[string]any{"alg": "RS256", "kid": o.kid, "crit": []string{"x"}, "x": 1}) + "." + parts[1] + "." + parts[2],
	}
	for name, tok := range attacks {
		t.Run(name, func(t *testing.T) {
			p, err := v.Verify(ctx, tok)
			t.Logf("%v", err)
			wantInvalid(t, p, err, "")
		})
	}

	claimCases := []struct {
		name string
		edit func(m map[string]any)
		desc string
	}{
		{"no exp", func(m map[string]any) { delete(m, "exp") }, "exp"},
		{"exp not a number", func(m map[string]any) { m["exp"] = "tomorrow" }, ""},
		{"iat in the future", func(m map[string]any) {
			m["iat"] = time.Now().Add(10 * time.Minute).Unix()
			delete(m, "nbf")
		}, "future"},
		{"aud missing", func(m map[string]any) { delete(m, "aud") }, "aud"},
		{"aud other string", func(m map[string]any) { m["aud"] = "https://evil.example.org/fhir" }, "aud"},
		{"aud array without us", func(m map[string]any) { m["aud"] = []string{"a", "b"} }, "aud"},
		{"malformed patient", func(m map[string]any) { m["patient"] = "Observation/1" }, "patient"},
		{"malformed fhirUser", func(m map[string]any) { m["fhirUser"] = "nobody" }, "fhirUser"},
	}
	for _, c := range claimCases {
		t.Run(c.name, func(t *testing.T) {
			m := validClaims(o)
			c.edit(m)
			p, err := v.Verify(ctx, sign(t, jose.RS256, o.private, o.kid, m))
			wantInvalid(t, p, err, c.desc)
		})
	}
}

func TestVerifyClaimShapes(t *testing.T) {
	o := newTestOP(t)
	ctx := context.Background()
	t.Run("aud string, scp array, azp", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}})
		m := validClaims(o)
		m["aud"] = testAudience
		delete(m, "scope")
		delete(m, "client_id")
		m["scp"] = []string{"patient/Observation.rs", "launch"}
		m["azp"] = "portal"
		m["patient"] = "Patient/123"
		p, err := v.Verify(ctx, sign(t, jose.RS256, o.private, o.kid, m))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(scopeStrings(p), []string{"patient/Observation.rs", "launch"}) || p.ClientID != "portal" || p.Patient != "123" {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("configured claim names", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, ScopeClaim: "permissions", PatientClaim: "ctx_patient",
			FHIRUserClaim: "profile_ref", ClientClaim: "cid"})
		m := validClaims(o)
		m["permissions"] = "user/*.rs"
		m["ctx_patient"] = "42"
		m["profile_ref"] = "https://fhir.example.org/r4/RelatedPerson/7/_history/3"
		m["cid"] = "custom"
		p, err := v.Verify(ctx, sign(t, jose.RS256, o.private, o.kid, m))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(scopeStrings(p), []string{"user/*.rs"}) || p.Patient != "42" || p.FHIRUser != "RelatedPerson/7" || p.ClientID != "custom" {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("malformed resource scopes are dropped", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}})
		m := validClaims(o)
		m["scope"] = "patient/Observation.xyz patient/Condition.rs"
		p, err := v.Verify(ctx, sign(t, jose.RS256, o.private, o.kid, m))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(scopeStrings(p), []string{"patient/Condition.rs"}) {
			t.Fatalf("%v", scopeStrings(p))
		}
	})
	t.Run("ES256 and EdDSA issuers' algorithms are accepted", func(t *testing.T) {
		// Key types are checked by go-jose; here only that the alg list
		// does not exclude the asymmetric families.
		for _, a := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"} {
			if !slices.Contains(asymmetricAlgs, a) {
				t.Fatalf("%s missing", a)
			}
		}
		for _, a := range []string{"none", "HS256", "HS384", "HS512"} {
			if slices.Contains(asymmetricAlgs, a) {
				t.Fatalf("%s accepted", a)
			}
		}
	})
}

// Key rotation (OpenID Connect Core 10.1.1): a token signed with a new
// kid verifies with the same Verifier (the JWKS is fetched again).
func TestVerifyKeyRotation(t *testing.T) {
	o := newTestOP(t)
	ctx := context.Background()
	v := newVerifier(t, Config{Issuers: []string{o.URL}})
	old := o.token(t, "app", "app-secret", "patient/*.rs")
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	o.store.rotate("key-2", rsaKey(t, 1))
	fresh := o.token(t, "app", "app-secret", "patient/*.rs")
	if kidOf(t, fresh) != "key-2" {
		t.Fatalf("OP did not rotate: kid %s", kidOf(t, fresh))
	}
	if _, err := v.Verify(ctx, fresh); err != nil {
		t.Fatalf("rotated key not picked up: %v", err)
	}
	// The old key is no longer published: its tokens stop verifying.
	p, err := v.Verify(ctx, old)
	wantInvalid(t, p, err, "")
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(h, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// RFC 7662 against the zitadel OP's introspection endpoint, discovered
// from its metadata.
func TestVerifyIntrospectionZitadel(t *testing.T) {
	o := newTestOP(t)
	ctx := context.Background()
	v := newVerifier(t, Config{Issuers: []string{o.URL}, IntrospectionClientID: "rs", IntrospectionSecret: "rs secret/+"})
	tok := o.token(t, "opaque", "opaque-secret", "launch/patient patient/*.rs")
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("expected an opaque token, got %q", tok)
	}
	p, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != o.URL || p.ClientID != "opaque" || p.Patient != "123" || p.FHIRUser != "RelatedPerson/7" ||
		!slices.Equal(scopeStrings(p), []string{"launch/patient", "patient/*.rs"}) || p.ExpiresAt.IsZero() {
		t.Fatalf("principal = %+v", p)
	}

	t.Run("revoked", func(t *testing.T) {
		tok := o.token(t, "opaque", "opaque-secret", "patient/*.rs")
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		o.store.mu.Lock()
		last := fmt.Sprintf("tok%d", o.store.seq)
		o.store.mu.Unlock()
		o.store.revoke(last)
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "not active")
	})
	t.Run("garbage opaque token", func(t *testing.T) {
		p, err := v.Verify(ctx, "Zm9vYmFy")
		wantInvalid(t, p, err, "not active")
	})
	t.Run("wrong resource server secret is 503", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}, IntrospectionClientID: "rs", IntrospectionSecret: "nope"})
		_, err := v.Verify(ctx, tok)
		wantKind(t, err, fhir.KindUnavailable)
	})
	t.Run("opaque without introspection", func(t *testing.T) {
		v := newVerifier(t, Config{Issuers: []string{o.URL}})
		p, err := v.Verify(ctx, tok)
		wantInvalid(t, p, err, "not a JWT")
	})
}

// RFC 7662 with a hand-written endpoint: request shape and response checks.
func TestVerifyIntrospectionHTTPTest(t *testing.T) {
	var resp atomic.Value
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if r.Method != http.MethodPost || !ok || id != "rs%3Aid" || secret != "s%26cret" ||
			r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad client", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" || r.PostForm.Get("token_type_hint") != "access_token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(resp.Load().(string)))
	}))
	defer srv.Close()
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	v := newVerifier(t, Config{IntrospectionURL: srv.URL, IntrospectionClientID: "rs:id", IntrospectionSecret: "s&cret",
		Issuers: []string{"https://idp.example.org"}, Now: clock(now)})
	exp := now.Add(time.Hour).Unix()
	cases := []struct {
		name string
		body string
		ok   bool
		desc string
	}{
		{"active", `{"active":true,"scope":"patient/Observation.rs","client_id":"c","sub":"u","exp":` + itoa(exp) + `,"aud":"` + testAudience + `","iss":"https://idp.example.org","patient":"123"}`, true, ""},
		{"active minimal", `{"active":true,"scp":["system/*.rs"]}`, true, ""},
		{"inactive", `{"active":false}`, false, "not active"},
		{"active missing", `{"scope":"system/*.rs"}`, false, "not active"},
		{"active as string", `{"active":"true"}`, false, "not active"},
		{"expired", `{"active":true,"exp":` + itoa(now.Add(-time.Hour).Unix()) + `}`, false, "expired"},
		{"not yet valid", `{"active":true,"nbf":` + itoa(now.Add(time.Hour).Unix()) + `}`, false, "not yet valid"},
		{"other audience", `{"active":true,"aud":["https://other.example.org"]}`, false, "aud"},
		{"untrusted issuer", `{"active":true,"iss":"https://evil.example.org"}`, false, "not trusted"},
		{"refresh token", `{"active":true,"token_type":"refresh_token"}`, false, "not an access token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp.Store(c.body)
			p, err := v.Verify(context.Background(), "opaque-token-value")
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				if p.Token != "opaque-token-value" || len(p.Scopes) != 1 {
					t.Fatalf("%+v", p)
				}
				return
			}
			wantInvalid(t, p, err, c.desc)
		})
	}
	t.Run("non-JSON answer is 503", func(t *testing.T) {
		resp.Store(`<html>`)
		_, err := v.Verify(context.Background(), "opaque")
		wantKind(t, err, fhir.KindUnavailable)
	})
	t.Run("JWT of an untrusted issuer goes to introspection", func(t *testing.T) {
		resp.Store(`{"active":true,"scope":"system/*.rs"}`)
		before := calls.Load()
		tok := b64(map[string]any{"alg": "RS256"}) + "." + b64(map[string]any{"iss": "https://elsewhere.example.org"}) + ".c2ln"
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if calls.Load() != before+1 {
			t.Fatal("introspection not called")
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestVerifyMissingAndErrors(t *testing.T) {
	v := newVerifier(t, Config{Issuers: []string{"http://127.0.0.1:1/unreachable"}})
	ctx := context.Background()
	for _, b := range []string{"", "   "} {
		_, err := v.Verify(ctx, b)
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Kind != fhir.KindUnauthorized || fe.Header["WWW-Authenticate"] != `Bearer realm="fhirgate"` {
			t.Fatalf("missing token: %v %+v", err, fe)
		}
	}
	p, err := v.Verify(ctx, "opaque")
	wantInvalid(t, p, err, "not a JWT")
	p, err = v.Verify(ctx, strings.Repeat("a", 17<<10))
	wantInvalid(t, p, err, "too long")

	tok := b64(map[string]any{"alg": "RS256"}) + "." + b64(map[string]any{"iss": "http://127.0.0.1:1/unreachable"}) + ".c2ln"
	_, err = v.Verify(ctx, tok)
	wantKind(t, err, fhir.KindUnavailable)
	if _, err := v.Endpoints(ctx); err == nil {
		t.Fatal("Endpoints of unreachable issuer")
	}
	if err := v.Discover(ctx); err == nil {
		t.Fatal("Discover of unreachable issuer")
	}
}

func TestNewVerifierConfig(t *testing.T) {
	ctx := context.Background()
	bad := []Config{
		{Issuers: []string{"https://idp"}},                         // no audience
		{Audience: testAudience},                                   // no issuer, no introspection
		{Audience: testAudience, Issuers: []string{"idp.example"}}, // not a URL
		{Audience: testAudience, Issuers: []string{"https://x"}, Skew: -time.Second},
		{Audience: testAudience, Issuers: []string{"https://x"}, IntrospectionSecret: "s"},
	}
	for i, c := range bad {
		if _, err := NewVerifier(ctx, c); err == nil {
			t.Fatalf("config %d accepted", i)
		}
	}
}

func TestEndpointsZitadel(t *testing.T) {
	o := newTestOP(t)
	v := newVerifier(t, Config{Issuers: []string{o.URL, "https://second.example.org"}})
	if err := v.Discover(context.Background()); err == nil {
		t.Fatal("unreachable second issuer must be reported")
	}
	ep, err := v.Endpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ep.Issuer != o.URL || ep.TokenEndpoint != o.URL+"/oauth/token" || ep.IntrospectionEndpoint != o.URL+"/oauth/introspect" ||
		ep.JWKSURI != o.URL+"/keys" || ep.RevocationEndpoint != o.URL+"/revoke" || ep.AuthorizationEndpoint != o.URL+"/authorize" ||
		!slices.Contains(ep.GrantTypesSupported, "client_credentials") {
		t.Fatalf("%+v", ep)
	}
}

func TestErrorsAndContext(t *testing.T) {
	var fe *fhir.Error
	if !errors.As(InsufficientScope("patient/Observation.rs"), &fe) || fe.Kind != fhir.KindForbidden ||
		fe.Header["WWW-Authenticate"] != `Bearer realm="fhirgate", error="insufficient_scope", error_description="the request needs scope patient/Observation.rs", scope="patient/Observation.rs"` {
		t.Fatalf("%+v", fe)
	}
	if !errors.As(InsufficientScope(""), &fe) || strings.Contains(fe.Header["WWW-Authenticate"], "scope=") {
		t.Fatalf("%+v", fe)
	}
	if h := InvalidToken("bad \"quote\"\n").Header["WWW-Authenticate"]; !strings.HasSuffix(h, `error_description="bad ?quote??"`) {
		t.Fatalf("%q", h)
	}
	if status, oo := fhir.Outcome(InvalidToken("x")); status != 401 || oo.Issue[0].Code != "login" {
		t.Fatalf("%d %+v", status, oo)
	}
	ctx := context.Background()
	if PrincipalFrom(ctx) != nil {
		t.Fatal("principal from empty ctx")
	}
	p := &Principal{Subject: "s"}
	if PrincipalFrom(WithPrincipal(ctx, p)) != p {
		t.Fatal("principal lost")
	}
}

// An issuer whose JWKS endpoint fails is an outage (503), not a bad token.
func TestVerifyJWKSDown(t *testing.T) {
	var url string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"` + url + `","jwks_uri":"` + url + `/jwks"}`))
			return
		}
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	url = srv.URL
	v := newVerifier(t, Config{Issuers: []string{url}})
	claims := map[string]any{"iss": url, "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}
	_, err := v.Verify(context.Background(), sign(t, jose.RS256, rsaKey(t, 0), "k", claims))
	wantKind(t, err, fhir.KindUnavailable)
}
