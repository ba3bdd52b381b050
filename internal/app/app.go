// Package app wires fhirgate's parts into a running server: store
// (SQLite, embedded FerretDB or MongoDB), search registry, validator, SMART
// verification (or the development issuer), release policy, audit trail,
// the pipeline and the HTTP adapter. cmd/fhirgate and the end-to-end tests
// share it, so tests run exactly what ships.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/conformance"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/rest"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/portal/usage"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/smart/devissuer"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/mongo"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// Options configure an App.
type Options struct {
	BaseURL  string
	MongoURI string // empty: an embedded store under DataDir (Store)
	// Store selects the embedded store when MongoURI is empty: "" or
	// "sqlite" (store/sqlite, <DataDir>/fhirgate.db), "ferretdb" (FerretDB
	// in-process under <DataDir>/ferretdb, through store/mongo).
	Store string
	// SQLiteSynchronous is the SQLite store's durability (sqlite.Options
	// Synchronous): "" or "full", or "normal".
	SQLiteSynchronous string
	// EmbeddedAddr is the embedded store's listen address ("" = a free port).
	EmbeddedAddr string
	DataDir      string
	Database     string
	MaxBody      int64
	// MaxEntries bounds Bundle entries (default 10,000).
	MaxEntries int

	// Issuers are trusted OpenID issuers; empty: the built-in authorization server.
	Issuers       []string
	Audience      string
	Introspection smart.Config // only the Introspection* and claim fields are read
	AuthDisabled  bool

	// AuthServer configures the built-in authorization server, on when
	// Issuers is empty (Federation, lifetimes, throttling, Password are
	// read; the rest is wired here). Its state lives in the store's
	// database (OpenAuthzStorage); AuthzDB, when set, is a SQLite file
	// to keep it in instead (":memory:" for tests).
	AuthServer authz.Config
	AuthzDB    string

	PolicyFile   string
	SearchParams string
	Proxy        smart.ProxyConfig
	AuditQueue   int
	Visit        VisitOptions    // eVisit invitations (visit.go)
	Notify       NotifyOptions   // notifications (notify.go)
	Workflow     WorkflowOptions // eConsult/eReferral and correction Tasks (workflow.go)
	Booking      BookingOptions  // online booking (booking.go)
	Export       ExportOptions   // $everything and Bulk Data export (export.go)
	Usage        UsageOptions    // usage reporting and metrics (usage.go)

	Now    func() time.Time
	Logger *slog.Logger
	// HTTPClient for OIDC discovery/JWKS (tests inject one).
	HTTPClient *http.Client
}

// App is a wired fhirgate.
type App struct {
	Opt       Options
	Store     store.Store
	Server    *server.Server
	Handler   http.Handler
	Registry  *search.Registry
	Audit     *audit.Logger
	DevIssuer *devissuer.Issuer
	Verifier  *smart.Verifier
	embedded  *embedded.Server
	stopWatch context.CancelFunc
	stopWarm  context.CancelFunc

	// Authz is the built-in authorization server (nil with external issuers).
	Authz      *authz.Server
	AuthzStore authz.Storage
	Notify     *Notifier // notifications (notify.go)
	// auditDirect: the registry's AuditEvent parameters are the default
	// ones, so AuditEvents are indexed from the event (audit.BuildIndexed).
	auditDirect bool
	visit       visitParts     // eVisit invitations (visit.go)
	usage       *usage.Service // usage reporting (usage.go)
	// closers stop the portal services (Close runs them before the audit
	// flush and the store's close).
	closers []func()
}

// DevIssuerPath is where the development issuer is served.
const DevIssuerPath = devissuer.PathPrefix

