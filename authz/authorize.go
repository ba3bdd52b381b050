package authz

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/audit"
)

// The authorization endpoint (RFC 6749 section 4.1.1, RFC 7636, SMART App
// Launch 2.2 app-launch.html#obtain-authorization-code):
//
//   - the client and its redirect_uri are checked first, and an unknown
//     client or a redirect_uri that is not exactly a registered one is an
//     error page: nothing is ever sent to an unverified URI;
//   - every other problem is sent back to the app (error, error_description,
//     state, iss);
//   - PKCE is required with code_challenge_method S256: plain, another
//     method or no challenge is invalid_request (the spec's "S256 required";
//     plain would let an intercepted code be redeemed);
//   - aud must be this FHIR server's base URL, or no code is issued (SMART:
//     the app must not send its token to a server the user did not mean);
//   - state is required (SMART 2.2) and echoed;
//   - launch (EHR launch) is consumed at once: single use, short lived.
//
// The request is stored (AuthRequest, bound to this browser) and the user
// goes through /flow: login, patient picker, approval, then the redirect
// with the code.

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.bad_request")
		return
	}
	q := r.Form // query and, for authorize-post, the body
	for k, v := range q {
		if len(v) > 1 && k != "resource" {
			s.errorPage(w, r, http.StatusBadRequest, "error.bad_request")
			return
		}
	}
	c, err := s.store.GetClient(ctx, q.Get("client_id"))
	if errors.Is(err, ErrNotFound) || q.Get("client_id") == "" {
		s.errorPage(w, r, http.StatusBadRequest, "error.unknown_client")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(c.RedirectURIs, redirect) {
		s.errorPage(w, r, http.StatusBadRequest, "error.bad_redirect")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		s.audit(r, audit.Event{Operation: "authorize", Outcome: http.StatusBadRequest, OutcomeText: code + ": " + desc, ClientID: c.ID})
		s.redirectError(w, r, redirect, state, code, desc)
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		fail("unauthorized_client", "this client may not use the authorization code grant")
		return
	}
	if state == "" {
		fail("invalid_request", "state is required")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method S256")
		return
	case method != "S256":
		fail("invalid_request", "code_challenge_method must be S256 (plain is not accepted)")
		return
	case len(challenge) != 43 || strings.Trim(challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
		return
	}
	if strings.TrimSuffix(q.Get("aud"), "/") != s.cfg.BaseURL {
		fail("invalid_request", "aud must be this FHIR server's base URL "+s.cfg.BaseURL)
		return
	}
	var lc *LaunchContext
	if v := q.Get("launch"); v != "" {
		lc, err = s.store.UseLaunch(ctx, hashToken(v), s.now())
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrUsed), errors.Is(err, ErrExpired):
			fail("invalid_request", "the launch value is unknown, used or expired")
			return
		case err != nil:
			s.internalError(w, r, err)
			return
		}
		if lc.ClientID != "" && lc.ClientID != c.ID {
			fail("invalid_request", "the launch value was created for another app")
			return
		}
	}
	scopes := allowedScopes(c, splitScopes(q.Get("scope")), flowUser, lc != nil)
	if lc != nil && !slices.Contains(scopes, scopeLaunch) {
		fail("invalid_scope", "an EHR launch needs the launch scope")
		return
	}
	if len(scopes) == 0 {
		fail("invalid_scope", "no requested scope can be granted to this app")
		return
	}
	now := s.now()
	req := &AuthRequest{
		ID: randomToken(), Browser: hashToken(s.browser(w, r)), ClientID: c.ID, RedirectURI: redirect, State: state,
		Nonce: q.Get("nonce"), Scopes: scopes, CodeChallenge: challenge, Launch: lc,
		PromptLogin: slices.Contains(strings.Fields(q.Get("prompt")), "login"),
		PromptNone:  slices.Contains(strings.Fields(q.Get("prompt")), "none"),
		CreatedAt:   now, ExpiresAt: now.Add(s.cfg.RequestTTL),
	}
	if req.PromptNone && req.PromptLogin {
		fail("invalid_request", "prompt none cannot be combined with login")
		return
	}
	if len(req.Nonce) > 512 || len(state) > 2048 {
		fail("invalid_request", "state or nonce too long")
		return
	}
	if err := s.store.CreateAuthRequest(ctx, req); err != nil {
		s.internalError(w, r, err)
		return
	}
	v := url.Values{"r": {req.ID}}
	if l := q.Get("ui_locales"); l != "" {
		v.Set("ui_locales", l)
	}
	http.Redirect(w, r, PathPrefix+"/flow?"+v.Encode(), http.StatusSeeOther)
}

