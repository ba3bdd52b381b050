package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store/migrate"

	"github.com/fhirgate/fhirgate/authz/mongostore"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// migrateOut receives the migration's progress and counts (tests swap it).
var migrateOut io.Writer = os.Stdout

// migrateCmd moves the embedded FerretDB store of the data directory (the
// former default) into the SQLite store (store/migrate; README.md,
// "Migrating from the FerretDB default"):
//
//	fhirgate migrate [--data-dir DIR] [--from ferretdb] [--dry-run] [--force] [server flags]
//
// The server flags that shape stored data apply as they do to serve:
// --search-parameters and --base-url (search values are derived again),
// --database (the FerretDB database). Run it while fhirgate is stopped.
func migrateCmd(ctx context.Context, args []string) error {
	var dryRun, force bool
	from := "ferretdb"
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		switch name {
		case "dry-run", "force":
			b := true
			if hasVal {
				switch val {
				case "true", "1":
				case "false", "0":
					b = false
				default:
					return fmt.Errorf("migrate: --%s=%q is not true or false", name, val)
				}
			}
			if name == "dry-run" {
				dryRun = b
			} else {
				force = b
			}
		case "from":
			if !hasVal {
				if i+1 >= len(args) {
					return fmt.Errorf("migrate: --from needs a value (ferretdb)")
				}
				i++
				val = args[i]
			}
			from = val
		default:
			rest = append(rest, a)
		}
	}
	if from != "ferretdb" {
		return fmt.Errorf("migrate: --from %q: only ferretdb (the former embedded default) can be migrated", from)
	}
	c, err := parseConfig(rest)
	if err != nil {
		return err
	}
	reg, err := serverRegistry(c)
	if err != nil {
		return err
	}
	// An interrupt ends the migration cleanly: the partial target and
	// the snapshot are removed.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = migrate.Run(ctx, migrate.Options{
		DataDir: c.DataDir, Database: c.Database, Registry: reg,
		DryRun: dryRun, Force: force, Out: migrateOut, Logger: newLogger(c),
		Carry: carryAuthz,
	})
	return err
}

// carryAuthz copies the authorization server's state (accounts, clients,
// grants, server secrets: authz_* collections, authz/mongostore) of the
// FerretDB database into the new SQLite file (authz/sqlitestore).
func carryAuthz(ctx context.Context, src *mongo.Database, target string) (string, error) {
	ms, err := mongostore.New(ctx, src)
	if err != nil {
		return "", fmt.Errorf("authorization server state: %w", err)
	}
	snap, err := ms.Export(ctx)
	if err != nil {
		return "", fmt.Errorf("authorization server state: %w", err)
	}
	st, err := sqlitestore.Open(ctx, target)
	if err != nil {
		return "", fmt.Errorf("authorization server state: %w", err)
	}
	defer st.Close()
	n, err := st.Import(ctx, snap)
	if err != nil {
		return "", fmt.Errorf("authorization server state: %w", err)
	}
	if n == 0 {
		return "", nil
	}
	return fmt.Sprintf("authorization server state: %d records copied (accounts, clients, grants, secrets)", n), nil
}

// serverRegistry is the search registry the server builds from c
// (internal/app.New): the default parameters, the custom ones, the base URL.
func serverRegistry(c *config) (*search.Registry, error) {
	reg := search.Default()
	if c.SearchParams != "" {
		b, err := os.ReadFile(c.SearchParams)
		if err != nil {
			return nil, fmt.Errorf("search parameters: %w", err)
		}
		if reg, err = search.LoadCustom(reg, b); err != nil {
			return nil, fmt.Errorf("search parameters %s: %w", c.SearchParams, err)
		}
	}
	return reg.WithBase(c.BaseURL), nil
}
