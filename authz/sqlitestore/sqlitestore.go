// Package sqlitestore is the authorization server's storage (authz.Storage)
// on SQLite, through the pure-Go driver modernc.org/sqlite (no cgo). By
// default its tables (authz_*) live in the SQLite store's file,
// <data dir>/fhirgate.db, beside store/sqlite's tables, so a site has one
// file to back up; ":memory:" gives a private in-memory database for tests.
//
// Each record is a JSON document in a data column, with the columns the
// queries and the atomic single-use updates need beside it (times are Unix
// nanoseconds, 0 for none). The FHIR store, the authorization server and
// the admin commands may open the same file at once: WAL journal, a busy
// timeout (10 s, as store/sqlite's), and IMMEDIATE transactions so that a
// read-then-write never deadlocks between connection pools or processes.
// Within a process one connection serialises every statement; the
// authorization server's traffic (logins, token requests) is small, and
// the resource server's per-request revocation check reads a memory copy.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// tablePrefix starts the name of every table of the store: the file is
// shared with store/sqlite.
const tablePrefix = "authz_"

// Store is authz.Storage on SQLite.
type Store struct {
	db *sql.DB
}

var (
	_ authz.Storage  = (*Store)(nil)
	_ authz.Exporter = (*Store)(nil)
	_ authz.Importer = (*Store)(nil)
)

