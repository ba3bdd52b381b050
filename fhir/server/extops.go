package server

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// ExtraOperation is an instance-level extended operation (operations.html)
// that a higher layer registers with RegisterOperation, e.g. the eVisit
// invitations' Appointment/[id]/$invite. The pipeline resolves the caller,
// refuses patient-facing callers when Staff (403), checks that the caller
// may read the instance (update it, when Write), reads its current version
// (404 when unreachable, exactly as a missing one) and audits the call;
// Run does the rest.
type ExtraOperation struct {
	Name  string // with the "$", e.g. "$invite"
	Type  string // the resource type it runs on
	Write bool   // POST only; the caller needs update access to the instance (else read; GET or POST)
	Staff bool   // practitioners and backend services only
	// Definition (an OperationDefinition's canonical URL) and Doc list the
	// operation in the CapabilityStatement (Operations).
	Definition, Doc string
	Run             func(ctx context.Context, call OperationCall) (*fhir.Response, error)
}

// OperationCall is what an ExtraOperation runs on.
type OperationCall struct {
	Request   *fhir.Request
	Resource  store.Record     // the current version of the instance, visible to the caller
	Principal *smart.Principal // nil when authorization is disabled
}

// RegisterOperation adds op; call it before serving.
func (s *Server) RegisterOperation(op ExtraOperation) {
	if s.extra == nil {
		s.extra = map[string]ExtraOperation{}
	}
	s.extra[op.Type+"/"+op.Name] = op
}

// ExtraOperations lists the registered operations by type and name.
func (s *Server) ExtraOperations() []ExtraOperation {
	out := make([]ExtraOperation, 0, len(s.extra))
	for _, op := range s.extra {
		out = append(out, op)
	}
	slices.SortFunc(out, func(a, b ExtraOperation) int { return strings.Compare(a.Type+"/"+a.Name, b.Type+"/"+b.Name) })
	return out
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
	call := OperationCall{Request: x.req, Resource: cur}
	if c != nil {
		call.Principal = c.p
	}
	return op.Run(ctx, call)
}

func isPersonUser(fhirUser string) bool {
	return strings.HasPrefix(fhirUser, "Patient/") || strings.HasPrefix(fhirUser, "RelatedPerson/") || strings.HasPrefix(fhirUser, "Person/")
}
