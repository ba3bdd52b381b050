package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/authz"
)

// LegacyFileName is where fhirgate kept the authorization server's
// database before it moved into the store's database
// (<data dir>/fhirgate.db); its tables have no authz_ prefix.
const LegacyFileName = "authz.db"

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Export reads the whole state (authz.Exporter).
func (s *Store) Export(ctx context.Context) (*authz.Snapshot, error) {
	return export(ctx, s.db, tablePrefix)
}

// ExportFile reads the state kept in the SQLite file at path without
// writing to it: the tables of this version (authz_*) or, in a legacy
// authz.db, those without prefix. A file with neither gives an empty
// snapshot.
func ExportFile(ctx context.Context, path string) (*authz.Snapshot, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err) // not created by opening it
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, prefix := range []string{tablePrefix, ""} {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, prefix+"secrets").Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlitestore: %s: %w", path, err)
		}
		if n > 0 {
			snap, err := export(ctx, db, prefix)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return snap, nil
		}
	}
	return &authz.Snapshot{Secrets: map[string][]byte{}}, nil
}

// each runs f on every row of query.
func each(ctx context.Context, db querier, query string, f func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("sqlitestore: export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlitestore: export: %w", err)
	}
	return nil
}

// eachData decodes the data column of every row of table into a new T and
// passes it to f with the other columns (cols, int64 each) scanned.
func eachData[T any](ctx context.Context, db querier, table string, f func(v *T, cols []int64), cols ...string) error {
	q := `SELECT data`
	for _, c := range cols {
		q += `, ` + c
	}
	return each(ctx, db, q+` FROM `+table, func(rows *sql.Rows) error {
		var data string
		vals := make([]int64, len(cols))
		dst := []any{&data}
		for i := range vals {
			dst = append(dst, &vals[i])
		}
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("sqlitestore: export %s: %w", table, err)
		}
		v := new(T)
		if err := json.Unmarshal([]byte(data), v); err != nil {
			return fmt.Errorf("sqlitestore: export %s: decode: %w", table, err)
		}
		f(v, vals)
		return nil
	})
}

// skipMissing answers a query of a table the file lacks with no rows.
type skipMissing struct {
	querier
	have map[string]bool
}

func (q skipMissing) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if i := strings.LastIndex(query, " FROM "); i >= 0 && !q.have[strings.Fields(query[i+6:])[0]] {
		return q.querier.QueryContext(ctx, `SELECT 1 WHERE 0`)
	}
	return q.querier.QueryContext(ctx, query, args...)
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func export(ctx context.Context, db querier, p string) (*authz.Snapshot, error) {
	s := &authz.Snapshot{Secrets: map[string][]byte{}}
	// An older file may lack some tables: those are skipped.
	have := map[string]bool{}
	if err := each(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table'`, func(rows *sql.Rows) error {
		var n string
		err := rows.Scan(&n)
		have[n] = true
		return err
	}); err != nil {
		return nil, err
	}
	db = skipMissing{db, have}
	err := errors.Join(
		eachData(ctx, db, p+"clients", func(c *authz.Client, _ []int64) { s.Clients = append(s.Clients, c) }),
		eachData(ctx, db, p+"accounts", func(a *authz.Account, _ []int64) { s.Accounts = append(s.Accounts, a) }),
		eachData(ctx, db, p+"invitations", func(inv *authz.Invitation, c []int64) {
			inv.UsedAt = fromNS(c[0])
			s.Invitations = append(s.Invitations, inv)
		}, "used_at"),
		eachData(ctx, db, p+"sessions", func(se *authz.Session, _ []int64) { s.Sessions = append(s.Sessions, se) }),
		eachData(ctx, db, p+"auth_requests", func(r *authz.AuthRequest, _ []int64) { s.AuthRequests = append(s.AuthRequests, r) }),
		eachData(ctx, db, p+"families", func(f *authz.Family, c []int64) {
			f.RevokedAt = fromNS(c[0])
			s.Families = append(s.Families, f)
		}, "revoked_at"),
		eachData(ctx, db, p+"codes", func(cd *authz.Code, c []int64) {
			cd.UsedAt = fromNS(c[0])
			s.Codes = append(s.Codes, cd)
		}, "used_at"),
		eachData(ctx, db, p+"refresh_tokens", func(t *authz.RefreshToken, c []int64) {
			t.UsedAt, t.RevokedAt = fromNS(c[0]), fromNS(c[1])
			s.RefreshTokens = append(s.RefreshTokens, t)
		}, "used_at", "revoked_at"),
		eachData(ctx, db, p+"access_tokens", func(t *authz.AccessToken, _ []int64) { s.AccessTokens = append(s.AccessTokens, t) }),
		each(ctx, db, `SELECT jti, expires_at, revoked_at FROM `+p+`revocations`, func(rows *sql.Rows) error {
			var r authz.Revocation
			var exp, at int64
			if err := rows.Scan(&r.JTI, &exp, &at); err != nil {
				return fmt.Errorf("sqlitestore: export revocations: %w", err)
			}
			r.ExpiresAt, r.RevokedAt = fromNS(exp), fromNS(at)
			s.Revocations = append(s.Revocations, r)
			return nil
		}),
		eachData(ctx, db, p+"approvals", func(a *authz.Approval, _ []int64) { s.Approvals = append(s.Approvals, a) }),
		eachData(ctx, db, p+"launches", func(l *authz.LaunchContext, c []int64) {
			l.UsedAt = fromNS(c[0])
			s.Launches = append(s.Launches, l)
		}, "used_at"),
		each(ctx, db, `SELECT client_id, jti, expires_at FROM `+p+`assertions`, func(rows *sql.Rows) error {
			var a authz.Assertion
			var exp int64
			if err := rows.Scan(&a.ClientID, &a.JTI, &exp); err != nil {
				return fmt.Errorf("sqlitestore: export assertions: %w", err)
			}
			a.ExpiresAt = fromNS(exp)
			s.Assertions = append(s.Assertions, a)
			return nil
		}),
		each(ctx, db, `SELECT name, value FROM `+p+`secrets`, func(rows *sql.Rows) error {
			var name string
			var v []byte
			if err := rows.Scan(&name, &v); err != nil {
				return fmt.Errorf("sqlitestore: export secrets: %w", err)
			}
			s.Secrets[name] = v
			return nil
		}),
	)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Import adds the snapshot's records in one transaction (authz.Importer);
