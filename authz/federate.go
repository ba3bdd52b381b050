package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Federated login: the organisation's OpenID provider authenticates the
// user (authorization code with PKCE, state and nonce; the ID token is
// verified by go-oidc against the provider's discovery and JWKS), and the
// provider's subject is mapped to a FHIR user by identifier: the one
// Patient, RelatedPerson, Person or Practitioner whose identifier is
// IdentifierSystem|sub. The first login creates a federated account
// (issuer, subject -> fhirUser); later logins find it.

// FederationConfig configures the organisation's OpenID provider.
type FederationConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// Name labels the login button ("Sign in with <Name>").
	Name string
	// IdentifierSystem is the FHIR identifier system holding the
	// provider's subjects (default: the issuer URL).
	IdentifierSystem string
	// Scopes requested from the provider (default openid).
	Scopes []string
}

type federation struct {
	cfg    FederationConfig
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

func newFederation(cfg FederationConfig, client *http.Client) (*federation, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("authz: federation needs an issuer and a client id")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Issuer
	}
	if cfg.IdentifierSystem == "" {
		cfg.IdentifierSystem = cfg.Issuer
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID}
	}
	return &federation{cfg: cfg, client: client}, nil
}

// discover fetches the provider's discovery document once (lazily: the
// provider may start after fhirgate).
func (f *federation) discover(ctx context.Context) (*oidc.Provider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.provider != nil {
		return f.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, f.client), f.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	f.provider = p
	return p, nil
}

func (s *Server) oauth2Config(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: s.fed.cfg.ClientID, ClientSecret: s.fed.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: s.URL("/federated/callback"), Scopes: s.fed.cfg.Scopes}
}

// fedState travels in a signed, HttpOnly cookie between start and callback.
type fedState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Req      string `json:"r,omitempty"`
	Exp      int64  `json:"e"`
}

func (s *Server) sign(b []byte) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("fed|"))
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) unsign(v string) ([]byte, bool) {
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return nil, false
	}
	return b, hmac.Equal([]byte(s.sign(b)), []byte(p+"."+sig))
}

func (s *Server) handleFederatedStart(w http.ResponseWriter, r *http.Request) {
	if s.fed == nil {
		s.errorPage(w, r, http.StatusNotFound, "error.not_found")
		return
	}
	ctx := r.Context()
	reqID := r.URL.Query().Get("r")
	if reqID != "" {
		if _, _, ok := s.loadRequest(w, r, reqID); !ok {
			return
		}
	}
	p, err := s.fed.discover(ctx)
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "authz: identity provider unreachable", "issuer", s.fed.cfg.Issuer, "err", err)
		s.errorPage(w, r, http.StatusBadGateway, "error.idp")
		return
	}
	st := fedState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Req: reqID,
		Exp: s.now().Add(10 * time.Minute).Unix()}
	b, _ := json.Marshal(st)
	s.setCookie(w, "fg_fed", s.sign(b), s.now().Add(10*time.Minute))
	u := s.oauth2Config(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	securityHeaders(w)
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func (s *Server) handleFederatedCallback(w http.ResponseWriter, r *http.Request) {
	if s.fed == nil {
		s.errorPage(w, r, http.StatusNotFound, "error.not_found")
		return
	}
	ctx := r.Context()
	raw, ok := s.unsign(s.cookie(r, "fg_fed"))
	var st fedState
	if !ok || json.Unmarshal(raw, &st) != nil || s.now().Unix() > st.Exp || r.URL.Query().Get("state") != st.State {
		s.errorPage(w, r, http.StatusBadRequest, "error.no_request")
		return
	}
	s.clearCookie(w, "fg_fed")
	var req *AuthRequest
	if st.Req != "" {
		var ok bool
		if req, _, ok = s.loadRequest(w, r, st.Req); !ok {
			return
		}
	}
	if e := r.URL.Query().Get("error"); e != "" {
		s.audit(r, audit.Event{Operation: "login-failed", Outcome: http.StatusUnauthorized, OutcomeText: "identity provider: " + e})
		s.errorPage(w, r, http.StatusUnauthorized, "error.idp_refused")
		return
	}
	acct, reason, err := s.federatedAccount(ctx, r.URL.Query().Get("code"), st)
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "authz: federated login", "err", err)
		s.errorPage(w, r, http.StatusBadGateway, "error.idp")
		return
	}
	if acct == nil {
		s.cfg.Logger.InfoContext(ctx, "authz: federated login refused", "reason", reason)
		s.audit(r, audit.Event{Operation: "login-failed", Outcome: http.StatusUnauthorized, OutcomeText: reason})
		s.errorPage(w, r, http.StatusUnauthorized, "error.no_fhir_user")
		return
	}
	now := s.now()
	se := &Session{AccountID: acct.ID, AuthTime: now, ExpiresAt: now.Add(s.cfg.SessionTTL), Method: "fed"}
	if err := s.startSession(ctx, w, se); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.auditLogin(r, acct, http.StatusOK, "")
	s.afterLogin(w, r, req)
}

