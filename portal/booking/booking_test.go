package booking

// Package tests of online booking on the real pipeline (server.New) over
// the in-memory SQLite store: R4 slot.html (free/busy/busy-tentative),
// appointment.html (booked, pending, cancelled; participants), the
// booking rules of the policy file (policy.Booking), who may book (a
// patient, a parent of a young child, staff), the write hook, and that
// concurrent bookings of one Slot give it to exactly one patient.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

const testPolicy = `version: 1
booking:
  maxActive: 2
  minNotice: 2h
  cancelCutoff: 24h
  rescheduleCutoff: 12h
  schedules:
    - name: family
      schedule: [Schedule/dr-a]
      horizon: 30d
    - name: physio
      actor: [Practitioner/physio]
      mode: approval
`

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type env struct {
	t     *testing.T
	s     *server.Server
	svc   *Service
	clock *clock
	emr   context.Context
}

var t0 = servertest.T0

func newEnv(t *testing.T, pol string, opts ...func(*Config)) *env {
	t.Helper()
	clk := &clock{t: t0}
	reg := search.Default()
	s, st := servertest.New(t, servertest.Options{Now: clk.Now, SQLite: sqlite.Options{Now: clk.Now}, Registry: reg, Policy: pol})
	cfg := Config{Server: s, Store: st, Registry: reg, Base: servertest.Base, Now: clk.Now, Proxy: smart.ProxyConfig{Now: clk.Now},
		Rules: func() *policy.Booking { return s.Policy().Booking() }}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.RegisterWriteHook("Appointment", svc.AppointmentHook)
	for _, op := range svc.Operations() {
		s.RegisterOperation(op)
	}
	e := &env{t: t, s: s, svc: svc, clock: clk, emr: as(t, "system/*.cruds", "", "")}
	e.world()
	return e
}

// as is servertest's caller in the context.
var as = servertest.As

func patient(t *testing.T, id string) context.Context {
	return as(t, "patient/*.cruds", id, "Patient/"+id)
}

type answer struct {
	*fhir.Response
	json map[string]any
}

func (a answer) str(key string) string { s, _ := a.json[key].(string); return s }

func (e *env) do(ctx context.Context, method, path, body string) answer {
	e.t.Helper()
	a := answer{Response: servertest.Do(ctx, e.s, method, path, body)}
	_ = json.Unmarshal(a.Body, &a.json)
	return a
}

func (e *env) must(ctx context.Context, status int, method, path, body string) answer {
	e.t.Helper()
	a := e.do(ctx, method, path, body)
	if a.Status != status {
		e.t.Fatalf("%s %s: %d, want %d: %s", method, path, a.Status, status, a.Body)
	}
	return a
}

// outcome asserts an OperationOutcome whose diagnostics contain want.
func (a answer) outcome(t *testing.T, want string) {
	t.Helper()
	if a.str("resourceType") != "OperationOutcome" || !strings.Contains(string(a.Body), want) {
		t.Errorf("want an OperationOutcome saying %q, got %d %s", want, a.Status, a.Body)
	}
}

func (e *env) put(typ, id, body string) {
	e.t.Helper()
	body = strings.Replace(body, `{"resourceType":"`+typ+`"`, `{"resourceType":"`+typ+`","id":"`+id+`"`, 1)
	r := e.do(e.emr, "PUT", typ+"/"+id, body)
	if r.Status != 200 && r.Status != 201 {
		e.t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
	}
}

func at(d time.Duration) string { return t0.Add(d).UTC().Format(time.RFC3339) }

func (e *env) slot(id, schedule string, start time.Duration, extra string) {
	e.put("Slot", id, `{"resourceType":"Slot",`+extra+`"schedule":{"reference":"`+schedule+`"},"status":"free","start":"`+at(start)+`","end":"`+at(start+30*time.Minute)+`"}`)
}

