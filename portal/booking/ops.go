package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// attempts bounds how often one operation re-reads and commits again
// after losing a race on a version it read (another writer changed the
// Slot or Appointment in between).
const attempts = 3

// params is a decoded operation input (operations.html#request): the
// query parameters, then the Parameters body's values as strings
// (valueReference by its reference).
type params map[string][]string

func (p params) get(name string) string {
	if v := p[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func parseParams(req *fhir.Request) (params, error) {
	out := params{}
	for k, v := range req.Query {
		out[k] = append(out[k], v...)
	}
	if len(req.Body) == 0 {
		return out, nil
	}
	var body struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string     `json:"name"`
			ValueString    *string    `json:"valueString"`
			ValueCode      *string    `json:"valueCode"`
			ValueID        *string    `json:"valueId"`
			ValueDate      *string    `json:"valueDate"`
			ValueDateTime  *string    `json:"valueDateTime"`
			ValueInstant   *string    `json:"valueInstant"`
			ValueURI       *string    `json:"valueUri"`
			ValueInteger   *int       `json:"valueInteger"`
			ValueReference *reference `json:"valueReference"`
			ValueCoding    *struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"valueCoding"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil || body.ResourceType != "Parameters" {
		return nil, fhir.Invalid("", "the body must be a Parameters resource (operations.html#request)")
	}
	for i, prm := range body.Parameter {
		var v string
		switch {
		case prm.ValueReference != nil:
			v = prm.ValueReference.Reference
		case prm.ValueString != nil:
			v = *prm.ValueString
		case prm.ValueCode != nil:
			v = *prm.ValueCode
		case prm.ValueID != nil:
			v = *prm.ValueID
		case prm.ValueDate != nil:
			v = *prm.ValueDate
		case prm.ValueDateTime != nil:
			v = *prm.ValueDateTime
		case prm.ValueInstant != nil:
			v = *prm.ValueInstant
		case prm.ValueURI != nil:
			v = *prm.ValueURI
		case prm.ValueInteger != nil:
			v = strconv.Itoa(*prm.ValueInteger)
		case prm.ValueCoding != nil:
			v = prm.ValueCoding.System + "|" + prm.ValueCoding.Code
		default:
			return nil, fhir.Invalid(fmt.Sprintf("Parameters.parameter[%d]", i), "parameter %q has no value this operation reads", prm.Name)
		}
		out[prm.Name] = append(out[prm.Name], v)
	}
	return out, nil
}

// ref reads a reference parameter to typ ("Slot/1", or a bare id; an
// absolute URL under the base is made relative). "" when absent.
func (s *Service) ref(p params, name, typ string) (string, error) {
	v := strings.TrimSpace(p.get(name))
	if v == "" {
		return "", nil
	}
	v = strings.TrimPrefix(v, strings.TrimRight(s.cfg.Base, "/")+"/")
	if !strings.Contains(v, "/") {
		v = typ + "/" + v
	}
	t, id, _ := strings.Cut(v, "/")
	if t != typ || !fhir.ValidID(id) {
		return "", fhir.Invalid("Parameters.parameter["+name+"]", "%s must be a reference to a %s, such as %s/123, not %q", name, typ, typ, p.get(name))
	}
	return v, nil
}

func splitRef(ref string) (string, string) {
	t, id, _ := strings.Cut(ref, "/")
	return t, id
}

// read returns the live version of ref, or a 404 (missing or deleted).
func (s *Service) read(ctx context.Context, ref string) (store.Record, error) {
	typ, id := splitRef(ref)
	rec, err := s.cfg.Store.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.Deleted {
		return rec, fhir.NotFound(typ, id)
	}
	return rec, err
}

// loadSlot reads a Slot and its Schedule.
func (s *Service) loadSlot(ctx context.Context, ref string) (slot, schedule, error) {
	rec, err := s.read(ctx, ref)
	if err != nil {
		return slot{}, schedule{}, err
	}
	sl, err := parseSlot(rec)
	if err != nil {
		return sl, schedule{}, err
	}
	if !strings.HasPrefix(sl.Schedule.Reference, "Schedule/") {
		return sl, schedule{}, fhir.Errorf(fhir.KindUnprocessable, "%s names no Schedule", ref)
	}
	srec, err := s.read(ctx, sl.Schedule.Reference)
	if err != nil {
		return sl, schedule{}, fhir.Errorf(fhir.KindUnprocessable, "the Schedule of %s (%s) is not known", ref, sl.Schedule.Reference)
	}
	sc, err := parseSchedule(srec)
	return sl, sc, err
}

// rule is the booking rule of a Slot for a patient-facing caller: a
// 403 when online booking is off, a 422 when the Slot's Schedule is not
// bookable online.
func (s *Service) rule(rules *policy.Booking, sl slot, sc schedule) (*policy.BookableSchedule, error) {
	if !rules.On() {
		return nil, fhir.Errorf(fhir.KindForbidden, "this organisation offers no online booking (booking: section of the policy file); please contact the clinic")
	}
	types := tokens(sl.ServiceType)
	if len(types) == 0 {
		types = tokens(sc.ServiceType)
	}
	r := rules.Match(sc.rec.Key(), sc.actors(), types)
	if r == nil || sc.Active != nil && !*sc.Active {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "%s is not open to online booking; please contact the clinic", sl.rec.Key())
	}
	return r, nil
}

// bookableNow checks the Slot's start against the rule's notice and
// horizon (r nil: staff, only that it has not started).
func (s *Service) bookableNow(sl slot, r *policy.BookableSchedule) error {
	now := s.cfg.Now()
	if !sl.start.After(now) {
		return fhir.Errorf(fhir.KindUnprocessable, "%s starts at %s, which has passed", sl.rec.Key(), sl.Start)
	}
	if r == nil {
		return nil
	}
	if sl.start.Sub(now) < r.MinNotice {
		return fhir.Errorf(fhir.KindUnprocessable, "%s starts too soon to book online: at least %s before the start; please contact the clinic", sl.rec.Key(), human(r.MinNotice))
	}
	if sl.start.Sub(now) > r.Horizon {
		return fhir.Errorf(fhir.KindUnprocessable, "%s is too far ahead to book online: at most %s before the start", sl.rec.Key(), human(r.Horizon))
	}
	return nil
}

// human renders a rule's duration ("24 hours", "60 days").
func human(d time.Duration) string {
	switch {
	case d == 0:
		return "no time"
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	}
	return d.String()
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.FormatInt(n, 10) + " " + unit + "s"
}

var errTaken = errors.New("booking: lost a race")

func slotTaken(ref string) error {
	return fhir.Errorf(fhir.KindConflict, "%s is no longer free: someone booked it first; please choose another time", ref).At("Parameters.parameter[slot]")
}

// holders counts the active Appointments (proposed, pending, booked)
// naming the Slot, but except.
func (s *Service) holders(ctx context.Context, slotRef, except string) (int, error) {
	res, err := s.eng.Search(ctx, engine.Request{Types: []string{"Appointment"}, Params: url.Values{
		"slot": {slotRef}, "status": {strings.Join(activeStatuses, ",")}, "_count": {"10"}, "_total": {"none"}, "_elements": {"status"},
	}})
	if err != nil {
		return 0, engine.AsFHIR(err)
	}
	n := 0
	for _, r := range res.Matches {
		if r.Key() != except {
			n++
		}
	}
	return n, nil
}

// onlineBookings counts patient's upcoming online bookings (what
// maxActive bounds).
func (s *Service) onlineBookings(ctx context.Context, patient string) (int64, error) {
	res, err := s.eng.Search(ctx, engine.Request{Types: []string{"Appointment"}, Params: url.Values{
		"patient": {patient}, "status": {strings.Join(activeStatuses, ",")}, "_tag": {TagSystem + "|" + TagOnline},
		"date": {"gt" + s.cfg.Now().UTC().Format(time.RFC3339)}, "_summary": {"count"},
	}})
	if err != nil {
		return 0, engine.AsFHIR(err)
	}
	return res.Total, nil
}

// actingFor decides for whom the caller books: a patient-facing caller
// for a patient it acts for (the only one, or the one named; any other
// is 404, exactly as a Patient it cannot see), a proxy only under a
// grant that covers Appointments; staff for the patient named.
func (s *Service) actingFor(ctx context.Context, call server.OperationCall, named string) (string, error) {
	patient := named
	if call.PatientFacing {
		switch {
		case named == "" && len(call.Patients) == 1:
			patient = call.Patients[0]
		case named == "":
			return "", fhir.Invalid("Parameters.parameter[patient]", "name the patient to book for (you act for several)")
		case !slices.Contains(call.Patients, named):
			_, id := splitRef(named)
			return "", fhir.NotFound("Patient", id)
		}
		if err := s.proxyMay(ctx, call, patient); err != nil {
			return "", err
		}
	} else if patient == "" {
		return "", fhir.Invalid("Parameters.parameter[patient]", "patient is required (the Patient the appointment is for)")
	}
	if _, err := s.read(ctx, patient); err != nil {
		return "", err
	}
	return patient, nil
}

// proxyMay checks that a proxy's grant for patient covers writing
// Appointments (a caregiver's Consent limits types and actions; a parent
// of a young child may do everything).
func (s *Service) proxyMay(ctx context.Context, call server.OperationCall, patient string) error {
	p := call.Principal
	if p == nil || !p.IsProxy() {
		return nil
	}
	grants, err := smart.Grants(ctx, s.cfg.Store, s.cfg.Proxy, p.FHIRUser)
	if err != nil {
		return err
	}
	_, id := splitRef(patient)
	for _, g := range grants {
		if strings.TrimPrefix(g.Patient, "Patient/") != id {
			continue
		}
		if (g.Types == nil || slices.Contains(g.Types, "Appointment")) && (g.Actions == nil || slices.Contains(g.Actions, "correct")) {
			return nil
		}
	}
	return fhir.Errorf(fhir.KindForbidden, "%s may not book, cancel or move appointments for %s (the access granted does not cover appointments)", p.FHIRUser, patient)
}

// bookedBy is the booked-by extension's reference: the caller's fhirUser,
// or the patient (a patient app without one).
func bookedBy(call server.OperationCall, patient string) string {
	if p := call.Principal; p != nil && p.FHIRUser != "" {
		return p.FHIRUser
	}
	if call.PatientFacing {
		return patient
	}
	return ""
}

// opBook is POST Appointment/$book: slot, patient?, comment?.
func (s *Service) opBook(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	slotRef, err := s.ref(prm, "slot", "Slot")
	if err != nil {
		return nil, err
	}
	if slotRef == "" {
		return nil, fhir.Invalid("Parameters.parameter[slot]", "slot is required (the free Slot to book, from Slot/$find)")
	}
	named, err := s.ref(prm, "patient", "Patient")
	if err != nil {
		return nil, err
	}
	comment := prm.get("comment")
	if len(comment) > 1000 {
		return nil, fhir.Invalid("Parameters.parameter[comment]", "comment is longer than 1,000 characters")
	}
	rules := s.cfg.Rules()
	if call.PatientFacing && !rules.On() {
		return nil, fhir.Errorf(fhir.KindForbidden, "this organisation offers no online booking (booking: section of the policy file); please contact the clinic")
	}
	patient, err := s.actingFor(ctx, call, named)
	if err != nil {
		return nil, err
	}
	// One booking at a time per patient: maxActive holds under
	// concurrent bookings of different Slots.
	unlock, err := s.cfg.Store.Lock(ctx, "booking/"+patient, lockTTL)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for range attempts {
		sl, sc, err := s.loadSlot(ctx, slotRef)
		if err != nil {
			return nil, err
		}
		var r *policy.BookableSchedule
		if call.PatientFacing {
			if r, err = s.rule(rules, sl, sc); err != nil {
				return nil, err
			}
		}
		if err := s.bookableNow(sl, r); err != nil {
			return nil, err
		}
		if sl.Status != slotFree {
			return nil, slotTaken(slotRef)
		}
		if n, err := s.holders(ctx, slotRef, ""); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, slotTaken(slotRef)
		}
		if call.PatientFacing {
			n, err := s.onlineBookings(ctx, patient)
			if err != nil {
				return nil, err
			}
			if n >= int64(rules.MaxActive) {
				return nil, fhir.Errorf(fhir.KindUnprocessable, "%s already holds %d upcoming online bookings, the most this organisation allows at once; cancel one first", patient, n)
			}
		}
		status, slotStatus := apptBooked, slotBusy
		if r != nil && r.Mode == policy.Approval {
			status, slotStatus = apptPending, slotBusyTentative
		}
		id := server.NewID()
		appt := newAppointment(id, sl, sc, patient, bookedBy(call, patient), comment, status, call.PatientFacing, s.cfg.Now())
		slotJSON, err := withStatus(sl.rec, slotStatus)
		if err != nil {
			return nil, err
		}
		err = s.commit(ctx, call,
			txEntry{ref: slotRef, body: slotJSON, ifMatch: sl.rec.VersionID},
			txEntry{ref: "Appointment/" + id, body: appt})
		if errors.Is(err, errTaken) {
			continue // the Slot changed since it was read: read it again
		}
		if err != nil {
			return nil, err
		}
		return s.answer(ctx, call, http.StatusCreated, "Appointment/"+id, slotRef)
	}
	return nil, slotTaken(slotRef)
}

