package smart

// A real OpenID provider in-process: zitadel/oidc's op package with a
// minimal in-memory Storage (client_credentials grant, JWT or opaque
// access tokens with SMART claims, RFC 7662 introspection, key rotation).

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
)

// testKeys are generated once: RSA key generation dominates test time.
var (
	testKeysOnce sync.Once
	testKeys     []*rsa.PrivateKey
)

func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	testKeysOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i]
}

type opKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *opKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *opKey) Key() any                                    { return k.key }
func (k *opKey) ID() string                                  { return k.id }

type opPublicKey struct{ *opKey }

func (k opPublicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k opPublicKey) Use() string                        { return "sig" }
func (k opPublicKey) Key() any                           { return &k.key.PublicKey }

type opClient struct {
	id, secret string
	tokenType  op.AccessTokenType
	patient    string
	fhirUser   string
	ttl        time.Duration
}

func (c *opClient) GetID() string                       { return c.id }
func (c *opClient) RedirectURIs() []string              { return nil }
func (c *opClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *opClient) ResponseTypes() []oidc.ResponseType  { return nil }
func (c *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (c *opClient) LoginURL(string) string               { return "" }
func (c *opClient) AccessTokenType() op.AccessTokenType  { return c.tokenType }
func (c *opClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c *opClient) DevMode() bool                        { return false }
func (c *opClient) IsScopeAllowed(string) bool           { return true }
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *opClient) ClockSkew() time.Duration             { return 0 }
func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

type opToken struct {
	id, client string
	scopes     []string
	audience   []string
	expires    time.Time
}

// opStorage implements the parts of op.Storage the client_credentials
// grant, discovery, JWKS and introspection use. The embedded interface is
// nil: any other call panics, which would show a test wiring mistake.
type opStorage struct {
	op.Storage

	audience string
	mu       sync.Mutex
	signing  *opKey
	keys     []*opKey // published in the JWKS
	clients  map[string]*opClient
	tokens   map[string]*opToken
	seq      int
}

func (s *opStorage) Health(context.Context) error { return nil }

func (s *opStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signing, nil
}

func (s *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *opStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []op.Key
	for _, k := range s.keys {
		ks = append(ks, opPublicKey{k})
	}
	return ks, nil
}

// rotate makes key the only signing and published key.
func (s *opStorage) rotate(id string, key *rsa.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signing = &opKey{id: id, key: key}
	s.keys = []*opKey{s.signing}
}

func (s *opStorage) client(id string) (*opClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return c, nil
}

func (s *opStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	return s.client(id)
}

func (s *opStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, err := s.client(id)
	if err != nil || c.secret != secret {
		return errors.New("wrong client or secret")
	}
	return nil
}

func (s *opStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.client(id)
}

func (s *opStorage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &oidc.JWTTokenRequest{Subject: id, Audience: []string{s.audience}, Scopes: scopes}, nil
}

func (s *opStorage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	c, err := s.client(req.GetSubject())
	if err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	t := &opToken{id: fmt.Sprintf("tok%d", s.seq), client: c.id, scopes: req.GetScopes(), audience: req.GetAudience(),
		expires: time.Now().Add(c.ttl)}
	s.tokens[t.id] = t
	return t.id, t.expires, nil
}

// GetPrivateClaimsFromScopes puts the SMART claims into JWT access tokens.
func (s *opStorage) GetPrivateClaimsFromScopes(_ context.Context, _, clientID string, scopes []string) (map[string]any, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	m := map[string]any{"scope": strings.Join(scopes, " ")}
	if c.patient != "" {
		m["patient"] = c.patient
	}
	if c.fhirUser != "" {
		m["fhirUser"] = c.fhirUser
	}
	return m, nil
}

// SetIntrospectionFromToken answers RFC 7662 for opaque tokens; an error
// makes zitadel answer {"active": false}.
func (s *opStorage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("token not active")
	}
	c, err := s.client(t.client)
	if err != nil {
		return err
	}
	resp.Scope = t.scopes
	resp.ClientID = t.client
	resp.Subject = subject
	resp.Audience = t.audience
	resp.Expiration = oidc.FromTime(t.expires)
	resp.Issuer = op.IssuerFromContext(ctx)
	resp.TokenType = oidc.BearerToken
	resp.Claims = map[string]any{}
	if c.patient != "" {
		resp.Claims["patient"] = c.patient
	}
	if c.fhirUser != "" {
		resp.Claims["fhirUser"] = c.fhirUser
	}
	return nil
}

func (s *opStorage) revoke(tokenID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tokenID)
}

type testOP struct {
	URL     string
	store   *opStorage
	srv     *httptest.Server
	kid     string
	private *rsa.PrivateKey
}

const testAudience = "https://fhir.example.org/r4"

// newTestOP starts a zitadel OP with clients:
//
//	app      JWT access tokens, patient 123, fhirUser absolute Practitioner URL
//	opaque   opaque access tokens, patient 123, fhirUser RelatedPerson/7
//	short    JWT access tokens living 1 second
//	rs       the resource server's introspection credentials
func newTestOP(t testing.TB) *testOP {
	t.Helper()
	st := &opStorage{audience: testAudience, clients: map[string]*opClient{
		"app":    {id: "app", secret: "app-secret", tokenType: op.AccessTokenTypeJWT, patient: "123", fhirUser: testAudience + "/Practitioner/1", ttl: time.Hour},
		"opaque": {id: "opaque", secret: "opaque-secret", tokenType: op.AccessTokenTypeBearer, patient: "123", fhirUser: "RelatedPerson/7", ttl: time.Hour},
		"short":  {id: "short", secret: "short-secret", tokenType: op.AccessTokenTypeJWT, ttl: time.Second},
		"rs":     {id: "rs", secret: "rs secret/+", tokenType: op.AccessTokenTypeJWT, ttl: time.Hour},
	}, tokens: map[string]*opToken{}}
	st.rotate("key-1", rsaKey(t, 0))

	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	provider, err := op.NewProvider(&op.Config{CryptoKey: key}, st, op.StaticIssuer(srv.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("zitadel op: %v", err)
	}
	handler = provider
	return &testOP{URL: srv.URL, store: st, srv: srv, kid: "key-1", private: rsaKey(t, 0)}
}

// token runs the client_credentials grant (RFC 6749 section 4.4) against the OP.
func (o *testOP) token(t *testing.T, client, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, err := http.NewRequest(http.MethodPost, o.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Desc        string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token endpoint: %d %s %s", resp.StatusCode, body.Error, body.Desc)
	}
	return body.AccessToken
}

// sign signs claims with key as the OP would (forged or custom tokens).
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	sk := jose.SigningKey{Algorithm: alg, Key: key}
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(sk, opts.WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
