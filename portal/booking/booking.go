// Package booking is fhirgate's online appointment booking
// (docs/booking.md): patients and their proxies find free Slots of the
// Schedules the organisation opens to online booking and book, cancel or
// move them under the policy file's "booking:" rules (policy.Booking);
// staff book for anyone and approve bookings that wait for approval.
//
// The FHIR model is R4's scheduling resources (schedule.html, slot.html,
// appointment.html): a Schedule (whose actor is a Practitioner,
// PractitionerRole, Location or HealthcareService) has Slots (free, busy,
// busy-tentative); a booking is an Appointment naming its Slot, the
// patient and the Schedule's actors. The operations follow the shape of
// the Argonaut Scheduling IG ($find, $book), with fhirgate's own
// parameters:
//
//	GET|POST Slot/$find                 start?, end?, service-type?, schedule?, actor?, _count? -> searchset of free bookable Slots (+ their Schedules)
//	POST     Appointment/$book          slot, patient?, comment? -> 201 the Appointment (booked, or pending in approval mode)
//	POST     Appointment/[id]/$cancel   reason? -> 200 the cancelled Appointment; its Slot is free again
//	POST     Appointment/[id]/$reschedule slot, comment? -> 200 the Appointment on the new Slot; the old one is free
//	POST     Appointment/[id]/$approve  (staff) -> 200 the booked Appointment; its Slot busy
//
// Race-free: every change commits the Slot's new status with If-Match on
// the version that was read, in one transaction Bundle with the
// Appointment (server.HandleAsService: store.Transact, atomic on SQLite
// and on MongoDB/FerretDB alike, which have no multi-document
// transactions), so of two concurrent bookings of one Slot exactly one
// commits and the other answers 409. A patient's own bookings are counted
// under a store.Lock on the patient, so concurrent bookings cannot pass
// maxActive together.
//
// Patient-facing apps cannot go around the rules: they cannot write Slots
// at all (search.PatientFree types are read-only to them), and
// AppointmentHook refuses their Appointment writes that name a Slot,
// pointing to $book. Staff and EMR writes are unchanged.
package booking

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Config wires a Service.
type Config struct {
	Server   *server.Server
	Store    store.Store
	Registry *search.Registry
	Base     string
	Proxy    smart.ProxyConfig
	// Rules returns the booking rules in force (the policy file's
	// booking: section, reloaded with it); nil or a nil result: no
	// online booking for patient-facing apps (staff may still book).
	Rules func() *policy.Booking
	// FindMax bounds the Slots one $find returns (default 100, at most 1,000).
	FindMax int
	Now     func() time.Time
	Logger  *slog.Logger
	// BeforeCommit, for tests, runs after an operation decided and before
	// it commits (op is the request path, "Appointment/$book"): a test holds concurrent
	// bookings there so that they all decide on the same Slot version.
	BeforeCommit func(op string)
}

// Service is the booking service.
type Service struct {
	cfg Config
	// eng searches with the server's own authority (no constraint), for
	// the service's internal reads: bookable Schedules, a patient's
	// online bookings, the Appointments holding a Slot.
	eng *engine.Engine
}

// Definition URLs of the operations (their OperationDefinitions are
// described in docs/booking.md).
const definitionBase = "http://fhirgate.dev/OperationDefinition/booking-"

// lockTTL bounds a patient's booking lock (a crashed holder frees it).
const lockTTL = 30 * time.Second

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Server == nil || cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("booking: Server, Store and Registry are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FindMax <= 0 {
		cfg.FindMax = 100
	}
	cfg.FindMax = min(cfg.FindMax, 1000)
	if cfg.Proxy.Now == nil {
		cfg.Proxy.Now = cfg.Now
	}
	if cfg.Rules == nil {
		cfg.Rules = func() *policy.Booking { return nil }
	}
	return &Service{cfg: cfg, eng: &engine.Engine{Store: cfg.Store, Registry: cfg.Registry, Base: cfg.Base, Now: cfg.Now, MaxCount: 1000}}, nil
}

