package smart

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/fhir"
)

// Config configures token verification (SMART App Launch 2.x: fhirgate is
// the resource server; an external OpenID provider is the authorization
// server).
type Config struct {
	// Issuers are the trusted OpenID provider issuer URLs (FHIRGATE_OIDC_ISSUER,
	// comma separated). Each is discovered through
	// <issuer>/.well-known/openid-configuration and its jwks_uri.
	Issuers []string
	// Audience must appear in the token's aud claim (FHIRGATE_OIDC_AUDIENCE,
	// default the server's base URL). Required. A trailing "/" is ignored.
	Audience string
	// Claim names. Empty means the default: ScopeClaim "scope" then "scp",
	// PatientClaim "patient", FHIRUserClaim "fhirUser", ClientClaim
	// "client_id" then "azp".
	ScopeClaim, PatientClaim, FHIRUserClaim, ClientClaim string
	// IntrospectionURL, IntrospectionClientID and IntrospectionSecret enable
	// RFC 7662 introspection of opaque (non-JWT) tokens. With a client id but
	// no URL, the first issuer's discovered introspection_endpoint is used.
	IntrospectionURL, IntrospectionClientID, IntrospectionSecret string
	// Skew is the tolerated clock difference for exp, nbf and iat (default 60s).
	Skew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HTTPClient is used for discovery, JWKS and introspection (default:
	// a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Principal is the authenticated caller of a request.
type Principal struct {
	Issuer   string
	Subject  string
	ClientID string
	Scopes   []Scope
	// Patient is the patient in context (SMART launch context "patient"), a bare id.
	Patient string
	// FHIRUser is the user's resource as "Type/id", e.g. "Practitioner/1"
	// (an absolute fhirUser URL is reduced to its last two segments).
	FHIRUser string
	// Token is the raw bearer token.
	Token     string
	ExpiresAt time.Time
}

// FHIRUserType returns the resource type of FHIRUser ("" if none).
func (p *Principal) FHIRUserType() string {
	t, _, _ := strings.Cut(p.FHIRUser, "/")
	return t
}

// IsProxy reports whether the user is a RelatedPerson or Person, i.e.
// someone acting for patients (parents, guardians, caregivers): their
// access is decided by DecideProxy with Grants.
func (p *Principal) IsProxy() bool {
	t := p.FHIRUserType()
	return t == "RelatedPerson" || t == "Person"
}

// Endpoints are an issuer's OAuth endpoints from its discovery document
// (OpenID Connect Discovery 1.0, RFC 8414), used to publish
// .well-known/smart-configuration (SMART App Launch conformance.html).
type Endpoints struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

// asymmetricAlgs are the only JWS algorithms accepted. "none" and HMAC
// (HS256/384/512) are refused whatever key "matches": an HMAC keyed with
// the issuer's public key would otherwise verify (RFC 8725 section 2.1).
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// discoveryRetry is the minimum time between two failed discovery attempts
// of one issuer.
const discoveryRetry = 5 * time.Second

// Verifier verifies bearer tokens: JWT access tokens of the configured
// issuers (signature against the issuer's remote JWKS, iss, aud, exp, nbf)
// and, if configured, opaque tokens through RFC 7662 introspection.
//
// Discovery is lazy (first use) and retried after failures, so fhirgate can
// start before its OpenID provider (or serve its own development issuer).
// Signing keys are fetched again when a token names an unknown kid, so key
// rotation works without a restart (go-oidc RemoteKeySet).
type Verifier struct {
	cfg     Config
	client  *http.Client
	issuers []*issuer
}

type issuer struct {
	url string

	mu        sync.Mutex
	provider  *oidc.Provider
	verifier  *oidc.IDTokenVerifier
	endpoints Endpoints
	lastErr   error
	lastTry   time.Time
}

// NewVerifier checks cfg and returns a Verifier. It does not contact the
// issuers (see Discover).
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errors.New("smart: an audience (the FHIR base URL) is required")
	}
	if len(cfg.Issuers) == 0 && cfg.IntrospectionURL == "" {
		return nil, errors.New("smart: at least one issuer or an introspection URL is required")
	}
	if cfg.IntrospectionURL == "" && cfg.IntrospectionClientID == "" && cfg.IntrospectionSecret != "" {
		return nil, errors.New("smart: introspection secret without client id")
	}
	if cfg.Skew == 0 {
		cfg.Skew = 60 * time.Second
	}
	if cfg.Skew < 0 {
		return nil, errors.New("smart: negative clock skew")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg, client: cfg.HTTPClient}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	seen := map[string]bool{}
	for _, u := range cfg.Issuers {
		u = strings.TrimSpace(u)
		if u == "" || seen[u] {
			continue
		}
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("smart: issuer %q is not an http(s) URL", u)
		}
		seen[u] = true
		v.issuers = append(v.issuers, &issuer{url: u})
	}
	return v, nil
}

