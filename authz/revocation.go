package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/smart"
)

// Revocation (RFC 7009), introspection (RFC 7662 with SMART's fields,
// token-introspection.html), and the resource server's revocation check.
//
// Access tokens are JWTs that the resource server verifies on its own; a
// revoked one must still be refused on the next FHIR request, so the
// server keeps the revoked, unexpired jtis in memory (loaded from storage
// at start, updated on every revocation here, and re-read every few
// seconds for revocations made by another process such as the admin
// command) and CheckRevocation wraps the resource server's verifier.

// TokenVerifier verifies bearer tokens (smart.Verifier, fhir/rest.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, bearer string) (*smart.Principal, error)
}

// CheckRevocation returns a verifier that refuses tokens of this issuer
// that were revoked, and otherwise answers as next.
func (s *Server) CheckRevocation(next TokenVerifier) TokenVerifier {
	return revocationCheck{s: s, next: next}
}

type revocationCheck struct {
	s    *Server
	next TokenVerifier
}

func (v revocationCheck) Verify(ctx context.Context, bearer string) (*smart.Principal, error) {
	p, err := v.next.Verify(ctx, bearer)
	if err != nil || p.Issuer != v.s.issuer {
		return p, err
	}
	if jti := jtiOf(p.Token); jti == "" || v.s.Revoked(jti) {
		return nil, smart.InvalidToken("token revoked")
	}
	return p, nil
}

// jtiOf reads the jti of a JWT whose signature was verified already.
func jtiOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(b, &c)
	return c.JTI
}

// revocationSync is how often revocations made by other processes are read.
const revocationSync = 5 * time.Second

// Revoked reports whether the access token jti was revoked.
func (s *Server) Revoked(jti string) bool {
	s.revMu.RLock()
	_, ok := s.revoked[jti]
	stale := s.now().Sub(s.revSince) > revocationSync
	s.revMu.RUnlock()
	if !ok && stale && s.syncMu.TryLock() {
		// One request reads for everyone; the others use the memory copy.
		err := s.syncRevocations(context.Background())
		s.syncMu.Unlock()
		if err != nil {
			s.cfg.Logger.Error("authz: revocations not read", "err", err)
		}
		s.revMu.RLock()
		_, ok = s.revoked[jti]
		s.revMu.RUnlock()
	}
	return ok
}

// syncRevocations reads revocations recorded since the last read (with a
// margin for clocks of other processes) and drops expired ones.
func (s *Server) syncRevocations(ctx context.Context) error {
	now := s.now()
	s.revMu.RLock()
	since := s.revSince
	s.revMu.RUnlock()
	if !since.IsZero() {
		since = since.Add(-time.Minute)
	}
	revs, err := s.store.Revocations(ctx, since, now)
	if err != nil {
		return err
	}
	s.revMu.Lock()
	defer s.revMu.Unlock()
	for _, r := range revs {
		s.revoked[r.JTI] = r.ExpiresAt
	}
	for j, exp := range s.revoked {
		if !now.Before(exp.Add(skew)) {
			delete(s.revoked, j)
		}
	}
	s.revSince = now
	return nil
}

func (s *Server) remember(revs []Revocation) {
	s.revMu.Lock()
	for _, r := range revs {
		s.revoked[r.JTI] = r.ExpiresAt
	}
	s.revMu.Unlock()
}

func (s *Server) revokeFamily(ctx context.Context, id string) error {
	revs, err := s.store.RevokeFamily(ctx, id, s.now())
	if err != nil {
		return err
	}
	s.remember(revs)
	return nil
}

func (s *Server) revokeGrants(ctx context.Context, accountID, clientID string) error {
	revs, err := s.store.RevokeGrants(ctx, accountID, clientID, s.now())
	if err != nil {
		return err
	}
	s.remember(revs)
	return nil
}

