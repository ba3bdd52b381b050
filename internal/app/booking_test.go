package app

// End-to-end tests of online appointment booking (issue 17, docs/booking.md;
// R4 schedule.html, slot.html, appointment.html; operations.html) through
// the real server and HTTP, under the policy file's booking: rules: a
// patient, a parent and a caregiver book; another patient is refused the
// Slot and cannot see or book for others (404); a patient app cannot
// book by writing the Appointment; cut-offs, approval mode, maxActive; the
// AuditEvents name the operations; twenty concurrent bookings of one Slot
// give it to exactly one patient (also with FHIRGATE_TEST_STORE=ferretdb,
// which has no multi-document transactions); and a booked Appointment's
// reminder goes out through the notification outbox without PHI.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/internal/smtptest"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const bookingPolicy = `version: 1
booking:
  maxActive: 2
  minNotice: 2h
  cancelCutoff: 24h
  rescheduleCutoff: 24h
  schedules:
    - name: family-medicine
      schedule: [Schedule/sch-a]
      horizon: 30d
    - name: physio
      actor: [Practitioner/dr-physio]
      mode: approval
`

// withBookingBarrier holds the first commit of n concurrent bookings
// until all n decided on the Slot version they read, so that they race at
// the commit (servertest.Barrier; the timeout only keeps a broken run
// from hanging).
func withBookingBarrier(n int) harnessOpt {
	return func(o *Options) { o.Booking.beforeCommit = servertest.Barrier(n, 30*time.Second) }
}

// bookingWorld adds Schedules and Slots to newWorld (clock 2026-06-01 12:00Z):
// sch-a (Practitioner dr-a, online, automatic), sch-physio (approval),
// sch-x (not online).
func bookingWorld(t *testing.T, opts ...harnessOpt) *world {
	w := newWorld(t, append([]harnessOpt{withMessaging(t, bookingPolicy)}, opts...)...)
	h := w.h
	for _, p := range []string{"dr-a", "dr-physio", "dr-x"} {
		put(h, "Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	put(h, "Schedule", "sch-a", `{"resourceType":"Schedule","active":true,"actor":[{"reference":"Practitioner/dr-a"}]}`)
	put(h, "Schedule", "sch-physio", `{"resourceType":"Schedule","actor":[{"reference":"Practitioner/dr-physio"}]}`)
	put(h, "Schedule", "sch-x", `{"resourceType":"Schedule","actor":[{"reference":"Practitioner/dr-x"}]}`)
	for i, s := range []struct {
		id, schedule string
		in           time.Duration
	}{{"s1", "sch-a", 48 * time.Hour}, {"s2", "sch-a", 72 * time.Hour}, {"s3", "sch-a", 96 * time.Hour}, {"s4", "sch-a", 120 * time.Hour},
		{"ph1", "sch-physio", 50 * time.Hour}, {"x1", "sch-x", 48 * time.Hour}} {
		start := h.clock.Now().Add(s.in)
		put(h, "Slot", s.id, fmt.Sprintf(`{"resourceType":"Slot","schedule":{"reference":"Schedule/%s"},"status":"free","start":%q,"end":%q,"comment":"slot %d"}`,
			s.schedule, start.Format(time.RFC3339), start.Add(20*time.Minute).Format(time.RFC3339), i))
	}
	return w
}

func bookBody(slot, patient string) string {
	b := `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/` + slot + `"}}`
	if patient != "" {
		b += `,{"name":"patient","valueReference":{"reference":"Patient/` + patient + `"}}`
	}
	return b + `]}`
}

func slotStatus(h *harness, id string) string {
	h.t.Helper()
	return h.req("GET", "Slot/"+id, nil, "").must(h.t, 200).str("status")
}

// bookingOps returns the operation names of the AuditEvents naming ref.
func bookingOps(t *testing.T, h *harness, ref string) []string {
	t.Helper()
	flush(t, h)
	var out []string
	for _, e := range h.req("GET", "AuditEvent?entity="+ref+"&_count=200", nil, "").must(t, 200).entries() {
		ae := e["resource"].(map[string]any)
		for _, ent := range ae["entity"].([]any) {
			if em := ent.(map[string]any); em["description"] == "operation" {
				out = append(out, fmt.Sprint(em["name"]))
			}
		}
	}
	return out
}