// appointmentFor reads the operation's Appointment afresh and checks that
// a patient-facing caller may change it for the patient it names.
func (s *Service) appointmentFor(ctx context.Context, call server.OperationCall) (appointment, string, error) {
	rec, err := s.read(ctx, call.Resource.Key())
	if err != nil {
		return appointment{}, "", err
	}
	a, err := parseAppointment(rec)
	if err != nil {
		return a, "", err
	}
	pts := a.patients()
	patient := ""
	if len(pts) > 0 {
		patient = pts[0]
	}
	if call.PatientFacing {
		patient = ""
		for _, p := range pts {
			if slices.Contains(call.Patients, p) {
				patient = p
				break
			}
		}
		if patient == "" {
			return a, "", fhir.NotFound("Appointment", rec.ID)
		}
		if err := s.proxyMay(ctx, call, patient); err != nil {
			return a, "", err
		}
	}
	if !slices.Contains(activeStatuses, a.Status) {
		return a, "", fhir.Errorf(fhir.KindConflict, "%s is %s: only a proposed, pending or booked appointment can be changed", rec.Key(), a.Status).At("Appointment.status")
	}
	return a, patient, nil
}

// beforeCutoff checks, for a patient-facing caller, that the Appointment
// is not within cutoff of its start.
func (s *Service) beforeCutoff(a appointment, cutoff time.Duration, what string) error {
	if a.start.IsZero() {
		return nil
	}
	if left := a.start.Sub(s.cfg.Now()); left < cutoff {
		return fhir.Errorf(fhir.KindUnprocessable, "%s starts in less than %s: it can no longer be %s online; please contact the clinic", a.rec.Key(), human(cutoff), what)
	}
	return nil
}

