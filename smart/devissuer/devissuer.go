// Package devissuer is fhirgate's DEVELOPMENT-ONLY token issuer.
//
// When no OpenID provider is configured (FHIRGATE_OIDC_ISSUER empty),
// fhirgate runs this issuer so that it can be tried out and tested without
// an authorization server: it publishes an OpenID discovery document and a
// JWKS under <public origin>/dev-issuer, and the `fhirgate token` command
// mints access tokens with whatever scopes, patient and fhirUser it is
// asked for. There is no login, no consent screen and no client
// authentication: anyone who can run `fhirgate token` against the data
// directory can act as anyone. NEVER use it in production; configure a
// real OpenID provider (SMART App Launch 2.x authorization server) instead.
//
// The RSA signing key is kept in <dataDir>/dev-issuer-key.json (a private
// JWK, file mode 0600, created on first use), so tokens survive restarts
// and the CLI and the server share the key.
//
// With the built-in authorization server (package authz) the issuer lives
// at Config.Path "/auth" instead: authz signs its tokens with this key
// (SignJWT) and serves the discovery document and JWKS itself, and Mint
// keeps minting development tokens for that issuer (`fhirgate token`).
package devissuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeyFile is the name of the key file inside the data directory.
const KeyFile = "dev-issuer-key.json"

// PathPrefix is where the issuer lives below the public origin.
const PathPrefix = "/dev-issuer"

// Config configures the development issuer.
type Config struct {
	// DataDir holds KeyFile.
	DataDir string
	// Origin is fhirgate's public origin ("http://localhost:8080"); the
	// issuer is Origin + "/dev-issuer".
	Origin string
	// Audience is the default aud of minted tokens (the FHIR base URL).
	Audience string
	// Path is the issuer's path below Origin (default PathPrefix,
	// "/dev-issuer"); the built-in authorization server uses "/auth".
	Path string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Issuer is the development issuer. It is an http.Handler for
// /dev-issuer/.well-known/openid-configuration and /dev-issuer/jwks.
type Issuer struct {
	cfg    Config
	issuer string
	key    jose.JSONWebKey // private
	pub    jose.JSONWebKey
	signer jose.Signer // typ at+jwt (RFC 9068 access tokens)
	idSign jose.Signer // typ JWT (ID tokens)
}

// New loads the key from cfg.DataDir (creating it if absent) and returns
// the issuer. DEVELOPMENT ONLY.
func New(cfg Config) (*Issuer, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("devissuer: data directory is required")
	}
	origin := strings.TrimSuffix(cfg.Origin, "/")
	if !strings.HasPrefix(origin, "http://") && !strings.HasPrefix(origin, "https://") {
		return nil, fmt.Errorf("devissuer: origin %q is not an http(s) URL", cfg.Origin)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Path == "" {
		cfg.Path = PathPrefix
	}
	if !strings.HasPrefix(cfg.Path, "/") || strings.HasSuffix(cfg.Path, "/") {
		return nil, fmt.Errorf("devissuer: path %q must start and not end with /", cfg.Path)
	}
	key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, KeyFile))
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("devissuer: signer: %w", err)
	}
	idSign, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("devissuer: signer: %w", err)
	}
	return &Issuer{cfg: cfg, issuer: origin + cfg.Path, key: key, pub: key.Public(), signer: signer, idSign: idSign}, nil
}

// URL is the issuer identifier (the iss of minted tokens); configure the
// Verifier with it.
func (i *Issuer) URL() string { return i.issuer }

// KeyID is the kid of the signing key.
func (i *Issuer) KeyID() string { return i.key.KeyID }

// PublicKeys is the JWKS of the signing key.
func (i *Issuer) PublicKeys() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.pub}}
}