// world: patients a, b, child c (mother rp-mum); Schedules dr-a (family,
// automatic), physio (by actor, approval), dr-x (not online); Slots.
func (e *env) world() {
	e.put("Patient", "a", `{"resourceType":"Patient","birthDate":"1970-01-01"}`)
	e.put("Patient", "b", `{"resourceType":"Patient","birthDate":"1971-01-01"}`)
	e.put("Patient", "c", `{"resourceType":"Patient","birthDate":"2020-03-10"}`)
	e.put("RelatedPerson", "rp-mum", `{"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/c"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}]}`)
	for _, p := range []string{"dr-a", "physio", "dr-x"} {
		e.put("Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	e.put("Schedule", "dr-a", `{"resourceType":"Schedule","active":true,"actor":[{"reference":"Practitioner/dr-a"}]}`)
	e.put("Schedule", "physio", `{"resourceType":"Schedule","actor":[{"reference":"Practitioner/physio"}]}`)
	e.put("Schedule", "dr-x", `{"resourceType":"Schedule","actor":[{"reference":"Practitioner/dr-x"}]}`)
	e.slot("s1", "Schedule/dr-a", 48*time.Hour, `"serviceType":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/service-type","code":"124"}]}],`)
	e.slot("s2", "Schedule/dr-a", 72*time.Hour, "")
	e.slot("s3", "Schedule/dr-a", 96*time.Hour, "")
	e.slot("soon", "Schedule/dr-a", time.Hour, "")      // within minNotice
	e.slot("far", "Schedule/dr-a", 40*24*time.Hour, "") // beyond the horizon
	e.slot("px", "Schedule/dr-x", 48*time.Hour, "")     // not online
	e.slot("ph1", "Schedule/physio", 50*time.Hour, "")  // approval
	e.put("Slot", "busy", `{"resourceType":"Slot","schedule":{"reference":"Schedule/dr-a"},"status":"busy","start":"`+at(49*time.Hour)+`","end":"`+at(50*time.Hour)+`"}`)
}

func book(slot, patient string) string {
	b := `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/` + slot + `"}}`
	if patient != "" {
		b += `,{"name":"patient","valueReference":{"reference":"Patient/` + patient + `"}}`
	}
	return b + `,{"name":"comment","valueString":"knee pain"}]}`
}

func slotParam(slot string) string {
	return `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/` + slot + `"}}]}`
}

func (e *env) status(ref string) string {
	e.t.Helper()
	return e.must(e.emr, 200, "GET", ref, "").str("status")
}

func entryIDs(a answer) []string {
	var out []string
	es, _ := a.json["entry"].([]any)
	for _, x := range es {
		r := x.(map[string]any)["resource"].(map[string]any)
		out = append(out, fmt.Sprint(r["resourceType"], "/", r["id"]))
	}
	return out
}

// Slot/$find shows a patient the free Slots its rules allow now, with
// their Schedules; Slots are patient-free data a patient may also search.
func TestFind(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa := patient(t, "a")
	got := strings.Join(entryIDs(e.must(pa, 200, "GET", "Slot/$find", "")), " ")
	if want := "Slot/s1 Slot/ph1 Slot/s2 Slot/s3 Schedule/dr-a Schedule/physio"; got != want {
		t.Errorf("$find = %s, want %s", got, want)
	}
	got = strings.Join(entryIDs(e.must(pa, 200, "GET", "Slot/$find?service-type=124&_count=5", "")), " ")
	if got != "Slot/s1 Schedule/dr-a" {
		t.Errorf("$find by service type = %s", got)
	}
	got = strings.Join(entryIDs(e.must(pa, 200, "GET", "Slot/$find?actor=Practitioner/physio", "")), " ")
	if got != "Slot/ph1 Schedule/physio" {
		t.Errorf("$find by actor = %s", got)
	}
	got = strings.Join(entryIDs(e.must(pa, 200, "GET", "Slot/$find?start="+at(60*time.Hour)+"&end=2026-06-04", "")), " ")
	if got != "Slot/s2 Schedule/dr-a" {
		t.Errorf("$find between = %s", got)
	}
	// Staff see every free Slot that has not started, of every Schedule.
	if got := entryIDs(e.must(e.emr, 200, "GET", "Slot/$find?schedule=Schedule/dr-x,Schedule/dr-a&_count=3", "")); strings.Join(got, " ") != "Slot/soon Slot/s1 Slot/px Schedule/dr-a Schedule/dr-x" {
		t.Errorf("staff $find = %v", got)
	}
	if r := e.must(pa, 200, "GET", "Slot?status=free&_count=100", ""); len(entryIDs(r)) != 7 {
		t.Errorf("a patient searching Slots: %v", entryIDs(r))
	}
	e.must(pa, 404, "GET", "Schedule/dr-x", "") // Schedules are not patient-free
	// Without a booking section patients are told there is no online booking.
	off := newEnv(t, "")
	off.must(patient(t, "a"), 403, "GET", "Slot/$find", "").outcome(t, "no online booking")
	off.must(patient(t, "a"), 403, "POST", "Appointment/$book", book("s1", "")).outcome(t, "no online booking")
}

func TestBookCancel(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa, pb := patient(t, "a"), patient(t, "b")
	r := e.must(pa, 201, "POST", "Appointment/$book", book("s1", ""))
	id := r.str("id")
	if r.str("status") != "booked" || r.str("start") != at(48*time.Hour) || !strings.Contains(r.Header.Get("Location"), "/Appointment/"+id+"/_history/1") {
		t.Errorf("booked: %s %v", r.Body, r.Header)
	}
	for _, want := range []string{`"slot":[{"reference":"Slot/s1"}]`, `{"actor":{"reference":"Patient/a"},"required":"required","status":"accepted"}`,
		`{"actor":{"reference":"Practitioner/dr-a"},"required":"required","status":"accepted"}`, `"comment":"knee pain"`,
		`"code":"124"`, TagSystem, `"valueReference":{"reference":"Patient/a"}`} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("the Appointment lacks %s: %s", want, r.Body)
		}
	}
	if st := e.status("Slot/s1"); st != "busy" {
		t.Errorf("Slot/s1 is %s after booking", st)
	}
	// The slot is gone for everyone else; what cannot be booked is refused.
	e.must(pb, 409, "POST", "Appointment/$book", book("s1", "")).outcome(t, "no longer free")
	e.must(pb, 409, "POST", "Appointment/$book", book("busy", "")).outcome(t, "no longer free")
	e.must(pb, 404, "POST", "Appointment/$book", book("s2", "a"))  // another patient: as if unknown
	e.must(pb, 404, "POST", "Appointment/$book", book("nope", "")) // no such Slot
	e.must(pb, 422, "POST", "Appointment/$book", book("px", "")).outcome(t, "not open to online booking")
	e.must(pb, 422, "POST", "Appointment/$book", book("soon", "")).outcome(t, "too soon")
	e.must(pb, 422, "POST", "Appointment/$book", book("far", "")).outcome(t, "too far ahead")
	e.must(pb, 400, "POST", "Appointment/$book", `{"resourceType":"Parameters"}`).outcome(t, "slot is required")
	// The other patient cannot see or cancel the appointment.
	e.must(pb, 404, "POST", "Appointment/"+id+"/$cancel", "")
	e.must(pb, 404, "GET", "Appointment/"+id, "")
	// Cancel frees the Slot; the Slot can be booked again.
	c := e.must(pa, 200, "POST", "Appointment/"+id+"/$cancel", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"feeling better"}]}`)
	if c.str("status") != "cancelled" || !strings.Contains(string(c.Body), `"cancelationReason":{"text":"feeling better"}`) {
		t.Errorf("cancelled: %s", c.Body)
	}
	if st := e.status("Slot/s1"); st != "free" {
		t.Errorf("Slot/s1 is %s after the cancellation", st)
	}
	e.must(pa, 409, "POST", "Appointment/"+id+"/$cancel", "").outcome(t, "is cancelled")
	e.must(pb, 201, "POST", "Appointment/$book", book("s1", ""))
	// Staff book for anyone, also what is not online, and must name the patient.
	e.must(e.emr, 400, "POST", "Appointment/$book", book("px", "")).outcome(t, "patient is required")
	s := e.must(e.emr, 201, "POST", "Appointment/$book", book("px", "a"))
	if strings.Contains(string(s.Body), TagSystem) {
		t.Errorf("a staff booking is counted as online: %s", s.Body)
	}
}

// maxActive counts a patient's upcoming online bookings.
func TestMaxActive(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa := patient(t, "a")
	e.must(pa, 201, "POST", "Appointment/$book", book("s1", ""))
	first := e.must(pa, 201, "POST", "Appointment/$book", book("s2", "")).str("id")
	e.must(pa, 422, "POST", "Appointment/$book", book("s3", "")).outcome(t, "2 upcoming online bookings")
	if st := e.status("Slot/s3"); st != "free" {
		t.Errorf("a refused booking changed the Slot: %s", st)
	}
	e.must(pa, 200, "POST", "Appointment/"+first+"/$cancel", "")
	e.must(pa, 201, "POST", "Appointment/$book", book("s3", ""))
}

// Cancellation and rescheduling cut-offs bind patients, not staff.
func TestCutoffs(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa := patient(t, "a")
	id := e.must(pa, 201, "POST", "Appointment/$book", book("s1", "")).str("id") // starts at +48h
	e.clock.Set(t0.Add(30 * time.Hour))                                          // 18h before: inside 24h, outside 12h
	e.must(pa, 422, "POST", "Appointment/"+id+"/$cancel", "").outcome(t, "can no longer be cancelled online")
	if st := e.status("Appointment/" + id); st != "booked" {
		t.Errorf("a refused cancellation changed the Appointment: %s", st)
	}
	r := e.must(pa, 200, "POST", "Appointment/"+id+"/$reschedule", slotParam("s2"))
	if r.str("start") != at(72*time.Hour) || !strings.Contains(string(r.Body), `"Slot/s2"`) || e.status("Slot/s1") != "free" || e.status("Slot/s2") != "busy" {
		t.Errorf("rescheduled: %s; s1 %s, s2 %s", r.Body, e.status("Slot/s1"), e.status("Slot/s2"))
	}
	e.clock.Set(t0.Add(62 * time.Hour)) // 10h before s2
	e.must(pa, 422, "POST", "Appointment/"+id+"/$reschedule", slotParam("s3")).outcome(t, "can no longer be moved online")
	e.must(e.emr, 200, "POST", "Appointment/"+id+"/$cancel", "")
	if st := e.status("Slot/s2"); st != "free" {
		t.Errorf("staff cancellation left Slot/s2 %s", st)
	}
}

// A reschedule onto a taken Slot changes nothing (all-or-nothing).
func TestRescheduleAtomic(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa, pb := patient(t, "a"), patient(t, "b")
	id := e.must(pa, 201, "POST", "Appointment/$book", book("s1", "")).str("id")
	e.must(pb, 201, "POST", "Appointment/$book", book("s2", ""))
	e.must(pa, 409, "POST", "Appointment/"+id+"/$reschedule", slotParam("s2")).outcome(t, "no longer free")
	e.must(pa, 400, "POST", "Appointment/"+id+"/$reschedule", slotParam("s1"))
	if e.status("Slot/s1") != "busy" || e.must(pa, 200, "GET", "Appointment/"+id, "").str("start") != at(48*time.Hour) {
		t.Errorf("a failed reschedule changed the booking")
	}
}

// Approval mode: pending and busy-tentative until staff approve.
func TestApproval(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa := patient(t, "a")
	r := e.must(pa, 201, "POST", "Appointment/$book", book("ph1", ""))
	id := r.str("id")
	if r.str("status") != "pending" || !strings.Contains(string(r.Body), `{"actor":{"reference":"Practitioner/physio"},"required":"required","status":"needs-action"}`) {
		t.Errorf("approval mode: %s", r.Body)
	}
	if st := e.status("Slot/ph1"); st != "busy-tentative" {
		t.Errorf("Slot/ph1 %s while pending", st)
	}
	e.must(patient(t, "b"), 409, "POST", "Appointment/$book", book("ph1", ""))
	e.must(pa, 403, "POST", "Appointment/"+id+"/$approve", "")
	dr := as(t, "user/*.cruds", "", "Practitioner/physio")
	ok := e.must(dr, 200, "POST", "Appointment/"+id+"/$approve", "")
	if ok.str("status") != "booked" || !strings.Contains(string(ok.Body), `"status":"accepted"}`) || strings.Contains(string(ok.Body), "needs-action") {
		t.Errorf("approved: %s", ok.Body)
	}
	if st := e.status("Slot/ph1"); st != "busy" {
		t.Errorf("Slot/ph1 %s once approved", st)
	}
	e.must(dr, 409, "POST", "Appointment/"+id+"/$approve", "")
}

// A parent books for their young child; nobody books for a patient they
// do not act for.
func TestProxy(t *testing.T) {
	e := newEnv(t, testPolicy)
	mum := as(t, "patient/*.cruds", "c", "RelatedPerson/rp-mum")
	r := e.must(mum, 201, "POST", "Appointment/$book", book("s1", ""))
	if !strings.Contains(string(r.Body), `"Patient/c"`) || !strings.Contains(string(r.Body), `"valueReference":{"reference":"RelatedPerson/rp-mum"}`) {
		t.Errorf("a parent's booking: %s", r.Body)
	}
	e.must(mum, 404, "POST", "Appointment/$book", book("s2", "a"))
	e.must(mum, 200, "POST", "Appointment/"+r.str("id")+"/$cancel", "")
	// A caregiver's Consent must cover Appointment (provision.class).
	e.put("RelatedPerson", "rp-care", `{"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/a"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"FRND"}]}]}`)
	consent := func(class string) string {
		return `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
			`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/a"},` +
			`"provision":{"type":"permit","period":{"start":"2026-01-01"},"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleClass","code":"AGNT"}]},"reference":{"reference":"RelatedPerson/rp-care"}}],` +
			`"class":[{"system":"http://hl7.org/fhir/resource-types","code":"` + class + `"}]}}`
	}
	e.put("Consent", "care", consent("Communication"))
	carer := as(t, "patient/*.cruds", "a", "RelatedPerson/rp-care")
	if a := e.do(carer, "POST", "Appointment/$book", book("s2", "")); a.Status != 403 { // the pipeline refuses first; proxyMay checks again
		t.Errorf("a caregiver without Appointment in her Consent booked: %d %s", a.Status, a.Body)
	}
	if st := e.status("Slot/s2"); st != "free" {
		t.Errorf("Slot/s2 %s", st)
	}
	// proxyMay checks the grant itself (a user/-scoped proxy acting for several).
	svcCall := server.OperationCall{Principal: &smart.Principal{FHIRUser: "RelatedPerson/rp-care"}, PatientFacing: true, Patients: []string{"Patient/a"}}
	if err := e.svc.proxyMay(context.Background(), svcCall, "Patient/a"); err == nil || !strings.Contains(err.Error(), "does not cover appointments") {
		t.Errorf("proxyMay without Appointment in the Consent: %v", err)
	}
	e.put("Consent", "care", consent("Appointment"))
	if err := e.svc.proxyMay(context.Background(), svcCall, "Patient/a"); err != nil {
		t.Errorf("proxyMay with Appointment in the Consent: %v", err)
	}
	e.must(carer, 201, "POST", "Appointment/$book", book("s2", ""))
}

