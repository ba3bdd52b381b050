package authz_test

// Federated login (OpenID Connect Core 3.1, authorization code flow with
// PKCE) against a real OpenID provider in-process: zitadel/oidc's op
// package with a minimal in-memory storage. The provider's subject maps
// to a FHIR user by identifier (the login-identifier-system).

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
)

type idpKey struct{ key *rsa.PrivateKey }

func (k idpKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k idpKey) Key() any                                    { return k.key }
func (k idpKey) ID() string                                  { return "idp-1" }

type idpPub struct{ idpKey }

func (k idpPub) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k idpPub) Use() string                        { return "sig" }
func (k idpPub) Key() any                           { return &k.key.PublicKey }

type idpClient struct{ redirect, login string }

func (c *idpClient) GetID() string                       { return "fhirgate" }
func (c *idpClient) RedirectURIs() []string              { return []string{c.redirect} }
func (c *idpClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *idpClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *idpClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *idpClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *idpClient) GrantTypes() []oidc.GrantType        { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *idpClient) LoginURL(id string) string           { return c.login + "?id=" + url.QueryEscape(id) }
func (c *idpClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *idpClient) IDTokenLifetime() time.Duration      { return time.Hour }
func (c *idpClient) DevMode() bool                       { return true }
func (c *idpClient) IsScopeAllowed(string) bool          { return true }
func (c *idpClient) IDTokenUserinfoClaimsAssertion() bool {
	return false
}
func (c *idpClient) ClockSkew() time.Duration { return 0 }
func (c *idpClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *idpClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

type idpRequest struct {
	id, subject string
	req         oidc.AuthRequest
	done        bool
	authTime    time.Time
	code        string
}

func (r *idpRequest) GetID() string                      { return r.id }
func (r *idpRequest) GetACR() string                     { return "" }
func (r *idpRequest) GetAMR() []string                   { return []string{"pwd"} }
func (r *idpRequest) GetAudience() []string              { return []string{r.req.ClientID} }
func (r *idpRequest) GetAuthTime() time.Time             { return r.authTime }
func (r *idpRequest) GetClientID() string                { return r.req.ClientID }
func (r *idpRequest) GetNonce() string                   { return r.req.Nonce }
func (r *idpRequest) GetRedirectURI() string             { return r.req.RedirectURI }
func (r *idpRequest) GetResponseType() oidc.ResponseType { return r.req.ResponseType }
func (r *idpRequest) GetResponseMode() oidc.ResponseMode { return r.req.ResponseMode }
func (r *idpRequest) GetScopes() []string                { return r.req.Scopes }
func (r *idpRequest) GetState() string                   { return r.req.State }
func (r *idpRequest) GetSubject() string                 { return r.subject }
func (r *idpRequest) Done() bool                         { return r.done }
func (r *idpRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if r.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: r.req.CodeChallenge, Method: r.req.CodeChallengeMethod}
}

// idpStorage is the part of op.Storage the code flow uses; the embedded
// nil interface panics on anything else (a wiring mistake in the test).
type idpStorage struct {
	op.Storage
	key    idpKey
	client *idpClient
	mu     sync.Mutex
	reqs   map[string]*idpRequest
	seq    int
}

func (s *idpStorage) Health(context.Context) error { return nil }
func (s *idpStorage) SigningKey(context.Context) (op.SigningKey, error) {
	return s.key, nil
}
func (s *idpStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *idpStorage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{idpPub{s.key}}, nil }
func (s *idpStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != "fhirgate" {
		return nil, errors.New("unknown client")
	}
	return s.client, nil
}
func (s *idpStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != "fhirgate" || secret != "fed-secret" {
		return errors.New("wrong secret")
	}
	return nil
}
func (s *idpStorage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	r := &idpRequest{id: "ar" + string(rune('0'+s.seq)), req: *req}
	s.reqs[r.id] = r
	return r, nil
}
func (s *idpStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.reqs[id]; ok {
		return r, nil
	}
	return nil, errors.New("no request")
}
func (s *idpStorage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reqs {
		if r.code == code {
			return r, nil
		}
	}
	return nil, errors.New("no code")
}
func (s *idpStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs[id].code = code
	return nil
}
func (s *idpStorage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reqs, id)
	return nil
}
func (s *idpStorage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return "idp-access-token", time.Now().Add(time.Hour), nil
}
func (s *idpStorage) SetUserinfoFromScopes(_ context.Context, u *oidc.UserInfo, userID, _ string, _ []string) error {
	u.Subject = userID
	return nil
}
func (s *idpStorage) SetUserinfoFromRequest(_ context.Context, u *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	u.Subject = r.GetSubject()
	return nil
}
func (s *idpStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *idpStorage) login(subject string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		s.mu.Lock()
		req, ok := s.reqs[id]
		if ok {
			req.subject, req.done, req.authTime = subject, true, time.Now()
		}
		s.mu.Unlock()
		if !ok {
			http.Error(w, "no request", 400)
			return
		}
		http.Redirect(w, r, "/authorize/callback?id="+url.QueryEscape(id), http.StatusFound)
	}
}

