package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/smart"
)

// The token endpoint (RFC 6749 sections 4.1.3, 4.4, 6; RFC 7636 section
// 4.6; SMART App Launch app-launch.html#obtain-access-token and
// backend-services.html).

// tokenResponse is the successful answer (RFC 6749 section 5.1 with the
// SMART launch context parameters).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Patient      string `json:"patient,omitempty"`
	Encounter    string `json:"encounter,omitempty"`
	Banner       *bool  `json:"need_patient_banner,omitempty"`
	Intent       string `json:"intent,omitempty"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	c, err := s.authenticateClient(ctx, r, form)
	if err == errNoClient && form.Get("grant_type") == GrantRefreshToken {
		c, err = s.refreshClient(ctx, form)
	}
	if err != nil {
		s.auditToken(r, nil, nil, form.Get("grant_type"), err)
		s.writeOAuthError(w, r, err)
		return
	}
	var resp *tokenResponse
	var g *Grant
	gt := form.Get("grant_type")
	switch {
	case gt == "":
		err = errInvalidRequest("grant_type is required")
	case !slices.Contains(grantTypes, gt):
		err = &oauthError{Status: 400, Code: "unsupported_grant_type", Description: "grant_type " + gt + " is not supported"}
	case !slices.Contains(c.GrantTypes, gt) && !(gt == GrantRefreshToken && slices.Contains(c.GrantTypes, GrantAuthorizationCode)):
		err = &oauthError{Status: 400, Code: "unauthorized_client", Description: "this client may not use grant_type " + gt}
	default:
		switch gt {
		case GrantAuthorizationCode:
			resp, g, err = s.exchangeCode(ctx, c, form)
		case GrantRefreshToken:
			resp, g, err = s.refresh(ctx, c, form)
		case GrantClientCredentials:
			resp, g, err = s.clientCredentials(ctx, c, form)
		}
	}
	s.auditToken(r, c, g, gt, err)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, resp)
}

// auditToken records a token request (issue, refresh, refusal).
func (s *Server) auditToken(r *http.Request, c *Client, g *Grant, grantType string, err error) {
	op := "token"
	if grantType == GrantRefreshToken {
		op = "refresh"
	}
	e := audit.Event{Operation: op, Outcome: http.StatusOK, Query: "grant_type=" + url.QueryEscape(grantType)}
	if c != nil {
		e.ClientID = c.ID
	}
	if g != nil {
		s.principalOf(&e, g.FHIRUser, g.Subject, g.Patient)
		e.Query += "&scope=" + url.QueryEscape(strings.Join(g.Scopes, " "))
	}
	if err != nil {
		var oe *oauthError
		if errors.As(err, &oe) {
			e.Outcome, e.OutcomeText = oe.Status, oe.Code+": "+oe.Description
		} else {
			e.Outcome, e.OutcomeText = http.StatusInternalServerError, "internal error"
		}
	}
	s.audit(r, e)
}

// pkceOK checks a code_verifier against an S256 code_challenge (RFC 7636
// section 4.6): 43 to 128 unreserved characters, BASE64URL(SHA256(verifier)).
func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := range len(verifier) {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

func (s *Server) exchangeCode(ctx context.Context, c *Client, form url.Values) (*tokenResponse, *Grant, error) {
	code := form.Get("code")
	if code == "" {
		return nil, nil, errInvalidRequest("code is required")
	}
	now := s.now()
	cd, err := s.store.UseCode(ctx, hashToken(code), now)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil, errInvalidGrant("unknown authorization code")
	case errors.Is(err, ErrUsed):
		// RFC 6749 section 4.1.2: a code used twice revokes what it issued.
		if cd.Grant.ClientID == c.ID {
			if rerr := s.revokeFamily(ctx, cd.FamilyID); rerr != nil {
				return nil, nil, rerr
			}
		}
		return nil, &cd.Grant, errInvalidGrant("authorization code was already used: the tokens issued from it are revoked")
	case err != nil:
		return nil, nil, err
	}
	if cd.Grant.ClientID != c.ID {
		return nil, nil, errInvalidGrant("authorization code was issued to another client")
	}
	if !now.Before(cd.ExpiresAt) {
		return nil, &cd.Grant, errInvalidGrant("authorization code expired")
	}
	if form.Get("redirect_uri") != cd.RedirectURI {
		return nil, &cd.Grant, errInvalidGrant("redirect_uri differs from the authorization request")
	}
	if v := form.Get("code_verifier"); v == "" {
		return nil, &cd.Grant, errInvalidGrant("code_verifier is required (PKCE)")
	} else if !pkceOK(v, cd.CodeChallenge) {
		return nil, &cd.Grant, errInvalidGrant("code_verifier does not match the code_challenge")
	}
	fam, err := s.store.GetFamily(ctx, cd.FamilyID)
	if err != nil {
		return nil, nil, err
	}
	if !fam.RevokedAt.IsZero() {
		return nil, &cd.Grant, errInvalidGrant("this authorization was revoked")
	}
	if err := s.accountActive(ctx, cd.Grant.AccountID); err != nil {
		return nil, &cd.Grant, err
	}
	resp, err := s.issue(ctx, c, fam, cd.Grant, true)
	return resp, &cd.Grant, err
}

func (s *Server) refresh(ctx context.Context, c *Client, form url.Values) (*tokenResponse, *Grant, error) {
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, nil, errInvalidRequest("refresh_token is required")
	}
	now := s.now()
	rt, err := s.store.UseRefreshToken(ctx, hashToken(tok), now)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil, errInvalidGrant("unknown refresh token")
	case errors.Is(err, ErrUsed):
		// Rotation with reuse detection (OAuth 2.0 Security BCP 4.14.2): a
		// rotated token presented again means it leaked; revoke the family.
		if rt.Grant.ClientID == c.ID {
			if rerr := s.revokeFamily(ctx, rt.FamilyID); rerr != nil {
				return nil, nil, rerr
			}
		}
		return nil, &rt.Grant, errInvalidGrant("refresh token was already used: every token of this authorization is revoked")
	case err != nil:
		return nil, nil, err
	}
	if rt.Grant.ClientID != c.ID {
		return nil, nil, errInvalidGrant("refresh token was issued to another client")
	}
	if !rt.RevokedAt.IsZero() {
		return nil, &rt.Grant, errInvalidGrant("refresh token was revoked")
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, &rt.Grant, errInvalidGrant("refresh token expired")
	}
	fam, err := s.store.GetFamily(ctx, rt.FamilyID)
	if err != nil {
		return nil, nil, err
	}
	if !fam.RevokedAt.IsZero() {
		return nil, &rt.Grant, errInvalidGrant("this authorization was revoked")
	}
	if fam.SessionID != "" {
		// online_access: only while the user's login session lasts.
		se, err := s.store.GetSession(ctx, fam.SessionID)
		if err != nil || !now.Before(se.ExpiresAt) {
			return nil, &rt.Grant, errInvalidGrant("the login session ended (online_access)")
		}
	}
	if err := s.accountActive(ctx, rt.Grant.AccountID); err != nil {
		return nil, &rt.Grant, err
	}
	if _, err := s.store.GetApproval(ctx, rt.Grant.AccountID, c.ID); errors.Is(err, ErrNotFound) {
		return nil, &rt.Grant, errInvalidGrant("the user revoked this app")
	} else if err != nil {
		return nil, nil, err
	}
	g := rt.Grant
	if sc := form.Get("scope"); sc != "" {
		req := splitScopes(sc)
		if !subset(req, g.Scopes) {
			return nil, &g, &oauthError{Status: 400, Code: "invalid_scope", Description: "a refresh may only narrow the scopes"}
		}
		g.Scopes = intersect(g.Scopes, req)
	}
	if g.Patient != "" && isProxy(g.FHIRUser) {
		// The resource server checks the proxy's grant on every request;
		// refreshing a token for a patient the user no longer acts for
		// (the child turned 12, the Consent was withdrawn) is refused too.
		ok, err := s.mayActFor(ctx, g.FHIRUser, g.Patient)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, &g, errInvalidGrant("the user may no longer act for this patient")
		}
	}
	g.Nonce = "" // OpenID Connect Core 12.2: no nonce after a refresh
	resp, err := s.issue(ctx, c, fam, g, true)
	return resp, &g, err
}

// clientCredentials is the SMART Backend Services grant: system/ scopes
// within the client's registration, no refresh token.
func (s *Server) clientCredentials(ctx context.Context, c *Client, form url.Values) (*tokenResponse, *Grant, error) {
	if c.Public() {
		return nil, nil, &oauthError{Status: 400, Code: "unauthorized_client", Description: "client_credentials needs an authenticated client"}
	}
	req := splitScopes(form.Get("scope"))
	granted := allowedScopes(c, req, flowBackend, false)
	if len(c.Scopes) == 0 {
		granted = nil // backend scopes must be registered
	}
	if len(granted) == 0 {
		return nil, nil, &oauthError{Status: 400, Code: "invalid_scope", Description: "no requested scope is a system/ scope registered for this client"}
	}
	now := s.now()
	fam := &Family{ID: randomToken(), ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.AccessTokenTTL)}
	if err := s.store.CreateFamily(ctx, fam); err != nil {
		return nil, nil, err
	}
	g := Grant{ClientID: c.ID, Subject: c.ID, Scopes: granted}
	resp, err := s.issue(ctx, c, fam, g, false)
	return resp, &g, err
}

func (s *Server) accountActive(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	a, err := s.store.GetAccount(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return errInvalidGrant("the account no longer exists")
	}
	if err != nil {
		return err
	}
	if a.Disabled {
		return errInvalidGrant("the account is disabled")
	}
	return nil
}

// issue signs an access token (and an ID token with openid, a refresh
// token with offline_access or online_access) for g in family fam.
func (s *Server) issue(ctx context.Context, c *Client, fam *Family, g Grant, refreshable bool) (*tokenResponse, error) {
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.cfg.AccessTokenTTL)
	jti := randomToken()
	claims := map[string]any{
		"iss": s.issuer, "sub": g.Subject, "aud": s.cfg.Audience, "iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"jti": jti, "client_id": c.ID, "scope": strings.Join(g.Scopes, " "),
	}
	if g.Patient != "" {
		claims["patient"] = g.Patient
	}
	if g.Encounter != "" {
		claims["encounter"] = g.Encounter
	}
	if g.FHIRUser != "" {
		claims["fhirUser"] = g.FHIRUser
	}
	at, err := s.cfg.Signer.SignJWT("at+jwt", claims)
	if err != nil {
		return nil, err
	}
	if err := s.store.RecordAccessToken(ctx, &AccessToken{JTI: jti, FamilyID: fam.ID, ClientID: c.ID, AccountID: g.AccountID, ExpiresAt: exp}); err != nil {
		return nil, err
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTokenTTL / time.Second),
		Scope: strings.Join(g.Scopes, " "), Patient: g.Patient, Encounter: g.Encounter, Intent: g.Intent}
	if g.Banner {
		t := true
		resp.Banner = &t
	}
	if slices.Contains(g.Scopes, scopeOpenID) && g.AccountID != "" {
		idc := map[string]any{
			"iss": s.issuer, "sub": g.Subject, "aud": c.ID, "azp": c.ID, "iat": now.Unix(), "exp": exp.Unix(),
		}
		if !g.AuthTime.IsZero() {
			idc["auth_time"] = g.AuthTime.Unix()
		}
		if g.Nonce != "" {
			idc["nonce"] = g.Nonce
		}
		if g.AMR != "" {
			idc["amr"] = strings.Fields(g.AMR)
		}
		if slices.Contains(g.Scopes, scopeFHIRUser) && g.FHIRUser != "" {
			// SMART: fhirUser is the absolute URL of the user's resource.
			idc["fhirUser"] = s.cfg.BaseURL + "/" + g.FHIRUser
		}
		if resp.IDToken, err = s.cfg.Signer.SignJWT("JWT", idc); err != nil {
			return nil, err
		}
	}
	if refreshable && (slices.Contains(g.Scopes, scopeOffline) || slices.Contains(g.Scopes, scopeOnline)) && now.Before(fam.ExpiresAt) {
		rt := randomToken()
		if err := s.store.CreateRefreshToken(ctx, &RefreshToken{Hash: hashToken(rt), FamilyID: fam.ID, Grant: g,
			CreatedAt: now, ExpiresAt: fam.ExpiresAt}); err != nil {
			return nil, err
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// mayActFor reports whether fhirUser may act for patient now, by the
// resource server's rules: a patient for themselves, a proxy by
// smart.Grants.
func (s *Server) mayActFor(ctx context.Context, fhirUser, patient string) (bool, error) {
	if fhirUser == "Patient/"+patient {
		return true, nil
	}
	if !isProxy(fhirUser) {
		return false, nil
	}
	gs, err := smart.Grants(ctx, s.cfg.FHIR, s.proxyConfig(), fhirUser)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(gs, func(g smart.Grant) bool { return g.Patient == patient }), nil
}

func (s *Server) proxyConfig() smart.ProxyConfig {
	pc := s.cfg.Proxy
	if pc.Now == nil {
		pc.Now = s.cfg.Now
	}
	return pc
}
