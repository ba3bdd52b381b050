package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/smart"
)

// Administration (the `fhirgate client`, `fhirgate invite` and `fhirgate
// account` commands): clients, invitations and accounts live in the
// authorization server's storage and never pass through the FHIR API.

// Client types of ClientSpec.
const (
	TypePublic     = "public"     // browser or native app: PKCE, no secret
	TypeSymmetric  = "symmetric"  // confidential app with a generated secret
	TypeAsymmetric = "asymmetric" // confidential app with private_key_jwt
	TypeBackend    = "backend"    // SMART Backend Services: client_credentials + private_key_jwt
)

// ClientSpec describes a client to register.
type ClientSpec struct {
	ID, Name     string
	Type         string
	RedirectURIs []string
	Scopes       []string
	JWKS         string // inline JWKS (JSON)
	JWKSURL      string
	EHRLaunch    bool
	Invitations  bool
}

// AddClient validates spec and registers it; for a symmetric client it
// returns the generated secret (shown once, stored as a SHA-256).
func AddClient(ctx context.Context, st Storage, spec ClientSpec, now time.Time) (*Client, string, error) {
	if spec.ID == "" || len(spec.ID) > 128 || strings.ContainsAny(spec.ID, " \t\r\n:") {
		return nil, "", errors.New("authz: client id must be 1-128 characters without spaces or colons")
	}
	c := &Client{ID: spec.ID, Name: spec.Name, RedirectURIs: spec.RedirectURIs, Scopes: spec.Scopes,
		EHRLaunch: spec.EHRLaunch, Invitations: spec.Invitations, CreatedAt: now}
	if c.Name == "" {
		c.Name = c.ID
	}
	switch spec.Type {
	case TypePublic:
		c.AuthMethod = AuthNone
	case TypeSymmetric:
		c.AuthMethod = AuthSecretBasic
	case TypeAsymmetric, TypeBackend:
		c.AuthMethod = AuthPrivateKeyJWT
	default:
		return nil, "", fmt.Errorf("authz: client type %q is not public, symmetric, asymmetric or backend", spec.Type)
	}
	if spec.Type == TypeBackend {
		c.GrantTypes = []string{GrantClientCredentials}
		if len(c.RedirectURIs) > 0 {
			return nil, "", errors.New("authz: a backend client has no redirect URI")
		}
		if len(c.Scopes) == 0 {
			return nil, "", errors.New("authz: a backend client needs its system/ scopes (--scope)")
		}
	} else {
		c.GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
		if len(c.RedirectURIs) == 0 {
			return nil, "", errors.New("authz: an app needs at least one redirect URI")
		}
	}
	if c.Public() && (c.EHRLaunch || c.Invitations) {
		return nil, "", errors.New("authz: only confidential clients may create EHR launches or invitations")
	}
	for _, u := range c.RedirectURIs {
		p, err := url.Parse(u)
		if err != nil || p.Scheme == "" || p.Fragment != "" || (p.Scheme == "http" || p.Scheme == "https") && p.Host == "" {
			return nil, "", fmt.Errorf("authz: redirect URI %q must be absolute, without fragment", u)
		}
		if p.Scheme == "http" && !loopback(p.Hostname()) {
			return nil, "", fmt.Errorf("authz: redirect URI %q: http only for localhost (use https)", u)
		}
	}
	for _, sc := range c.Scopes {
		ps, err := smart.ParseScopes(sc)
		if err != nil || len(ps) != 1 {
			return nil, "", fmt.Errorf("authz: scope %q is malformed", sc)
		}
		if spec.Type == TypeBackend && ps[0].Context != smart.ContextSystem {
			return nil, "", fmt.Errorf("authz: a backend client gets system/ scopes only, not %q", sc)
		}
	}
	if c.AuthMethod == AuthPrivateKeyJWT {
		switch {
		case spec.JWKS != "" && spec.JWKSURL != "":
			return nil, "", errors.New("authz: give the JWKS inline or by URL, not both")
		case spec.JWKS != "":
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(spec.JWKS), &set); err != nil {
				return nil, "", fmt.Errorf("authz: JWKS: %w", err)
			}
			pub := publicOnly(set.Keys)
			if len(pub) == 0 {
				return nil, "", errors.New("authz: the JWKS holds no public signing key")
			}
			for _, k := range set.Keys {
				if !k.IsPublic() {
					return nil, "", errors.New("authz: the JWKS holds a private key: register the public keys only")
				}
			}
			b, _ := json.Marshal(jose.JSONWebKeySet{Keys: pub})
			c.JWKS = string(b)
		case spec.JWKSURL != "":
			p, err := url.Parse(spec.JWKSURL)
			if err != nil || (p.Scheme != "https" && !(p.Scheme == "http" && loopback(p.Hostname()))) {
				return nil, "", errors.New("authz: the JWKS URL must be https (http only for localhost)")
			}
			c.JWKSURL = spec.JWKSURL
		default:
			return nil, "", errors.New("authz: a private_key_jwt client needs --jwks or --jwks-url")
		}
	}
	var secret string
	if c.AuthMethod == AuthSecretBasic {
		secret = randomToken()
		c.SecretHash = hashToken(secret)
	}
	if err := st.CreateClient(ctx, c); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, "", fmt.Errorf("authz: client %q exists already", c.ID)
		}
		return nil, "", err
	}
	return c, secret, nil
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// RemoveClient deletes a client; its tokens are revoked through every
// account that approved it.
func RemoveClient(ctx context.Context, st Storage, id string, now time.Time) error {
	accts, err := st.ListAccounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accts {
		if _, err := st.RevokeGrants(ctx, a.ID, id, now); err != nil {
			return err
		}
		if err := st.DeleteApproval(ctx, a.ID, id); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return st.DeleteClient(ctx, id)
}

// SetAccountDisabled disables (revoking every token of the account) or
// re-enables an account.
func SetAccountDisabled(ctx context.Context, st Storage, username string, disabled bool, now time.Time) error {
	a, err := st.AccountByUsername(ctx, normalizeUsername(username))
	if err != nil {
		return fmt.Errorf("authz: account %q: %w", username, err)
	}
	a.Disabled = disabled
	if err := st.UpdateAccount(ctx, a); err != nil {
		return err
	}
	if !disabled {
		return nil
	}
	cs, err := st.ListClients(ctx)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if _, err := st.RevokeGrants(ctx, a.ID, c.ID, now); err != nil {
			return err
		}
	}
	return nil
}