// newIdP starts a zitadel OP whose login page logs in subject at once.
func newIdP(t *testing.T, redirect, subject string) string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	st := &idpStorage{key: idpKey{k}, reqs: map[string]*idpRequest{}}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	st.client = &idpClient{redirect: redirect, login: srv.URL + "/login"}
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	provider, err := op.NewProvider(&op.Config{CryptoKey: key, CodeMethodS256: true}, st, op.StaticIssuer(srv.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/login", st.login(subject))
	mux.Handle("/", provider)
	return srv.URL
}

func TestFederatedLogin(t *testing.T) {
	var idp string
	h := newHarness(t, func(o *app.Options) {
		idp = newIdP(t, strings.TrimSuffix(o.BaseURL, "/fhir")+"/auth/federated/callback", "sub-ann-42")
		o.AuthServer.Federation = &authz.FederationConfig{Issuer: idp, ClientID: "fhirgate", ClientSecret: "fed-secret",
			Name: "Hospital ID", IdentifierSystem: "urn:example:hospital-id"}
	})
	h.seed()
	// Ann's Patient carries the provider's subject as an identifier.
	h.put(map[string]any{"resourceType": "Patient", "id": "ann", "birthDate": "1950-02-03",
		"identifier": []any{map[string]any{"system": "urn:example:hospital-id", "value": "sub-ann-42"}},
		"name":       []any{map[string]any{"given": []any{"Ann"}, "family": "Roy"}}})
	cfg := h.publicApp("app", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	b := h.browser()
	b.allow = append(b.allow, idp)
	state, verifier := b.authorize(cfg)
	b.must("login")
	if !strings.Contains(b.body, "Sign in with Hospital ID") {
		t.Fatalf("no federated button: %s", b.body)
	}
	b.submit("/auth/federated/start", nil)
	b.must("approve") // one choice, herself
	if !strings.Contains(b.body, "Ann Roy") {
		t.Fatalf("approval for Ann: %s", b.body)
	}
	b.submit("/auth/approve", map[string][]string{"action": {"approve"}})
	tok, err := cfg.Exchange(h.ctx(), b.code(state), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "ann" || jwtClaims(t, tok.AccessToken)["fhirUser"] != "Patient/ann" {
		t.Fatalf("federated token: %v %v", tok.Extra("patient"), jwtClaims(t, tok.AccessToken))
	}
	if st, _ := h.fhir("GET", "Observation/obs-ann", nil, tok.AccessToken); st != 200 {
		t.Fatalf("federated user reads her record: %d", st)
	}
	accts, _ := h.app.AuthzStore.ListAccounts(context.Background())
	if len(accts) != 1 || accts[0].Issuer != idp || accts[0].Subject != "sub-ann-42" || accts[0].FHIRUser != "Patient/ann" {
		t.Fatalf("federated account %+v", accts)
	}
}

// A subject that no FHIR user carries is refused.
func TestFederatedLoginUnknownSubject(t *testing.T) {
	var idp string
	h := newHarness(t, func(o *app.Options) {
		idp = newIdP(t, strings.TrimSuffix(o.BaseURL, "/fhir")+"/auth/federated/callback", "nobody")
		o.AuthServer.Federation = &authz.FederationConfig{Issuer: idp, ClientID: "fhirgate", ClientSecret: "fed-secret"}
	})
	h.seed()
	cfg := h.publicApp("app", "launch/patient", "patient/*.rs")
	b := h.browser()
	b.allow = append(b.allow, idp)
	b.authorize(cfg)
	b.submit("/auth/federated/start", nil)
	if b.last.StatusCode != 401 || !strings.Contains(b.body, "not linked to a health record") {
		t.Fatalf("unknown subject: %d %s", b.last.StatusCode, b.body)
	}
}