// Patient-facing apps cannot book by writing Appointments or Slots.
func TestWriteHook(t *testing.T) {
	e := newEnv(t, testPolicy)
	pa := patient(t, "a")
	direct := `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/s1"}],"start":"` + at(48*time.Hour) + `","end":"` + at(49*time.Hour) + `",` +
		`"participant":[{"actor":{"reference":"Patient/a"},"status":"accepted"}]}`
	e.must(pa, 403, "POST", "Appointment", direct).outcome(t, "Appointment/$book")
	e.must(pa, 403, "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+direct+`,"request":{"method":"POST","url":"Appointment"}}]}`).outcome(t, "$book")
	e.must(pa, 403, "PUT", "Slot/s1", `{"resourceType":"Slot","id":"s1","schedule":{"reference":"Schedule/dr-a"},"status":"busy","start":"`+at(48*time.Hour)+`","end":"`+at(49*time.Hour)+`"}`)
	if st := e.status("Slot/s1"); st != "free" {
		t.Errorf("Slot/s1 %s", st)
	}
	// A request without a Slot is still the patient's to write.
	req := e.must(pa, 201, "POST", "Appointment", `{"resourceType":"Appointment","status":"proposed","participant":[{"actor":{"reference":"Patient/a"},"status":"needs-action"}]}`)
	// A booking the service made cannot be changed by the app directly.
	id := e.must(pa, 201, "POST", "Appointment/$book", book("s1", "")).str("id")
	e.must(pa, 403, "DELETE", "Appointment/"+id, "")
	// Staff write Appointments with Slots as before.
	e.must(e.emr, 201, "POST", "Appointment", strings.Replace(direct, "Slot/s1", "Slot/s2", 1))
	_ = req
}

// Twenty patients book one Slot at once (servertest.Barrier holds the
// first commit of the n bookings until all n have decided, each on the
// Slot version it read, so that they race at the commit): one 201, nineteen 409s.
func TestConcurrentBooking(t *testing.T) {
	const n = 20
	e := newEnv(t, testPolicy, func(c *Config) { c.BeforeCommit = servertest.Barrier(n, 20*time.Second) })
	for i := range n {
		e.put("Patient", fmt.Sprintf("p%d", i), `{"resourceType":"Patient"}`)
	}
	var wg sync.WaitGroup
	statuses := make([]answer, n)
	for i := range n {
		wg.Go(func() {
			statuses[i] = e.do(patient(t, fmt.Sprintf("p%d", i)), "POST", "Appointment/$book", book("s2", ""))
		})
	}
	wg.Wait()
	won := 0
	for _, a := range statuses {
		switch a.Status {
		case 201:
			won++
		case 409:
			if a.str("resourceType") != "OperationOutcome" {
				t.Errorf("409 without an OperationOutcome: %s", a.Body)
			}
		default:
			t.Errorf("status %d: %s", a.Status, a.Body)
		}
	}
	if won != 1 {
		t.Fatalf("%d bookings won the slot", won)
	}
	r := e.must(e.emr, 200, "GET", "Appointment?slot=Slot/s2&_summary=count", "")
	if r.json["total"] != float64(1) {
		t.Errorf("%v Appointments hold the slot", r.json["total"])
	}
}