// Open opens (creating if needed) the database at path, or a private
// in-memory database for ":memory:".
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlite.OpenShared(ctx, path, "")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS authz_clients (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_accounts (
	id TEXT PRIMARY KEY, username TEXT UNIQUE, issuer TEXT, subject TEXT, data TEXT NOT NULL,
	UNIQUE (issuer, subject));
CREATE TABLE IF NOT EXISTS authz_invitations (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_sessions (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_auth_requests (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_families (
	id TEXT PRIMARY KEY, account_id TEXT NOT NULL, client_id TEXT NOT NULL,
	expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS authz_families_account_client ON authz_families (account_id, client_id);
CREATE TABLE IF NOT EXISTS authz_codes (hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_refresh_tokens (
	hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL,
	used_at INTEGER NOT NULL DEFAULT 0, revoked_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS authz_refresh_family ON authz_refresh_tokens (family_id);
CREATE TABLE IF NOT EXISTS authz_access_tokens (jti TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS authz_access_family ON authz_access_tokens (family_id);
CREATE TABLE IF NOT EXISTS authz_revocations (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS authz_revocations_time ON authz_revocations (revoked_at);
CREATE TABLE IF NOT EXISTS authz_approvals (account_id TEXT NOT NULL, client_id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (account_id, client_id));
CREATE TABLE IF NOT EXISTS authz_launches (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authz_assertions (client_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
CREATE TABLE IF NOT EXISTS authz_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
`

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("sqlitestore: schema: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func enc(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: encode: %w", err)
	}
	return string(b), nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// get reads one data column into v (ErrNotFound when no row).
func (s *Store) get(ctx context.Context, v any, query string, args ...any) error {
	var data string
	err := s.db.QueryRowContext(ctx, query, args...).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return authz.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("sqlitestore: %w", err)
	}
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return fmt.Errorf("sqlitestore: decode: %w", err)
	}
	return nil
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if isUnique(err) {
		return 0, authz.ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

func (s *Store) insert(ctx context.Context, query string, v any, args ...any) error {
	data, err := enc(v)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, query, append(args, data)...)
	return err
}

// update replaces data of an existing row (ErrNotFound when none).
func (s *Store) update(ctx context.Context, query string, v any, args ...any) error {
	data, err := enc(v)
	if err != nil {
		return err
	}
	n, err := s.exec(ctx, query, append([]any{data}, args...)...)
	if err != nil {
		return err
	}
	if n == 0 {
		return authz.ErrNotFound
	}
	return nil
}

func list[T any](ctx context.Context, s *Store, query string, args ...any) ([]*T, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		v := new(T)
		if err := json.Unmarshal([]byte(data), v); err != nil {
			return nil, fmt.Errorf("sqlitestore: decode: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Clients.

func (s *Store) CreateClient(ctx context.Context, c *authz.Client) error {
	return s.insert(ctx, `INSERT INTO authz_clients (id, data) VALUES (?, ?)`, c, c.ID)
}

func (s *Store) GetClient(ctx context.Context, id string) (*authz.Client, error) {
	c := &authz.Client{}
	return c, s.get(ctx, c, `SELECT data FROM authz_clients WHERE id = ?`, id)
}

func (s *Store) ListClients(ctx context.Context) ([]*authz.Client, error) {
	return list[authz.Client](ctx, s, `SELECT data FROM authz_clients ORDER BY id`)
}

func (s *Store) UpdateClient(ctx context.Context, c *authz.Client) error {
	return s.update(ctx, `UPDATE authz_clients SET data = ? WHERE id = ?`, c, c.ID)
}

func (s *Store) DeleteClient(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM authz_clients WHERE id = ?`, id)
	if err == nil && n == 0 {
		return authz.ErrNotFound
	}
	return err
}

// Accounts.

func (s *Store) CreateAccount(ctx context.Context, a *authz.Account) error {
	return s.insert(ctx, `INSERT INTO authz_accounts (id, username, issuer, subject, data) VALUES (?, ?, ?, ?, ?)`,
		a, a.ID, nullable(a.Username), nullable(a.Issuer), nullable(a.Subject))
}

func (s *Store) GetAccount(ctx context.Context, id string) (*authz.Account, error) {
	a := &authz.Account{}
	return a, s.get(ctx, a, `SELECT data FROM authz_accounts WHERE id = ?`, id)
}

func (s *Store) AccountByUsername(ctx context.Context, username string) (*authz.Account, error) {
	a := &authz.Account{}
	return a, s.get(ctx, a, `SELECT data FROM authz_accounts WHERE username = ?`, username)
}

func (s *Store) AccountByIdentity(ctx context.Context, issuer, subject string) (*authz.Account, error) {
	a := &authz.Account{}
	return a, s.get(ctx, a, `SELECT data FROM authz_accounts WHERE issuer = ? AND subject = ?`, issuer, subject)
}

func (s *Store) UpdateAccount(ctx context.Context, a *authz.Account) error {
	data, err := enc(a)
	if err != nil {
		return err
	}
	n, err := s.exec(ctx, `UPDATE authz_accounts SET username = ?, issuer = ?, subject = ?, data = ? WHERE id = ?`,
		nullable(a.Username), nullable(a.Issuer), nullable(a.Subject), data, a.ID)
	if err == nil && n == 0 {
		return authz.ErrNotFound
	}
	return err
}

func (s *Store) ListAccounts(ctx context.Context) ([]*authz.Account, error) {
	return list[authz.Account](ctx, s, `SELECT data FROM authz_accounts ORDER BY username, id`)
}

// Invitations.

func (s *Store) CreateInvitation(ctx context.Context, inv *authz.Invitation) error {
	return s.insert(ctx, `INSERT INTO authz_invitations (hash, expires_at, data) VALUES (?, ?, ?)`, inv, inv.Hash, ns(inv.ExpiresAt))
}

func (s *Store) Register(ctx context.Context, hash string, a *authz.Account, now time.Time) (*authz.Invitation, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer tx.Rollback()
	var data string
	var used int64
	err = tx.QueryRowContext(ctx, `SELECT data, used_at FROM authz_invitations WHERE hash = ?`, hash).Scan(&data, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	inv := &authz.Invitation{}
	if err := json.Unmarshal([]byte(data), inv); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode: %w", err)
	}
	if used != 0 {
		return inv, authz.ErrUsed
	}
	if !now.Before(inv.ExpiresAt) {
		return inv, authz.ErrExpired
	}
	a.FHIRUser = inv.FHIRUser
	adata, err := enc(a)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO authz_accounts (id, username, issuer, subject, data) VALUES (?, ?, ?, ?, ?)`,
		a.ID, nullable(a.Username), nullable(a.Issuer), nullable(a.Subject), adata); err != nil {
		if isUnique(err) {
			return nil, authz.ErrExists
		}
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	inv.UsedAt, inv.AccountID = now, a.ID
	idata, err := enc(inv)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE authz_invitations SET used_at = ?, data = ? WHERE hash = ?`, ns(now), idata, hash); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	return inv, nil
}

// Sessions.

func (s *Store) CreateSession(ctx context.Context, se *authz.Session) error {
	return s.insert(ctx, `INSERT INTO authz_sessions (hash, expires_at, data) VALUES (?, ?, ?)`, se, se.Hash, ns(se.ExpiresAt))
}

func (s *Store) GetSession(ctx context.Context, hash string) (*authz.Session, error) {
	se := &authz.Session{}
	return se, s.get(ctx, se, `SELECT data FROM authz_sessions WHERE hash = ?`, hash)
}

func (s *Store) UpdateSession(ctx context.Context, se *authz.Session) error {
	data, err := enc(se)
	if err != nil {
		return err
	}
	n, err := s.exec(ctx, `UPDATE authz_sessions SET expires_at = ?, data = ? WHERE hash = ?`, ns(se.ExpiresAt), data, se.Hash)
	if err == nil && n == 0 {
		return authz.ErrNotFound
	}
	return err
}

func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.exec(ctx, `DELETE FROM authz_sessions WHERE hash = ?`, hash)
	return err
}

// Authorization requests.

func (s *Store) CreateAuthRequest(ctx context.Context, r *authz.AuthRequest) error {
	return s.insert(ctx, `INSERT INTO authz_auth_requests (id, expires_at, data) VALUES (?, ?, ?)`, r, r.ID, ns(r.ExpiresAt))
}

func (s *Store) GetAuthRequest(ctx context.Context, id string) (*authz.AuthRequest, error) {
	r := &authz.AuthRequest{}
	return r, s.get(ctx, r, `SELECT data FROM authz_auth_requests WHERE id = ?`, id)
}

func (s *Store) UpdateAuthRequest(ctx context.Context, r *authz.AuthRequest) error {
	return s.update(ctx, `UPDATE authz_auth_requests SET data = ? WHERE id = ?`, r, r.ID)
}

func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `DELETE FROM authz_auth_requests WHERE id = ?`, id)
	return err
}

// Families, codes and tokens.

func (s *Store) CreateFamily(ctx context.Context, f *authz.Family) error {
	return s.insert(ctx, `INSERT INTO authz_families (id, account_id, client_id, expires_at, data) VALUES (?, ?, ?, ?, ?)`,
		f, f.ID, f.AccountID, f.ClientID, ns(f.ExpiresAt))
}

func (s *Store) GetFamily(ctx context.Context, id string) (*authz.Family, error) {
	var data string
	var revoked int64
	err := s.db.QueryRowContext(ctx, `SELECT data, revoked_at FROM authz_families WHERE id = ?`, id).Scan(&data, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	f := &authz.Family{}
	if err := json.Unmarshal([]byte(data), f); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode: %w", err)
	}
	if revoked != 0 {
		f.RevokedAt = time.Unix(0, revoked)
	}
	return f, nil
}

func (s *Store) CreateCode(ctx context.Context, c *authz.Code) error {
	return s.insert(ctx, `INSERT INTO authz_codes (hash, family_id, expires_at, data) VALUES (?, ?, ?, ?)`,
		c, c.Hash, c.FamilyID, ns(c.ExpiresAt))
}

// useRow atomically sets used_at on a single-use row and returns its data
// and the previous used_at.
func (s *Store) useRow(ctx context.Context, table, key, value string, now time.Time) (string, int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", 0, fmt.Errorf("sqlitestore: %w", err)
	}
	defer tx.Rollback()
	var data string
	var used int64
	err = tx.QueryRowContext(ctx, `SELECT data, used_at FROM `+table+` WHERE `+key+` = ?`, value).Scan(&data, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, authz.ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("sqlitestore: %w", err)
	}
	if used == 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET used_at = ? WHERE `+key+` = ?`, ns(now), value); err != nil {
			return "", 0, fmt.Errorf("sqlitestore: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return "", 0, fmt.Errorf("sqlitestore: %w", err)
	}
	return data, used, nil
}

func (s *Store) UseCode(ctx context.Context, hash string, now time.Time) (*authz.Code, error) {
	data, used, err := s.useRow(ctx, "authz_codes", "hash", hash, now)
	if err != nil {
		return nil, err
	}
	c := &authz.Code{}
	if err := json.Unmarshal([]byte(data), c); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode: %w", err)
	}
	if used != 0 {
		c.UsedAt = time.Unix(0, used)
		return c, authz.ErrUsed
	}
	c.UsedAt = now
	return c, nil
}

func (s *Store) CreateRefreshToken(ctx context.Context, t *authz.RefreshToken) error {
	return s.insert(ctx, `INSERT INTO authz_refresh_tokens (hash, family_id, expires_at, data) VALUES (?, ?, ?, ?)`,
		t, t.Hash, t.FamilyID, ns(t.ExpiresAt))
}

func (s *Store) refreshFrom(data string, used, revoked int64) (*authz.RefreshToken, error) {
	t := &authz.RefreshToken{}
	if err := json.Unmarshal([]byte(data), t); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode: %w", err)
	}
	if used != 0 {
		t.UsedAt = time.Unix(0, used)
	}
	if revoked != 0 {
		t.RevokedAt = time.Unix(0, revoked)
	}
	return t, nil
}

func (s *Store) GetRefreshToken(ctx context.Context, hash string) (*authz.RefreshToken, error) {
	var data string
	var used, revoked int64
	err := s.db.QueryRowContext(ctx, `SELECT data, used_at, revoked_at FROM authz_refresh_tokens WHERE hash = ?`, hash).Scan(&data, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	return s.refreshFrom(data, used, revoked)
}

func (s *Store) UseRefreshToken(ctx context.Context, hash string, now time.Time) (*authz.RefreshToken, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer tx.Rollback()
	var data string
	var used, revoked int64
	err = tx.QueryRowContext(ctx, `SELECT data, used_at, revoked_at FROM authz_refresh_tokens WHERE hash = ?`, hash).Scan(&data, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	if used == 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE authz_refresh_tokens SET used_at = ? WHERE hash = ?`, ns(now), hash); err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	t, err := s.refreshFrom(data, used, revoked)
	if err != nil {
		return nil, err
	}
	if used != 0 {
		return t, authz.ErrUsed
	}
	t.UsedAt = now
	return t, nil
}

func (s *Store) RecordAccessToken(ctx context.Context, t *authz.AccessToken) error {
	return s.insert(ctx, `INSERT INTO authz_access_tokens (jti, family_id, expires_at, data) VALUES (?, ?, ?, ?)`,
		t, t.JTI, t.FamilyID, ns(t.ExpiresAt))
}

func (s *Store) GetAccessToken(ctx context.Context, jti string) (*authz.AccessToken, error) {
	t := &authz.AccessToken{}
	return t, s.get(ctx, t, `SELECT data FROM authz_access_tokens WHERE jti = ?`, jti)
}

// revokeFamilies revokes the families matched by where (in one transaction).
func (s *Store) revokeFamilies(ctx context.Context, now time.Time, where string, args ...any) ([]authz.Revocation, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id FROM authz_families WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	var out []authz.Revocation
	t := ns(now)
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE authz_families SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, t, id); err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE authz_refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at = 0`, t, id); err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT a.jti, a.expires_at FROM authz_access_tokens a
			WHERE a.family_id = ? AND a.expires_at > ? AND NOT EXISTS (SELECT 1 FROM authz_revocations r WHERE r.jti = a.jti)`, id, t)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		var revs []authz.Revocation
		for rows.Next() {
			var jti string
			var exp int64
			if err := rows.Scan(&jti, &exp); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlitestore: %w", err)
			}
			revs = append(revs, authz.Revocation{JTI: jti, ExpiresAt: time.Unix(0, exp), RevokedAt: now})
		}
		rows.Close()
		for _, r := range revs {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO authz_revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)`,
				r.JTI, ns(r.ExpiresAt), t); err != nil {
				return nil, fmt.Errorf("sqlitestore: %w", err)
			}
		}
		out = append(out, revs...)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	return out, nil
}

func (s *Store) RevokeFamily(ctx context.Context, id string, now time.Time) ([]authz.Revocation, error) {
	return s.revokeFamilies(ctx, now, `id = ?`, id)
}

func (s *Store) RevokeGrants(ctx context.Context, accountID, clientID string, now time.Time) ([]authz.Revocation, error) {
	return s.revokeFamilies(ctx, now, `account_id = ? AND client_id = ?`, accountID, clientID)
}

func (s *Store) RevokeAccessToken(ctx context.Context, r authz.Revocation) error {
	_, err := s.exec(ctx, `INSERT OR IGNORE INTO authz_revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)`,
		r.JTI, ns(r.ExpiresAt), ns(r.RevokedAt))
	return err
}

func (s *Store) Revocations(ctx context.Context, since, now time.Time) ([]authz.Revocation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jti, expires_at, revoked_at FROM authz_revocations WHERE revoked_at >= ? AND expires_at > ?`,
		ns(since), ns(now))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	defer rows.Close()
	var out []authz.Revocation
	for rows.Next() {
		var r authz.Revocation
		var exp, at int64
		if err := rows.Scan(&r.JTI, &exp, &at); err != nil {
			return nil, fmt.Errorf("sqlitestore: %w", err)
		}
		r.ExpiresAt, r.RevokedAt = time.Unix(0, exp), time.Unix(0, at)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Approvals.

func (s *Store) PutApproval(ctx context.Context, a *authz.Approval) error {
	data, err := enc(a)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO authz_approvals (account_id, client_id, data) VALUES (?, ?, ?)
		ON CONFLICT (account_id, client_id) DO UPDATE SET data = excluded.data`, a.AccountID, a.ClientID, data)
	return err
}

func (s *Store) GetApproval(ctx context.Context, accountID, clientID string) (*authz.Approval, error) {
	a := &authz.Approval{}
	return a, s.get(ctx, a, `SELECT data FROM authz_approvals WHERE account_id = ? AND client_id = ?`, accountID, clientID)
}

func (s *Store) ListApprovals(ctx context.Context, accountID string) ([]*authz.Approval, error) {
	return list[authz.Approval](ctx, s, `SELECT data FROM authz_approvals WHERE account_id = ? ORDER BY client_id`, accountID)
}

func (s *Store) DeleteApproval(ctx context.Context, accountID, clientID string) error {
	n, err := s.exec(ctx, `DELETE FROM authz_approvals WHERE account_id = ? AND client_id = ?`, accountID, clientID)
	if err == nil && n == 0 {
		return authz.ErrNotFound
	}
	return err
}

// Launch contexts.

func (s *Store) CreateLaunch(ctx context.Context, l *authz.LaunchContext) error {
	return s.insert(ctx, `INSERT INTO authz_launches (hash, expires_at, data) VALUES (?, ?, ?)`, l, l.Hash, ns(l.ExpiresAt))
}

func (s *Store) UseLaunch(ctx context.Context, hash string, now time.Time) (*authz.LaunchContext, error) {
	data, used, err := s.useRow(ctx, "authz_launches", "hash", hash, now)
	if err != nil {
		return nil, err
	}
	l := &authz.LaunchContext{}
	if err := json.Unmarshal([]byte(data), l); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode: %w", err)
	}
	if used != 0 {
		l.UsedAt = time.Unix(0, used)
		return l, authz.ErrUsed
	}
	if !now.Before(l.ExpiresAt) {
		return l, authz.ErrExpired
	}
	l.UsedAt = now
	return l, nil
}

// Client assertions.

func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, exp time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO authz_assertions (client_id, jti, expires_at) VALUES (?, ?, ?)`, clientID, jti, ns(exp))
	if errors.Is(err, authz.ErrExists) {
		return authz.ErrUsed
	}
	return err
}