// freeing is the transaction entry that frees the Slot a leaves, if no
// other active Appointment holds it (nil: nothing to change).
func (s *Service) freeing(ctx context.Context, slotRef, apptKey string) (*txEntry, error) {
	if slotRef == "" {
		return nil, nil
	}
	rec, err := s.read(ctx, slotRef)
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Kind == fhir.KindNotFound {
		return nil, nil // the Slot is gone: nothing to free
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(rec.Raw, &st) != nil || st.Status == slotFree {
		return nil, nil
	}
	if n, err := s.holders(ctx, slotRef, apptKey); err != nil || n > 0 {
		return nil, err
	}
	body, err := withStatus(rec, slotFree)
	if err != nil {
		return nil, err
	}
	return &txEntry{ref: slotRef, body: body, ifMatch: rec.VersionID}, nil
}

// onlineRule is the rule of the Slot an Appointment holds, for a
// patient-facing change (422 when it holds none or is not bookable online).
func (s *Service) onlineRule(ctx context.Context, rules *policy.Booking, a appointment) (*policy.BookableSchedule, error) {
	ref := a.slotRef()
	if ref == "" {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "%s was not booked from a Slot: it cannot be changed online; please contact the clinic", a.rec.Key())
	}
	sl, sc, err := s.loadSlot(ctx, ref)
	if err != nil {
		var fe *fhir.Error
		if errors.As(err, &fe) && fe.Kind == fhir.KindNotFound {
			return nil, fhir.Errorf(fhir.KindUnprocessable, "the Slot of %s is no longer known: it cannot be changed online; please contact the clinic", a.rec.Key())
		}
		return nil, err
	}
	return s.rule(rules, sl, sc)
}

