package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/mongostore"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// Where the built-in authorization server's state (clients, accounts,
// sessions, tokens, secrets) lives: in the store's database, so a site
// backs up one thing and several fhirgate processes on one MongoDB share
// it.
//
//   - SQLite store (the default): sqlitestore's authz_* tables in the same
//     file, <data dir>/fhirgate.db.
//   - MongoDB or the embedded FerretDB: mongostore's authz_* collections in
//     the store's database (Options.Database), through a client of its own
//     on the same URI.
//   - Options.AuthzDB set: that SQLite file (":memory:" for tests).
//
// A legacy <data dir>/authz.db (where the state lived before) is imported
// once, at the first start (or admin command) that finds it.

// openAuthzStorage opens the state for o; uri is the MongoDB URI the store
// uses ("" for SQLite).
func openAuthzStorage(ctx context.Context, o Options, uri string) (authz.Storage, error) {
	var st authz.Storage
	var where string
	var err error
	switch {
	case o.AuthzDB != "":
		where = o.AuthzDB
		st, err = sqlitestore.Open(ctx, o.AuthzDB)
	case uri != "":
		where = "database " + o.Database + " (authz_* collections)"
		st, err = mongostore.Open(ctx, uri, o.Database)
	default:
		file := filepath.Join(o.DataDir, SQLiteFile)
		where = file + " (authz_* tables)"
		st, err = sqlitestore.Open(ctx, file)
	}
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if err := importLegacyAuthz(ctx, st, o.DataDir, where, logger); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// legacyImported is the secret marking that the legacy file was imported.
const legacyImported = "imported " + sqlitestore.LegacyFileName

var errNotImported = errors.New("not imported")

// importLegacyAuthz imports <dataDir>/authz.db into st once: its records
// are added (existing keys are kept, so an interrupted import runs again),
// then the marker secret is written. The legacy file is only read.
func importLegacyAuthz(ctx context.Context, st authz.Storage, dataDir, where string, log *slog.Logger) error {
	if dataDir == "" {
		return nil
	}
	legacy := filepath.Join(dataDir, sqlitestore.LegacyFileName)
	if _, err := os.Stat(legacy); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("legacy authorization database: %w", err)
	}
	switch _, err := st.Secret(ctx, legacyImported, func() ([]byte, error) { return nil, errNotImported }); {
	case err == nil:
		log.Debug("the legacy authorization database was imported before and is no longer read; it can be deleted",
			"file", legacy, "state", where)
		return nil
	case !errors.Is(err, errNotImported):
		return err
	}
	im, ok := st.(authz.Importer)
	if !ok {
		return fmt.Errorf("legacy authorization database %s: the storage cannot import it", legacy)
	}
	snap, err := sqlitestore.ExportFile(ctx, legacy)
	if err != nil {
		return fmt.Errorf("legacy authorization database: %w", err)
	}
	n, err := im.Import(ctx, snap)
	if err != nil {
		return fmt.Errorf("import legacy authorization database %s: %w", legacy, err)
	}
	if _, err := st.Secret(ctx, legacyImported, func() ([]byte, error) {
		return []byte(time.Now().UTC().Format(time.RFC3339)), nil
	}); err != nil {
		return err
	}
	log.Info("imported the legacy authorization database (clients, accounts, tokens) into the store's database; "+
		"it is no longer read and can be deleted once backed up",
		"file", legacy, "state", where, "records", snap.Len(), "added", n,
		"clients", len(snap.Clients), "accounts", len(snap.Accounts))
	return nil
}

// OpenAuthzStorage opens the built-in authorization server's state where
// New keeps it for o (the admin commands: `fhirgate client`, `invite`,
// `account`), importing a legacy authz.db as New does; release closes it.
//
// With the embedded FerretDB store the files belong to the server's
// process: the state is reached through the running server's embedded
// listener, o.EmbeddedAddr, which must then be set (FHIRGATE_EMBEDDED_ADDR,
// for the server and the command). When nothing listens there, the server
// is not running, and the store is started here on that address (which
// keeps a server from starting on the files meanwhile).
func OpenAuthzStorage(ctx context.Context, o Options) (st authz.Storage, release func(), err error) {
	if o.Database == "" {
		o.Database = "fhirgate"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.AuthzDB != "" || o.MongoURI != "":
		st, err = openAuthzStorage(ctx, o, o.MongoURI)
	case o.Store == "" || o.Store == "sqlite":
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("authorization storage: %w", err)
		}
		st, err = openAuthzStorage(ctx, o, "")
	case o.Store == "ferretdb":
		return openEmbeddedAuthz(ctx, o)
	default:
		return nil, nil, fmt.Errorf("unknown store %q (sqlite or ferretdb)", o.Store)
	}
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

func openEmbeddedAuthz(ctx context.Context, o Options) (authz.Storage, func(), error) {
	if o.EmbeddedAddr == "" {
		return nil, nil, errors.New("the embedded FerretDB store (FHIRGATE_STORE=ferretdb) is opened by the running server only: " +
			"set FHIRGATE_EMBEDDED_ADDR (e.g. 127.0.0.1:27018) for the server and for this command, which then reaches " +
			"the store through the server (or, with the server stopped, opens it on that address itself)")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	if c, err := d.DialContext(ctx, "tcp", o.EmbeddedAddr); err == nil {
		c.Close()
		st, err := openAuthzStorage(ctx, o, "mongodb://"+o.EmbeddedAddr+"/")
		if err != nil {
			return nil, nil, fmt.Errorf("the running server's embedded store at %s: %w", o.EmbeddedAddr, err)
		}
		return st, func() { st.Close() }, nil
	}
	dir := filepath.Join(o.DataDir, "ferretdb")
	srv, err := embedded.Start(ctx, dir, o.EmbeddedAddr, o.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("no server listens on FHIRGATE_EMBEDDED_ADDR %s, and the embedded store could not start there: %w", o.EmbeddedAddr, err)
	}
	st, err := openAuthzStorage(ctx, o, srv.URI)
	if err == nil {
		err = srv.IndexIDs(ctx, o.Database)
		if err != nil {
			st.Close()
		}
	}
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	return st, func() { st.Close(); srv.Stop() }, nil
}