// SignJWT signs claims as a compact JWS (RS256, kid of the key) with
// header typ "at+jwt" (access tokens, RFC 9068) or "JWT" (anything else,
// such as ID tokens). It signs whatever it is given: callers decide.
func (i *Issuer) SignJWT(typ string, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	signer := i.idSign
	if typ == "at+jwt" {
		signer = i.signer
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func loadOrCreateKey(path string) (jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return k, fmt.Errorf("devissuer: read key: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return k, fmt.Errorf("devissuer: key file %s: %w", path, err)
	}
	if _, ok := k.Key.(*rsa.PrivateKey); !ok || k.KeyID == "" {
		return k, fmt.Errorf("devissuer: key file %s does not hold an RSA private JWK with kid", path)
	}
	return k, nil
}

// createKey generates an RSA-2048 key and stores it 0600 without ever
// clobbering a key another process created meanwhile (temp file + link).
func createKey(path string) (jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return k, fmt.Errorf("devissuer: %w", err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return k, fmt.Errorf("devissuer: generate key: %w", err)
	}
	k = jose.JSONWebKey{Key: rk, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return k, fmt.Errorf("devissuer: thumbprint: %w", err)
	}
	k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	b, err := json.Marshal(k)
	if err != nil {
		return k, fmt.Errorf("devissuer: encode key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dev-issuer-key-*")
	if err != nil {
		return k, fmt.Errorf("devissuer: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return k, fmt.Errorf("devissuer: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return k, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return k, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return k, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateKey(path) // another process won the race
		}
		return k, fmt.Errorf("devissuer: store key: %w", err)
	}
	return k, nil
}

// Discovery is the OpenID discovery document (OpenID Connect Discovery
// 1.0 section 3). There is no authorization or token endpoint: tokens are
// minted with `fhirgate token`.
func (i *Issuer) Discovery() map[string]any {
	return map[string]any{
		"issuer":                                i.issuer,
		"jwks_uri":                              i.issuer + "/jwks",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"grant_types_supported":                 []string{},
		"scopes_supported": []string{"openid", "fhirUser", "launch/patient", "offline_access",
			"patient/*.cruds", "user/*.cruds", "system/*.cruds"},
	}
}

// ServeHTTP serves GET <prefix>/dev-issuer/.well-known/openid-configuration
// and GET <prefix>/dev-issuer/jwks (any path prefix, so fhirgate may mount it
// below a base path).
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body any
	switch {
	case strings.HasSuffix(r.URL.Path, i.cfg.Path+"/.well-known/openid-configuration"):
		body = i.Discovery()
	case strings.HasSuffix(r.URL.Path, i.cfg.Path+"/jwks"):
		body = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.pub}}
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// MintOptions describe a development access token.
type MintOptions struct {
	// Scope is the space-separated scope string, e.g. "launch/patient patient/*.rs".
	Scope string
	// Patient is the patient launch context (bare id).
	Patient string
	// FHIRUser is the user's resource ("Practitioner/1", "RelatedPerson/7").
	FHIRUser string
	// Client is client_id (default "fhirgate-cli").
	Client string
	// Subject is sub (default FHIRUser, else Client).
	Subject string
	// TTL is the lifetime (default 1 hour).
	TTL time.Duration
	// Audience is aud (default Config.Audience).
	Audience string
}

// Mint signs a JWT access token (RFC 9068 shape, typ at+jwt) for the
// `fhirgate token` command. DEVELOPMENT ONLY: it signs whatever it is asked.
func (i *Issuer) Mint(opts MintOptions) (string, error) {
	aud := opts.Audience
	if aud == "" {
		aud = i.cfg.Audience
	}
	if aud == "" {
		return "", errors.New("devissuer: no audience")
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	if ttl < 0 {
		return "", errors.New("devissuer: negative ttl")
	}
	client := opts.Client
	if client == "" {
		client = "fhirgate-cli"
	}
	sub := opts.Subject
	if sub == "" {
		sub = opts.FHIRUser
	}
	if sub == "" {
		sub = client
	}
	jti := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, jti); err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	now := i.cfg.Now().Truncate(time.Second)
	claims := map[string]any{
		"iss":       i.issuer,
		"sub":       sub,
		"aud":       aud,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       base64.RawURLEncoding.EncodeToString(jti),
		"client_id": client,
		// Only spaces separate scopes (RFC 6749 section 3.3), as ParseScopes
		// reads them: other whitespace stays in its token, so a test token
		// with a tab or U+00A0 reaches the server as it was asked for.
		"scope": strings.Join(strings.FieldsFunc(opts.Scope, func(r rune) bool { return r == ' ' }), " "),
	}
	if opts.Patient != "" {
		claims["patient"] = opts.Patient
	}
	if opts.FHIRUser != "" {
		claims["fhirUser"] = opts.FHIRUser
	}
	return i.SignJWT("at+jwt", claims)
}

// Transport returns a RoundTripper that answers requests for the issuer's
// URLs in-process (through ServeHTTP) and passes every other request to
// next (http.DefaultTransport if nil). Give it to smart.Config.HTTPClient
// so the Verifier can discover the development issuer even when the public
// origin is not reachable from the server itself.
func (i *Issuer) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{i: i, next: next}
}

type roundTripper struct {
	i    *Issuer
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	u := r.URL.Scheme + "://" + r.URL.Host + r.URL.Path
	if !strings.HasPrefix(u, rt.i.issuer+"/") {
		return rt.next.RoundTrip(r)
	}
	if r.Body != nil {
		r.Body.Close()
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	rt.i.ServeHTTP(rec, r)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)),
		StatusCode:    rec.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(strings.NewReader(rec.body.String())),
		ContentLength: int64(rec.body.Len()),
		Request:       r,
	}, nil
}

type recorder struct {
	header http.Header
	code   int
	wrote  bool
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