// opCancel is POST Appointment/[id]/$cancel: reason?.
func (s *Service) opCancel(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	reason := prm.get("reason")
	if len(reason) > 1000 {
		return nil, fhir.Invalid("Parameters.parameter[reason]", "reason is longer than 1,000 characters")
	}
	rules := s.cfg.Rules()
	for range attempts {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return nil, err
		}
		if call.PatientFacing {
			r, err := s.onlineRule(ctx, rules, a)
			if err != nil {
				return nil, err
			}
			if err := s.beforeCutoff(a, r.CancelCutoff, "cancelled"); err != nil {
				return nil, err
			}
		}
		body, err := cancelled(a.rec, reason)
		if err != nil {
			return nil, err
		}
		entries := []txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}}
		free, err := s.freeing(ctx, a.slotRef(), a.rec.Key())
		if err != nil {
			return nil, err
		}
		if free != nil {
			entries = append(entries, *free)
		}
		err = s.commit(ctx, call, entries...)
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.answer(ctx, call, http.StatusOK, a.rec.Key(), a.slotRef())
	}
	return nil, fhir.Errorf(fhir.KindConflict, "%s changed while it was being cancelled; retry", call.Resource.Key())
}

// opReschedule is POST Appointment/[id]/$reschedule: slot, comment?.
func (s *Service) opReschedule(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	newRef, err := s.ref(prm, "slot", "Slot")
	if err != nil {
		return nil, err
	}
	if newRef == "" {
		return nil, fhir.Invalid("Parameters.parameter[slot]", "slot is required (the free Slot to move to, from Slot/$find)")
	}
	rules := s.cfg.Rules()
	for range attempts {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return nil, err
		}
		oldRef := a.slotRef()
		if oldRef == newRef {
			return nil, fhir.Invalid("Parameters.parameter[slot]", "%s is already on %s", a.rec.Key(), newRef)
		}
		if call.PatientFacing {
			r, err := s.onlineRule(ctx, rules, a)
			if err != nil {
				return nil, err
			}
			if err := s.beforeCutoff(a, r.RescheduleCutoff, "moved"); err != nil {
				return nil, err
			}
		}
		sl, sc, err := s.loadSlot(ctx, newRef)
		if err != nil {
			return nil, err
		}
		var r *policy.BookableSchedule
		if call.PatientFacing {
			if r, err = s.rule(rules, sl, sc); err != nil {
				return nil, err
			}
		}
		if err := s.bookableNow(sl, r); err != nil {
			return nil, err
		}
		if sl.Status != slotFree {
			return nil, slotTaken(newRef)
		}
		if n, err := s.holders(ctx, newRef, a.rec.Key()); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, slotTaken(newRef)
		}
		status := a.Status // staff keep the status
		if call.PatientFacing {
			status = apptBooked
			if r.Mode == policy.Approval {
				status = apptPending
			}
		}
		slotStatus := slotBusy
		if status != apptBooked {
			slotStatus = slotBusyTentative
		}
		body, err := moved(a.rec, sl, sc, status)
		if err != nil {
			return nil, err
		}
		if c := prm.get("comment"); c != "" {
			o, err := fhir.ParseObject(body)
			if err != nil {
				return nil, err
			}
			if err := o.Set("comment", raw(c)); err != nil {
				return nil, err
			}
			body = o.Bytes()
		}
		slotJSON, err := withStatus(sl.rec, slotStatus)
		if err != nil {
			return nil, err
		}
		entries := []txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}, {ref: newRef, body: slotJSON, ifMatch: sl.rec.VersionID}}
		free, err := s.freeing(ctx, oldRef, a.rec.Key())
		if err != nil {
			return nil, err
		}
		if free != nil {
			entries = append(entries, *free)
		}
		err = s.commit(ctx, call, entries...)
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		touched := []string{newRef}
		if oldRef != "" {
			touched = append(touched, oldRef)
		}
		return s.answer(ctx, call, http.StatusOK, a.rec.Key(), touched...)
	}
	return nil, slotTaken(newRef)
}