// EnableTOTP gives the account a new TOTP secret and returns it with its
// otpauth:// URI (to show as a QR code to the person, once).
func EnableTOTP(ctx context.Context, st Storage, username, issuer string) (string, string, error) {
	a, err := st.AccountByUsername(ctx, normalizeUsername(username))
	if err != nil {
		return "", "", fmt.Errorf("authz: account %q: %w", username, err)
	}
	secret, err := NewTOTPSecret()
	if err != nil {
		return "", "", err
	}
	a.TOTPSecret, a.TOTPLastStep = secret, 0
	if err := st.UpdateAccount(ctx, a); err != nil {
		return "", "", err
	}
	return secret, TOTPURI(issuer, a.Username, secret), nil
}

// Unlock clears an account's failed logins and lockout.
func Unlock(ctx context.Context, st Storage, username string) error {
	a, err := st.AccountByUsername(ctx, normalizeUsername(username))
	if err != nil {
		return fmt.Errorf("authz: account %q: %w", username, err)
	}
	a.FailedLogins, a.LockedUntil = 0, time.Time{}
	return st.UpdateAccount(ctx, a)
}

// CreateAccount creates a local account directly (development and tests;
// people register with an invitation).
func CreateAccount(ctx context.Context, st Storage, username, password, fhirUser string, p PasswordParams, now time.Time) (*Account, error) {
	if err := checkPasswordPolicy(password); err != nil {
		return nil, fmt.Errorf("authz: %s", msg("en", err.Error()))
	}
	if p == (PasswordParams{}) {
		p = DefaultPasswordParams
	}
	h, err := HashPassword(password, p)
	if err != nil {
		return nil, err
	}
	a := &Account{ID: randomToken()[:22], Username: normalizeUsername(username), PasswordHash: h, FHIRUser: fhirUser, CreatedAt: now}
	if !slices.Contains([]string{"Patient", "RelatedPerson", "Person", "Practitioner"}, strings.Split(fhirUser, "/")[0]) {
		return nil, fmt.Errorf("authz: fhirUser %q is not a Patient, RelatedPerson, Person or Practitioner", fhirUser)
	}
	return a, st.CreateAccount(ctx, a)
}
