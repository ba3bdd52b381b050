package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/smart"
)

// PathPrefix is where the authorization server lives below the public
// origin; it is also the issuer's path (iss = origin + PathPrefix).
const PathPrefix = "/auth"

// Signer signs the server's JWTs and publishes their keys
// (smart/devissuer.Issuer: the key in the data directory).
type Signer interface {
	// SignJWT signs claims; typ is the JOSE header typ ("at+jwt" or "JWT").
	SignJWT(typ string, claims map[string]any) (string, error)
	PublicKeys() jose.JSONWebKeySet
}

// Auditor records audit events (audit.Logger).
type Auditor interface {
	Log(ctx context.Context, e audit.Event) error
}

// Config configures the authorization server.
type Config struct {
	Storage Storage
	Signer  Signer
	// Origin is the public origin ("https://portal.example.org"); the
	// issuer is Origin + PathPrefix.
	Origin string
	// BaseURL is the FHIR base URL: the only aud an app may ask for.
	BaseURL string
	// Audience is the aud of access tokens (default BaseURL), what the
	// resource server's verifier requires.
	Audience string
	// FHIR reads the data the patient picker, launch contexts and
	// federated login need (the store).
	FHIR smart.Reader
	// Proxy are the resource server's proxy rules (smart.Grants).
	Proxy smart.ProxyConfig
	Audit Auditor
	// Federation enables login at the organisation's OpenID provider.
	Federation *FederationConfig

	// Lifetimes (defaults in parentheses).
	AccessTokenTTL time.Duration // access and ID tokens (1h)
	OfflineTTL     time.Duration // offline_access refresh tokens (90 days)
	SessionTTL     time.Duration // browser login sessions; online_access refresh tokens end with them (12h)
	CodeTTL        time.Duration // authorization codes (60s)
	LaunchTTL      time.Duration // EHR launch values (5m)
	RequestTTL     time.Duration // an authorization in progress (30m)
	InvitationTTL  time.Duration // default invitation lifetime (7 days)

	// Login throttling: MaxFailedLogins consecutive failures lock the
	// account for Lockout (5, 15m); one address may try one username
	// LoginsPerWindow times per ThrottleWindow (20 per 10m), any username
	// ten times as often, and register LoginsPerWindow times.
	MaxFailedLogins int
	Lockout         time.Duration
	LoginsPerWindow int
	ThrottleWindow  time.Duration

	// Password hashing cost (DefaultPasswordParams).
	Password PasswordParams

	Now        func() time.Time
	Logger     *slog.Logger
	HTTPClient *http.Client // client JWKS URLs and the federated provider (10s timeout)
}

// Server is the SMART App Launch 2.2 authorization server.
type Server struct {
	cfg      Config
	store    Storage
	issuer   string
	secure   bool // https origin: Secure and __Host- cookies
	csrfKey  []byte
	pages    *pages
	mux      *http.ServeMux
	throttle *throttle
	jwks     *jwksCache
	fed      *federation

	syncMu   sync.Mutex
	revMu    sync.RWMutex
	revoked  map[string]time.Time // jti -> exp
	revSince time.Time

	stop context.CancelFunc
	done chan struct{}
}

// New checks cfg and returns the server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Storage == nil || cfg.Signer == nil || cfg.FHIR == nil {
		return nil, errors.New("authz: Storage, Signer and FHIR are required")
	}
	origin := strings.TrimSuffix(cfg.Origin, "/")
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("authz: origin %q is not scheme://host", cfg.Origin)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.BaseURL == "" {
		return nil, errors.New("authz: BaseURL is required")
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.BaseURL
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AccessTokenTTL, time.Hour)
	def(&cfg.OfflineTTL, 90*24*time.Hour)
	def(&cfg.SessionTTL, 12*time.Hour)
	def(&cfg.CodeTTL, time.Minute)
	def(&cfg.LaunchTTL, 5*time.Minute)
	def(&cfg.RequestTTL, 30*time.Minute)
	def(&cfg.InvitationTTL, 7*24*time.Hour)
	def(&cfg.Lockout, 15*time.Minute)
	def(&cfg.ThrottleWindow, 10*time.Minute)
	if cfg.MaxFailedLogins <= 0 {
		cfg.MaxFailedLogins = 5
	}
	if cfg.LoginsPerWindow <= 0 {
		cfg.LoginsPerWindow = 20
	}
	if cfg.Password == (PasswordParams{}) {
		cfg.Password = DefaultPasswordParams
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{
		cfg: cfg, store: cfg.Storage, issuer: origin + PathPrefix, secure: u.Scheme == "https",
		throttle: newThrottle(cfg.ThrottleWindow),
		revoked:  map[string]time.Time{},
	}
	s.jwks = &jwksCache{client: cfg.HTTPClient, entries: map[string]*jwksEntry{}}
	s.csrfKey, err = cfg.Storage.Secret(ctx, "csrf", func() ([]byte, error) { return randomBytes(32) })
	if err != nil {
		return nil, err
	}
	if s.pages, err = newPages(); err != nil {
		return nil, err
	}
	if cfg.Federation != nil {
		if s.fed, err = newFederation(*cfg.Federation, cfg.HTTPClient); err != nil {
			return nil, err
		}
	}
	if err := s.syncRevocations(ctx); err != nil {
		return nil, err
	}
	s.routes()
	pctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.prune(pctx)
	return s, nil
}

// Close stops the background pruning of expired records.
func (s *Server) Close() {
	s.stop()
	<-s.done
}

// prune deletes expired sessions, requests, launches, tokens and
// families every 10 minutes.
func (s *Server) prune(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.store.Prune(ctx, s.now()); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("authz: prune", "err", err)
			}
		}
	}
}

