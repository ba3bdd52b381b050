// Package server is fhirgate's request pipeline (R4 http.html): it takes a
// fhir.Request and returns a fhir.Response, knowing nothing about HTTP, so a
// Bundle entry runs exactly like the same HTTP request. Every interaction
// goes authorize -> validate -> extract -> release state -> store -> audit.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/conformance"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Config wires a Server.
type Config struct {
	Store     store.Store
	Registry  *search.Registry
	Validator *validate.Validator
	// Decider decides SMART access; nil together with AuthDisabled.
	Decider *smart.Decider
	Proxy   smart.ProxyConfig
	// AuthDisabled turns authorization off (development and benchmarks only).
	AuthDisabled bool
	Audit        *audit.Logger // nil: no audit trail
	Base         string        // public FHIR base URL, e.g. http://localhost:8080/fhir
	Now          func() time.Time
	NewID        func() string
	Logger       *slog.Logger
	MaxEntries   int // Bundle entries (default 10,000)
	// MaxBody bounds a patched document like a request body (default
	// patch.DefaultMaxSize, 16 MiB).
	MaxBody int64
	// Capabilities renders GET metadata (conformance package); nil: 404.
	Capabilities func() []byte
}

// Server is the FHIR pipeline.
type Server struct {
	cfg    Config
	engine *engine.Engine
	policy atomic.Pointer[policy.Policy]
	// seq numbers requests in the order they start; holding counts the
	// $hold operations under way, and holdEnd is seq when the last ended
	// (RecheckHeld).
	seq, holding, holdEnd atomic.Int64
	// extra are the operations higher layers registered (RegisterOperation).
	extra map[string]ExtraOperation
	hooks map[string]WriteHook // RegisterWriteHook (subscription_hook.go)
}

// New builds a Server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = NewID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 10000
	}
	s := &Server{cfg: cfg}
	s.engine = &engine.Engine{Store: cfg.Store, Registry: cfg.Registry, Base: cfg.Base, Now: cfg.Now, MaxCount: 1000}
	return s
}

// SetPolicy installs the release policy (nil: release everything at once).
func (s *Server) SetPolicy(p *policy.Policy) { s.policy.Store(p) }

// Policy returns the active release policy.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

// Engine exposes the search engine (conformance, tests).
func (s *Server) Engine() *engine.Engine { return s.engine }

// NewID returns a new logical id (fhir.NewID: time-ordered, 80 random bits).
func NewID() string { return fhir.NewID() }

// route is a parsed Request.Path.
type route struct {
	typ, id, vid, op, compartmentType string
	history, search                   bool
}

// Handle runs one interaction. It never panics on bad input and always
// returns a Response (errors as OperationOutcome).
func (s *Server) Handle(ctx context.Context, req *fhir.Request) *fhir.Response {
	rt, err := parsePath(req.Path)
	if err != nil {
		return s.fail(ctx, req, nil, err, nil)
	}
	var c *caller
	if rt.typ == "" && rt.op == "metadata" {
		c = &caller{} // the CapabilityStatement is public (SMART App Launch)
	} else if c, err = s.caller(ctx); err != nil {
		return s.fail(ctx, req, nil, err, nil)
	}
	ctx = withCaller(ctx, c)
	x := &exchange{req: req, rt: rt, c: c, seq: s.seq.Add(1)}
	resp, err := s.dispatch(ctx, x)
	if err != nil {
		return s.fail(ctx, req, c, err, x)
	}
	s.audit(ctx, x, resp)
	return resp
}

// exchange carries one interaction's state through the pipeline and into audit.
type exchange struct {
	req         *fhir.Request
	rt          route
	c           *caller
	interaction string
	operation   string
	resources   []string
	patients    []string
	// owners[i] lists the patient compartments of resources[i].
	owners [][]string
	// held[i] is the release state of resources[i], labels[i] its security labels.
	held   []store.Release
	labels [][]string
	query  string
	seq    int64 // order of the request (Server.seq)
}

func (x *exchange) touched(recs ...store.Record) {
	for _, r := range recs {
		x.resources = append(x.resources, r.Key()+"/_history/"+itoa(r.VersionID))
		x.owners = append(x.owners, r.Index.Compartments)
		x.held = append(x.held, r.Release)
		x.labels = append(x.labels, r.Index.Security)
		for _, p := range r.Index.Compartments {
			if !contains(x.patients, p) {
				x.patients = append(x.patients, p)
			}
		}
	}
}

