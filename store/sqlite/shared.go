package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// OpenShared opens the database file at path for a service that keeps its
// own tables beside the store's (the authorization server's authz_*, the
// outbox's notify_*, eVisit invitations' visit_*), so that a site backs up
// one file; ":memory:" gives a private in-memory database (tests). schema
// (idempotent statements) is run once; a file is made owner-readable only
// (it holds accounts and secrets).
//
// The connection: WAL journal, a 10 s busy timeout (the store's writer and
// other processes share the file), IMMEDIATE transactions, synchronous
// NORMAL (per connection: the store's own FULL is unaffected), foreign
// keys on, and one connection per process — ":memory:" is per connection,
// and it serialises the service's writes (no SQLITE_BUSY among its own).
func OpenShared(ctx context.Context, path, schema string) (*sql.DB, error) {
	var dsn string
	if path == ":memory:" {
		dsn = "file::memory:?_pragma=foreign_keys(1)&_txlock=immediate"
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", "immediate")
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	}
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil { // creates the file
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if schema != "" {
		if _, err := db.ExecContext(ctx, schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("schema: %w", err)
		}
	}
	if path != ":memory:" {
		_ = os.Chmod(path, 0o600)
	}
	return db, nil
}
