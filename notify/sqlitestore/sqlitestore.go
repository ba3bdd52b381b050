// Package sqlitestore is the notification outbox's storage (notify.Storage)
// on SQLite (modernc.org/sqlite, no cgo). Its tables (notify_*) live in
// the SQLite store's file, <data dir>/fhirgate.db, beside store/sqlite's
// and the authorization server's tables, so a site backs up one file;
// ":memory:" gives a private in-memory database for tests.
//
// As authz/sqlitestore: WAL journal, a 10 s busy timeout, IMMEDIATE
// transactions, one connection per process. A claim is one UPDATE ...
// RETURNING statement over the due items, so two processes on the file
// never lease one item at once; the holder's later writes carry the lease
// number (seq) in their WHERE clause.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// Store is notify.Storage on SQLite.
type Store struct {
	db *sql.DB
}

var _ notify.Storage = (*Store)(nil)

// Open opens (creating if needed) the database at path, or a private
// in-memory database for ":memory:".
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlite.OpenShared(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("notify sqlitestore: %w", err)
	}
	return &Store{db: db}, nil
}

// Times are Unix nanoseconds, 0 for none.
const schema = `
CREATE TABLE IF NOT EXISTS notify_outbox (
	key TEXT PRIMARY KEY, state TEXT NOT NULL, due INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0,
	seq INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,
	done INTEGER NOT NULL DEFAULT 0, err TEXT NOT NULL DEFAULT '', data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox (state, due);
CREATE TABLE IF NOT EXISTS notify_prefs (person TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notify_state (name TEXT PRIMARY KEY, data BLOB NOT NULL);
`

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Enqueue implements notify.Storage.
func (s *Store) Enqueue(ctx context.Context, now time.Time, list []notify.Notification) ([]bool, error) {
	added := make([]bool, len(list))
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("notify sqlitestore: enqueue: %w", err)
	}
	defer tx.Rollback()
	for i, n := range list {
		data, err := json.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("notify sqlitestore: enqueue: %w", err)
		}
		due := n.NotBefore
		if due.IsZero() {
			due = now
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO notify_outbox (key, state, due, created, data) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (key) DO NOTHING`, n.Key, string(notify.Pending), ns(due), ns(now), string(data))
		if err != nil {
			return nil, fmt.Errorf("notify sqlitestore: enqueue %s: %w", n.Key, err)
		}
		k, _ := res.RowsAffected()
		added[i] = k == 1
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("notify sqlitestore: enqueue: %w", err)
	}
	return added, nil
}

const itemCols = `key, state, due, lease, seq, attempts, created, done, err, data`

func scanItem(sc interface{ Scan(...any) error }) (notify.Item, error) {
	var it notify.Item
	var key, state, errMsg, data string
	var due, lease, created, done int64
	if err := sc.Scan(&key, &state, &due, &lease, &it.Seq, &it.Attempts, &created, &done, &errMsg, &data); err != nil {
		return it, err
	}
	if err := json.Unmarshal([]byte(data), &it.Notification); err != nil {
		return it, fmt.Errorf("decode %s: %w", key, err)
	}
	it.Key, it.State, it.LastError = key, notify.State(state), errMsg
	it.Due, it.LeaseUntil, it.Created, it.Done = tm(due), tm(lease), tm(created), tm(done)
	return it, nil
}

// Claim implements notify.Storage: one statement leases the due items.
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]notify.Item, error) {
	rows, err := s.db.QueryContext(ctx, `UPDATE notify_outbox SET seq = seq + 1, lease = ?
		WHERE key IN (SELECT key FROM notify_outbox WHERE state = 'pending' AND due <= ? AND lease <= ? ORDER BY due LIMIT ?)
		RETURNING `+itemCols, ns(now.Add(lease)), ns(now), ns(now), max)
	if err != nil {
		return nil, fmt.Errorf("notify sqlitestore: claim: %w", err)
	}
	defer rows.Close()
	var out []notify.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("notify sqlitestore: claim: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notify sqlitestore: claim: %w", err)
	}
	return out, nil
}

func (s *Store) finish(ctx context.Context, it notify.Item, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query+` WHERE key = ? AND seq = ? AND state = 'pending'`, append(args, it.Key, it.Seq)...)
	if err != nil {
		return fmt.Errorf("notify sqlitestore: %s: %w", it.Key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("notify sqlitestore: %s: %w", it.Key, notify.ErrLeaseLost)
	}
	return nil
}

// Delivered implements notify.Storage.
func (s *Store) Delivered(ctx context.Context, it notify.Item, now time.Time) error {
	return s.finish(ctx, it, `UPDATE notify_outbox SET state = 'delivered', done = ?, lease = 0`, ns(now))
}

// Retry implements notify.Storage.
func (s *Store) Retry(ctx context.Context, it notify.Item, due time.Time, msg string) error {
	return s.finish(ctx, it, `UPDATE notify_outbox SET attempts = attempts + 1, due = ?, lease = 0, err = ?`, ns(due), msg)
}

// Finish implements notify.Storage.
func (s *Store) Finish(ctx context.Context, it notify.Item, st notify.State, now time.Time, msg string) error {
	if st != notify.Failed && st != notify.Skipped {
		return fmt.Errorf("notify sqlitestore: finish %s: state %q is not failed or skipped", it.Key, st)
	}
	return s.finish(ctx, it, `UPDATE notify_outbox SET state = ?, done = ?, lease = 0, err = ?`, string(st), ns(now), msg)
}

// Item implements notify.Storage.
func (s *Store) Item(ctx context.Context, key string) (notify.Item, error) {
	it, err := scanItem(s.db.QueryRowContext(ctx, `SELECT `+itemCols+` FROM notify_outbox WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return it, fmt.Errorf("notify sqlitestore: %s: %w", key, notify.ErrNotFound)
	}
	if err != nil {
		return it, fmt.Errorf("notify sqlitestore: %s: %w", key, err)
	}
	return it, nil
}

