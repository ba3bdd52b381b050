// Package visit is fhirgate's eVisit invitations: a clinician invites the
// participants of a virtual Appointment (patient, caregiver, interpreter)
// by name and email; each gets an email that carries no personal health
// information, only a single-use link, and the clinician gets a PIN to
// give them separately (by phone or SMS). The link plus the PIN opens a
// short session that shows one thing: that Appointment's join URL and
// time.
//
// The rules (Ontario Health's virtual care guidance for eVisit
// invitations, fhirgate issue 16):
//   - the email names no physician, clinic or patient, has no contact
//     details and no time; the sender confirms the recipient's name and
//     email (Parameters confirmed=true);
//   - the PIN is never in the email; it is returned once, in the $invite
//     response, and stored only as an argon2id hash with a per-invitation
//     salt; the link's token is stored only as its SHA-256;
//   - a link works once and expires automatically (the Appointment's end
//     plus Config.Grace, 30 minutes by default); 5 wrong PINs lock it; a
//     used, expired, locked or revoked link is refused with a clear page,
//     and a revoked link answers exactly as an unknown one;
//   - the host lists, revokes and re-sends invitations; every invite,
//     revocation, re-send, wrong PIN, lock and join is an AuditEvent (the
//     invitee by name, never their email).
//
// The model, R4: Appointment has no virtualService (R5 added it), so the
// Appointment names an Endpoint — a resource of its own or a contained
// one — in the extension VirtualServiceExtension (valueReference); the
// Endpoint's address is the join URL (http or https).
//
// Why under authz/: an invitation is a credential (a single-use link, a
// PIN with lockout, a session cookie) with its own storage and pages, the
// same concept as the authorization server's registration invitations,
// and it shares its layer (4) and its security model (no JavaScript, CSRF
// tokens, frame-ancestors 'none', no-referrer, no-store).
package visit

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/store"
)

// VirtualServiceExtension is the Appointment extension (valueReference to
// an Endpoint, "Endpoint/id" or a contained "#id") that holds the visit's
// virtual service; Endpoint.address is the join URL. It stands in for R5's
// Appointment.virtualService in R4.
const VirtualServiceExtension = "https://fhirgate.dev/fhir/StructureDefinition/virtual-service"

// PathPrefix is where the invitation pages are served.
const PathPrefix = "/visit"

// Defaults.
const (
	DefaultGrace       = 30 * time.Minute
	DefaultSessionTTL  = 2 * time.Hour
	DefaultMaxAttempts = 5
	DefaultPINDigits   = 6
)

// Status of an invitation, as listed by $invitations.
type Status string

const (
	StatusPending Status = "pending" // sent, not opened with the PIN yet
	StatusUsed    Status = "used"    // opened with the right PIN (once)
	StatusLocked  Status = "locked"  // too many wrong PINs
	StatusRevoked Status = "revoked" // withdrawn by the host (or re-sent)
	StatusExpired Status = "expired" // past its expiry, unused
)

