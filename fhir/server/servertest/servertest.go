// Package servertest builds the FHIR pipeline (fhir/server) for package
// tests, as net/http/httptest does for handlers: a real server.New on the
// in-memory SQLite store with the StructureDefinition validator, the
// default search registry (plus custom SearchParameters) and a
// smart.Decider, a fixed clock, callers put in the context as the REST
// adapter puts them (no tokens), and requests sent without HTTP.
//
//	s, _ := servertest.New(t, servertest.Options{})
//	emr := servertest.As(t, "system/*.cruds", "", "")
//	r := servertest.Do(emr, s, "PUT", "Patient/a", `{"resourceType":"Patient","id":"a"}`)
package servertest

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// Base is the server's base URL unless Options.Base says otherwise.
const Base = "http://test/fhir"

// T0 is the clock unless Options.Now says otherwise: 2026-06-01 12:00 UTC.
var T0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Options shape the pipeline New builds; the zero value is the plain
// pipeline on a fresh store at T0.
type Options struct {
	// Now is the clock of the server, of its Decider (Grant.Until), of
	// proxy access (smart.ProxyConfig: a child's age) and of the Policy
	// (default: T0, fixed).
	Now func() time.Time
	// Store is the store to serve (default: a new in-memory SQLite store
	// opened with SQLite and closed when the test ends).
	Store store.Store
	// SQLite are the options of the default store (e.g. Now, the clock of
	// its lock leases; default time.Now).
	SQLite sqlite.Options
	// Registry is the search registry (default search.Default()).
	Registry *search.Registry
	// Params are custom SearchParameters (a SearchParameter or a Bundle of
	// them, JSON) added to Registry with search.LoadCustom; the registry
	// in use is then s.Engine().Registry.
	Params []string
	// Policy is a policy file (YAML, policy.Parse) installed with its
	// clock set to Now; "" installs none (release everything at once).
	Policy string
	// AuthDisabled turns authorization off (no Decider).
	AuthDisabled bool
	// Base is the public FHIR base URL (default Base).
	Base string
	// Audit records the audit trail (default none).
	Audit *audit.Logger
}

// New builds the pipeline and returns it with its store. It fails the
// test on any error.
func New(t testing.TB, o Options) (*server.Server, store.Store) {
	t.Helper()
	now := o.Now
	if now == nil {
		now = func() time.Time { return T0 }
	}
	st := o.Store
	if st == nil {
		st = Store(t, o.SQLite)
	}
	reg := Registry(t, o.Registry, o.Params...)
	val, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	base := o.Base
	if base == "" {
		base = Base
	}
	cfg := server.Config{Store: st, Registry: reg, Validator: val, Base: base, Now: now,
		Proxy: smart.ProxyConfig{Now: now}, AuthDisabled: o.AuthDisabled, Audit: o.Audit}
	if !o.AuthDisabled {
		cfg.Decider = Decider(reg, now)
	}
	s := server.New(cfg)
	if o.Policy != "" {
		p, err := policy.Parse([]byte(o.Policy), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		p.Now = now
		s.SetPolicy(p)
	}
	return s, st
}

// Store is a new in-memory SQLite store, closed when the test ends.
func Store(t testing.TB, o sqlite.Options) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })
	return st
}

// Registry is base (nil: search.Default()) with the custom
// SearchParameters params (search.LoadCustom).
func Registry(t testing.TB, base *search.Registry, params ...string) *search.Registry {
	t.Helper()
	reg := base
	if reg == nil {
		reg = search.Default()
	}
	for _, p := range params {
		var err error
		if reg, err = search.LoadCustom(reg, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// Decider decides SMART access as the running server does: granular
// scopes (?query) compiled by reg's strict parser, the patient-free
// types of search.PatientFree, the clock now.
func Decider(reg *search.Registry, now func() time.Time) *smart.Decider {
	return &smart.Decider{
		CompileQuery: func(typ string, q url.Values) (search.Expr, error) {
			p, err := reg.Parse(typ, q, search.ParseOptions{Strict: true})
			if err != nil {
				return nil, err
			}
			return p.Filter, nil
		},
		PatientFree: func(typ string) bool { return search.PatientFree[typ] },
		Now:         now,
	}
}

// Principal is a caller with scopes (smart.ParseScopes, SMART App Launch
// scopes-and-launch-context.html), the patient in context and fhirUser;
// its Subject is "s-"+fhirUser and its ClientID "c" (set other fields on
// the result).
func Principal(t testing.TB, scopes, patient, fhirUser string) *smart.Principal {
	t.Helper()
	sc, err := smart.ParseScopes(scopes)
	if err != nil {
		t.Fatal(err)
	}
	return &smart.Principal{Scopes: sc, Patient: patient, FHIRUser: fhirUser, Subject: "s-" + fhirUser, ClientID: "c"}
}

// As is a context carrying Principal(t, scopes, patient, fhirUser), as
// the REST adapter puts a verified token's principal.
func As(t testing.TB, scopes, patient, fhirUser string) context.Context {
	t.Helper()
	return smart.WithPrincipal(context.Background(), Principal(t, scopes, patient, fhirUser))
}

// Do sends one request to s as the caller in ctx: path is relative to the
// base and may hold a query ("Observation?code=x"); a body is sent as
// application/fhir+json; each of hdr is "Name: value".
func Do(ctx context.Context, s *server.Server, method, path, body string, hdr ...string) *fhir.Response {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "application/fhir+json")
	}
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ":")
		h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	p, q, _ := strings.Cut(path, "?")
	query, _ := url.ParseQuery(q)
	return s.Handle(ctx, &fhir.Request{Method: method, Path: p, Query: query, Header: h, Body: []byte(body), Entry: -1})
}

// Barrier returns a hook (such as a service's BeforeCommit) that holds
// each of its first n calls until all n have arrived, so that n
// concurrent writes race at that point; later calls pass at once. The
// timeout only keeps a broken run from hanging.
func Barrier(n int, timeout time.Duration) func(string) {
	var mu sync.Mutex
	arrived := 0
	open := make(chan struct{})
	return func(string) {
		mu.Lock()
		arrived++
		if arrived == n {
			close(open)
		}
		mu.Unlock()
		select {
		case <-open:
		case <-time.After(timeout):
		}
	}
}
