package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	"github.com/fhirgate/fhirgate/authz/storagetest"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

func open(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) authz.Storage { return open(t, ":memory:") })
}

func TestFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) authz.Storage { return open(t, filepath.Join(t.TempDir(), "fhirgate.db")) })
}

// Two handles on one file (the server and an admin command, or two
// processes): what one writes the other reads, single use holds across
// them, and the file is private to its owner.
func TestTwoProcessesShareTheFile(t *testing.T) {
	storagetest.RunProcesses(t, func(t *testing.T) (authz.Storage, authz.Storage) {
		path := filepath.Join(t.TempDir(), "fhirgate.db")
		return open(t, path), open(t, path)
	})
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	open(t, path).Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// The authorization server's tables live in the FHIR store's file: both
// open it, write at once through their own connection pools without
// SQLITE_BUSY, and reopen it (store/sqlite accepts the authz_* tables).
func TestSharesTheFHIRStoreFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	fstore, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	as := open(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			raw := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, i)
			r := store.Record{Type: "Patient", ID: fmt.Sprintf("p%d", i), VersionID: 1, LastUpdated: time.Now().UTC(), Raw: []byte(raw)}
			if err := fstore.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
				errs <- fmt.Errorf("fhir write %d: %w", i, err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 200 {
			if err := as.CreateSession(ctx, &authz.Session{Hash: fmt.Sprintf("s%d", i), AccountID: "a", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				errs <- fmt.Errorf("authz write %d: %w", i, err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	as.Close()
	if err := fstore.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fstore, err = sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("the FHIR store refuses its file with the authz tables: %v", err)
	}
	defer fstore.Close(ctx)
	if _, err := fstore.Read(ctx, "Patient", "p199"); err != nil {
		t.Fatal(err)
	}
	as = open(t, path)
	defer as.Close()
	if _, err := as.GetSession(ctx, "s199"); err != nil {
		t.Fatal(err)
	}
}

// legacySchema is the schema of <data dir>/authz.db before the tables
// moved into fhirgate.db (no prefix).
const legacySchema = `
CREATE TABLE clients (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE accounts (id TEXT PRIMARY KEY, username TEXT UNIQUE, issuer TEXT, subject TEXT, data TEXT NOT NULL, UNIQUE (issuer, subject));
CREATE TABLE invitations (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE sessions (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE auth_requests (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE families (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, client_id TEXT NOT NULL, expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE codes (hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE refresh_tokens (hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, revoked_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE access_tokens (jti TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE revocations (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL);
CREATE TABLE approvals (account_id TEXT NOT NULL, client_id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (account_id, client_id));
CREATE TABLE launches (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE assertions (client_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
INSERT INTO clients VALUES ('app', '{"id":"app","name":"App","auth_method":"none","grant_types":["authorization_code"],"created_at":"2026-03-01T10:00:00Z"}');
INSERT INTO accounts VALUES ('a1', 'mum', NULL, NULL, '{"id":"a1","username":"mum","password_hash":"x","fhir_user":"RelatedPerson/mum","created_at":"2026-03-01T10:00:00Z"}');
INSERT INTO families VALUES ('f1', 'a1', 'app', 4102444800000000000, 0, '{"id":"f1","client_id":"app","account_id":"a1","created_at":"2026-03-01T10:00:00Z","expires_at":"2100-01-01T00:00:00Z"}');
INSERT INTO refresh_tokens VALUES ('r1', 'f1', 4102444800000000000, 1772359200000000000, 0, '{"hash":"r1","family_id":"f1","grant":{"client_id":"app","scopes":["offline_access"]},"created_at":"2026-03-01T10:00:00Z","expires_at":"2100-01-01T00:00:00Z"}');
INSERT INTO refresh_tokens VALUES ('r2', 'f1', 4102444800000000000, 0, 0, '{"hash":"r2","family_id":"f1","grant":{"client_id":"app","scopes":["offline_access"]},"created_at":"2026-03-01T10:00:00Z","expires_at":"2100-01-01T00:00:00Z"}');
INSERT INTO revocations VALUES ('j1', 4102444800000000000, 1772359200000000000);
INSERT INTO secrets VALUES ('csrf', x'00ff');
`

// A legacy authz.db is read without being written, and its state
// imported into the store's file behaves as before.
func TestExportLegacyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	legacy := filepath.Join(dir, sqlitestore.LegacyFileName)
	db, err := sql.Open("sqlite", "file:"+legacy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, legacySchema); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(legacy)
	snap, err := sqlitestore.ExportFile(ctx, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Len() != 7 {
		t.Fatalf("%d records, want 7: %+v", snap.Len(), snap)
	}
	if after, _ := os.ReadFile(legacy); string(after) != string(before) {
		t.Fatal("ExportFile wrote to the legacy file")
	}
	dst := open(t, filepath.Join(dir, "fhirgate.db"))
	defer dst.Close()
	if n, err := dst.Import(ctx, snap); err != nil || n != 7 {
		t.Fatalf("imported %d: %v", n, err)
	}
	if _, err := dst.AccountByUsername(ctx, "mum"); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.UseRefreshToken(ctx, "r1", time.Now()); err != authz.ErrUsed {
		t.Fatalf("the used legacy refresh token: %v, want ErrUsed", err)
	}
	if r, err := dst.UseRefreshToken(ctx, "r2", time.Now()); err != nil || r.Grant.Scopes[0] != "offline_access" {
		t.Fatalf("%+v %v", r, err)
	}
	if revs, err := dst.Revocations(ctx, time.Time{}, time.Now()); err != nil || len(revs) != 1 {
		t.Fatalf("%+v %v", revs, err)
	}
	// The current layout exports the same way (ExportFile finds authz_*).
	again, err := sqlitestore.ExportFile(ctx, filepath.Join(dir, "fhirgate.db"))
	if err != nil || again.Len() != 7 {
		t.Fatalf("%d records (%v)", again.Len(), err)
	}
	// A file with neither layout is an empty snapshot; no file is an error
	// (and is not created).
	if err := os.WriteFile(filepath.Join(dir, "empty.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	empty, err := sqlitestore.ExportFile(ctx, filepath.Join(dir, "empty.db"))
	if err != nil || empty.Len() != 0 {
		t.Fatalf("%+v %v", empty, err)
	}
	if _, err := sqlitestore.ExportFile(ctx, filepath.Join(dir, "none.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.db")); err == nil {
		t.Fatal("ExportFile created the missing file")
	}
}

func BenchmarkRotate(b *testing.B) {
	s, err := sqlitestore.Open(context.Background(), filepath.Join(b.TempDir(), "fhirgate.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storagetest.BenchRotate(b, s)
}