// Invitation is one invitee's invitation to one Appointment. The token
// and PIN are kept only as hashes.
type Invitation struct {
	ID          string `json:"id"`
	Appointment string `json:"appointment"`           // "Appointment/1"
	Participant string `json:"participant,omitempty"` // "Patient/7", "RelatedPerson/2", "Practitioner/3"; "" (an interpreter)
	Name        string `json:"name"`                  // as the sender confirmed it
	Email       string `json:"email"`                 // for re-sending; never audited
	Lang        string `json:"lang"`                  // "en" or "fr"
	InvitedBy   string `json:"invited_by"`            // the host's fhirUser, or "client:<id>"
	// TokenHash is the hex SHA-256 of the link's token (256 random bits).
	TokenHash string `json:"token_hash"`
	// PINSalt and PINHash: argon2id of the PIN with a per-invitation salt.
	PINSalt []byte `json:"pin_salt"`
	PINHash []byte `json:"pin_hash"`
	// Attempts counts wrong PINs; the MaxAttempts-th sets LockedAt.
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	LockedAt  time.Time `json:"locked_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// ReplacedBy is the invitation a re-send created in its place.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// SessionHash (hex SHA-256 of the session cookie) and SessionExpires:
	// the session the right PIN opened.
	SessionHash    string    `json:"session_hash,omitempty"`
	SessionExpires time.Time `json:"session_expires,omitzero"`
}

// Status is the invitation's state at now.
func (inv Invitation) Status(now time.Time) Status {
	switch {
	case !inv.RevokedAt.IsZero():
		return StatusRevoked
	case !inv.UsedAt.IsZero():
		return StatusUsed
	case !inv.LockedAt.IsZero():
		return StatusLocked
	case !now.Before(inv.ExpiresAt):
		return StatusExpired
	}
	return StatusPending
}

// Storage errors.
var (
	ErrNotFound   = errors.New("visit: invitation not found")
	ErrExists     = errors.New("visit: invitation exists")
	ErrNotPending = errors.New("visit: invitation is not pending")
)

// Storage keeps invitations in the store's database (sqlitestore: the
// visit_invitations table of fhirgate.db; mongostore: the
// visit_invitations collection). Every state change is one atomic
// conditional update, so two browsers racing with one link cannot both
// win, and concurrent wrong PINs are all counted. storagetest.Run is the
// conformance suite of every implementation.
type Storage interface {
	Create(ctx context.Context, inv Invitation) error // ErrExists
	Get(ctx context.Context, id string) (Invitation, error)
	ByToken(ctx context.Context, tokenHash string) (Invitation, error)
	BySession(ctx context.Context, sessionHash string) (Invitation, error)
	// List returns the invitations of an Appointment ("Appointment/1"), oldest first.
	List(ctx context.Context, appointment string) ([]Invitation, error)
	// Fail counts one wrong PIN of a pending invitation (not used, locked,
	// revoked or expired at now); the max-th locks it. It returns the
	// invitation after the update; ErrNotPending when it was not pending.
	Fail(ctx context.Context, id string, max int, now time.Time) (Invitation, error)
	// Use marks a pending invitation used at now and attaches the session;
	// ErrNotPending when it was not pending (used, locked, revoked, expired).
	Use(ctx context.Context, id, sessionHash string, sessionExpires, now time.Time) error
	// Revoke withdraws an invitation (ending its session), recording
	// replacedBy when a re-send replaces it; revoking twice keeps the first
	// time. ErrNotFound.
	Revoke(ctx context.Context, id, replacedBy string, now time.Time) error
	Close() error
}

// Config wires a Service.
type Config struct {
	Storage Storage
	// Outbox sends the invitation emails (notify.Notification, template
	// "invitation"): the durable notify outbox, or MailOutbox.
	Outbox notify.Outbox
	// FHIR is the resource store: the join page reads the Appointment and
	// its Endpoint there when it is shown.
	FHIR  store.Store
	Audit *audit.Logger // nil: no audit trail
	// Origin is the public scheme://host of the server; links are
	// Origin + "/visit/" + token. https turns on Secure, __Host- cookies.
	Origin string
	// BaseURL is the FHIR base (the audit's observer).
	BaseURL string
	// Grace: an invitation expires this long after the Appointment's end
	// (default 30 minutes).
	Grace time.Duration
	// SessionTTL bounds the session the PIN opens (default 2 hours, never
	// past the invitation's expiry).
	SessionTTL  time.Duration
	MaxAttempts int // wrong PINs before the invitation locks (default 5)
	PINDigits   int // PIN length (default 6, at least 6)
	// RatePerMinute bounds PIN submissions per link (default 10).
	RatePerMinute int
	Now           func() time.Time
	Logger        *slog.Logger
}

// Service runs the invitations: the FHIR operations (Operations) and the
// pages (ServeHTTP).
type Service struct {
	cfg     Config
	secure  bool
	pages   *pages
	limiter *limiter
}

// New checks cfg and builds a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Storage == nil || cfg.Outbox == nil || cfg.FHIR == nil {
		return nil, errors.New("visit: Storage, Outbox and FHIR are required")
	}
	u, err := url.Parse(cfg.Origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("visit: Origin must be an http(s) scheme://host")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.PINDigits < DefaultPINDigits {
		cfg.PINDigits = DefaultPINDigits
	}
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := newPages()
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, secure: u.Scheme == "https", pages: p, limiter: newLimiter(cfg.RatePerMinute, time.Minute)}, nil
}
