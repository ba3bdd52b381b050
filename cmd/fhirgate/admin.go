package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
)

// The administration commands of the built-in authorization server. They
// open the server's state where the server keeps it (app.OpenAuthzStorage),
// chosen by the same settings: the authz_* tables of <data dir>/fhirgate.db
// (SQLite: safe while the server runs), the authz_* collections of the
// MongoDB database (FHIRGATE_MONGODB_URI, FHIRGATE_DATABASE), or, with the
// embedded FerretDB (FHIRGATE_STORE=ferretdb), the running server's
// embedded store at FHIRGATE_EMBEDDED_ADDR (which must be set; with the
// server stopped the command opens the store there itself). Nothing here
// goes through the FHIR API.
//
//	fhirgate client add --id ID --type public|symmetric|asymmetric|backend [--name N]
//	        [--redirect-uri U]... [--scope S]... [--jwks FILE | --jwks-url URL] [--ehr-launch] [--invitations]
//	fhirgate client list | remove --id ID
//	fhirgate invite --fhir-user RelatedPerson/ID [--ttl 168h] [--by NAME] [--note TEXT]
//	fhirgate account list | add --username U --password P --fhir-user REF
//	        | disable U | enable U | unlock U | totp U

type multi []string

func (m *multi) String() string { return strings.Join(*m, " ") }
func (m *multi) Set(v string) error {
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		*m = append(*m, p)
	}
	return nil
}

// storeFlags are the settings that say where the state is, read as
// parseConfig reads them (flags, then FHIRGATE_* variables, then defaults).
type storeFlags struct {
	dataDir, mongoURI, store, database, embeddedAddr *string
}

func addStoreFlags(fs *flag.FlagSet) *storeFlags {
	return &storeFlags{
		dataDir:      fs.String("data-dir", env("FHIRGATE_DATA_DIR", "./data"), "data directory (FHIRGATE_DATA_DIR)"),
		mongoURI:     fs.String("mongodb-uri", env("FHIRGATE_MONGODB_URI", ""), "MongoDB URI; empty = embedded store (FHIRGATE_MONGODB_URI)"),
		store:        fs.String("store", env("FHIRGATE_STORE", ""), "embedded store without a MongoDB URI: sqlite (default) or ferretdb (FHIRGATE_STORE)"),
		database:     fs.String("database", env("FHIRGATE_DATABASE", "fhirgate"), "database name (FHIRGATE_DATABASE)"),
		embeddedAddr: fs.String("embedded-addr", env("FHIRGATE_EMBEDDED_ADDR", ""), "the server's embedded store address, needed with FHIRGATE_STORE=ferretdb (FHIRGATE_EMBEDDED_ADDR)"),
	}
}

// open opens the authorization server's state; release closes it.
func (f *storeFlags) open(ctx context.Context) (authz.Storage, func(), error) {
	if env("FHIRGATE_OIDC_ISSUER", "") != "" {
		fmt.Fprintln(os.Stderr, "fhirgate: note: FHIRGATE_OIDC_ISSUER is set, so the built-in authorization server is off")
	}
	st := strings.ToLower(*f.store)
	switch {
	case *f.mongoURI != "" && !strings.HasPrefix(*f.mongoURI, "mongodb://") && !strings.HasPrefix(*f.mongoURI, "mongodb+srv://"):
		return nil, nil, errors.New("FHIRGATE_MONGODB_URI: must start with mongodb:// or mongodb+srv://")
	case st != "" && st != "sqlite" && st != "ferretdb":
		return nil, nil, fmt.Errorf("FHIRGATE_STORE: %q is not sqlite or ferretdb", st)
	case st != "" && *f.mongoURI != "":
		return nil, nil, fmt.Errorf("FHIRGATE_STORE: %s is an embedded store; FHIRGATE_MONGODB_URI selects MongoDB instead", st)
	case *f.dataDir == "":
		return nil, nil, errors.New("FHIRGATE_DATA_DIR: must not be empty")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)) // the one-time import of a legacy authz.db says so
	return app.OpenAuthzStorage(ctx, app.Options{DataDir: *f.dataDir, MongoURI: *f.mongoURI, Store: st, Database: *f.database,
		EmbeddedAddr: *f.embeddedAddr, Logger: log})
}

func clientCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("client: add, list or remove")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("client "+sub, flag.ContinueOnError)
	where := addStoreFlags(fs)
	var spec authz.ClientSpec
	var redirects, scopes multi
	var jwksFile string
	fs.StringVar(&spec.ID, "id", "", "client_id (required)")
	if sub == "add" {
		fs.StringVar(&spec.Name, "name", "", "name shown to users on the approval page")
		fs.StringVar(&spec.Type, "type", "", "public (PKCE only), symmetric (secret), asymmetric (private_key_jwt) or backend (client_credentials + private_key_jwt)")
		fs.Var(&redirects, "redirect-uri", "redirect URI, matched exactly (repeatable)")
		fs.Var(&scopes, "scope", "scopes the client may be granted (repeatable; required for backend, e.g. system/*.rs)")
		fs.StringVar(&jwksFile, "jwks", "", "file with the client's public JWKS (private_key_jwt)")
		fs.StringVar(&spec.JWKSURL, "jwks-url", "", "URL of the client's public JWKS (private_key_jwt)")
		fs.BoolVar(&spec.EHRLaunch, "ehr-launch", false, "the client may create EHR launch contexts (POST /auth/launch)")
		fs.BoolVar(&spec.Invitations, "invitations", false, "the client may issue registration invitations (POST /auth/invitations): the registration desk's system")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, release, err := where.open(ctx)
	if err != nil {
		return err
	}
	defer release()
	now := time.Now()
	switch sub {
	case "add":
		spec.RedirectURIs, spec.Scopes = redirects, scopes
		if jwksFile != "" {
			b, err := os.ReadFile(jwksFile)
			if err != nil {
				return err
			}
			spec.JWKS = string(b)
		}
		c, secret, err := authz.AddClient(ctx, st, spec, now)
		if err != nil {
			return err
		}
		fmt.Printf("client %s registered (%s, %s)\n", c.ID, c.AuthMethod, strings.Join(c.GrantTypes, ", "))
		if secret != "" {
			fmt.Printf("client_secret: %s\n(shown once; only its hash is stored)\n", secret)
		}
	case "list":
		cs, err := st.ListClients(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tAUTH\tGRANTS\tREDIRECT URIS\tSCOPES")
		for _, c := range cs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.AuthMethod, strings.Join(c.GrantTypes, ","),
				strings.Join(c.RedirectURIs, " "), strings.Join(c.Scopes, " "))
		}
		return w.Flush()
	case "remove":
		if spec.ID == "" {
			return errors.New("client remove: --id is required")
		}
		if err := authz.RemoveClient(ctx, st, spec.ID, now); err != nil {
			return err
		}
		fmt.Printf("client %s removed; its tokens are revoked\n", spec.ID)
	default:
		return fmt.Errorf("client: unknown subcommand %q (add, list, remove)", sub)
	}
	return nil
}

func inviteCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	where := addStoreFlags(fs)
	fhirUser := fs.String("fhir-user", "", "the person's resource: Patient/ID, RelatedPerson/ID, Person/ID or Practitioner/ID (required)")
	ttl := fs.Duration("ttl", 7*24*time.Hour, "how long the code is valid")
	by := fs.String("by", env("USER", ""), "who verified the person's identity")
	note := fs.String("note", "", "note kept with the invitation (e.g. the ID document checked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, release, err := where.open(ctx)
	if err != nil {
		return err
	}
	defer release()
	code, inv, err := authz.Invite(ctx, st, *fhirUser, *by, *note, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("invitation code for %s: %s\nvalid until %s; single use; hand it to the verified person only\n",
		inv.FHIRUser, code, inv.ExpiresAt.Format(time.RFC1123))
	return nil
}

func accountCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("account: list, add, disable, enable, unlock or totp")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("account "+sub, flag.ContinueOnError)
	where := addStoreFlags(fs)
	var username, password, fhirUser string
	if sub == "add" {
		fs.StringVar(&username, "username", "", "username")
		fs.StringVar(&password, "password", "", "password (development; people register with an invitation)")
		fs.StringVar(&fhirUser, "fhir-user", "", "Patient/ID, RelatedPerson/ID, Person/ID or Practitioner/ID")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub != "list" && sub != "add" {
		if fs.NArg() != 1 {
			return fmt.Errorf("account %s USERNAME", sub)
		}
		username = fs.Arg(0)
	}
	st, release, err := where.open(ctx)
	if err != nil {
		return err
	}
	defer release()
	now := time.Now()
	switch sub {
	case "list":
		as, err := st.ListAccounts(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "USERNAME\tFHIR USER\tLOGIN\tTOTP\tSTATE")
		for _, a := range as {
			login, state := "password", "active"
			if a.Issuer != "" {
				login = "federated " + a.Issuer
			}
			if a.Disabled {
				state = "disabled"
			} else if now.Before(a.LockedUntil) {
				state = "locked until " + a.LockedUntil.Format(time.Kitchen)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", a.Username, a.FHIRUser, login, a.TOTPSecret != "", state)
		}
		return w.Flush()
	case "add":
		if _, err := authz.CreateAccount(ctx, st, username, password, fhirUser, authz.DefaultPasswordParams, now); err != nil {
			return err
		}
		fmt.Printf("account %s created for %s\n", username, fhirUser)
	case "disable", "enable":
		if err := authz.SetAccountDisabled(ctx, st, username, sub == "disable", now); err != nil {
			return err
		}
		fmt.Printf("account %s %sd\n", username, sub)
	case "unlock":
		if err := authz.Unlock(ctx, st, username); err != nil {
			return err
		}
		fmt.Printf("account %s unlocked\n", username)
	case "totp":
		secret, uri, err := authz.EnableTOTP(ctx, st, username, "fhirgate")
		if err != nil {
			return err
		}
		fmt.Printf("TOTP enabled for %s\nsecret: %s\nURI (show as a QR code to the person): %s\n", username, secret, uri)
	default:
		return fmt.Errorf("account: unknown subcommand %q", sub)
	}
	return nil
}