// New builds and starts every part (but not the HTTP listener).
func New(ctx context.Context, o Options) (_ *App, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Database == "" {
		o.Database = "fhirgate"
	}
	if o.Audience == "" {
		o.Audience = o.BaseURL
	}
	a := &App{Opt: o}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}

	reg, err := withSubscriptionParams(search.Default()) // subscriptions.go
	if err != nil {
		return nil, err
	}
	// The portal services' own search parameters (workflow.go, booking.go).
	for _, with := range []func(*search.Registry) (*search.Registry, error){withWorkflowParams, withBookingParams} {
		if reg, err = with(reg); err != nil {
			return nil, err
		}
	}
	if o.SearchParams != "" {
		b, err := os.ReadFile(o.SearchParams)
		if err != nil {
			return nil, fmt.Errorf("search parameters: %w", err)
		}
		if reg, err = search.LoadCustom(reg, b); err != nil {
			return nil, fmt.Errorf("search parameters %s: %w", o.SearchParams, err)
		}
	}
	reg = reg.WithBase(o.BaseURL)
	a.Registry = reg
	// Custom AuditEvent parameters: index AuditEvents by evaluating them.
	a.auditDirect = reg.SameParams(search.Default(), "AuditEvent")

	val, err := validate.New()
	if err != nil {
		return nil, fmt.Errorf("validator: %w", err)
	}
	// Compile every type's schema in the background: start-up stays fast,
	// and the first write of a type does not pay the compile.
	warmCtx, stopWarm := context.WithCancel(context.Background())
	a.stopWarm = stopWarm
	go val.Warm(warmCtx)

	var pol *policy.Policy
	if o.PolicyFile != "" {
		if pol, err = policy.Load(o.PolicyFile); err != nil {
			return nil, err
		}
		pol.Now = o.Now
	}

	a.Audit = audit.NewLogger(a.auditSink, audit.Options{QueueSize: o.AuditQueue, Logger: o.Logger})

	var decider *smart.Decider
	var endpoints *conformance.Endpoints
	if !o.AuthDisabled {
		decider = &smart.Decider{
			CompileQuery: func(typ string, q url.Values) (search.Expr, error) {
				p, err := reg.Parse(typ, q, search.ParseOptions{Strict: true, Now: o.Now, Base: o.BaseURL})
				if err != nil {
					return nil, engine.AsFHIR(err)
				}
				if len(p.Chains) > 0 || len(p.Has) > 0 {
					return nil, errors.New("chained and _has parameters are not allowed in scopes")
				}
				return p.Filter, nil
			},
			PatientFree:     func(typ string) bool { return search.PatientFree[typ] },
			SensitiveLabels: o.Proxy.SensitiveLabels,
			Now:             o.Now,
		}
		issuers := o.Issuers
		if len(issuers) == 0 {
			origin := OriginOf(o.BaseURL)
			a.DevIssuer, err = devissuer.New(devissuer.Config{
				DataDir: o.DataDir, Origin: origin, Audience: o.Audience, Now: o.Now, Path: authz.PathPrefix,
			})
			if err != nil {
				return nil, fmt.Errorf("development issuer: %w", err)
			}
			if err := a.startAuthz(ctx, origin); err != nil {
				return nil, err
			}
			issuers = []string{a.Authz.Issuer()}
			o.Logger.Info("no FHIRGATE_OIDC_ISSUER set: the built-in authorization server issues tokens", "issuer", issuers[0])
		}
		vc := o.Introspection
		vc.Issuers, vc.Audience, vc.Now, vc.HTTPClient = issuers, o.Audience, o.Now, o.HTTPClient
		if a.Authz != nil {
			var next http.RoundTripper
			if o.HTTPClient != nil {
				next = o.HTTPClient.Transport
			}
			vc.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: a.Authz.Transport(next)}
		}
		a.Verifier, err = smart.NewVerifier(ctx, vc)
		if err != nil {
			return nil, err
		}
		endpoints = &conformance.Endpoints{Issuer: issuers[0]}
		if a.Authz != nil {
			e := a.Authz.Endpoints()
			endpoints = &e
		}
	} else {
		o.Logger.Warn("AUTHORIZATION IS DISABLED (FHIRGATE_AUTH_DISABLED): every caller can read and write everything")
	}

	var capabilities []byte
	ops := make([]conformance.Operation, len(server.Operations))
	for i, op := range server.Operations {
		ops[i] = conformance.Operation{Name: op.Name, Definition: op.Definition, Doc: op.Doc, Types: op.Types}
	}
	a.Server = server.New(server.Config{
		Store: a.Store, Registry: reg, Validator: val, Decider: decider, Proxy: o.Proxy,
		AuthDisabled: o.AuthDisabled, Audit: a.Audit, Base: o.BaseURL, Now: o.Now, Logger: o.Logger,
		MaxEntries: o.MaxEntries, MaxBody: o.MaxBody,
		Capabilities: func() []byte { return capabilities },
	})
	a.Server.SetPolicy(pol)
	if err := a.applyPolicyIfChanged(ctx); err != nil {
		return nil, err
	}
	secEndpoints := func(ctx context.Context) *conformance.Endpoints {
		if endpoints == nil {
			return nil
		}
		e := *endpoints
		if ep, err := a.Verifier.Endpoints(ctx); err == nil {
			e = conformance.Endpoints{Issuer: ep.Issuer, JWKSURI: ep.JWKSURI, Authorization: ep.AuthorizationEndpoint,
				Token: ep.TokenEndpoint, Introspection: ep.IntrospectionEndpoint, Revocation: ep.RevocationEndpoint,
				Registration: ep.RegistrationEndpoint}
		}
		return &e
	}
	if o.PolicyFile != "" {
		wctx, cancel := context.WithCancel(context.Background())
		a.stopWatch = cancel
		go policy.Watch(wctx, o.PolicyFile, 5*time.Second, func(p *policy.Policy) {
			p.Now = o.Now
			a.Server.SetPolicy(p)
			o.Logger.Info("release policy reloaded; recomputing stored release states", "file", o.PolicyFile, "hash", p.Hash())
			if err := a.applyPolicyIfChanged(wctx); err != nil {
				o.Logger.Error("release states not recomputed; run fhirgate reindex --release", "err", err)
			}
		}, func(err error) {
			o.Logger.Error("release policy not reloaded; keeping the previous one", "file", o.PolicyFile, "err", err)
		})
	}

	extra := map[string]http.Handler{}
	if err := a.startVisit(ctx, extra); err != nil {
		return nil, err
	}
	// The portal and integration services (portal/...): each registers its
	// operations and write hooks on the pipeline and its pages in extra.
	for _, start := range []func(context.Context, map[string]http.Handler) error{
		a.startWorkflow, // workflow.go: eConsult/eReferral and correction Tasks
		a.startBooking,  // booking.go: online appointment booking
		a.startExport,   // export.go: Patient/$everything, Bulk Data $export
		a.startUsage,    // usage.go: $usage, Prometheus metrics
	} {
		if err := start(ctx, extra); err != nil {
			return nil, err
		}
	}
	var verifier rest.Verifier
	if a.Verifier != nil {
		verifier = a.Verifier
	}
	if a.Authz != nil {
		extra[authz.PathPrefix] = a.Authz
		verifier = a.Authz.CheckRevocation(a.Verifier) // revoked tokens are refused on the next request
	}
	a.Handler = authz.CORS(rest.New(rest.Config{
		Pipeline: a.Server, Verifier: verifier, MaxBody: o.MaxBody, Logger: o.Logger,
		Ready: a.Store.Ping,
		SmartConfiguration: func(ctx context.Context) ([]byte, error) {
			e := secEndpoints(ctx)
			if e == nil {
				return nil, fhir.Errorf(fhir.KindNotFound, "authorization is disabled on this server")
			}
			if a.Authz != nil {
				return a.Authz.SmartConfiguration(), nil
			}
			return conformance.SmartConfiguration(*e), nil
		},
		Extra: extra,
	}))
	a.Handler = a.instrument(a.Handler) // usage.go: request metrics
	if err := a.startNotify(ctx); err != nil {
		return nil, err
	}
	// The CapabilityStatement, once every operation is registered: the
	// pipeline's table, then the ones the services above added.
	for _, op := range a.Server.ExtraOperations() {
		ops = appendOperation(ops, op)
	}
	capabilities = conformance.CapabilityStatement(conformance.Options{Base: o.BaseURL, Registry: reg, Operations: ops, Security: endpoints})
	return a, nil
}