// redirectError sends an authorization error to the app (RFC 6749
// section 4.1.2.1, RFC 9207 iss).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirect, state, code, desc string) {
	v := url.Values{"error": {code}, "error_description": {desc}, "iss": {s.issuer}}
	if state != "" {
		v.Set("state", state)
	}
	securityHeaders(w)
	http.Redirect(w, r, withQuery(redirect, v), http.StatusSeeOther)
}

// withQuery adds v to the query of u (keeping the registered URI's own).
func withQuery(u string, v url.Values) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	for k, vs := range v {
		q[k] = vs
	}
	p.RawQuery = q.Encode()
	return p.String()
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Logger.ErrorContext(r.Context(), "authz: internal error", "path", r.URL.Path, "err", err)
	s.errorPage(w, r, http.StatusInternalServerError, "error.internal")
}

// loadRequest returns the authorization request id of this browser, or
// writes an error page.
func (s *Server) loadRequest(w http.ResponseWriter, r *http.Request, id string) (*AuthRequest, *Client, bool) {
	if id == "" {
		s.errorPage(w, r, http.StatusBadRequest, "error.no_request")
		return nil, nil, false
	}
	req, err := s.store.GetAuthRequest(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		s.errorPage(w, r, http.StatusBadRequest, "error.no_request")
		return nil, nil, false
	}
	if err != nil {
		s.internalError(w, r, err)
		return nil, nil, false
	}
	if req.Browser != hashToken(s.cookie(r, "fg_browser")) || !s.now().Before(req.ExpiresAt) {
		s.errorPage(w, r, http.StatusBadRequest, "error.no_request")
		return nil, nil, false
	}
	c, err := s.store.GetClient(r.Context(), req.ClientID)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.unknown_client")
		return nil, nil, false
	}
	return req, c, true
}

// finish issues the code for req with the granted scopes and sends the
// browser back to the app.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, req *AuthRequest, c *Client, acct *Account, se *Session, granted []string) {
	ctx := r.Context()
	now := s.now()
	fam := &Family{ID: randomToken(), ClientID: c.ID, AccountID: acct.ID, CreatedAt: now}
	switch {
	case slices.Contains(granted, scopeOffline):
		fam.ExpiresAt = now.Add(s.cfg.OfflineTTL)
	case slices.Contains(granted, scopeOnline):
		fam.ExpiresAt, fam.SessionID = se.ExpiresAt, se.Hash
	default:
		fam.ExpiresAt = now.Add(s.cfg.CodeTTL + s.cfg.AccessTokenTTL)
	}
	g := Grant{ClientID: c.ID, AccountID: acct.ID, Subject: acct.ID, FHIRUser: acct.FHIRUser, Scopes: granted,
		Patient: req.Patient, Nonce: req.Nonce, AuthTime: se.AuthTime, AMR: se.Method}
	if req.Launch != nil {
		g.Encounter, g.Banner, g.Intent = req.Launch.Encounter, req.Launch.Banner, req.Launch.Intent
	}
	code := randomToken()
	if err := s.createCode(ctx, fam, &Code{Hash: hashToken(code), FamilyID: fam.ID, RedirectURI: req.RedirectURI,
		CodeChallenge: req.CodeChallenge, Grant: g, ExpiresAt: now.Add(s.cfg.CodeTTL)}); err != nil {
		s.internalError(w, r, err)
		return
	}
	_ = s.store.DeleteAuthRequest(ctx, req.ID)
	securityHeaders(w)
	http.Redirect(w, r, withQuery(req.RedirectURI, url.Values{"code": {code}, "state": {req.State}, "iss": {s.issuer}}), http.StatusSeeOther)
}

func (s *Server) createCode(ctx context.Context, fam *Family, c *Code) error {
	if err := s.store.CreateFamily(ctx, fam); err != nil {
		return err
	}
	return s.store.CreateCode(ctx, c)
}

// deny sends access_denied to the app and forgets the request.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, req *AuthRequest, desc string) {
	_ = s.store.DeleteAuthRequest(r.Context(), req.ID)
	s.redirectError(w, r, req.RedirectURI, req.State, "access_denied", desc)
}
