package authz

import (
	"context"
	"errors"
	"time"
)

// Storage errors. Implementations return them (possibly wrapped).
var (
	ErrNotFound = errors.New("authz: not found")
	ErrExists   = errors.New("authz: already exists")
	// ErrUsed: a single-use value (code, refresh token, launch, invitation,
	// client assertion jti) was used before. Use* methods that return it
	// also return the record, so the caller can revoke what was issued from it.
	ErrUsed    = errors.New("authz: already used")
	ErrExpired = errors.New("authz: expired")
)

// Client authentication methods (RFC 7591 token_endpoint_auth_method).
const (
	AuthNone          = "none"                // public client (PKCE only)
	AuthSecretBasic   = "client_secret_basic" // symmetric; client_secret_post is accepted too
	AuthPrivateKeyJWT = "private_key_jwt"     // asymmetric (RFC 7523 client assertion)
)

// Grant types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Client is a registered OAuth client (an app or a backend service).
type Client struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// AuthMethod is AuthNone, AuthSecretBasic or AuthPrivateKeyJWT.
	AuthMethod string `json:"auth_method"`
	// SecretHash is the SHA-256 (hex) of the generated client secret.
	SecretHash string `json:"secret_hash,omitempty"`
	// JWKS is an inline JSON Web Key Set (private_key_jwt); JWKSURL a URL to fetch it.
	JWKS    string `json:"jwks,omitempty"`
	JWKSURL string `json:"jwks_url,omitempty"`
	// RedirectURIs are matched exactly (RFC 6749 section 3.1.2.3, OAuth 2.0 Security BCP).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types"`
	// Scopes bound what the client may be granted (each granted scope must
	// be within one of them); empty: any scope a user approves (never
	// system/ scopes, which need an explicit registration).
	Scopes []string `json:"scopes,omitempty"`
	// EHRLaunch: the client may create EHR launch contexts (POST /auth/launch).
	EHRLaunch bool `json:"ehr_launch,omitempty"`
	// Invitations: the client may issue registration invitations
	// (POST /auth/invitations), e.g. the registration desk's system.
	Invitations bool      `json:"invitations,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Public reports whether the client has no credentials.
func (c *Client) Public() bool { return c.AuthMethod == AuthNone }

// Account is a user of the portal: a local account (username and
// password) or a federated identity (Issuer and Subject of the
// organisation's OpenID provider), bound to one FHIR user.
type Account struct {
	ID       string `json:"id"`
	Username string `json:"username,omitempty"` // lower case; unique
	// PasswordHash is an argon2id PHC string; empty for federated accounts.
	PasswordHash string `json:"password_hash,omitempty"`
	// Issuer and Subject identify a federated account (unique together).
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	// FHIRUser is the user's resource: "Patient/x", "RelatedPerson/y",
	// "Person/z" or "Practitioner/w".
	FHIRUser string `json:"fhir_user"`
	// TOTPSecret (base32) enables a second factor (RFC 6238); TOTPLastStep
	// is the last accepted time step (a code is accepted once).
	TOTPSecret   string `json:"totp_secret,omitempty"`
	TOTPLastStep int64  `json:"totp_last_step,omitempty"`
	// FailedLogins counts consecutive failures; LockedUntil blocks logins.
	FailedLogins int       `json:"failed_logins,omitempty"`
	LockedUntil  time.Time `json:"locked_until,omitzero"`
	Disabled     bool      `json:"disabled,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// Invitation is a single-use, expiring registration code issued by staff
// after verifying the person's identity; it binds the new account to a
// FHIR user.
type Invitation struct {
	Hash      string    `json:"hash"` // SHA-256 of the code
	FHIRUser  string    `json:"fhir_user"`
	CreatedBy string    `json:"created_by,omitempty"`
	Note      string    `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	AccountID string    `json:"account_id,omitempty"`
}

// Session is a browser login session.
type Session struct {
	Hash      string    `json:"hash"` // SHA-256 of the cookie value
	AccountID string    `json:"account_id"`
	AuthTime  time.Time `json:"auth_time"`
	ExpiresAt time.Time `json:"expires_at"`
	// MFAPending: the password was right, the second factor is still due.
	MFAPending bool `json:"mfa_pending,omitempty"`
	// Method is "pwd", "pwd otp" or "fed" (OpenID amr values).
	Method string `json:"method,omitempty"`
}

// LaunchContext is the context an EHR creates for an EHR launch
// (SMART App Launch app-launch.html#launch-app-ehr-launch).
type LaunchContext struct {
	Hash      string    `json:"hash"` // SHA-256 of the opaque launch value
	CreatedBy string    `json:"created_by"`
	ClientID  string    `json:"client_id,omitempty"` // only this app may use it; "" any
	Patient   string    `json:"patient,omitempty"`   // bare id
	Encounter string    `json:"encounter,omitempty"` // bare id
	FHIRUser  string    `json:"fhir_user,omitempty"` // "Practitioner/x": only that user may use it
	Intent    string    `json:"intent,omitempty"`
	Banner    bool      `json:"need_patient_banner,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
}

