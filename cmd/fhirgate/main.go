// Command fhirgate is a FHIR R4 server and patient-portal facade.
//
//	fhirgate [serve] [flags]   start the server (default)
//	fhirgate token [flags]     print a development-issuer access token
//	fhirgate reindex [--release]  re-extract search values (and release state)
//	fhirgate migrate [--dry-run]  move the embedded FerretDB data into the SQLite store
//	fhirgate gen [flags]       write a generated data set as transaction Bundles
//	fhirgate client|invite|account ...  administer the built-in authorization server
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/smart"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fhirgate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args)
	case "token":
		return token(ctx, args)
	case "reindex":
		return reindex(ctx, args)
	case "migrate":
		return migrateCmd(ctx, args)
	case "gen":
		return genCmd(ctx, args)
	case "client":
		return clientCmd(ctx, args)
	case "invite":
		return inviteCmd(ctx, args)
	case "account":
		return accountCmd(ctx, args)
	case "help", "-h", "--help":
		fmt.Println("usage: fhirgate [serve|token|reindex|migrate|gen|client|invite|account] [flags]; fhirgate CMD -h for flags")
		return nil
	}
	return fmt.Errorf("unknown command %q (serve, token, reindex, migrate, gen, client, invite, account)", cmd)
}

func newLogger(c *config) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lv}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func appOptions(c *config, log *slog.Logger) app.Options {
	return app.Options{
		BaseURL: c.BaseURL, MongoURI: c.MongoURI, Store: c.Store, SQLiteSynchronous: c.SQLiteSync, EmbeddedAddr: c.EmbeddedAddr, DataDir: c.DataDir, Database: c.Database,
		MaxBody: c.MaxBody, MaxEntries: c.MaxEntries, Issuers: c.OIDCIssuers, Audience: c.OIDCAudience,
		Introspection: smart.Config{IntrospectionURL: c.Introspection, IntrospectionClientID: c.IntroClient,
			IntrospectionSecret: c.IntroSecret, ScopeClaim: c.ScopeClaim, PatientClaim: c.PatientClaim, FHIRUserClaim: c.FHIRUserClaim},
		AuthDisabled: c.AuthDisabled, PolicyFile: c.PolicyFile, SearchParams: c.SearchParams,
		Proxy:      smart.ProxyConfig{Relationships: c.ProxyRels, MaxChildAge: c.ProxyAge, SensitiveLabels: c.Sensitive},
		AuditQueue: c.AuditQueue, Logger: log, Notify: c.Notify, Visit: c.Visit,
		Workflow: c.Workflow, Booking: c.Booking, Export: c.Export, Usage: c.Usage,
		AuthServer: authz.Config{Federation: c.Federation, AccessTokenTTL: c.AccessTokenTTL},
	}
}

// serve runs the server until SIGINT/SIGTERM, then finishes in-flight
// requests (bounded by the shutdown grace) and flushes the audit queue.
func serve(ctx context.Context, args []string) error {
	c, err := parseConfig(args)
	if err != nil {
		return err
	}
	log := newLogger(c)
	slog.SetDefault(log)
	if os.Getenv("GOGC") == "" {
		// The server (and the embedded store in the same process)
		// allocates per request; collecting at 200% of the live heap instead
		// of 100% gave 20-25% more requests/s in fhirbench (README).
		debug.SetGCPercent(200)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, appOptions(c, log))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		a.Close(context.Background())
		return fmt.Errorf("listen %s: %w", c.Addr, err)
	}
	if c.DebugAddr != "" {
		if err := serveDebug(c.DebugAddr, log); err != nil {
			a.Close(context.Background())
			ln.Close()
			return err
		}
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("fhirgate listening", "addr", ln.Addr().String(), "base", c.BaseURL, "store", storeName(c))
	if a.Authz != nil {
		log.Info("built-in authorization server: register apps with `fhirgate client add`, people with `fhirgate invite`; development tokens: bin/fhirgate token --scope 'system/*.cruds'",
			"issuer", a.Authz.Issuer())
	}
	select {
	case err := <-errc:
		a.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "grace", c.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	a.Close(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func storeName(c *config) string {
	switch {
	case c.MongoURI != "":
		return "MongoDB"
	case c.Store == "ferretdb":
		return "embedded FerretDB in " + c.DataDir
	}
	return "SQLite in " + c.DataDir
}