// OperationDocs describe the operations for the CapabilityStatement.
var OperationDocs = map[string]string{
	"find":       "Online booking: the free Slots a patient may book (the organisation's booking rules), with their Schedules.",
	"book":       "Online booking: book a free Slot for a patient (race-free: one Slot, one Appointment); booked, or pending staff approval.",
	"cancel":     "Online booking: cancel an Appointment (within the cancellation cut-off for patients); its Slot is free again.",
	"reschedule": "Online booking: move an Appointment to another free Slot, all-or-nothing (within the rescheduling cut-off for patients).",
	"approve":    "Online booking: staff approve a pending Appointment (booked; its Slot busy).",
}

// Operations are the service's FHIR operations, for
// server.RegisterOperation.
func (s *Service) Operations() []server.ExtraOperation {
	ops := []server.ExtraOperation{
		{Name: "$find", Type: "Slot", Level: server.TypeLevel, Run: s.opFind},
		{Name: "$book", Type: "Appointment", Level: server.TypeLevel, Write: true, Run: s.opBook},
		{Name: "$cancel", Type: "Appointment", Write: true, Run: s.opCancel},
		{Name: "$reschedule", Type: "Appointment", Write: true, Run: s.opReschedule},
		{Name: "$approve", Type: "Appointment", Write: true, Staff: true, Run: s.opApprove},
	}
	for i := range ops {
		name := ops[i].Name[1:]
		ops[i].Definition = definitionBase + name
		ops[i].Doc = OperationDocs[name] + " (docs/booking.md)"
	}
	return ops
}

// AppointmentHook is the write hook of Appointment
// (server.RegisterWriteHook): a patient-facing app may not create or
// change an Appointment that names a Slot (nor change one that did): a
// booking goes through $book, $cancel and $reschedule, which apply the
// organisation's rules and keep the Slot's status right. Other
// Appointment writes of patient-facing apps (a request without a Slot),
// and every staff, EMR or service write, are unchanged.
func (s *Service) AppointmentHook(ctx context.Context, w server.WriteCall) error {
	if !w.PatientFacing {
		return nil
	}
	names := func(b []byte) bool {
		var a struct {
			Slot []reference `json:"slot"`
		}
		return json.Unmarshal(b, &a) == nil && len(a.Slot) > 0
	}
	if _, ok := w.Object.Get("slot"); ok || (w.Previous != nil && names(w.Previous.Raw)) {
		return fhir.Errorf(fhir.KindForbidden, "a patient-facing app books, cancels and moves Appointments on Slots through the operations "+
			"Appointment/$book, Appointment/[id]/$cancel and Appointment/[id]/$reschedule (docs/booking.md), not by writing the Appointment").At("Appointment.slot")
	}
	// The online-booking tag and the booked-by extension are the server's
	// record of who booked through $book: a patient app may not forge them
	// (a request "booked by" a practitioner, or counted as an online booking).
	var marks struct {
		Meta struct {
			Tag []struct {
				System string `json:"system"`
			} `json:"tag"`
		} `json:"meta"`
		Extension []struct {
			URL string `json:"url"`
		} `json:"extension"`
	}
	if json.Unmarshal(w.Object.Bytes(), &marks) == nil {
		for _, t := range marks.Meta.Tag {
			if t.System == TagSystem {
				return fhir.Errorf(fhir.KindForbidden, "the %s tags are set by the server (Appointment/$book), not by a patient-facing app", TagSystem).At("Appointment.meta.tag")
			}
		}
		for _, e := range marks.Extension {
			if e.URL == BookedByExtension {
				return fhir.Errorf(fhir.KindForbidden, "the %s extension is set by the server (Appointment/$book), not by a patient-facing app", BookedByExtension).At("Appointment.extension")
			}
		}
	}
	return nil
}