// Issuer is the issuer identifier (iss of every token).
func (s *Server) Issuer() string { return s.issuer }

// URL returns the absolute URL of an endpoint path below the issuer ("/token").
func (s *Server) URL(path string) string { return s.issuer + path }

func (s *Server) now() time.Time { return s.cfg.Now() }

func (s *Server) routes() {
	m := http.NewServeMux()
	p := PathPrefix
	m.HandleFunc("GET "+p+"/.well-known/openid-configuration", s.handleDiscovery)
	m.HandleFunc("GET "+p+"/jwks", s.handleJWKS)
	m.HandleFunc("GET "+p+"/authorize", s.handleAuthorize)
	m.HandleFunc("POST "+p+"/authorize", s.handleAuthorize)
	m.HandleFunc("GET "+p+"/flow", s.handleFlow)
	m.HandleFunc("GET "+p+"/login", s.handleLoginPage)
	m.HandleFunc("POST "+p+"/login", s.handleLogin)
	m.HandleFunc("POST "+p+"/login/otp", s.handleOTP)
	m.HandleFunc("POST "+p+"/logout", s.handleLogout)
	m.HandleFunc("GET "+p+"/register", s.handleRegisterPage)
	m.HandleFunc("POST "+p+"/register", s.handleRegister)
	m.HandleFunc("POST "+p+"/pick", s.handlePick)
	m.HandleFunc("POST "+p+"/approve", s.handleApprove)
	m.HandleFunc("GET "+p+"/apps", s.handleApps)
	m.HandleFunc("POST "+p+"/apps/revoke", s.handleAppRevoke)
	m.HandleFunc("POST "+p+"/token", s.handleToken)
	m.HandleFunc("POST "+p+"/revoke", s.handleRevoke)
	m.HandleFunc("POST "+p+"/introspect", s.handleIntrospect)
	m.HandleFunc("POST "+p+"/launch", s.handleLaunch)
	m.HandleFunc("POST "+p+"/invitations", s.handleInvitations)
	m.HandleFunc("GET "+p+"/federated/start", s.handleFederatedStart)
	m.HandleFunc("GET "+p+"/federated/callback", s.handleFederatedCallback)
	m.HandleFunc("GET "+p+"/static/style.css", s.handleCSS)
	m.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "error.not_found")
	})
	s.mux = m
}

// ServeHTTP serves every endpoint below PathPrefix (any other path is
// not found). Token, revocation, introspection, JWKS and discovery answer
// cross-origin requests (CORS); the pages never do.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if corsPath(r.URL.Path) {
		if preflight(w, r) {
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Transport answers requests for the issuer's URLs in-process and passes
// any other to next (http.DefaultTransport if nil): the resource server's
// verifier discovers the built-in issuer even when the public origin is
// not reachable from the server itself.
func (s *Server) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return inProcess{s: s, next: next}
}

type inProcess struct {
	s    *Server
	next http.RoundTripper
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	u := r.URL.Scheme + "://" + r.URL.Host + r.URL.Path
	if !strings.HasPrefix(u, t.s.issuer+"/") {
		return t.next.RoundTrip(r)
	}
	rec := newRecorder()
	t.s.ServeHTTP(rec, r.Clone(r.Context()))
	return rec.response(r), nil
}

// Helpers.

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return nil, fmt.Errorf("authz: random: %w", err)
	}
	return b, nil
}

// randomToken is 32 random bytes, base64url (256 bits: codes, refresh
// tokens, launch values, sessions, request ids).
func randomToken() string {
	b, err := randomBytes(32)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is the SHA-256 (hex) under which an opaque value is stored:
// a database dump yields no usable code, token or session.
func hashToken(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// oauthError is an error response of the token, revocation, introspection
// and launch endpoints (RFC 6749 section 5.2).
type oauthError struct {
	Status      int
	Code        string
	Description string
	// Basic: add a WWW-Authenticate Basic challenge (401 invalid_client
	// after an Authorization header, RFC 6749 section 5.2).
	Basic bool
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

// noStore marks a response with credentials as not cacheable (RFC 6749
// section 5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		s.cfg.Logger.ErrorContext(r.Context(), "authz: internal error", "path", r.URL.Path, "err", err)
		oe = &oauthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "internal error"}
	}
	noStore(w)
	if oe.Basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="fhirgate"`)
	}
	writeJSON(w, oe.Status, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

// parseForm reads an application/x-www-form-urlencoded body (at most
// 64 KiB) and refuses repeated parameters (RFC 6749 section 3.1/3.2).
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		if strings.TrimSpace(strings.ToLower(ct)) != "application/x-www-form-urlencoded" {
			return nil, errInvalidRequest("the body must be application/x-www-form-urlencoded")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, errInvalidRequest("malformed request")
	}
	form := r.Form
	if r.Method == http.MethodPost {
		form = r.PostForm
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, errInvalidRequest("parameter " + k + " is repeated")
		}
	}
	return form, nil
}

// recorder is a minimal http.ResponseWriter for in-process requests.
type recorder struct {
	header http.Header
	code   int
	wrote  bool
	body   strings.Builder
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, code: http.StatusOK} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.WriteString(string(b))
}

func (r *recorder) response(req *http.Request) *http.Response {
	return &http.Response{
		Status: fmt.Sprintf("%d %s", r.code, http.StatusText(r.code)), StatusCode: r.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: r.header,
		Body: io.NopCloser(strings.NewReader(r.body.String())), ContentLength: int64(r.body.Len()), Request: req,
	}
}
