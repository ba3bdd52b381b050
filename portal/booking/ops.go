package booking

import (
	"context"
	"encoding/json"
	"errors"
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
	ps, err := fhir.ReadParams(req)
	if err != nil {
		return nil, err
	}
	out := params{}
	for _, p := range ps {
		out[p.Name] = append(out[p.Name], p.Value)
	}
	return out, nil
}

// ref reads a reference parameter to typ ("Slot/1", or a bare id; an
// absolute URL under the base is made relative). "" when absent.
func (s *Service) ref(p params, name, typ string) (string, error) {
	if len(p[name]) > 1 {
		return "", fhir.Invalid("Parameters.parameter["+name+"]", "%s is given %d times: name one %s", name, len(p[name]), typ)
	}
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

// slotParams reads the operation's parameters (parseParams) and its
// required slot parameter (forWhat: what the Slot is for, in the error
// naming it).
func (s *Service) slotParams(call server.OperationCall, forWhat string) (params, string, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, "", err
	}
	ref, err := s.ref(prm, "slot", "Slot")
	if err == nil && ref == "" {
		err = fhir.Invalid("Parameters.parameter[slot]", "slot is required (the free Slot %s, from Slot/$find)", forWhat)
	}
	return prm, ref, err
}

// text reads an optional free-text parameter (at most 1,000 characters).
func text(p params, name string) (string, error) {
	v := p.get(name)
	if len(v) > 1000 {
		return "", fhir.Invalid("Parameters.parameter["+name+"]", "%s is longer than 1,000 characters", name)
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

// errNoOnline refuses a patient-facing caller when online booking is off.
func errNoOnline() error {
	return fhir.Errorf(fhir.KindForbidden, "this organisation offers no online booking (booking: section of the policy file); please contact the clinic")
}

// rulesFor is the booking rules in force for call: a 403 for a
// patient-facing caller when online booking is off.
func (s *Service) rulesFor(call server.OperationCall) (*policy.Booking, error) {
	rules := s.cfg.Rules()
	if call.PatientFacing && !rules.On() {
		return nil, errNoOnline()
	}
	return rules, nil
}

// rule is the booking rule of a Slot for a patient-facing caller: a
// 403 when online booking is off, a 422 when the Slot's Schedule is not
// bookable online.
func (s *Service) rule(rules *policy.Booking, sl slot, sc schedule) (*policy.BookableSchedule, error) {
	if !rules.On() {
		return nil, errNoOnline()
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

// freeSlot reads the Slot ref afresh and checks that call may take it
// now: its booking rule (a patient-facing caller; nil for staff), its
// start, and that it is free and held by no active Appointment but
// except (409 otherwise).
func (s *Service) freeSlot(ctx context.Context, call server.OperationCall, rules *policy.Booking, ref, except string) (slot, schedule, *policy.BookableSchedule, error) {
	sl, sc, err := s.loadSlot(ctx, ref)
	if err != nil {
		return sl, sc, nil, err
	}
	var r *policy.BookableSchedule
	if call.PatientFacing {
		if r, err = s.rule(rules, sl, sc); err != nil {
			return sl, sc, nil, err
		}
	}
	if err := s.bookableNow(sl, r); err != nil {
		return sl, sc, r, err
	}
	if sl.Status != slotFree {
		return sl, sc, r, slotTaken(ref)
	}
	if n, err := s.holders(ctx, ref, except); err != nil {
		return sl, sc, r, err
	} else if n > 0 {
		return sl, sc, r, slotTaken(ref)
	}
	return sl, sc, r, nil
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

// change is what an operation decided on the versions it read: the
// transaction's entries, and its answer (status 201 on a create, else
// 200; the Appointment; the other resources it names in the AuditEvent).
type change struct {
	entries []txEntry
	status  int
	appt    string
	others  []string
}

// decided commits what decide decided, reading and deciding again (up
// to attempts times) while the commit loses a race on a version it read
// (errTaken); exhausted is the answer when every attempt lost. decide's
// own errors end the operation.
func (s *Service) decided(ctx context.Context, call server.OperationCall, exhausted error, decide func() (change, error)) (*fhir.Response, error) {
	for range attempts {
		c, err := decide()
		if err != nil {
			return nil, err
		}
		err = s.commit(ctx, call, c.entries...)
		if errors.Is(err, errTaken) {
			continue // something changed since it was read: read it again
		}
		if err != nil {
			return nil, err
		}
		return s.answer(ctx, call, c.status, c.appt, c.others...)
	}
	return nil, exhausted
}

// opBook is POST Appointment/$book: slot, patient?, comment?.
func (s *Service) opBook(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, slotRef, err := s.slotParams(call, "to book")
	if err != nil {
		return nil, err
	}
	named, err := s.ref(prm, "patient", "Patient")
	if err != nil {
		return nil, err
	}
	comment, err := text(prm, "comment")
	if err != nil {
		return nil, err
	}
	rules, err := s.rulesFor(call)
	if err != nil {
		return nil, err
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
	return s.decided(ctx, call, slotTaken(slotRef), func() (change, error) {
		sl, sc, r, err := s.freeSlot(ctx, call, rules, slotRef, "")
		if err != nil {
			return change{}, err
		}
		if call.PatientFacing {
			n, err := s.onlineBookings(ctx, patient)
			if err != nil {
				return change{}, err
			}
			if n >= int64(rules.MaxActive) {
				return change{}, fhir.Errorf(fhir.KindUnprocessable, "%s already holds %d upcoming online bookings, the most this organisation allows at once; cancel one first", patient, n)
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
			return change{}, err
		}
		return change{
			entries: []txEntry{{ref: slotRef, body: slotJSON, ifMatch: sl.rec.VersionID}, {ref: "Appointment/" + id, body: appt}},
			status:  http.StatusCreated, appt: "Appointment/" + id, others: []string{slotRef},
		}, nil
	})
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

// beforeCutoff checks, for a patient-facing caller, that a's Slot is
// open to online booking (onlineRule) and a is not within the rule's
// cutoff (CancelCutoff or RescheduleCutoff) of its start; what is the
// change refused ("cancelled", "moved"). Staff may always.
func (s *Service) beforeCutoff(ctx context.Context, call server.OperationCall, rules *policy.Booking, a appointment,
	cutoff func(*policy.BookableSchedule) time.Duration, what string) error {
	if !call.PatientFacing {
		return nil
	}
	r, err := s.onlineRule(ctx, rules, a)
	if err != nil {
		return err
	}
	if a.start.IsZero() {
		return nil
	}
	if left := a.start.Sub(s.cfg.Now()); left < cutoff(r) {
		return fhir.Errorf(fhir.KindUnprocessable, "%s starts in less than %s: it can no longer be %s online; please contact the clinic", a.rec.Key(), human(cutoff(r)), what)
	}
	return nil
}

// freeing appends to entries the transaction entry that frees the Slot
// an Appointment (apptKey) leaves, if no other active Appointment holds
// it (none when it is free already or gone).
func (s *Service) freeing(ctx context.Context, entries []txEntry, slotRef, apptKey string) ([]txEntry, error) {
	if slotRef == "" {
		return entries, nil
	}
	rec, err := s.read(ctx, slotRef)
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Kind == fhir.KindNotFound {
		return entries, nil // the Slot is gone: nothing to free
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(rec.Raw, &st) != nil || st.Status == slotFree {
		return entries, nil
	}
	if n, err := s.holders(ctx, slotRef, apptKey); err != nil {
		return nil, err
	} else if n > 0 {
		return entries, nil
	}
	body, err := withStatus(rec, slotFree)
	if err != nil {
		return nil, err
	}
	return append(entries, txEntry{ref: slotRef, body: body, ifMatch: rec.VersionID}), nil
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

func cancelCutoff(r *policy.BookableSchedule) time.Duration     { return r.CancelCutoff }
func rescheduleCutoff(r *policy.BookableSchedule) time.Duration { return r.RescheduleCutoff }

// opCancel is POST Appointment/[id]/$cancel: reason?.
func (s *Service) opCancel(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	reason, err := text(prm, "reason")
	if err != nil {
		return nil, err
	}
	rules := s.cfg.Rules()
	exhausted := fhir.Errorf(fhir.KindConflict, "%s changed while it was being cancelled; retry", call.Resource.Key())
	return s.decided(ctx, call, exhausted, func() (change, error) {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return change{}, err
		}
		if err := s.beforeCutoff(ctx, call, rules, a, cancelCutoff, "cancelled"); err != nil {
			return change{}, err
		}
		body, err := cancelled(a.rec, reason)
		if err != nil {
			return change{}, err
		}
		entries, err := s.freeing(ctx, []txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}}, a.slotRef(), a.rec.Key())
		if err != nil {
			return change{}, err
		}
		return change{entries: entries, status: http.StatusOK, appt: a.rec.Key(), others: []string{a.slotRef()}}, nil
	})
}

// opReschedule is POST Appointment/[id]/$reschedule: slot, comment?.
func (s *Service) opReschedule(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, newRef, err := s.slotParams(call, "to move to")
	if err != nil {
		return nil, err
	}
	comment, err := text(prm, "comment")
	if err != nil {
		return nil, err
	}
	rules := s.cfg.Rules()
	return s.decided(ctx, call, slotTaken(newRef), func() (change, error) {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return change{}, err
		}
		oldRef := a.slotRef()
		if oldRef == newRef {
			return change{}, fhir.Invalid("Parameters.parameter[slot]", "%s is already on %s", a.rec.Key(), newRef)
		}
		if err := s.beforeCutoff(ctx, call, rules, a, rescheduleCutoff, "moved"); err != nil {
			return change{}, err
		}
		sl, sc, r, err := s.freeSlot(ctx, call, rules, newRef, a.rec.Key())
		if err != nil {
			return change{}, err
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
			return change{}, err
		}
		if comment != "" {
			o, err := withMember(body, "comment", comment)
			if err != nil {
				return change{}, err
			}
			body = o.Bytes()
		}
		slotJSON, err := withStatus(sl.rec, slotStatus)
		if err != nil {
			return change{}, err
		}
		entries, err := s.freeing(ctx, []txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}, {ref: newRef, body: slotJSON, ifMatch: sl.rec.VersionID}},
			oldRef, a.rec.Key())
		if err != nil {
			return change{}, err
		}
		return change{entries: entries, status: http.StatusOK, appt: a.rec.Key(), others: []string{newRef, oldRef}}, nil
	})
}

// opApprove is POST Appointment/[id]/$approve (staff): pending -> booked.
func (s *Service) opApprove(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	exhausted := fhir.Errorf(fhir.KindConflict, "%s changed while it was being approved; retry", call.Resource.Key())
	return s.decided(ctx, call, exhausted, func() (change, error) {
		a, _, err := s.appointmentFor(ctx, call)
		if err != nil {
			return change{}, err
		}
		if a.Status != apptPending && a.Status != apptProposed {
			return change{}, fhir.Errorf(fhir.KindConflict, "%s is %s: only a pending or proposed appointment can be approved", a.rec.Key(), a.Status).At("Appointment.status")
		}
		o, err := withMember(a.rec.Raw, "status", apptBooked)
		if err != nil {
			return change{}, err
		}
		var actors []string
		var slotEntry []txEntry
		ref := a.slotRef()
		if ref != "" {
			sl, sc, err := s.loadSlot(ctx, ref)
			if err != nil {
				return change{}, err
			}
			actors = sc.actors()
			if n, err := s.holders(ctx, ref, a.rec.Key()); err != nil {
				return change{}, err
			} else if n > 0 {
				return change{}, fhir.Errorf(fhir.KindConflict, "%s is held by another appointment", ref)
			}
			if sl.Status != slotBusy {
				body, err := withStatus(sl.rec, slotBusy)
				if err != nil {
					return change{}, err
				}
				slotEntry = append(slotEntry, txEntry{ref: ref, body: body, ifMatch: sl.rec.VersionID})
			}
		}
		body, err := setActorStatus(o, actors, apptBooked)
		if err != nil {
			return change{}, err
		}
		entries := append([]txEntry{{ref: a.rec.Key(), body: body, ifMatch: a.rec.VersionID}}, slotEntry...)
		return change{entries: entries, status: http.StatusOK, appt: a.rec.Key(), others: []string{ref}}, nil
	})
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
