package booking

// The FHIR shapes the service reads and writes (R4 schedule.html,
// slot.html, appointment.html). Resources are read into these small views
// and written by changing members of the stored JSON (fhir.Object), so
// what the EMR put in a Slot or Appointment is kept.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/store"
)

// Tag systems and extensions the service writes.
const (
	// TagSystem / TagOnline: meta.tag of every Appointment booked online
	// (through $book by a patient-facing app): what maxActive counts.
	TagSystem = "http://fhirgate.dev/CodeSystem/booking"
	TagOnline = "online"
	// BookedByExtension (valueReference) names who booked: the Patient,
	// the RelatedPerson acting for them, or the staff member.
	BookedByExtension = "http://fhirgate.dev/StructureDefinition/booked-by"
)

// Slot statuses (R4 slotstatus) and the Appointment statuses (R4
// appointmentstatus) the service uses.
const (
	slotFree          = "free"
	slotBusy          = "busy"
	slotBusyTentative = "busy-tentative"

	apptProposed  = "proposed"
	apptPending   = "pending"
	apptBooked    = "booked"
	apptCancelled = "cancelled"
)

// activeStatuses are the Appointment statuses that hold a Slot.
var activeStatuses = []string{apptProposed, apptPending, apptBooked}

type reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

type codeableConcept struct {
	Coding []struct {
		System string `json:"system"`
		Code   string `json:"code"`
	} `json:"coding"`
}

// tokens renders a list of CodeableConcepts as "system|code" tokens.
func tokens(b json.RawMessage) []string {
	var ccs []codeableConcept
	if len(b) == 0 || json.Unmarshal(b, &ccs) != nil {
		return nil
	}
	var out []string
	for _, cc := range ccs {
		for _, c := range cc.Coding {
			if c.Code != "" {
				out = append(out, c.System+"|"+c.Code)
			}
		}
	}
	return out
}

// slot is what the service reads of a Slot.
type slot struct {
	Schedule        reference       `json:"schedule"`
	Status          string          `json:"status"`
	Start           string          `json:"start"`
	End             string          `json:"end"`
	ServiceCategory json.RawMessage `json:"serviceCategory"`
	ServiceType     json.RawMessage `json:"serviceType"`
	Specialty       json.RawMessage `json:"specialty"`
	AppointmentType json.RawMessage `json:"appointmentType"`

	rec        store.Record
	start, end time.Time
}

// schedule is what the service reads of a Schedule.
type schedule struct {
	Active      *bool           `json:"active"`
	Actor       []reference     `json:"actor"`
	ServiceType json.RawMessage `json:"serviceType"`

	rec store.Record
}

func (s schedule) actors() []string {
	out := make([]string, 0, len(s.Actor))
	for _, a := range s.Actor {
		if a.Reference != "" {
			out = append(out, a.Reference)
		}
	}
	return out
}

// appointment is what the service reads of an Appointment.
type appointment struct {
	Status      string      `json:"status"`
	Start       string      `json:"start"`
	Slot        []reference `json:"slot"`
	Participant []struct {
		Actor  reference `json:"actor"`
		Status string    `json:"status"`
	} `json:"participant"`

	rec   store.Record
	start time.Time
}

func (a appointment) patients() []string {
	var out []string
	for _, p := range a.Participant {
		if strings.HasPrefix(p.Actor.Reference, "Patient/") && !slices.Contains(out, p.Actor.Reference) {
			out = append(out, p.Actor.Reference)
		}
	}
	return out
}

// slotRef is the Appointment's one Slot ("" when it has none).
func (a appointment) slotRef() string {
	for _, s := range a.Slot {
		if strings.HasPrefix(s.Reference, "Slot/") {
			return s.Reference
		}
	}
	return ""
}

func parseSlot(rec store.Record) (slot, error) {
	s, err := view[slot](rec, "Slot")
	if err != nil {
		return s, err
	}
	s.rec = rec
	for _, t := range []struct {
		name, v string
		to      *time.Time
	}{{"start", s.Start, &s.start}, {"end", s.End, &s.end}} {
		var err error
		if *t.to, err = time.Parse(time.RFC3339, t.v); err != nil {
			return s, fhir.Errorf(fhir.KindUnprocessable, "Slot/%s has no valid %s instant", rec.ID, t.name)
		}
	}
	return s, nil
}

// view reads rec (a typ) into one of the views above.
func view[V any](rec store.Record, typ string) (V, error) {
	var v V
	if err := json.Unmarshal(rec.Raw, &v); err != nil {
		return v, fmt.Errorf("booking: %s/%s: %w", typ, rec.ID, err)
	}
	return v, nil
}

func parseSchedule(rec store.Record) (schedule, error) {
	s, err := view[schedule](rec, "Schedule")
	if err == nil {
		s.rec = rec
	}
	return s, err
}

func parseAppointment(rec store.Record) (appointment, error) {
	a, err := view[appointment](rec, "Appointment")
	if err != nil {
		return a, err
	}
	a.rec = rec
	if a.Start != "" {
		a.start, _ = time.Parse(time.RFC3339, a.Start)
	}
	return a, nil
}

// raw marshals v (a value of this package: never fails).
func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// withMember is the JSON object b with member k set to v.
func withMember(b json.RawMessage, k string, v any) (*fhir.Object, error) {
	o, err := fhir.ParseObject(b)
	if err != nil {
		return nil, err
	}
	if err := o.Set(k, raw(v)); err != nil {
		return nil, err
	}
	return o, nil
}