// accessClaims are the claims of an access token this server issued.
type accessClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      any    `json:"aud"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	JTI      string `json:"jti"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Patient  string `json:"patient,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
	Enc      string `json:"encounter,omitempty"`
}

// verifyAccessToken checks an access token's signature (our keys), issuer
// and expiry; revocation is the caller's concern.
func (s *Server) verifyAccessToken(tok string) (*accessClaims, bool) {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, false
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "at+jwt" {
		return nil, false // an ID token is not an access token
	}
	var payload []byte
	for _, k := range s.cfg.Signer.PublicKeys().Keys {
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, false
	}
	var c accessClaims
	if json.Unmarshal(payload, &c) != nil || c.Iss != s.issuer || c.JTI == "" {
		return nil, false
	}
	if !s.now().Before(time.Unix(c.Exp, 0)) {
		return nil, false
	}
	return &c, true
}

// handleRevoke is RFC 7009: the client revokes one of its tokens. A
// refresh token revokes its whole family (section 2.1: "SHOULD also
// invalidate all access tokens based on the same authorization grant");
// an access token only itself. Unknown and foreign tokens are answered 200
// as well (section 2.2), and nothing changes.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	c, err := s.authenticateClient(ctx, r, form)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		s.writeOAuthError(w, r, errInvalidRequest("token is required"))
		return
	}
	e := audit.Event{Operation: "revoke", Outcome: http.StatusOK, ClientID: c.ID}
	done := false
	if claims, ok := s.verifyAccessToken(tok); ok && claims.ClientID == c.ID {
		rev := Revocation{JTI: claims.JTI, ExpiresAt: time.Unix(claims.Exp, 0), RevokedAt: s.now()}
		if err := s.store.RevokeAccessToken(ctx, rev); err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		s.remember([]Revocation{rev})
		s.principalOf(&e, claims.FHIRUser, claims.Sub, claims.Patient)
		e.Query = "token_type_hint=access_token"
		done = true
	} else if rt, err := s.store.GetRefreshToken(ctx, hashToken(tok)); err == nil && rt.Grant.ClientID == c.ID {
		if err := s.revokeFamily(ctx, rt.FamilyID); err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		s.principalOf(&e, rt.Grant.FHIRUser, rt.Grant.Subject, rt.Grant.Patient)
		e.Query = "token_type_hint=refresh_token"
		done = true
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		s.writeOAuthError(w, r, err)
		return
	}
	if done {
		s.audit(r, e)
	}
	noStore(w)
	w.WriteHeader(http.StatusOK)
}

// handleIntrospect is RFC 7662 with the SMART response fields. Callers
// authenticate as confidential clients (the resource server, an EHR). An
// access token is active while it is signed by us, unexpired and not
// revoked; a refresh token only for the client it was issued to. Anything
// else, malformed or unknown, is {"active": false}.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	c, err := s.authenticateClient(ctx, r, form)
	if err == nil && c.Public() {
		err = errInvalidClient("introspection needs an authenticated client")
	}
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	noStore(w)
	inactive := map[string]any{"active": false}
	tok := form.Get("token")
	if claims, ok := s.verifyAccessToken(tok); ok {
		if s.Revoked(claims.JTI) {
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		out := map[string]any{
			"active": true, "scope": claims.Scope, "client_id": claims.ClientID, "sub": claims.Sub, "iss": claims.Iss,
			"aud": claims.Aud, "exp": claims.Exp, "iat": claims.Iat, "token_type": "Bearer",
		}
		if claims.Patient != "" {
			out["patient"] = claims.Patient
		}
		if claims.FHIRUser != "" {
			out["fhirUser"] = s.cfg.BaseURL + "/" + claims.FHIRUser
		}
		if claims.Enc != "" {
			out["encounter"] = claims.Enc
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	if tok != "" && !strings.Contains(tok, ".") {
		rt, err := s.store.GetRefreshToken(ctx, hashToken(tok))
		if err == nil && rt.Grant.ClientID == c.ID && rt.UsedAt.IsZero() && rt.RevokedAt.IsZero() && s.now().Before(rt.ExpiresAt) {
			fam, ferr := s.store.GetFamily(ctx, rt.FamilyID)
			if ferr == nil && fam.RevokedAt.IsZero() {
				out := map[string]any{
					"active": true, "scope": strings.Join(rt.Grant.Scopes, " "), "client_id": rt.Grant.ClientID,
					"sub": rt.Grant.Subject, "iss": s.issuer, "exp": rt.ExpiresAt.Unix(), "token_type": "refresh_token",
				}
				if rt.Grant.Patient != "" {
					out["patient"] = rt.Grant.Patient
				}
				if rt.Grant.FHIRUser != "" {
					out["fhirUser"] = s.cfg.BaseURL + "/" + rt.Grant.FHIRUser
				}
				writeJSON(w, http.StatusOK, out)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, inactive)
}