// opApprove is POST Appointment/[id]/$approve (staff): pending -> booked.
func (s *Service) opApprove(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	for range attempts {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return nil, err
		}
		if a.Status != apptPending && a.Status != apptProposed {
			return nil, fhir.Errorf(fhir.KindConflict, "%s is %s: only a pending or proposed appointment can be approved", a.rec.Key(), a.Status).At("Appointment.status")
		}
		o, err := fhir.ParseObject(a.rec.Raw)
		if err != nil {
			return nil, err
		}
		if err := o.Set("status", raw(apptBooked)); err != nil {
			return nil, err
		}
		var actors []string
		var entries []txEntry
		ref := a.slotRef()
		if ref != "" {
			sl, sc, err := s.loadSlot(ctx, ref)
			if err != nil {
				return nil, err
			}
			actors = sc.actors()
			if n, err := s.holders(ctx, ref, a.rec.Key()); err != nil {
				return nil, err
			} else if n > 0 {
				return nil, fhir.Errorf(fhir.KindConflict, "%s is held by another appointment", ref)
			}
			if sl.Status != slotBusy {
				body, err := withStatus(sl.rec, slotBusy)
				if err != nil {
					return nil, err
				}
				entries = append(entries, txEntry{ref: ref, body: body, ifMatch: sl.rec.VersionID})
			}
		}
		body, err := setActorStatus(o, actors, apptBooked)
		if err != nil {
			return nil, err
		}
		entries = append([]txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}}, entries...)
		err = s.commit(ctx, call, entries...)
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.answer(ctx, call, http.StatusOK, a.rec.Key(), ref)
	}
	return nil, fhir.Errorf(fhir.KindConflict, "%s changed while it was being approved; retry", call.Resource.Key())
}

// answer reads what an operation committed, names it in the operation's
// AuditEvent, and returns the Appointment (Location on a create).
func (s *Service) answer(ctx context.Context, call server.OperationCall, status int, apptRef string, others ...string) (*fhir.Response, error) {
	rec, err := s.read(ctx, apptRef)
	if err != nil {
		return nil, err
	}
	call.Touched(rec)
	for _, o := range others {
		if o == "" {
			continue
		}
		if r, err := s.read(ctx, o); err == nil {
			call.Touched(r)
		}
	}
	h := http.Header{}
	h.Set("ETag", fhir.ETag(rec.VersionID))
	h.Set("Last-Modified", rec.LastUpdated.UTC().Format(http.TimeFormat))
	if status == http.StatusCreated {
		h.Set("Location", strings.TrimRight(s.cfg.Base, "/")+"/"+rec.Type+"/"+rec.ID+"/_history/"+strconv.FormatInt(rec.VersionID, 10))
	}
	return &fhir.Response{Status: status, Header: h, Body: rec.Raw}, nil
}