// register installs a service on the pipeline: its write hook on typ
// (none when hook is nil) and its operations.
func (a *App) register(typ string, hook server.WriteHook, ops []server.ExtraOperation) {
	if hook != nil {
		a.Server.RegisterWriteHook(typ, hook)
	}
	for _, op := range ops {
		a.Server.RegisterOperation(op)
	}
}

// appendOperation adds a registered operation to the CapabilityStatement's
// list, one entry per name with the types it runs on.
func appendOperation(ops []conformance.Operation, op server.ExtraOperation) []conformance.Operation {
	name := strings.TrimPrefix(op.Name, "$")
	if op.Level == server.SystemLevel {
		return append(ops, conformance.Operation{Name: name, Definition: op.Definition, Doc: op.Doc, System: true})
	}
	for i := range ops {
		if ops[i].Name == name && ops[i].System {
			continue
		}
		if ops[i].Name == name && len(ops[i].Types) > 0 {
			ops[i].Types = append(ops[i].Types, op.Type)
			return ops
		}
	}
	return append(ops, conformance.Operation{Name: name, Definition: op.Definition, Doc: op.Doc, Types: []string{op.Type}})
}

// SQLiteFile is the SQLite store's file in the data directory.
const SQLiteFile = "fhirgate.db"

// openStore opens the store Options select: MongoDB (MongoURI), the
// embedded FerretDB (Store "ferretdb"), or SQLite (the default).
func (a *App) openStore(ctx context.Context) (err error) {
	o := a.Opt
	if o.MongoURI == "" && o.Store != "ferretdb" {
		if o.Store != "" && o.Store != "sqlite" {
			return fmt.Errorf("unknown store %q (sqlite or ferretdb)", o.Store)
		}
		file := filepath.Join(o.DataDir, SQLiteFile)
		ferret := filepath.Join(o.DataDir, "ferretdb")
		if fi, err := os.Stat(ferret); err == nil && fi.IsDir() {
			// store/migrate writes the marker "ferretdb.migrated" ("migrated <date>").
			var when string
			if b, err := os.ReadFile(filepath.Join(o.DataDir, "ferretdb.migrated")); err == nil {
				_, _ = fmt.Sscanf(string(b), "migrated %s", &when)
			}
			if when != "" {
				o.Logger.Warn("the embedded FerretDB store of the data directory was migrated to SQLite on "+when+
					"; remove "+ferret+" when satisfied", "ferretdb", ferret, "sqlite", file)
			} else {
				o.Logger.Warn("the data directory holds an embedded FerretDB store, which is no longer the default, "+
					"and this server serves the SQLite store instead. Stop it and run `fhirgate migrate` to move the FerretDB "+
					"data into SQLite (or set FHIRGATE_STORE=ferretdb, --store ferretdb, to keep serving it)", "ferretdb", ferret, "sqlite", file)
			}
		}
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		s, err := sqlite.Open(ctx, file, sqlite.Options{Now: o.Now, Logger: o.Logger, Synchronous: o.SQLiteSynchronous})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		a.Store = s
		o.Logger.Info("SQLite store opened", "file", file)
		return nil
	}
	uri := o.MongoURI
	if uri == "" {
		a.embedded, err = embedded.Start(ctx, filepath.Join(o.DataDir, "ferretdb"), o.EmbeddedAddr, o.Logger)
		if err != nil {
			return err
		}
		uri = a.embedded.URI
		o.Logger.Info("embedded store started", "dir", filepath.Join(o.DataDir, "ferretdb"), "uri", a.embedded.URI)
	}
	mopts := mongo.Options{Now: o.Now, Logger: o.Logger, RecoverAll: o.MongoURI == "", IndexedIDs: o.MongoURI == ""}
	if a.embedded != nil {
		// Each resource type's new tables get the _id index (IndexIDs).
		srv := a.embedded
		mopts.OnNewCollection = func(ctx context.Context) error { return srv.IndexIDs(ctx, o.Database) }
	}
	ms, err := mongo.Open(ctx, uri, o.Database, mopts)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.Store = ms
	if err := ms.EnsureCollections(ctx); err != nil {
		return err
	}
	if a.embedded != nil {
		if err := a.embedded.IndexIDs(ctx, o.Database); err != nil {
			return err
		}
	}
	return nil
}

