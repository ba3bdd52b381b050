package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	"github.com/fhirgate/fhirgate/internal/app"
)

// The administration commands write the authorization server's database.
func TestAdminCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("FHIRGATE_OIDC_ISSUER", "")
	for _, args := range [][]string{
		{"client", "add", "--data-dir", dir, "--id", "app", "--type", "public", "--redirect-uri", "https://app.example/cb", "--name", "App"},
		{"client", "add", "--data-dir", dir, "--id", "portal", "--type", "symmetric", "--redirect-uri", "https://portal.example/cb,https://portal.example/cb2"},
		{"client", "list", "--data-dir", dir},
		{"invite", "--data-dir", dir, "--fhir-user", "RelatedPerson/mum", "--ttl", "24h", "--by", "desk"},
		{"account", "add", "--data-dir", dir, "--username", "Dev", "--password", "development password", "--fhir-user", "Patient/1"},
		{"account", "totp", "--data-dir", dir, "dev"},
		{"account", "disable", "--data-dir", dir, "dev"},
		{"account", "list", "--data-dir", dir},
		{"client", "remove", "--data-dir", dir, "--id", "app"},
	} {
		if err := run(ctx, args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	for _, args := range [][]string{
		{"client", "add", "--data-dir", dir, "--id", "emr", "--type", "backend", "--scope", "system/*.rs"}, // no JWKS
		{"client", "add", "--data-dir", dir, "--id", "x", "--type", "public", "--redirect-uri", "http://evil.example/cb"},
		{"invite", "--data-dir", dir, "--fhir-user", "Observation/1"},
		{"account", "add", "--data-dir", dir, "--username", "u", "--password", "short", "--fhir-user", "Patient/1"},
	} {
		if err := run(ctx, args); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	// The state is in the SQLite store's file.
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, app.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.GetClient(ctx, "portal")
	if err != nil || c.SecretHash == "" || len(c.RedirectURIs) != 2 {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := st.GetClient(ctx, "app"); err == nil {
		t.Fatal("removed client remains")
	}
	a, err := st.AccountByUsername(ctx, "dev")
	if err != nil || !a.Disabled || a.TOTPSecret == "" || a.FHIRUser != "Patient/1" {
		t.Fatalf("%+v %v", a, err)
	}
}

// A legacy <data dir>/authz.db is imported by the first command (or
// server start) that finds it, once.
func TestAdminImportsLegacyAuthzDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("FHIRGATE_OIDC_ISSUER", "")
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
	if err := run(ctx, []string{"client", "remove", "--data-dir", dir, "--id", "old-app"}); err != nil {
		t.Fatalf("the legacy client is not in the store: %v", err)
	}
	// Once: a second command does not bring the removed client back.
	if err := run(ctx, []string{"client", "list", "--data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, app.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.GetClient(ctx, "old-app"); err != authz.ErrNotFound {
		t.Fatalf("the legacy file was imported again: %v", err)
	}
}

// With the embedded FerretDB the commands reach the state through the
// running server's embedded address, or open the store there themselves
// when no server runs; without the address they say what to set.
func TestAdminOnEmbeddedFerretDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("FHIRGATE_OIDC_ISSUER", "")
	t.Setenv("FHIRGATE_EMBEDDED_ADDR", "")
	err := run(ctx, []string{"client", "list", "--data-dir", dir, "--store", "ferretdb"})
	if err == nil || !strings.Contains(err.Error(), "FHIRGATE_EMBEDDED_ADDR") {
		t.Fatalf("without an embedded address: %v", err)
	}
	addr := freeAddr(t)
	store := []string{"--data-dir", dir, "--store", "ferretdb", "--embedded-addr", addr}
	// No server: the command opens the store on addr itself.
	if err := run(ctx, append([]string{"client", "add", "--id", "first", "--type", "public", "--redirect-uri", "https://app.example/cb"}, store...)); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, app.Options{BaseURL: "http://localhost:8080/fhir", DataDir: dir, Store: "ferretdb", EmbeddedAddr: addr,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if _, err := a.AuthzStore.GetClient(ctx, "first"); err != nil {
		t.Fatalf("the server does not see the client added while it was stopped: %v", err)
	}
	// The server runs: the command talks to its embedded store.
	if err := run(ctx, append([]string{"client", "add", "--id", "second", "--type", "public", "--redirect-uri", "https://app.example/cb"}, store...)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthzStore.GetClient(ctx, "second"); err != nil {
		t.Fatalf("the running server does not see the client: %v", err)
	}
	if err := run(ctx, append([]string{"invite", "--fhir-user", "Patient/1", "--ttl", time.Hour.String()}, store...)); err != nil {
		t.Fatal(err)
	}
}