// Discover fetches the discovery document of every issuer now; use it to
// fail fast at startup when the issuers must be reachable.
func (v *Verifier) Discover(ctx context.Context) error {
	var errs []error
	for _, is := range v.issuers {
		if err := v.discover(ctx, is, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Endpoints returns the OAuth endpoints of the first issuer.
func (v *Verifier) Endpoints(ctx context.Context) (Endpoints, error) {
	if len(v.issuers) == 0 {
		return Endpoints{}, errors.New("smart: no issuer configured")
	}
	is := v.issuers[0]
	if err := v.discover(ctx, is, false); err != nil {
		return Endpoints{}, err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	e := is.endpoints
	e.ScopesSupported = slices.Clone(e.ScopesSupported)
	e.ResponseTypesSupported = slices.Clone(e.ResponseTypesSupported)
	e.GrantTypesSupported = slices.Clone(e.GrantTypesSupported)
	e.TokenEndpointAuthMethodsSupported = slices.Clone(e.TokenEndpointAuthMethodsSupported)
	e.CodeChallengeMethodsSupported = slices.Clone(e.CodeChallengeMethodsSupported)
	return e, nil
}

// discover fetches is's discovery document once (force: ignore the retry
// pause after a failure).
func (v *Verifier) discover(ctx context.Context, is *issuer, force bool) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.provider != nil {
		return nil
	}
	now := time.Now()
	if !force && is.lastErr != nil && now.Sub(is.lastTry) < discoveryRetry {
		return is.lastErr
	}
	is.lastTry = now
	cctx := oidc.ClientContext(ctx, v.client)
	p, err := oidc.NewProvider(cctx, is.url)
	if err != nil {
		is.lastErr = fmt.Errorf("smart: discovery of issuer %s: %w", is.url, err)
		return is.lastErr
	}
	var ep Endpoints
	if err := p.Claims(&ep); err != nil {
		is.lastErr = fmt.Errorf("smart: discovery document of %s: %w", is.url, err)
		return is.lastErr
	}
	if ep.JWKSURI == "" {
		is.lastErr = fmt.Errorf("smart: discovery document of %s has no jwks_uri", is.url)
		return is.lastErr
	}
	// The key set lives as long as the verifier: a background context that
	// only carries the HTTP client (go-oidc ignores its cancellation).
	keyCtx := oidc.ClientContext(context.Background(), v.client)
	is.verifier = p.VerifierContext(keyCtx, &oidc.Config{
		// Access tokens are not ID tokens: the audience is the resource
		// server, not the client, and exp/nbf are checked below with Skew.
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SupportedSigningAlgs: asymmetricAlgs,
	})
	is.provider, is.endpoints, is.lastErr = p, ep, nil
	return nil
}

func (v *Verifier) issuerFor(iss string) *issuer {
	for _, is := range v.issuers {
		if is.url == iss {
			return is
		}
	}
	return nil
}

// Verify authenticates a bearer token (the value after "Bearer "). It
// returns a *fhir.Error of KindUnauthorized with a WWW-Authenticate
// challenge (RFC 6750 section 3) when the token is missing or not valid,
// KindUnavailable when an issuer or the introspection endpoint cannot be
// reached.
func (v *Verifier) Verify(ctx context.Context, bearer string) (*Principal, error) {
	token := strings.TrimSpace(bearer)
	if token == "" {
		return nil, MissingToken()
	}
	if len(token) > 16<<10 {
		return nil, InvalidToken("token too long")
	}
	iss, isJWT := jwtIssuer(token)
	if !isJWT {
		if v.introspectionEnabled() {
			return v.introspect(ctx, token)
		}
		return nil, InvalidToken("not a JWT access token")
	}
	is := v.issuerFor(iss)
	if is == nil {
		if v.introspectionEnabled() {
			return v.introspect(ctx, token)
		}
		return nil, InvalidToken("token issuer is not trusted")
	}
	if err := v.discover(ctx, is, false); err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "the token issuer cannot be reached").Wrap(err)
	}
	is.mu.Lock()
	ver := is.verifier
	is.mu.Unlock()
	idt, err := ver.Verify(ctx, token)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fhir.Errorf(fhir.KindUnavailable, "token verification interrupted").Wrap(err)
		}
		// go-oidc formats (does not wrap) JWKS fetch failures: an
		// unreachable key set is the issuer's outage, not a bad token.
		if strings.Contains(err.Error(), "fetching keys") {
			return nil, fhir.Errorf(fhir.KindUnavailable, "the token issuer's keys cannot be fetched").Wrap(err)
		}
		return nil, InvalidToken("malformed token or bad signature").Wrap(err)
	}
	claims, err := decodeClaims(idt.Claims)
	if err != nil {
		return nil, InvalidToken("malformed claims").Wrap(err)
	}
	now := v.cfg.Now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil || !ok {
		return nil, InvalidToken("token has no valid exp").Wrap(err)
	}
	if !now.Before(exp.Add(v.cfg.Skew)) {
		return nil, InvalidToken("token expired")
	}
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return nil, InvalidToken("malformed nbf").Wrap(err)
	} else if ok && now.Add(v.cfg.Skew).Before(nbf) {
		return nil, InvalidToken("token not yet valid")
	}
	if iat, ok, err := numericDate(claims, "iat"); err != nil {
		return nil, InvalidToken("malformed iat").Wrap(err)
	} else if ok && now.Add(v.cfg.Skew).Before(iat) {
		return nil, InvalidToken("token issued in the future")
	}
	if !v.audienceOK(claims["aud"]) {
		return nil, InvalidToken("token is not for this server (aud)")
	}
	p, err := v.principal(claims, token)
	if err != nil {
		return nil, err
	}
	p.Issuer, p.ExpiresAt = iss, exp
	return p, nil
}

