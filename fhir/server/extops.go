package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Level is where an extended operation is invoked (operations.html#levels).
type Level int

const (
	// Instance: [base]/[type]/[id]/$op (the zero value).
	Instance Level = iota
	// TypeLevel: [base]/[type]/$op.
	TypeLevel
	// SystemLevel: [base]/$op (Type is "").
	SystemLevel
)

func (l Level) String() string {
	switch l {
	case TypeLevel:
		return "type"
	case SystemLevel:
		return "system"
	}
	return "instance"
}

// ExtraOperation is an extended operation (operations.html) that a higher
// layer registers with RegisterOperation, e.g. the eVisit invitations'
// Appointment/[id]/$invite. The pipeline resolves the caller, refuses
// patient-facing callers when Staff (403) and audits the call. At the
// instance level it checks that the caller may read the instance (update
// it, when Write) and reads its current version (404 when unreachable,
// exactly as a missing one); at the type level it checks that the caller
// may search the type (create in it, when Write); at the system level Run
// decides alone. Run does the rest.
type ExtraOperation struct {
	Name  string // with the "$", e.g. "$invite"
	Type  string // the resource type it runs on ("" at the system level)
	Level Level
	Write bool // POST only; see above for the access it needs
	Staff bool // practitioners and backend services only
	// Definition (an OperationDefinition's canonical URL) and Doc list the
	// operation in the CapabilityStatement (Operations).
	Definition, Doc string
	Run             func(ctx context.Context, call OperationCall) (*fhir.Response, error)
}

func (op ExtraOperation) key() string { return opKey(op.Level, op.Type, op.Name) }

func opKey(l Level, typ, name string) string { return l.String() + ":" + typ + "/" + name }

// OperationCall is what an ExtraOperation runs on.
type OperationCall struct {
	Request *fhir.Request
	// Resource is the current version of the instance, visible to the
	// caller (instance level only).
	Resource  store.Record
	Principal *smart.Principal // nil when authorization is disabled
	// PatientFacing: release rules apply to the caller (a patient's or a
	// proxy's app); Patients are the patients it acts for ("Patient/1").
	PatientFacing bool
	Patients      []string
	// Walk runs a search as the caller (WalkAs), every page; what it
	// returns is not audited.
	Walk func(ctx context.Context, req engine.Request, page func(*engine.Result) error) error
	// Search runs one page of a search as the caller (req.Constrain is
	// set to the caller's), and the call's AuditEvent names what it
	// returned; Bundle renders a page as the searchset Bundle of req
	// (req.SelfPath and the paging links).
	Search func(ctx context.Context, req engine.Request) (*engine.Result, error)
	Bundle func(req engine.Request, res *engine.Result) ([]byte, error)
	// Touched adds records the operation returns by other means to its
	// AuditEvent.
	Touched func(recs ...store.Record)
}

// RegisterOperation adds op; call it before serving.
func (s *Server) RegisterOperation(op ExtraOperation) {
	if s.extra == nil {
		s.extra = map[string]ExtraOperation{}
	}
	if op.Level == SystemLevel {
		op.Type = ""
	}
	s.extra[op.key()] = op
}

// ExtraOperations lists the registered operations by type and name.
func (s *Server) ExtraOperations() []ExtraOperation {
	out := make([]ExtraOperation, 0, len(s.extra))
	for _, op := range s.extra {
		out = append(out, op)
	}
	slices.SortFunc(out, func(a, b ExtraOperation) int { return strings.Compare(a.key(), b.key()) })
	return out
}

// registered finds the operation x names at its level.
func (s *Server) registered(x *exchange) (ExtraOperation, bool) {
	l := Instance
	switch {
	case x.rt.typ == "":
		l = SystemLevel
	case x.rt.id == "":
		l = TypeLevel
	}
	op, ok := s.extra[opKey(l, x.rt.typ, x.rt.op)]
	return op, ok
}

func (s *Server) extraOperation(ctx context.Context, x *exchange, op ExtraOperation) (*fhir.Response, error) {
	m := x.req.Method
	if m != http.MethodPost && (op.Write || m != http.MethodGet) {
		return nil, notAllowed(m)
	}
	c := x.c
	if op.Staff && c.patientFacing() || op.Staff && c != nil && c.p != nil && isPersonUser(c.p.FHIRUser) {
		return nil, fhir.Errorf(fhir.KindForbidden, "only practitioners and backend services may run %s", op.Name)
	}
	call := OperationCall{Request: x.req}
	if c != nil && c.p != nil {
		call.Principal = c.p
		call.PatientFacing = c.patientFacing()
		if call.PatientFacing {
			call.Patients = c.actingPatients()
		}
	}
	call.Walk = func(ctx context.Context, req engine.Request, page func(*engine.Result) error) error {
		return s.walk(ctx, c, req, page)
	}
	call.Search = func(ctx context.Context, req engine.Request) (*engine.Result, error) {
		req.Constrain = s.constrain(c)
		res, err := s.engine.Search(ctx, req)
		if err != nil {
			return nil, engine.AsFHIR(err)
		}
		x.touched(res.Matches...)
		x.touched(res.Included...)
		return res, nil
	}
	call.Bundle = s.engine.Bundle
	call.Touched = x.touched
	switch op.Level {
	case Instance:
		interaction := smart.Read
		if op.Write {
			interaction = smart.Update
		}
		if _, err := s.allow(c, interaction, x.rt.typ); err != nil {
			return nil, err
		}
		cur, ok, err := s.currentFor(ctx, c, interaction, x.rt.typ, x.rt.id)
		if err != nil {
			return nil, err
		}
		if !ok || cur.Deleted {
			return nil, fhir.NotFound(x.rt.typ, x.rt.id)
		}
		x.touched(cur)
		call.Resource = cur
	case TypeLevel:
		interaction := smart.Search
		if op.Write {
			interaction = smart.Create
		}
		if _, err := s.allow(c, interaction, x.rt.typ); err != nil {
			return nil, err
		}
	}
	return op.Run(ctx, call)
}

// WalkAs runs req as principal p would search it (the same constraint
// the engine ANDs into p's searches: SMART scopes, patient compartment,
// proxy grants and sensitive labels, release rules; types p may not
// search match nothing), every page in turn until page returns an error
// or the matches end. p is resolved afresh, so a job started by a request
// can walk after it (e.g. a Bulk Data export). p nil is allowed only when
// authorization is disabled. req.Params must not hold _cursor; _count
// sets the page size (default 1,000, the engine's cap). The records the
// pages hold are not audited here: the caller records what it returns.
func (s *Server) WalkAs(ctx context.Context, p *smart.Principal, req engine.Request, page func(*engine.Result) error) error {
	if p == nil && !s.cfg.AuthDisabled {
		return fmt.Errorf("server: walk: no principal")
	}
	ctx = context.WithValue(ctx, callerKey{}, nil)
	var c *caller
	if p != nil {
		var err error
		if c, err = s.caller(smart.WithPrincipal(ctx, p)); err != nil {
			return err
		}
	}
	return s.walk(ctx, c, req, page)
}

func (s *Server) walk(ctx context.Context, c *caller, req engine.Request, page func(*engine.Result) error) error {
	params := url.Values{}
	for k, v := range req.Params {
		params[k] = slices.Clone(v)
	}
	if params.Get("_count") == "" {
		params.Set("_count", "1000")
	}
	if params.Get("_total") == "" {
		params.Set("_total", "none")
	}
	params.Del("_cursor")
	req.Params = params
	req.Constrain = s.constrain(c)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := s.engine.Search(ctx, req)
		if err != nil {
			return engine.AsFHIR(err)
		}
		if err := page(res); err != nil {
			return err
		}
		if res.Next == "" {
			return nil
		}
		params.Set("_cursor", res.Next)
	}
}

// HandleAsService runs req with the server's own authority (every type,
// no release rules: as with authorization disabled) on behalf of
// principal on, who is named in the AuditEvents. A higher layer uses it
// to commit what its own rules decided, e.g. booking a Slot for a
// patient in one transaction Bundle; it must have checked on's right to
// ask first.
func (s *Server) HandleAsService(ctx context.Context, on *smart.Principal, req *fhir.Request) *fhir.Response {
	return s.Handle(withCaller(ctx, &caller{onBehalf: on}), req)
}

func isPersonUser(fhirUser string) bool {
	return strings.HasPrefix(fhirUser, "Patient/") || strings.HasPrefix(fhirUser, "RelatedPerson/") || strings.HasPrefix(fhirUser, "Person/")
}
