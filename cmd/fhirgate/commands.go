package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/fhir/gen"
	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// token prints an access token signed by the development issuer
// (development only: the issuer is off when FHIRGATE_OIDC_ISSUER is set).
func token(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	scope := fs.String("scope", "", "space-separated SMART scopes, e.g. 'patient/*.rs' (required)")
	patient := fs.String("patient", "", "patient launch context (id)")
	fhirUser := fs.String("fhir-user", "", "fhirUser, e.g. Practitioner/1 or RelatedPerson/9")
	client := fs.String("client", "fhirgate-dev", "client id")
	subject := fs.String("subject", "", "subject (default: fhirUser or client)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	dataDir := fs.String("data-dir", env("FHIRGATE_DATA_DIR", "./data"), "data directory holding the development issuer key")
	base := fs.String("base-url", env("FHIRGATE_BASE_URL", "http://localhost:8080/fhir"), "public FHIR base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *scope == "" {
		return fmt.Errorf("token: --scope is required (e.g. --scope 'system/*.cruds')")
	}
	if env("FHIRGATE_OIDC_ISSUER", "") != "" {
		return fmt.Errorf("token: FHIRGATE_OIDC_ISSUER is set, so the development issuer is off; get a token from your OpenID provider")
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return fmt.Errorf("token: --ttl must be between 1s and 720h")
	}
	b := strings.TrimRight(*base, "/")
	aud := env("FHIRGATE_OIDC_AUDIENCE", b)
	iss, err := devissuer.New(devissuer.Config{DataDir: *dataDir, Origin: app.OriginOf(b), Audience: aud, Path: authz.PathPrefix})
	if err != nil {
		return err
	}
	tok, err := iss.Mint(devissuer.MintOptions{Scope: *scope, Patient: *patient, FHIRUser: *fhirUser, Client: *client, Subject: *subject, TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// reindex re-extracts search values of every stored resource after the
// search definitions change, and with --release recomputes release state
// under the current policy (clinician $release/$hold decisions are kept).
// Run it while the server is stopped when using the embedded store.
func reindex(ctx context.Context, args []string) error {
	var release bool
	var rest []string
	for _, a := range args {
		if a == "--release" || a == "-release" {
			release = true
			continue
		}
		rest = append(rest, a)
	}
	c, err := parseConfig(rest)
	if err != nil {
		return err
	}
	log := newLogger(c)
	o := appOptions(c, log)
	o.AuthDisabled = true
	a, err := app.New(ctx, o)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	n, err := a.Reindex(ctx, release)
	if err != nil {
		return err
	}
	log.Info("reindex done", "resources", n, "release", release)
	return nil
}

// genCmd writes a generated, realistic data set as transaction Bundles.
func genCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	patients := fs.Int("patients", 10, "number of patients")
	seed := fs.Int64("seed", 1, "random seed (the data set is deterministic)")
	per := fs.Int("per-bundle", 1, "patients per transaction Bundle")
	out := fs.String("out", "gen-out", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *patients < 1 || *per < 1 {
		return fmt.Errorf("gen: --patients and --per-bundle must be positive")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	rs := gen.Generate(*seed, *patients, gen.Options{})
	groups := gen.ByPatient(rs, *per)
	for i, g := range groups {
		name := filepath.Join(*out, fmt.Sprintf("bundle-%05d.json", i))
		if err := os.WriteFile(name, gen.Transaction(g), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d resources in %d transaction Bundles to %s\n", len(rs), len(groups), *out)
	return nil
}
