package server

import (
	"context"
	"errors"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// WriteHook checks, and may complete, a version of one resource type that
// a client writes (create, update, conditional update, patch, and the same
// inside a Bundle) after schema validation and before the server derives
// its search values and commits it. An error refuses the write (e.g. a
// 422 fhir.Error). Registered by a higher layer, e.g. FHIR Subscriptions
// (R4 subscription.html: the server validates a Subscription and owns its
// status).
type WriteHook func(ctx context.Context, w WriteCall) error

// WriteCall is the write a WriteHook sees.
type WriteCall struct {
	Type, ID string
	// Object is the new version; the hook may change it.
	Object *fhir.Object
	// Previous is the live version it replaces (nil: a create).
	Previous *store.Record
	// Principal is the caller (nil when authorization is disabled).
	Principal *smart.Principal
	// PatientFacing: release rules apply to the caller (a patient's or a
	// proxy's app); Patients are the patients it acts for ("Patient/1").
	PatientFacing bool
	Patients      []string
}

// RegisterWriteHook sets the write hook of typ; call it before serving.
func (s *Server) RegisterWriteHook(typ string, h WriteHook) {
	if s.hooks == nil {
		s.hooks = map[string]WriteHook{}
	}
	s.hooks[typ] = h
}

// hookedWrite runs the registered write hook of typ, then the messaging
// rules (messagingWrite).
func (s *Server) hookedWrite(ctx context.Context, x *exchange, typ, id string, obj *fhir.Object, cur *store.Record) (*fhir.Object, []store.Op, error) {
	if h := s.hooks[typ]; h != nil {
		w := WriteCall{Type: typ, ID: id, Object: obj, Previous: live(cur)}
		if c := x.c; c != nil && c.p != nil {
			w.Principal = c.p
			w.PatientFacing = c.patientFacing()
			if w.PatientFacing {
				w.Patients = c.actingPatients()
			}
		}
		if err := h(ctx, w); err != nil {
			return nil, nil, err
		}
	}
	return s.messagingWrite(ctx, x, typ, id, obj, cur)
}

// Visible reports whether principal p could find version rec by a search
// now: the same constraint the search engine ANDs into p's searches
// (constrain: SMART scopes, patient compartment, proxy grants and
// sensitive labels, release rules). p nil is allowed only when
// authorization is disabled (else nothing is visible: fail closed).
// Subscriptions use it so a notification never names what its owner
// cannot read.
func (s *Server) Visible(ctx context.Context, p *smart.Principal, rec store.Record) (bool, error) {
	if p == nil {
		return s.cfg.AuthDisabled, nil
	}
	// Not the caller of a request under way: resolve p afresh.
	ctx = context.WithValue(ctx, callerKey{}, nil)
	c, err := s.caller(smart.WithPrincipal(ctx, p))
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return false, nil // e.g. a proxy who may no longer act for the patient
	}
	if err != nil {
		return false, err
	}
	where := s.constrain(c)(rec.Type)
	return visible(where, rec), nil
}