// startAuthz opens the authorization server's state in the store's
// database and starts it, signing with the development issuer's key (one
// key for both, so `fhirgate token` tokens verify too).
func (a *App) startAuthz(ctx context.Context, origin string) error {
	o := a.Opt
	uri := o.MongoURI
	if a.embedded != nil {
		uri = a.embedded.URI
	}
	st, err := openAuthzStorage(ctx, o, uri)
	if err != nil {
		return fmt.Errorf("authorization server: %w", err)
	}
	a.AuthzStore = st
	if a.embedded != nil && o.AuthzDB == "" {
		// The authz_* collections get the embedded store's _id index too.
		if err := a.embedded.IndexIDs(ctx, o.Database); err != nil {
			return fmt.Errorf("authorization server: %w", err)
		}
	}
	c := o.AuthServer
	c.Storage, c.Signer, c.Origin, c.BaseURL, c.Audience = st, a.DevIssuer, origin, o.BaseURL, o.Audience
	c.FHIR, c.Proxy, c.Audit, c.Now, c.Logger = a.Store, o.Proxy, a.Audit, o.Now, o.Logger
	if c.HTTPClient == nil {
		c.HTTPClient = o.HTTPClient
	}
	a.Authz, err = authz.New(ctx, c)
	if err != nil {
		return fmt.Errorf("authorization server: %w", err)
	}
	return nil
}