// AuthRequest is an authorization request in progress (between
// /authorize and the redirect back to the app).
type AuthRequest struct {
	ID            string         `json:"id"`
	Browser       string         `json:"browser"` // SHA-256 of the browser cookie: the flow stays in one browser
	ClientID      string         `json:"client_id"`
	RedirectURI   string         `json:"redirect_uri"`
	State         string         `json:"state"`
	Nonce         string         `json:"nonce,omitempty"`
	Scopes        []string       `json:"scopes"` // requested and allowed for the client
	CodeChallenge string         `json:"code_challenge"`
	Launch        *LaunchContext `json:"launch,omitempty"`
	// Patient is the chosen patient (bare id); PatientChosen is true once
	// the patient step is done (Patient may stay empty when none is needed).
	Patient       string    `json:"patient,omitempty"`
	PatientChosen bool      `json:"patient_chosen,omitempty"`
	PromptLogin   bool      `json:"prompt_login,omitempty"`
	PromptNone    bool      `json:"prompt_none,omitempty"` // no page may be shown (OpenID Connect Core 3.1.2.1)
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// Family groups everything issued from one authorization (a code, the
// access and refresh tokens after it): reusing a code or a rotated
// refresh token revokes the whole family (OAuth 2.0 Security BCP 4.14).
type Family struct {
	ID        string    `json:"id"`
	ClientID  string    `json:"client_id"`
	AccountID string    `json:"account_id,omitempty"`
	SessionID string    `json:"session_id,omitempty"` // online_access: ends with the session
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"` // no refresh after this
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Grant is what a code or refresh token stands for.
type Grant struct {
	ClientID  string    `json:"client_id"`
	AccountID string    `json:"account_id,omitempty"`
	Subject   string    `json:"sub"`
	FHIRUser  string    `json:"fhir_user,omitempty"`
	Scopes    []string  `json:"scopes"`
	Patient   string    `json:"patient,omitempty"`
	Encounter string    `json:"encounter,omitempty"`
	Banner    bool      `json:"need_patient_banner,omitempty"`
	Intent    string    `json:"intent,omitempty"`
	Nonce     string    `json:"nonce,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	AMR       string    `json:"amr,omitempty"`
}

// Code is an authorization code.
type Code struct {
	Hash          string    `json:"hash"`
	FamilyID      string    `json:"family_id"`
	RedirectURI   string    `json:"redirect_uri"`
	CodeChallenge string    `json:"code_challenge"`
	Grant         Grant     `json:"grant"`
	ExpiresAt     time.Time `json:"expires_at"`
	UsedAt        time.Time `json:"used_at,omitzero"`
}

// RefreshToken is one refresh token of a family; it is rotated on every use.
type RefreshToken struct {
	Hash      string    `json:"hash"`
	FamilyID  string    `json:"family_id"`
	Grant     Grant     `json:"grant"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// AccessToken records an issued access token (a JWT identified by jti),
// so that revoking its family revokes it.
type AccessToken struct {
	JTI       string    `json:"jti"`
	FamilyID  string    `json:"family_id,omitempty"`
	ClientID  string    `json:"client_id"`
	AccountID string    `json:"account_id,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Revocation is a revoked access token, kept until it expires.
type Revocation struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at"`
}

// Approval is a user's remembered decision for a client: the scopes the
// app asked for and those the user granted (possibly fewer).
type Approval struct {
	AccountID string    `json:"account_id"`
	ClientID  string    `json:"client_id"`
	Requested []string  `json:"requested"`
	Granted   []string  `json:"granted"`
	CreatedAt time.Time `json:"created_at"`
}

// Storage persists the authorization server's state. Every Use* method is
// atomic: of two concurrent uses of one value exactly one succeeds, also
// when they come from two processes on one database.
// authz/storagetest is the conformance suite every implementation passes.
type Storage interface {
	CreateClient(ctx context.Context, c *Client) error // ErrExists
	GetClient(ctx context.Context, id string) (*Client, error)
	ListClients(ctx context.Context) ([]*Client, error)
	UpdateClient(ctx context.Context, c *Client) error
	DeleteClient(ctx context.Context, id string) error

	CreateAccount(ctx context.Context, a *Account) error // ErrExists: username or identity taken
	GetAccount(ctx context.Context, id string) (*Account, error)
	AccountByUsername(ctx context.Context, username string) (*Account, error)
	AccountByIdentity(ctx context.Context, issuer, subject string) (*Account, error)
	UpdateAccount(ctx context.Context, a *Account) error
	ListAccounts(ctx context.Context) ([]*Account, error)

	CreateInvitation(ctx context.Context, inv *Invitation) error
	// Register redeems the invitation and creates the account (with the
	// invitation's FHIRUser) atomically, across processes too: ErrNotFound,
	// ErrExpired, ErrUsed for the invitation, ErrExists for a taken username
	// (the invitation then stays usable).
	Register(ctx context.Context, invitationHash string, a *Account, now time.Time) (*Invitation, error)

	CreateSession(ctx context.Context, s *Session) error
	GetSession(ctx context.Context, hash string) (*Session, error)
	UpdateSession(ctx context.Context, s *Session) error
	DeleteSession(ctx context.Context, hash string) error

	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	GetAuthRequest(ctx context.Context, id string) (*AuthRequest, error)
	UpdateAuthRequest(ctx context.Context, r *AuthRequest) error
	DeleteAuthRequest(ctx context.Context, id string) error

	CreateFamily(ctx context.Context, f *Family) error
	GetFamily(ctx context.Context, id string) (*Family, error)
	CreateCode(ctx context.Context, c *Code) error
	// UseCode marks the code used. A code used before is returned with ErrUsed.
	UseCode(ctx context.Context, hash string, now time.Time) (*Code, error)
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	GetRefreshToken(ctx context.Context, hash string) (*RefreshToken, error)
	// UseRefreshToken marks the token used (rotated). A token used before is
	// returned with ErrUsed.
	UseRefreshToken(ctx context.Context, hash string, now time.Time) (*RefreshToken, error)
	RecordAccessToken(ctx context.Context, t *AccessToken) error
	GetAccessToken(ctx context.Context, jti string) (*AccessToken, error)
	// RevokeFamily revokes the family, its refresh tokens and its unexpired
	// access tokens, and returns the access tokens revoked now.
	RevokeFamily(ctx context.Context, id string, now time.Time) ([]Revocation, error)
	// RevokeGrants revokes every family of the account and client.
	RevokeGrants(ctx context.Context, accountID, clientID string, now time.Time) ([]Revocation, error)
	RevokeAccessToken(ctx context.Context, r Revocation) error
	// Revocations lists revoked, unexpired access tokens revoked at or after since.
	Revocations(ctx context.Context, since, now time.Time) ([]Revocation, error)

	PutApproval(ctx context.Context, a *Approval) error
	GetApproval(ctx context.Context, accountID, clientID string) (*Approval, error)
	ListApprovals(ctx context.Context, accountID string) ([]*Approval, error)
	DeleteApproval(ctx context.Context, accountID, clientID string) error

	CreateLaunch(ctx context.Context, l *LaunchContext) error
	// UseLaunch consumes a launch value: ErrNotFound, ErrExpired, ErrUsed.
	UseLaunch(ctx context.Context, hash string, now time.Time) (*LaunchContext, error)

	// UseAssertion records a client assertion's jti until exp: ErrUsed when
	// the client used it before (RFC 7523 section 3, jti replay).
	UseAssertion(ctx context.Context, clientID, jti string, exp time.Time) error

	// Secret returns the named server secret, creating it with gen on first use.
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)

	// Prune deletes what expired before now.
	Prune(ctx context.Context, now time.Time) error
	Close() error
}

// Assertion is a client assertion's jti remembered until it expires
// (Storage.UseAssertion).
type Assertion struct {
	ClientID  string    `json:"client_id"`
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Snapshot is the whole state of a Storage, to move it to another backend
// (fhirgate imports a legacy <data dir>/authz.db into the store's database
// this way). The single-use state travels in the records: UsedAt of codes,
// refresh tokens, launches and invitations, RevokedAt of families and
// refresh tokens.
type Snapshot struct {
	Clients       []*Client
	Accounts      []*Account
	Invitations   []*Invitation
	Sessions      []*Session
	AuthRequests  []*AuthRequest
	Families      []*Family
	Codes         []*Code
	RefreshTokens []*RefreshToken
	AccessTokens  []*AccessToken
	Revocations   []Revocation
	Approvals     []*Approval
	Launches      []*LaunchContext
	Assertions    []Assertion
	Secrets       map[string][]byte
}

// Len is the number of records of the snapshot.
func (s *Snapshot) Len() int {
	return len(s.Clients) + len(s.Accounts) + len(s.Invitations) + len(s.Sessions) + len(s.AuthRequests) +
		len(s.Families) + len(s.Codes) + len(s.RefreshTokens) + len(s.AccessTokens) + len(s.Revocations) +
		len(s.Approvals) + len(s.Launches) + len(s.Assertions) + len(s.Secrets)
}

// Exporter is a Storage that can read its whole state.
type Exporter interface {
	Export(ctx context.Context) (*Snapshot, error)
}

// Importer is a Storage that can add a Snapshot's records. A record whose
// key exists already is kept as it is (so an interrupted import can run
// again); Import returns the number of records added.
type Importer interface {
	Import(ctx context.Context, s *Snapshot) (int, error)
}