func TestBookingEndToEnd(t *testing.T) {
	w := bookingWorld(t)
	h := w.h
	mint := func() (pa, pb, mum, carer, doc string) {
		return w.patientToken(w.pa, "patient/*.cruds"), w.patientToken(w.pb, "patient/*.cruds"),
			h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"}),
			h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"}),
			h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-physio", Client: "emr"})
	}
	pa, pb, mum, carer, doc := mint()

	// The operations are in the CapabilityStatement.
	caps := string(h.req("GET", "metadata", nil, "-").must(t, 200).Body)
	for _, op := range []string{"booking-find", "booking-book", "booking-cancel", "booking-reschedule", "booking-approve"} {
		if !strings.Contains(caps, op) {
			t.Errorf("CapabilityStatement lacks %s", op)
		}
	}
	// A patient finds the free online Slots (not sch-x's) with their Schedules.
	found := ids(h.req("GET", "Slot/$find", nil, pa).must(t, 200))
	if strings.Join(found, " ") != "Slot/s1 Slot/ph1 Slot/s2 Slot/s3 Slot/s4 Schedule/sch-a Schedule/sch-physio" {
		t.Errorf("$find: %v", found)
	}
	// The patient books; the Slot is busy; the other patient gets a 409.
	r := h.req("POST", "Appointment/$book", bookBody("s1", ""), pa).must(t, 201)
	appt := r.str("id")
	if r.str("status") != "booked" || !strings.Contains(string(r.Body), `"Patient/pat-a"`) || !strings.Contains(r.Header.Get("Location"), "/Appointment/"+appt) {
		t.Errorf("booking: %s", r.Body)
	}
	if st := slotStatus(h, "s1"); st != "busy" {
		t.Errorf("Slot/s1 %s", st)
	}
	if is := h.req("POST", "Appointment/$book", bookBody("s1", ""), pb).must(t, 409).outcome(t); !strings.Contains(fmt.Sprint(is["diagnostics"]), "no longer free") {
		t.Errorf("409 outcome: %v", is)
	}
	h.req("POST", "Appointment/$book", bookBody("s2", w.pa), pb).must(t, 404).outcome(t) // for someone else
	h.req("GET", "Appointment/"+appt, nil, pb).must(t, 404)                              // not hers
	h.req("POST", "Appointment/"+appt+"/$cancel", "", pb).must(t, 404)                   // not hers
	h.req("POST", "Appointment/$book", bookBody("x1", ""), pb).must(t, 422).outcome(t)   // not online
	// The parent books for her young child, not for another patient.
	kid := h.req("POST", "Appointment/$book", bookBody("s2", ""), mum).must(t, 201)
	if !strings.Contains(string(kid.Body), `"Patient/pat-c"`) || !strings.Contains(string(kid.Body), "RelatedPerson/rp-mother") {
		t.Errorf("the parent's booking: %s", kid.Body)
	}
	h.req("POST", "Appointment/$book", bookBody("s3", w.pa), mum).must(t, 404)
	// The caregiver books for pat-a under her Consent (which covers Appointment).
	care := h.req("POST", "Appointment/$book", bookBody("s3", ""), carer).must(t, 201)
	// pat-a now holds two online bookings: the most allowed.
	h.req("POST", "Appointment/$book", bookBody("s4", ""), pa).must(t, 422).outcome(t)
	// A patient app cannot book by writing the Appointment, nor free a Slot.
	direct := `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/s4"}],"participant":[{"actor":{"reference":"Patient/pat-a"},"status":"accepted"}],` +
		`"start":"2026-06-06T12:00:00Z","end":"2026-06-06T12:20:00Z"}`
	if is := h.req("POST", "Appointment", direct, pa).must(t, 403).outcome(t); !strings.Contains(fmt.Sprint(is["diagnostics"]), "Appointment/$book") {
		t.Errorf("direct write refused without pointing to $book: %v", is)
	}
	h.req("PUT", "Slot/s1", `{"resourceType":"Slot","id":"s1","schedule":{"reference":"Schedule/sch-a"},"status":"free","start":"2026-06-03T12:00:00Z","end":"2026-06-03T12:20:00Z"}`, pa).must(t, 403)
	// Approval mode: pending until the physiotherapist approves.
	ph := h.req("POST", "Appointment/$book", bookBody("ph1", ""), pb).must(t, 201)
	if ph.str("status") != "pending" || slotStatus(h, "ph1") != "busy-tentative" {
		t.Errorf("approval mode: %s, slot %s", ph.Body, slotStatus(h, "ph1"))
	}
	h.req("POST", "Appointment/"+ph.str("id")+"/$approve", "", pb).must(t, 403)
	if ok := h.req("POST", "Appointment/"+ph.str("id")+"/$approve", "", doc).must(t, 200); ok.str("status") != "booked" || slotStatus(h, "ph1") != "busy" {
		t.Errorf("approved: %s, slot %s", ok.Body, slotStatus(h, "ph1"))
	}
	// Cancel frees the Slot; another patient books it.
	h.req("POST", "Appointment/"+care.str("id")+"/$cancel", "", carer).must(t, 200)
	if st := slotStatus(h, "s3"); st != "free" {
		t.Errorf("Slot/s3 after the cancellation: %s", st)
	}
	h.req("POST", "Appointment/$book", bookBody("s3", ""), pb).must(t, 201)
	// Reschedule to s4, then the cut-offs: 30 h later s4 is 90 h away
	// (movable) and s1... the appointment is on s4 now; move the clock to
	// 10 h before it.
	mv := h.req("POST", "Appointment/"+appt+"/$reschedule", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/s4"}}]}`, pa).must(t, 200)
	if !strings.Contains(string(mv.Body), "Slot/s4") || slotStatus(h, "s1") != "free" || slotStatus(h, "s4") != "busy" {
		t.Errorf("rescheduled: %s; s1 %s, s4 %s", mv.Body, slotStatus(h, "s1"), slotStatus(h, "s4"))
	}
	h.clock.Set(h.clock.Now().Add(110 * time.Hour))
	pa, _, _, _, _ = mint()
	if is := h.req("POST", "Appointment/"+appt+"/$cancel", "", pa).must(t, 422).outcome(t); !strings.Contains(fmt.Sprint(is["diagnostics"]), "less than 1 day") {
		t.Errorf("cut-off: %v", is)
	}
	if st := h.req("GET", "Appointment/"+appt, nil, "").must(t, 200).str("status"); st != "booked" {
		t.Errorf("a refused cancellation changed the Appointment: %s", st)
	}
	h.req("POST", "Appointment/"+appt+"/$cancel", "", "").must(t, 200) // staff are not bound by it
	// The audit trail names the operations on the Appointment and the Slot.
	got := strings.Join(bookingOps(t, h, "Appointment/"+appt), " ")
	for _, op := range []string{"$book", "$reschedule", "$cancel"} {
		if !strings.Contains(got, op) {
			t.Errorf("the AuditEvents of the Appointment name %s; want %s", got, op)
		}
	}
	if got := strings.Join(bookingOps(t, h, "Slot/s1"), " "); !strings.Contains(got, "$book") {
		t.Errorf("the AuditEvents of Slot/s1 name %s", got)
	}
	// The patient sees her own booking's event.
	pa, _, _, _, _ = mint()
	if b := string(h.req("GET", "AuditEvent?entity=Appointment/"+appt, nil, pa).must(t, 200).Body); !strings.Contains(b, "$book") {
		t.Errorf("the patient's audit view lacks $book: %s", truncate([]byte(b)))
	}
}

// Twenty patients book one Slot at the same time: exactly one 201, the
// others 409 with an OperationOutcome, one Appointment on the Slot.
func TestBookingConcurrent(t *testing.T) {
	const n = 20
	w := bookingWorld(t, withBookingBarrier(n))
	h := w.h
	toks := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("pc-%d", i)
		put(h, "Patient", id, `{"resourceType":"Patient","birthDate":"1990-01-01"}`)
		toks[i] = w.patientToken(id, "patient/*.cruds")
	}
	results := make([]res, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = h.reqNoFatal("POST", "Appointment/$book", bookBody("s2", ""), toks[i])
		})
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.Status == http.StatusCreated:
			won++
		case r.Status == http.StatusConflict && r.JSON["resourceType"] == "OperationOutcome":
		default:
			t.Errorf("status %d: %s", r.Status, truncate(r.Body))
		}
	}
	if won != 1 {
		t.Fatalf("%d bookings of one slot succeeded", won)
	}
	if tot := h.req("GET", "Appointment?slot=Slot/s2&_summary=count", nil, "").must(t, 200).JSON["total"]; tot != float64(1) {
		t.Errorf("%v Appointments on the slot", tot)
	}
	if st := slotStatus(h, "s2"); st != "busy" {
		t.Errorf("Slot/s2 %s", st)
	}
}