func parsePath(p string) (route, error) {
	p = strings.Trim(p, "/")
	var rt route
	if p == "" {
		return rt, nil
	}
	seg := strings.Split(p, "/")
	bad := func() (route, error) {
		return route{}, fhir.Errorf(fhir.KindNotFound, "no FHIR endpoint at %q", p)
	}
	switch seg[0] {
	case "metadata", "_history", "_search":
		if len(seg) != 1 {
			return bad()
		}
		rt.op = seg[0]
		return rt, nil
	}
	if !fhir.IsResourceType(seg[0]) {
		if strings.HasPrefix(seg[0], "$") {
			rt.op = seg[0]
			return rt, nil
		}
		return route{}, fhir.Errorf(fhir.KindNotFound, "resource type %q is not known", seg[0])
	}
	rt.typ = seg[0]
	if len(seg) == 1 {
		return rt, nil
	}
	switch {
	case seg[1] == "_search" && len(seg) == 2:
		rt.search = true
		return rt, nil
	case seg[1] == "_history" && len(seg) == 2:
		rt.history = true
		return rt, nil
	case strings.HasPrefix(seg[1], "$") && len(seg) == 2:
		rt.op = seg[1]
		return rt, nil
	}
	if !fhir.ValidID(seg[1]) {
		return route{}, fhir.Errorf(fhir.KindNotFound, "%q is not a valid resource id", seg[1]).At(rt.typ + ".id")
	}
	rt.id = seg[1]
	switch {
	case len(seg) == 2:
	case len(seg) == 3 && seg[2] == "_history":
		rt.history = true
	case len(seg) == 4 && seg[2] == "_history":
		rt.vid = seg[3]
	case len(seg) == 3 && strings.HasPrefix(seg[2], "$"):
		rt.op = seg[2]
	case len(seg) == 3 && (seg[2] == "*" || fhir.IsResourceType(seg[2])):
		rt.compartmentType = seg[2]
	case len(seg) == 4 && (seg[2] == "*" || fhir.IsResourceType(seg[2])) && seg[3] == "_search":
		rt.compartmentType = seg[2]
		rt.search = true
	default:
		return bad()
	}
	return rt, nil
}

func (s *Server) dispatch(ctx context.Context, x *exchange) (*fhir.Response, error) {
	req, rt := x.req, x.rt
	m := req.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	switch {
	case rt.typ == "" && rt.op == "metadata":
		x.interaction = "capabilities"
		if m != http.MethodGet {
			return nil, notAllowed(m)
		}
		return s.capabilities()
	case rt.typ == "" && rt.op == "" && m == http.MethodPost:
		return s.bundle(ctx, x)
	case rt.typ == "" && (rt.op == "" && m == http.MethodGet || rt.op == "_search" && m == http.MethodPost):
		x.interaction = "search-system"
		return s.search(ctx, x)
	case rt.typ == "" && rt.op == "_history":
		x.interaction = "history-system"
		return s.history(ctx, x)
	case rt.op != "":
		x.interaction = "operation"
		x.operation = rt.op
		x.query = req.Query.Encode()
		return s.operation(ctx, x)
	case rt.compartmentType != "":
		x.interaction = "search-type"
		if m != http.MethodGet && !(m == http.MethodPost && rt.search) {
			return nil, notAllowed(m)
		}
		return s.search(ctx, x)
	case rt.search:
		x.interaction = "search-type"
		if m != http.MethodPost {
			return nil, notAllowed(m)
		}
		return s.search(ctx, x)
	case rt.history:
		if rt.id == "" {
			x.interaction = "history-type"
		} else {
			x.interaction = "history-instance"
		}
		if m != http.MethodGet {
			return nil, notAllowed(m)
		}
		return s.history(ctx, x)
	case rt.vid != "":
		x.interaction = "vread"
		if m != http.MethodGet {
			return nil, notAllowed(m)
		}
		return s.vread(ctx, x)
	default:
		table := typeLevel
		if rt.id != "" {
			table = instanceLevel
		}
		op, ok := table[m]
		if !ok {
			return nil, notAllowed(m)
		}
		if m != http.MethodGet && m != http.MethodPost && conformance.ImmutableTypes[rt.typ] {
			return nil, fhir.Errorf(fhir.KindNotAllowed, "%s resources cannot be changed or deleted", rt.typ)
		}
		x.interaction = op.interaction
		return op.run(s, ctx, x)
	}
}

// levelOp is an interaction and the pipeline step that runs it.
type levelOp struct {
	interaction string
	run         func(*Server, context.Context, *exchange) (*fhir.Response, error)
}

// instanceLevel and typeLevel map HTTP methods to interactions (http.html).
var (
	instanceLevel = map[string]levelOp{
		http.MethodGet:    {"read", (*Server).read},
		http.MethodPut:    {"update", (*Server).update},
		http.MethodPatch:  {"patch", (*Server).patch},
		http.MethodDelete: {"delete", (*Server).delete},
	}
	typeLevel = map[string]levelOp{
		http.MethodGet:    {"search-type", (*Server).search},
		http.MethodPost:   {"create", (*Server).create},
		http.MethodPut:    {"update", (*Server).conditionalUpdate},
		http.MethodPatch:  {"patch", (*Server).conditionalPatch},
		http.MethodDelete: {"delete", (*Server).conditionalDelete},
	}
)

func notAllowed(m string) error {
	return fhir.Errorf(fhir.KindNotAllowed, "method %s is not allowed here", m)
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
