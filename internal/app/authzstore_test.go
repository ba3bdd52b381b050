package app

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
)

// The authorization server's state lives in the store's database: a
// legacy <data dir>/authz.db is imported at the first start, once, on
// either embedded store.
func TestAuthzStateInTheStoreImportsLegacyFile(t *testing.T) {
	for _, storeName := range []string{"sqlite", "ferretdb"} {
		t.Run(storeName, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlitestore.LegacyFileName))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `CREATE TABLE clients (id TEXT PRIMARY KEY, data TEXT NOT NULL);
				CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
				INSERT INTO clients VALUES ('old-app', '{"id":"old-app","name":"Old","auth_method":"none","grant_types":["authorization_code"],"created_at":"2026-01-01T00:00:00Z"}');`); err != nil {
				t.Fatal(err)
			}
			db.Close()
			var logs strings.Builder
			o := Options{BaseURL: "http://localhost:8080/fhir", DataDir: dir, Store: storeName,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			a, err := New(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.AuthzStore.GetClient(ctx, "old-app"); err != nil {
				t.Fatalf("the legacy client was not imported: %v", err)
			}
			if !strings.Contains(logs.String(), "imported the legacy authorization database") {
				t.Fatalf("no log line of the import: %s", logs.String())
			}
			if err := a.AuthzStore.DeleteClient(ctx, "old-app"); err != nil {
				t.Fatal(err)
			}
			a.Close(ctx)
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			a, err = New(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(ctx)
			if _, err := a.AuthzStore.GetClient(ctx, "old-app"); err != authz.ErrNotFound {
				t.Fatalf("imported again at the second start: %v", err)
			}
			if storeName == "sqlite" {
				// One file: the authz_* tables are in the store's.
				db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, SQLiteFile)+"?_pragma=query_only(1)")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var n int
				if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'authz\_%' ESCAPE '\'`).Scan(&n); err != nil || n != 14 {
					t.Fatalf("%d authz_* tables in %s (%v), want 14", n, SQLiteFile, err)
				}
			}
		})
	}
}