// withStatus is rec's JSON with status set (a Slot's new status).
func withStatus(rec store.Record, status string) (json.RawMessage, error) {
	o, err := withMember(rec.Raw, "status", status)
	if err != nil {
		return nil, err
	}
	return o.Bytes(), nil
}

// participant is one Appointment.participant the service writes.
type participant struct {
	Actor    reference `json:"actor"`
	Required string    `json:"required"`
	Status   string    `json:"status"`
}

// newAppointment is the Appointment a booking creates (appointment.html):
// the Slot's service, times and reference, the patient and the Schedule's
// actors as participants; status booked (actors accepted) or pending
// (actors needs-action) until staff approve.
func newAppointment(id string, sl slot, sc schedule, patient, bookedBy, comment, status string, online bool, now time.Time) json.RawMessage {
	type ext struct {
		URL            string    `json:"url"`
		ValueReference reference `json:"valueReference"`
	}
	type coding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	type meta struct {
		Tag []coding `json:"tag,omitempty"`
	}
	a := struct {
		ResourceType    string          `json:"resourceType"`
		ID              string          `json:"id"`
		Meta            *meta           `json:"meta,omitempty"`
		Extension       []ext           `json:"extension,omitempty"`
		Status          string          `json:"status"`
		ServiceCategory json.RawMessage `json:"serviceCategory,omitempty"`
		ServiceType     json.RawMessage `json:"serviceType,omitempty"`
		Specialty       json.RawMessage `json:"specialty,omitempty"`
		AppointmentType json.RawMessage `json:"appointmentType,omitempty"`
		Start           string          `json:"start"`
		End             string          `json:"end"`
		Slot            []reference     `json:"slot"`
		Created         string          `json:"created"`
		Comment         string          `json:"comment,omitempty"`
		Participant     []participant   `json:"participant"`
	}{
		ResourceType: "Appointment", ID: id, Status: status,
		ServiceCategory: sl.ServiceCategory, ServiceType: sl.ServiceType, Specialty: sl.Specialty, AppointmentType: sl.AppointmentType,
		Start: sl.Start, End: sl.End, Slot: []reference{{Reference: sl.rec.Key()}},
		Created: now.UTC().Format(time.RFC3339), Comment: comment,
	}
	if online {
		a.Meta = &meta{Tag: []coding{{TagSystem, TagOnline}}}
	}
	if bookedBy != "" {
		a.Extension = []ext{{URL: BookedByExtension, ValueReference: reference{Reference: bookedBy}}}
	}
	if len(a.ServiceType) == 0 {
		a.ServiceType = sc.ServiceType
	}
	a.Participant = append(a.Participant, participant{Actor: reference{Reference: patient}, Required: "required", Status: "accepted"})
	actorStatus := "accepted"
	if status == apptPending {
		actorStatus = "needs-action"
	}
	for _, r := range sc.actors() {
		if r != patient {
			a.Participant = append(a.Participant, participant{Actor: reference{Reference: r}, Required: "required", Status: actorStatus})
		}
	}
	return raw(a)
}

// moved is the Appointment rec moved to Slot sl (a reschedule): slot,
// start, end and status replaced, the Schedule's actors' participation
// reset to actorStatus; everything else kept.
func moved(rec store.Record, sl slot, sc schedule, status string) (json.RawMessage, error) {
	o, err := fhir.ParseObject(rec.Raw)
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]json.RawMessage{
		"status": raw(status), "start": raw(sl.Start), "end": raw(sl.End),
		"slot": raw([]reference{{Reference: sl.rec.Key()}}),
	} {
		if err := o.Set(k, v); err != nil {
			return nil, err
		}
	}
	o.Delete("minutesDuration")
	return setActorStatus(o, sc.actors(), status)
}

// setActorStatus sets the participation status of the non-patient
// participants: accepted when booked, needs-action when pending; actors
// of the Schedule not yet participants are added.
func setActorStatus(o *fhir.Object, actors []string, status string) (json.RawMessage, error) {
	want := "accepted"
	if status == apptPending {
		want = "needs-action"
	}
	var parts []map[string]any
	if b, ok := o.Get("participant"); ok {
		if err := json.Unmarshal(b, &parts); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, p := range parts {
		actor, _ := p["actor"].(map[string]any)
		ref, _ := actor["reference"].(string)
		seen[ref] = true
		if strings.HasPrefix(ref, "Patient/") || p["status"] == "declined" {
			continue
		}
		p["status"] = want
	}
	for _, a := range actors {
		if !seen[a] {
			parts = append(parts, map[string]any{"actor": map[string]any{"reference": a}, "required": "required", "status": want})
		}
	}
	if err := o.Set("participant", raw(parts)); err != nil {
		return nil, err
	}
	return o.Bytes(), nil
}

// cancelled is the Appointment rec cancelled (cancelationReason text).
func cancelled(rec store.Record, reason string) (json.RawMessage, error) {
	o, err := withMember(rec.Raw, "status", apptCancelled)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		if err := o.Set("cancelationReason", raw(map[string]string{"text": reason}), "status"); err != nil {
			return nil, err
		}
	}
	return o.Bytes(), nil
}
