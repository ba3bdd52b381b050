package authz

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Client authentication at the token, revocation, introspection and launch
// endpoints (RFC 6749 section 2.3, RFC 7523, SMART App Launch
// client-confidential-asymmetric.html and backend-services.html).
//
//   - public clients (AuthNone) send client_id and nothing else;
//   - symmetric clients send client_id and client_secret, with HTTP Basic
//     (client_secret_basic, id and secret form-encoded first) or in the
//     body (client_secret_post);
//   - asymmetric clients send client_assertion_type
//     urn:ietf:params:oauth:client-assertion-type:jwt-bearer and a
//     client_assertion JWT signed with a key of their registered JWKS
//     (inline or fetched from their JWKS URL): iss = sub = client_id, aud =
//     the token endpoint URL, exp at most 5 minutes ahead, a jti never
//     seen before (replays are refused until the assertion expires).
//
// A client must use the method it was registered with, and only one.

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLife is how far in the future exp may be (SMART: "no more
// than five minutes in the future").
const maxAssertionLife = 5 * time.Minute

const skew = 60 * time.Second

// errNoClient: the request names no client at all.
var errNoClient = errInvalidClient("client authentication required")

// refreshClient is the public client a refresh token was issued to: a
// public client's refresh request need not name it (RFC 6749 section 6
// asks authentication of confidential clients only; fhirclient sends
// grant_type and refresh_token alone).
func (s *Server) refreshClient(ctx context.Context, form url.Values) (*Client, error) {
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, errNoClient
	}
	rt, err := s.store.GetRefreshToken(ctx, hashToken(tok))
	if errors.Is(err, ErrNotFound) {
		return nil, errInvalidGrant("unknown refresh token")
	}
	if err != nil {
		return nil, err
	}
	c, err := s.store.GetClient(ctx, rt.Grant.ClientID)
	if err != nil || !c.Public() {
		return nil, errNoClient
	}
	return c, nil
}

func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*Client, error) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, &oauthError{Status: 401, Code: "invalid_client", Description: "malformed Basic credentials", Basic: true}
		}
	}
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")
	aType, assertion := form.Get("client_assertion_type"), form.Get("client_assertion")
	methods := 0
	for _, b := range []bool{hasBasic, formSecret != "", assertion != "" || aType != ""} {
		if b {
			methods++
		}
	}
	if methods > 1 {
		return nil, errInvalidRequest("use exactly one client authentication method")
	}
	switch {
	case hasBasic:
		if formID != "" && formID != basicID {
			return nil, errInvalidRequest("client_id differs from the Basic credentials")
		}
		c, err := s.secretClient(ctx, basicID, basicSecret)
		if oe, ok := err.(*oauthError); ok {
			oe.Basic = true
		}
		return c, err
	case formSecret != "":
		return s.secretClient(ctx, formID, formSecret)
	case assertion != "" || aType != "":
		if aType != assertionType {
			return nil, errInvalidClient("unsupported client_assertion_type")
		}
		return s.assertionClient(ctx, formID, assertion)
	}
	if formID == "" {
		return nil, errNoClient
	}
	c, err := s.store.GetClient(ctx, formID)
	if errors.Is(err, ErrNotFound) {
		return nil, errInvalidClient("unknown client")
	}
	if err != nil {
		return nil, err
	}
	if !c.Public() {
		return nil, errInvalidClient("this client must authenticate (" + c.AuthMethod + ")")
	}
	return c, nil
}

func (s *Server) secretClient(ctx context.Context, id, secret string) (*Client, error) {
	c, err := s.store.GetClient(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errInvalidClient("unknown client or wrong secret")
	}
	if err != nil {
		return nil, err
	}
	if c.AuthMethod != AuthSecretBasic || c.SecretHash == "" ||
		subtle.ConstantTimeCompare([]byte(hashToken(secret)), []byte(c.SecretHash)) != 1 {
		return nil, errInvalidClient("unknown client or wrong secret")
	}
	return c, nil
}