// jwtIssuer returns the unverified iss of a compact JWS and whether token
// looks like one (three base64url parts, a JSON header with "alg"). The
// issuer only selects the key set; everything is verified afterwards.
func jwtIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hdr, &h) != nil || h.Alg == "" {
		return "", false
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", true
	}
	var c struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(body, &c)
	return c.Iss, true
}

func decodeClaims(fn func(any) error) (map[string]any, error) {
	var raw json.RawMessage
	if err := fn(&raw); err != nil {
		return nil, err
	}
	return decodeJSONObject(raw)
}

func decodeJSONObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("claims are not a JSON object")
	}
	return m, nil
}

// numericDate reads a NumericDate claim (RFC 7519 section 2).
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("claim %s is not a number", name)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("claim %s: %w", name, err)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// audienceOK: aud is a string or an array containing the audience
// (RFC 7519 section 4.1.3); a trailing "/" is ignored on both sides.
func (v *Verifier) audienceOK(aud any) bool {
	want := strings.TrimSuffix(v.cfg.Audience, "/")
	switch a := aud.(type) {
	case string:
		return strings.TrimSuffix(a, "/") == want
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && strings.TrimSuffix(s, "/") == want {
				return true
			}
		}
	}
	return false
}

// principal builds a Principal from verified claims (JWT or introspection).
func (v *Verifier) principal(claims map[string]any, token string) (*Principal, error) {
	p := &Principal{Token: token}
	p.Subject, _ = claims["sub"].(string)
	p.ClientID = firstString(claims, v.cfg.ClientClaim, "client_id", "azp")
	scopeNames := []string{"scope", "scp"}
	if v.cfg.ScopeClaim != "" {
		scopeNames = []string{v.cfg.ScopeClaim}
	}
	var scopeStr string
	for _, n := range scopeNames {
		switch s := claims[n].(type) {
		case string:
			scopeStr = s
		case []any:
			var parts []string
			for _, x := range s {
				if str, ok := x.(string); ok {
					parts = append(parts, str)
				}
			}
			scopeStr = strings.Join(parts, " ")
		default:
			continue
		}
		break
	}
	// Malformed resource scopes grant nothing; the well-formed ones stay.
	p.Scopes, _ = ParseScopes(scopeStr)

	patient := firstString(claims, v.cfg.PatientClaim, "patient")
	if patient != "" {
		id, ok := patientID(patient)
		if !ok {
			return nil, InvalidToken("malformed patient claim")
		}
		p.Patient = id
	}
	if fu := firstString(claims, v.cfg.FHIRUserClaim, "fhirUser"); fu != "" {
		ref, ok := relativeRef(fu)
		if !ok {
			return nil, InvalidToken("malformed fhirUser claim")
		}
		p.FHIRUser = ref
	}
	return p, nil
}

// firstString returns the first string (or number) claim of configured,
// or of the defaults when configured is empty.
func firstString(claims map[string]any, configured string, defaults ...string) string {
	names := defaults
	if configured != "" {
		names = []string{configured}
	}
	for _, n := range names {
		switch s := claims[n].(type) {
		case string:
			if s != "" {
				return s
			}
		case json.Number:
			return s.String()
		}
	}
	return ""
}

// patientID accepts "123", "Patient/123" or an absolute ".../Patient/123".
func patientID(s string) (string, bool) {
	if !strings.Contains(s, "/") {
		return s, validID(s)
	}
	ref, ok := relativeRef(s)
	if !ok || !strings.HasPrefix(ref, "Patient/") {
		return "", false
	}
	return strings.TrimPrefix(ref, "Patient/"), true
}

// relativeRef reduces "Type/id" or an absolute ".../Type/id" (optionally
// with "/_history/n") to "Type/id".
func relativeRef(s string) (string, bool) {
	s = strings.TrimSuffix(s, "/")
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return "", false
	}
	typ, id := parts[len(parts)-2], parts[len(parts)-1]
	if typ == "*" || !validType(typ) || !validID(id) {
		return "", false
	}
	return typ + "/" + id, true
}

// validID checks the FHIR id syntax (datatypes.html#id).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