// federatedAccount exchanges the code, verifies the ID token and finds or
// creates the account. A nil account with a reason: the login is refused.
func (s *Server) federatedAccount(ctx context.Context, code string, st fedState) (*Account, string, error) {
	p, err := s.fed.discover(ctx)
	if err != nil {
		return nil, "", err
	}
	cctx := oidc.ClientContext(ctx, s.fed.client)
	tok, err := s.oauth2Config(p).Exchange(cctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return nil, "identity provider refused the code", nil
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, "identity provider sent no id_token", nil
	}
	idt, err := p.VerifierContext(cctx, &oidc.Config{ClientID: s.fed.cfg.ClientID, Now: s.cfg.Now}).Verify(cctx, rawID)
	if err != nil {
		return nil, "id_token invalid: " + err.Error(), nil
	}
	if idt.Nonce != st.Nonce {
		return nil, "id_token nonce mismatch", nil
	}
	acct, err := s.store.AccountByIdentity(ctx, idt.Issuer, idt.Subject)
	if err == nil {
		if acct.Disabled {
			return nil, "account disabled", nil
		}
		return acct, "", nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, "", err
	}
	fu, err := s.fhirUserByIdentifier(ctx, idt.Subject)
	if err != nil {
		return nil, "", err
	}
	if fu == "" {
		return nil, fmt.Sprintf("no single FHIR user has identifier %s|%s", s.fed.cfg.IdentifierSystem, idt.Subject), nil
	}
	acct = &Account{ID: randomToken()[:22], Issuer: idt.Issuer, Subject: idt.Subject, FHIRUser: fu, CreatedAt: s.now()}
	if err := s.store.CreateAccount(ctx, acct); err != nil {
		if errors.Is(err, ErrExists) { // a concurrent first login
			acct, err = s.store.AccountByIdentity(ctx, idt.Issuer, idt.Subject)
			return acct, "", err
		}
		return nil, "", err
	}
	return acct, "", nil
}

// fhirUserByIdentifier finds the one user resource with the identifier.
func (s *Server) fhirUserByIdentifier(ctx context.Context, sub string) (string, error) {
	sys := s.fed.cfg.IdentifierSystem
	var found []string
	for _, t := range []string{"Patient", "RelatedPerson", "Person", "Practitioner"} {
		page, err := s.cfg.FHIR.Search(ctx, store.Query{Types: []string{t}, Count: 2,
			Filter: search.TokenCond{Param: "identifier", System: &sys, Code: &sub}})
		if err != nil {
			return "", fmt.Errorf("authz: find %s by identifier: %w", t, err)
		}
		for _, rec := range page.Records {
			if !rec.Deleted {
				found = append(found, t+"/"+rec.ID)
			}
		}
	}
	if len(found) != 1 {
		return "", nil
	}
	return found[0], nil
}