// assertionClient verifies a private_key_jwt client assertion (RFC 7523
// sections 2.2 and 3).
func (s *Server) assertionClient(ctx context.Context, formID, assertion string) (*Client, error) {
	if assertion == "" || len(assertion) > 16<<10 {
		return nil, errInvalidClient("client_assertion missing or too long")
	}
	algs := make([]jose.SignatureAlgorithm, len(AssertionAlgs))
	for i, a := range AssertionAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(assertion, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errInvalidClient("client_assertion is not a JWS with an accepted algorithm (" + strings.Join(AssertionAlgs, ", ") + ")")
	}
	var unverified struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified) != nil || unverified.Iss == "" {
		return nil, errInvalidClient("client_assertion has no iss")
	}
	id := unverified.Iss
	if formID != "" && formID != id {
		return nil, errInvalidClient("client_id differs from the assertion's iss")
	}
	c, err := s.store.GetClient(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errInvalidClient("unknown client")
	}
	if err != nil {
		return nil, err
	}
	if c.AuthMethod != AuthPrivateKeyJWT {
		return nil, errInvalidClient("this client is not registered for private_key_jwt")
	}
	hdr := jws.Signatures[0].Header
	keys, err := s.clientKeys(ctx, c, hdr.KeyID)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "authz: client keys unavailable", "client", c.ID, "err", err)
		return nil, errInvalidClient("the client's keys cannot be read")
	}
	var payload []byte
	for _, k := range keys {
		if hdr.KeyID != "" && k.KeyID != "" && k.KeyID != hdr.KeyID {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, errInvalidClient("client_assertion signature does not verify with the client's keys")
	}
	var cl struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *json.Number    `json:"exp"`
		Nbf *json.Number    `json:"nbf"`
		Jti string          `json:"jti"`
	}
	d := json.NewDecoder(strings.NewReader(string(payload)))
	d.UseNumber()
	if err := d.Decode(&cl); err != nil {
		return nil, errInvalidClient("client_assertion claims are malformed")
	}
	if cl.Iss != c.ID || cl.Sub != c.ID {
		return nil, errInvalidClient("client_assertion iss and sub must be the client_id")
	}
	if !audience(cl.Aud, s.URL("/token")) {
		return nil, errInvalidClient("client_assertion aud must be the token endpoint " + s.URL("/token"))
	}
	now := s.now()
	if cl.Exp == nil {
		return nil, errInvalidClient("client_assertion has no exp")
	}
	expF, err := cl.Exp.Float64()
	if err != nil {
		return nil, errInvalidClient("client_assertion exp is malformed")
	}
	exp := time.Unix(int64(expF), 0)
	if !now.Before(exp.Add(skew)) {
		return nil, errInvalidClient("client_assertion expired")
	}
	if exp.After(now.Add(maxAssertionLife + skew)) {
		return nil, errInvalidClient("client_assertion exp is more than 5 minutes ahead")
	}
	if cl.Nbf != nil {
		if nbf, err := cl.Nbf.Float64(); err != nil || now.Add(skew).Before(time.Unix(int64(nbf), 0)) {
			return nil, errInvalidClient("client_assertion is not valid yet")
		}
	}
	if cl.Jti == "" || len(cl.Jti) > 256 {
		return nil, errInvalidClient("client_assertion has no jti")
	}
	if err := s.store.UseAssertion(ctx, c.ID, cl.Jti, exp.Add(skew)); errors.Is(err, ErrUsed) {
		return nil, errInvalidClient("client_assertion jti was used before (replay)")
	} else if err != nil {
		return nil, err
	}
	return c, nil
}

// audience: aud is the string want or an array containing it.
func audience(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, want)
	}
	return false
}

// clientKeys returns the client's public keys: the inline JWKS, or the
// JWKS at its URL (cached 5 minutes; fetched again, at most every 30
// seconds, when the kid is unknown, so the client can rotate keys).
func (s *Server) clientKeys(ctx context.Context, c *Client, kid string) ([]jose.JSONWebKey, error) {
	if c.JWKS != "" {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(c.JWKS), &set); err != nil {
			return nil, fmt.Errorf("inline JWKS: %w", err)
		}
		return publicOnly(set.Keys), nil
	}
	if c.JWKSURL == "" {
		return nil, errors.New("no JWKS registered")
	}
	return s.jwks.get(ctx, c.JWKSURL, kid, s.now())
}

// publicOnly drops private and symmetric keys (a client must never
// register a shared secret as a "key": HMAC would make it symmetric).
func publicOnly(keys []jose.JSONWebKey) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if !k.Valid() {
			continue
		}
		if _, sym := k.Key.([]byte); sym {
			continue
		}
		out = append(out, k.Public())
	}
	return out
}

type jwksCache struct {
	client  *http.Client
	mu      sync.Mutex
	entries map[string]*jwksEntry
}

type jwksEntry struct {
	keys    []jose.JSONWebKey
	fetched time.Time
}

func (j *jwksCache) get(ctx context.Context, u, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	j.mu.Lock()
	e := j.entries[u]
	j.mu.Unlock()
	fresh := e != nil && now.Sub(e.fetched) < 5*time.Minute
	known := e != nil && (kid == "" || slices.ContainsFunc(e.keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid }))
	if fresh && (known || now.Sub(e.fetched) < 30*time.Second) {
		return e.keys, nil
	}
	keys, err := j.fetch(ctx, u)
	if err != nil {
		if e != nil {
			return e.keys, nil // keep serving the last good set
		}
		return nil, err
	}
	j.mu.Lock()
	j.entries[u] = &jwksEntry{keys: keys, fetched: now}
	j.mu.Unlock()
	return keys, nil
}

func (j *jwksCache) fetch(ctx context.Context, u string) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS %s answered %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", u, err)
	}
	return publicOnly(set.Keys), nil
}