// Items implements notify.Storage.
func (s *Store) Items(ctx context.Context, st notify.State, limit int) ([]notify.Item, error) {
	q := `SELECT ` + itemCols + ` FROM notify_outbox`
	var args []any
	if st != "" {
		q += ` WHERE state = ?`
		args = append(args, string(st))
	}
	q += ` ORDER BY created, key LIMIT ?`
	rows, err := s.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("notify sqlitestore: items: %w", err)
	}
	defer rows.Close()
	var out []notify.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("notify sqlitestore: items: %w", err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// Prefs implements notify.Storage.
func (s *Store) Prefs(ctx context.Context, person string) (notify.Prefs, bool, error) {
	var p notify.Prefs
	var data string
	err := s.db.QueryRowContext(ctx, `SELECT data FROM notify_prefs WHERE person = ?`, person).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("notify sqlitestore: prefs %s: %w", person, err)
	}
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return p, false, fmt.Errorf("notify sqlitestore: prefs %s: %w", person, err)
	}
	return p, true, nil
}

// SetPrefs implements notify.Storage.
func (s *Store) SetPrefs(ctx context.Context, person string, p notify.Prefs) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("notify sqlitestore: prefs %s: %w", person, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO notify_prefs (person, data) VALUES (?, ?)
		ON CONFLICT (person) DO UPDATE SET data = excluded.data`, person, string(b)); err != nil {
		return fmt.Errorf("notify sqlitestore: prefs %s: %w", person, err)
	}
	return nil
}

// State implements notify.Storage.
func (s *Store) State(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT data FROM notify_state WHERE name = ?`, name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("notify sqlitestore: state %s: %w", name, err)
	}
	return b, nil
}

// SetState implements notify.Storage.
func (s *Store) SetState(ctx context.Context, name string, b []byte) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO notify_state (name, data) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data`, name, b); err != nil {
		return fmt.Errorf("notify sqlitestore: state %s: %w", name, err)
	}
	return nil
}
