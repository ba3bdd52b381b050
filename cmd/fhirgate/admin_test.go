package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/authz/sqlitestore"
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
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, sqlitestore.FileName))
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