// reqNoFatal is req for goroutines (no t.Fatal off the test goroutine).
func (h *harness) reqNoFatal(method, path, body, token string) res {
	r, err := http.NewRequest(method, h.base+"/"+path, strings.NewReader(body))
	if err != nil {
		return res{Status: -1, Body: []byte(err.Error())}
	}
	r.Header.Set("Content-Type", "application/fhir+json")
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return res{Status: -1, Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := res{Status: resp.StatusCode, Header: resp.Header, Body: b}
	_ = json.Unmarshal(b, &out.JSON)
	return out
}

// A patient's online booking gets its reminder through the outbox at
// FHIRGATE_REMINDER_LEAD (24 h) before the start, without PHI; a booking
// cancelled in time gets none.
func TestBookingReminder(t *testing.T) {
	mb := smtptest.Start(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), notifyOpts(mb), withMessaging(t, `version: 1
booking:
  schedules:
    - schedule: Schedule/sch-lavoie
`))
	notifyWorld(t, h)
	put(h, "Schedule", "sch-lavoie", `{"resourceType":"Schedule","actor":[{"reference":"Practitioner/dr-lavoie"}],"comment":"`+ntClinic+`"}`)
	for id, start := range map[string]string{"slot-1": "2026-06-05T10:00:00Z", "slot-2": "2026-06-06T10:00:00Z"} {
		put(h, "Slot", id, `{"resourceType":"Slot","schedule":{"reference":"Schedule/sch-lavoie"},"status":"free","start":"`+start+`","end":"`+strings.Replace(start, "T10", "T11", 1)+`",`+
			`"serviceType":[{"text":"`+ntDiagnosis+` follow-up"}]}`)
	}
	pt := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "pat-n1", FHIRUser: "Patient/pat-n1", Client: "portal"})
	h.req("POST", "Appointment/$book", bookBody("slot-1", ""), pt).must(t, 201)
	second := h.req("POST", "Appointment/$book", bookBody("slot-2", ""), pt).must(t, 201).str("id")
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	h.req("POST", "Appointment/"+second+"/$cancel", "", pt).must(t, 200)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 0 {
		t.Fatalf("%d emails days before the appointment", n)
	}
	h.clock.Set(time.Date(2026, 6, 4, 10, 0, 1, 0, time.UTC))
	ntEventually(t, "the reminder", func() bool { return len(mb.To("amelie@example.org")) == 1 })
	h.clock.Set(time.Date(2026, 6, 5, 10, 0, 1, 0, time.UTC))
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 1 {
		t.Fatalf("%d reminders, want 1 (the cancelled booking has none)", n)
	}
	ntAssertNoPHI(t, mb.All()[0], "You have an upcoming appointment.", "/appointments")
	for _, s := range []string{"slot-", "sch-lavoie", second} {
		if strings.Contains(mb.All()[0].Data, s) {
			t.Errorf("the reminder names %q", s)
		}
	}
	its, err := h.app.Notify.Storage.Items(t.Context(), notify.Skipped, 100)
	if err != nil || len(its) != 1 || !strings.Contains(its[0].Key, "reminder/Appointment/"+second) {
		t.Errorf("the cancelled booking's reminder: %+v %v", its, err)
	}
}

func TestBookingFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want BookingOptions
		err  string
	}{
		{nil, BookingOptions{}, ""},
		{map[string]string{"FHIRGATE_BOOKING": "off", "FHIRGATE_BOOKING_FIND_MAX": "50"}, BookingOptions{Off: true, FindMax: 50}, ""},
		{map[string]string{"FHIRGATE_BOOKING": "On"}, BookingOptions{}, ""},
		{map[string]string{"FHIRGATE_BOOKING": "sometimes"}, BookingOptions{}, "FHIRGATE_BOOKING"},
		{map[string]string{"FHIRGATE_BOOKING_FIND_MAX": "0"}, BookingOptions{}, "FHIRGATE_BOOKING_FIND_MAX"},
		{map[string]string{"FHIRGATE_BOOKING_FIND_MAX": "many"}, BookingOptions{}, "from 1 to 1000"},
	} {
		got, err := BookingFromEnv(func(k string) string { return c.env[k] })
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || got.Off != c.want.Off || got.FindMax != c.want.FindMax {
			t.Errorf("%v: %+v %v", c.env, got, err)
		}
	}
	// Off: no operations, and patient apps write Appointments as before.
	h := newHarness(t, func(o *Options) { o.Booking.Off = true })
	h.req("POST", "Appointment/$book", bookBody("s1", "x"), "").must(t, 404)
}