// a record whose key exists is kept.
func (s *Store) Import(ctx context.Context, snap *authz.Snapshot) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: import: %w", err)
	}
	defer tx.Rollback()
	n := 0
	add := func(query string, v any, args ...any) error {
		if v != nil {
			data, err := enc(v)
			if err != nil {
				return err
			}
			args = append(args, data)
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("sqlitestore: import: %w", err)
		}
		k, _ := res.RowsAffected()
		n += int(k)
		return nil
	}
	var errs []error
	try := func(err error) { errs = append(errs, err) }
	for _, c := range snap.Clients {
		try(add(`INSERT OR IGNORE INTO authz_clients (id, data) VALUES (?, ?)`, c, c.ID))
	}
	for _, a := range snap.Accounts {
		try(add(`INSERT OR IGNORE INTO authz_accounts (id, username, issuer, subject, data) VALUES (?, ?, ?, ?, ?)`,
			a, a.ID, nullable(a.Username), nullable(a.Issuer), nullable(a.Subject)))
	}
	for _, inv := range snap.Invitations {
		try(add(`INSERT OR IGNORE INTO authz_invitations (hash, expires_at, used_at, data) VALUES (?, ?, ?, ?)`,
			inv, inv.Hash, ns(inv.ExpiresAt), ns(inv.UsedAt)))
	}
	for _, se := range snap.Sessions {
		try(add(`INSERT OR IGNORE INTO authz_sessions (hash, expires_at, data) VALUES (?, ?, ?)`, se, se.Hash, ns(se.ExpiresAt)))
	}
	for _, r := range snap.AuthRequests {
		try(add(`INSERT OR IGNORE INTO authz_auth_requests (id, expires_at, data) VALUES (?, ?, ?)`, r, r.ID, ns(r.ExpiresAt)))
	}
	for _, f := range snap.Families {
		try(add(`INSERT OR IGNORE INTO authz_families (id, account_id, client_id, expires_at, revoked_at, data) VALUES (?, ?, ?, ?, ?, ?)`,
			f, f.ID, f.AccountID, f.ClientID, ns(f.ExpiresAt), ns(f.RevokedAt)))
	}
	for _, c := range snap.Codes {
		try(add(`INSERT OR IGNORE INTO authz_codes (hash, family_id, expires_at, used_at, data) VALUES (?, ?, ?, ?, ?)`,
			c, c.Hash, c.FamilyID, ns(c.ExpiresAt), ns(c.UsedAt)))
	}
	for _, t := range snap.RefreshTokens {
		try(add(`INSERT OR IGNORE INTO authz_refresh_tokens (hash, family_id, expires_at, used_at, revoked_at, data) VALUES (?, ?, ?, ?, ?, ?)`,
			t, t.Hash, t.FamilyID, ns(t.ExpiresAt), ns(t.UsedAt), ns(t.RevokedAt)))
	}
	for _, t := range snap.AccessTokens {
		try(add(`INSERT OR IGNORE INTO authz_access_tokens (jti, family_id, expires_at, data) VALUES (?, ?, ?, ?)`,
			t, t.JTI, t.FamilyID, ns(t.ExpiresAt)))
	}
	for _, r := range snap.Revocations {
		try(add(`INSERT OR IGNORE INTO authz_revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)`, nil, r.JTI, ns(r.ExpiresAt), ns(r.RevokedAt)))
	}
	for _, a := range snap.Approvals {
		try(add(`INSERT OR IGNORE INTO authz_approvals (account_id, client_id, data) VALUES (?, ?, ?)`, a, a.AccountID, a.ClientID))
	}
	for _, l := range snap.Launches {
		try(add(`INSERT OR IGNORE INTO authz_launches (hash, expires_at, used_at, data) VALUES (?, ?, ?, ?)`,
			l, l.Hash, ns(l.ExpiresAt), ns(l.UsedAt)))
	}
	for _, a := range snap.Assertions {
		try(add(`INSERT OR IGNORE INTO authz_assertions (client_id, jti, expires_at) VALUES (?, ?, ?)`, nil, a.ClientID, a.JTI, ns(a.ExpiresAt)))
	}
	for name, v := range snap.Secrets {
		try(add(`INSERT OR IGNORE INTO authz_secrets (name, value) VALUES (?, ?)`, nil, name, v))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlitestore: import: %w", err)
	}
	return n, nil
}
