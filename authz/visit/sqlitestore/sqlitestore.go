// Package sqlitestore keeps eVisit invitations (visit.Storage) in SQLite:
// the visit_invitations table of the SQLite store's file,
// <data dir>/fhirgate.db, beside store/sqlite's and the authorization
// server's tables (one file to back up). ":memory:" is a private database
// for tests.
//
// The invitation's fixed fields are a JSON document (data); what changes —
// attempts, used, locked, revoked, the session — are columns, and every
// change is one conditional UPDATE, so it is atomic across connections and
// processes sharing the file (WAL, busy timeout, IMMEDIATE transactions,
// as authz/sqlitestore).
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/authz/visit"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// Store is visit.Storage on SQLite.
type Store struct{ db *sql.DB }

var _ visit.Storage = (*Store)(nil)

// Open opens (creating if needed) the database at path, or a private
// in-memory database for ":memory:".
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlite.OpenShared(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("visit sqlitestore: %w", err)
	}
	return &Store{db: db}, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS visit_invitations (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	appointment TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	used_at INTEGER NOT NULL DEFAULT 0,
	locked_at INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER NOT NULL DEFAULT 0,
	replaced_by TEXT NOT NULL DEFAULT '',
	session_hash TEXT UNIQUE,
	session_expires INTEGER NOT NULL DEFAULT 0,
	data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS visit_invitations_appointment ON visit_invitations (appointment, created_at);
`

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func at(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Create stores a new invitation.
func (s *Store) Create(ctx context.Context, inv visit.Invitation) error {
	fixed := inv
	fixed.Attempts, fixed.UsedAt, fixed.LockedAt, fixed.RevokedAt, fixed.ReplacedBy = 0, time.Time{}, time.Time{}, time.Time{}, ""
	fixed.SessionHash, fixed.SessionExpires = "", time.Time{}
	data, err := json.Marshal(fixed)
	if err != nil {
		return fmt.Errorf("visit sqlitestore: encode: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO visit_invitations (id, token_hash, appointment, created_at, expires_at, data)
		VALUES (?, ?, ?, ?, ?, ?)`, inv.ID, inv.TokenHash, inv.Appointment, ns(inv.CreatedAt), ns(inv.ExpiresAt), string(data))
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return visit.ErrExists
	}
	if err != nil {
		return fmt.Errorf("visit sqlitestore: create: %w", err)
	}
	return nil
}

const columns = `data, attempts, used_at, locked_at, revoked_at, replaced_by, COALESCE(session_hash, ''), session_expires`

type scanner interface{ Scan(...any) error }

func scan(row scanner) (visit.Invitation, error) {
	var inv visit.Invitation
	var data string
	var used, locked, revoked, sexp int64
	err := row.Scan(&data, &inv.Attempts, &used, &locked, &revoked, &inv.ReplacedBy, &inv.SessionHash, &sexp)
	if errors.Is(err, sql.ErrNoRows) {
		return inv, visit.ErrNotFound
	}
	if err != nil {
		return inv, fmt.Errorf("visit sqlitestore: %w", err)
	}
	var fixed visit.Invitation
	if err := json.Unmarshal([]byte(data), &fixed); err != nil {
		return inv, fmt.Errorf("visit sqlitestore: decode: %w", err)
	}
	fixed.Attempts, fixed.ReplacedBy, fixed.SessionHash = inv.Attempts, inv.ReplacedBy, inv.SessionHash
	fixed.UsedAt, fixed.LockedAt, fixed.RevokedAt, fixed.SessionExpires = at(used), at(locked), at(revoked), at(sexp)
	return fixed, nil
}

func (s *Store) one(ctx context.Context, where string, arg any) (visit.Invitation, error) {
	return scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM visit_invitations WHERE `+where, arg))
}

// Get reads an invitation by id.
func (s *Store) Get(ctx context.Context, id string) (visit.Invitation, error) {
	return s.one(ctx, "id = ?", id)
}

// ByToken reads an invitation by its token hash.
func (s *Store) ByToken(ctx context.Context, h string) (visit.Invitation, error) {
	return s.one(ctx, "token_hash = ?", h)
}

// BySession reads an invitation by its session hash.
func (s *Store) BySession(ctx context.Context, h string) (visit.Invitation, error) {
	if h == "" {
		return visit.Invitation{}, visit.ErrNotFound
	}
	return s.one(ctx, "session_hash = ?", h)
}

// List returns an Appointment's invitations, oldest first.
func (s *Store) List(ctx context.Context, appointment string) ([]visit.Invitation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM visit_invitations WHERE appointment = ? ORDER BY created_at, id`, appointment)
	if err != nil {
		return nil, fmt.Errorf("visit sqlitestore: list: %w", err)
	}
	defer rows.Close()
	var out []visit.Invitation
	for rows.Next() {
		inv, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("visit sqlitestore: list: %w", err)
	}
	return out, nil
}

const pending = `used_at = 0 AND locked_at = 0 AND revoked_at = 0 AND expires_at > ?`

// Fail counts a wrong PIN; the max-th locks the invitation.
func (s *Store) Fail(ctx context.Context, id string, max int, now time.Time) (visit.Invitation, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE visit_invitations SET attempts = attempts + 1,
		locked_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE 0 END WHERE id = ? AND `+pending, max, ns(now), id, ns(now))
	if err != nil {
		return visit.Invitation{}, fmt.Errorf("visit sqlitestore: fail: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return visit.Invitation{}, visit.ErrNotPending
	}
	return s.Get(ctx, id)
}

// Use marks a pending invitation used and attaches the session.
func (s *Store) Use(ctx context.Context, id, sessionHash string, sessionExpires, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE visit_invitations SET used_at = ?, session_hash = ?, session_expires = ?
		WHERE id = ? AND `+pending, ns(now), sessionHash, ns(sessionExpires), id, ns(now))
	if err != nil {
		return fmt.Errorf("visit sqlitestore: use: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return visit.ErrNotPending
	}
	return nil
}

// Revoke withdraws an invitation (the first revocation's time is kept).
func (s *Store) Revoke(ctx context.Context, id, replacedBy string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE visit_invitations SET
		revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END,
		replaced_by = CASE WHEN ? <> '' THEN ? ELSE replaced_by END WHERE id = ?`, ns(now), replacedBy, replacedBy, id)
	if err != nil {
		return fmt.Errorf("visit sqlitestore: revoke: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return visit.ErrNotFound
	}
	return nil
}