// OriginOf is the scheme://host of a base URL (the development issuer lives there).
func OriginOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	return u.Scheme + "://" + u.Host
}

// auditSink stores audit events as AuditEvent resources (indexed, so a
// patient can search "who looked at my record").
func (a *App) auditSink(ctx context.Context, events []audit.Event) error {
	recs := make([]store.Record, 0, len(events))
	for _, e := range events {
		id := e.ID
		if id == "" {
			id = server.NewID()
		}
		now := a.Opt.Now().UTC().Truncate(time.Millisecond)
		var rec store.Record
		if a.auditDirect {
			// The search values straight from the event (audit.BuildIndexed).
			raw, idx := audit.BuildIndexed(e, id, now, a.Registry.NewBuilder("AuditEvent"))
			rec = store.Record{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: now, Raw: raw, Index: idx}
		} else {
			raw, tree := audit.BuildVersion(e, id, now)
			var err error
			if rec, err = a.Server.Indexed("AuditEvent", id, 1, now, raw, tree); err != nil {
				return fmt.Errorf("audit: build event: %w", err)
			}
		}
		rec.Release = store.Release{Patient: e.HeldUntilPatient, Proxy: e.HeldUntilProxy}
		if a.Server.RecheckHeld(e.Seq) {
			// A $hold ran while or after this request: what it saw may be
			// held now, so the event takes the state of what it names.
			now := a.Server.HeldUntil(ctx, e.Resources)
			if now.Patient.After(rec.Release.Patient) {
				rec.Release.Patient = now.Patient
			}
			if now.Proxy.After(rec.Release.Proxy) {
				rec.Release.Proxy = now.Proxy
			}
		}
		if !rec.Release.Patient.IsZero() || !rec.Release.Proxy.IsZero() {
			rec.Release.State = "follows-subject"
		}
		recs = append(recs, rec)
	}
	// One Append for the batch: no journal, as no event needs
	// all-or-nothing with the others of its batch. Should it fail, each
	// event on its own, so one bad event cannot take the others with it
	// (a conflict is an event stored already).
	err := a.Store.Append(ctx, recs)
	if err == nil || errors.Is(err, store.ErrConflict) {
		return nil
	}
	var errs []error
	for _, r := range recs {
		if err := a.Store.Append(ctx, []store.Record{r}); err != nil && !errors.Is(err, store.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops everything: audit flush first (it writes to the store).
func (a *App) Close(ctx context.Context) {
	if a.stopWatch != nil {
		a.stopWatch()
	}
	if a.stopWarm != nil {
		a.stopWarm()
	}
	if a.Authz != nil {
		a.Authz.Close()
	}
	a.stopNotify()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]() // the portal services, last started first
	}
	if a.Audit != nil {
		if err := a.Audit.Close(ctx); err != nil {
			a.Opt.Logger.Error("audit flush failed", "err", err)
		}
	}
	if a.AuthzStore != nil {
		_ = a.AuthzStore.Close()
	}
	a.closeVisit()
	if a.Store != nil {
		_ = a.Store.Close(ctx)
	}
	if a.embedded != nil {
		a.embedded.Stop()
	}
}

// Token mints a development-issuer token (the `fhirgate token` command).
func (a *App) Token(opts devissuer.MintOptions) (string, error) {
	if a.DevIssuer == nil {
		return "", errors.New("the development issuer is off (FHIRGATE_OIDC_ISSUER is set)")
	}
	return a.DevIssuer.Mint(opts)
}