// Secrets.

func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM authz_secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	nv, err := gen()
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO authz_secrets (name, value) VALUES (?, ?)`, name, nv); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	// Another process may have won the race: everyone uses the stored value.
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM authz_secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	return v, nil
}

// Prune deletes expired rows. Families, their refresh tokens and access
// tokens stay until the family expires (reuse detection needs them);
// used invitations stay as a record of who registered with which code.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	t := ns(now)
	for _, q := range []string{
		`DELETE FROM authz_sessions WHERE expires_at <= ?`,
		`DELETE FROM authz_auth_requests WHERE expires_at <= ?`,
		`DELETE FROM authz_launches WHERE expires_at <= ?`,
		`DELETE FROM authz_assertions WHERE expires_at <= ?`,
		`DELETE FROM authz_revocations WHERE expires_at <= ?`,
		`DELETE FROM authz_access_tokens WHERE expires_at <= ?`,
		`DELETE FROM authz_invitations WHERE expires_at <= ? AND used_at = 0`,
		`DELETE FROM authz_codes WHERE family_id IN (SELECT id FROM authz_families WHERE expires_at <= ?)`,
		`DELETE FROM authz_refresh_tokens WHERE family_id IN (SELECT id FROM authz_families WHERE expires_at <= ?)`,
		`DELETE FROM authz_families WHERE expires_at <= ?`,
	} {
		if _, err := s.db.ExecContext(ctx, q, t); err != nil {
			return fmt.Errorf("sqlitestore: prune: %w", err)
		}
	}
	return nil
}
