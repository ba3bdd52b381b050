package app

// Attacker tests of the portal services (workflow, booking, export,
// usage) and the Subscription and messaging additions, with the tokens a
// patient, a parent, a caregiver with a limited Consent, another patient,
// an unrelated practitioner and a narrow backend client hold. Each test
// states what must hold (README "Security model"; http.html: one answer
// for "not yours" and "does not exist"; operations.html; the Bulk Data
// Access IG 2.0 status and file requests; task.html#statemachine) and
// that nothing changed after a refusal.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/portal/workflow"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// paPolicy is the release rules of testPolicy and the booking rules of
// bookingPolicy in one policy file.
var paPolicy = testPolicy + strings.TrimPrefix(bookingPolicy, "version: 1\n")

// paWorld is bookingWorld with release rules, plus tokens.
type paWorld struct {
	*world
	tA, tB, mum, carer, outsider, backend string // tokens: patients A and B, ...
}

func newPaWorld(t *testing.T, opts ...harnessOpt) *paWorld {
	t.Helper()
	w := newWorld(t, append([]harnessOpt{withMessaging(t, paPolicy)}, opts...)...)
	h := w.h
	for _, p := range []string{"dr-a", "dr-physio", "outsider"} {
		put(h, "Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	put(h, "Schedule", "sch-a", `{"resourceType":"Schedule","active":true,"actor":[{"reference":"Practitioner/dr-a"}]}`)
	for i, in := range []time.Duration{48 * time.Hour, 72 * time.Hour, 96 * time.Hour, 120 * time.Hour} {
		start := h.clock.Now().Add(in)
		put(h, "Slot", fmt.Sprintf("s%d", i+1), fmt.Sprintf(`{"resourceType":"Slot","schedule":{"reference":"Schedule/sch-a"},"status":"free","start":%q,"end":%q}`,
			start.Format(time.RFC3339), start.Add(20*time.Minute).Format(time.RFC3339)))
	}
	return &paWorld{world: w,
		tA:       w.patientToken(w.pa, "patient/*.cruds"),
		tB:       w.patientToken(w.pb, "patient/*.cruds"),
		mum:      h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"}),
		carer:    h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"}),
		outsider: h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/outsider", Client: "emr"}),
		backend:  h.token(devissuer.MintOptions{Scope: "system/Observation.rs", Client: "narrow"}),
	}
}

// same asserts that a hidden and a missing target answer alike (status
// and body, with the ids blanked).
func same(t *testing.T, what string, hidden res, hiddenID string, missing res, missingID string) {
	t.Helper()
	if notFoundShape(hidden, hiddenID) != notFoundShape(missing, missingID) {
		t.Errorf("%s: a hidden target answers\n  %s\nbut a missing one\n  %s", what, notFoundShape(hidden, hiddenID), notFoundShape(missing, missingID))
	}
}

// count is the number of resources of a search, as the server sees them.
func count(h *harness, query string) int {
	h.t.Helper()
	sep := "?"
	if strings.Contains(query, "?") {
		sep = "&"
	}
	r := h.req("GET", query+sep+"_summary=count", nil, "").must(h.t, 200)
	n, _ := r.JSON["total"].(float64)
	return int(n)
}

// version is the current versionId of typ/id (as the server sees it).
func version(h *harness, ref string) string {
	h.t.Helper()
	return h.req("GET", ref, nil, "").must(h.t, 200).str("meta", "versionId")
}

func correction(patient, focus, text string) string {
	return `{"resourceType":"Task","status":"requested","intent":"order",` +
		`"code":{"coding":[{"system":"` + workflow.TaskCodeSystem + `","code":"correction-request"}]},` +
		`"focus":{"reference":"` + focus + `"},"for":{"reference":"Patient/` + patient + `"},` +
		`"input":[{"type":{"coding":[{"system":"` + workflow.ParameterSystem + `","code":"proposed-correction"}]},"valueString":"` + text + `"}]}`
}

const hivSecurity = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},`

// Search oracles around the booking and workflow resources: Slots and
// Practitioners hold no patient data and are readable by patients, so
// _has, _revinclude and the inbox parameters must not turn them into a
// window on another patient's Appointments, Tasks or messages.
func TestAttackPortalSearchOracles(t *testing.T) {
	w := newPaWorld(t)
	h := w.h
	// B books s1; a practitioner owns a Task of B's; B has an unread message.
	h.req("POST", "Appointment/$book", bookBody("s1", ""), w.tB).must(t, 201)
	put(h, "Task", "task-b", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/pat-b"},"owner":{"reference":"Practitioner/dr-a"}}`)
	put(h, "Communication", "comm-b", `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/pat-b"},`+
		`"sender":{"reference":"Practitioner/dr-a"},"recipient":[{"reference":"Patient/pat-b"}],"payload":[{"contentString":"your results"}]}`)
	put(h, "Communication", "thread-b", `{"resourceType":"Communication","status":"in-progress","subject":{"reference":"Patient/pat-b"},`+
		`"recipient":[{"reference":"Practitioner/dr-a"}],"payload":[{"contentString":"question"}]}`)
	for _, tok := range []struct{ who, token string }{{"patient A", w.tA}, {"parent of C", w.mum}, {"caregiver of A", w.carer}} {
		for _, c := range []struct {
			q   string
			bad []string // must not be returned
		}{
			{"Slot?_revinclude=Appointment:slot", []string{"Appointment/"}},
			{"Slot?_id=s1&_revinclude=Appointment:slot", []string{"Appointment/"}},
			{"Practitioner?_revinclude=Task:owner", []string{"Task/task-b"}},
			{"Practitioner?_revinclude=Communication:sender&_revinclude=Communication:recipient", []string{"Communication/comm-b", "Communication/thread-b"}},
			{"Schedule?_revinclude=Slot:schedule&_revinclude:iterate=Appointment:slot", []string{"Appointment/"}},
			{"Appointment?slot=Slot/s1", []string{"Appointment/"}},
			{"Communication?unread-for=Patient/pat-b", []string{"Communication/comm-b"}},
			{"Communication?open-thread-for=Practitioner/dr-a", []string{"Communication/thread-b"}},
			{"Task?owner=Practitioner/dr-a", []string{"Task/task-b"}},
		} {
			r := h.req("GET", c.q, nil, tok.token)
			if r.Status != 200 && r.Status != 400 && r.Status != 403 {
				t.Errorf("%s %s: %d %s", tok.who, c.q, r.Status, truncate(r.Body))
			}
			for _, got := range ids(r) {
				for _, b := range c.bad {
					if strings.HasPrefix(got, b) {
						t.Errorf("%s %s returns %s", tok.who, c.q, got)
					}
				}
			}
		}
		// _has on a patient-free type must not tell whether another
		// patient booked a Slot, has a Task owned by or unread messages
		// for someone: the answer equals the one for a patient who does
		// not exist.
		for _, c := range []struct{ hidden, missing string }{
			{"Slot?_has:Appointment:slot:patient=Patient/pat-b", "Slot?_has:Appointment:slot:patient=Patient/no-such"},
			{"Slot?_has:Appointment:slot:actor=Patient/pat-b", "Slot?_has:Appointment:slot:actor=Patient/no-such"},
			{"Practitioner?_has:Task:owner:patient=Patient/pat-b", "Practitioner?_has:Task:owner:patient=Patient/no-such"},
			{"Practitioner?_has:Communication:sender:unread-for=Patient/pat-b", "Practitioner?_has:Communication:sender:unread-for=Patient/no-such"},
			{"Practitioner?_has:Communication:recipient:open-thread-for=Practitioner/dr-a", "Practitioner?_has:Communication:recipient:open-thread-for=Practitioner/no-such"},
		} {
			a, b := h.req("GET", c.hidden, nil, tok.token), h.req("GET", c.missing, nil, tok.token)
			if a.Status != b.Status || fmt.Sprint(ids(a)) != fmt.Sprint(ids(b)) {
				t.Errorf("%s: %s answers %d %v, %s answers %d %v", tok.who, c.hidden, a.Status, ids(a), c.missing, b.Status, ids(b))
			}
		}
	}
}

// Booking operations as an attacker: another patient's ids in the
// parameters and the instance, proxies beyond their grant, Bundles that
// write Slots or booked Appointments around $book, forged booking marks,
// malformed and oversized Parameters. Every refusal leaves the Slots and
// Appointments as they were.
func TestAttackPortalBooking(t *testing.T) {
	w := newPaWorld(t)
	h := w.h
	apptB := h.req("POST", "Appointment/$book", bookBody("s1", ""), w.tB).must(t, 201).str("id")
	vB := version(h, "Appointment/"+apptB)
	appts := func() int { return count(h, "Appointment") }
	before := appts()

	// Booking for someone else: 404 exactly as for a Patient that does not exist.
	for _, c := range []struct{ who, token, other string }{
		{"patient A", w.tA, w.pb}, {"parent of C", w.mum, w.pa}, {"caregiver of A", w.carer, w.pb},
	} {
		hidden := h.req("POST", "Appointment/$book", bookBody("s2", c.other), c.token)
		missing := h.req("POST", "Appointment/$book", bookBody("s2", "no-such"), c.token)
		if hidden.Status != 404 {
			t.Errorf("%s books for %s: %d %s", c.who, c.other, hidden.Status, truncate(hidden.Body))
		}
		same(t, c.who+" $book patient=other", hidden, c.other, missing, "no-such")
	}
	// Another patient's Appointment: $cancel, $reschedule answer as a
	// missing one; $approve is staff only.
	for _, op := range []struct{ name, body string }{
		{"$cancel", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"x"}]}`},
		{"$reschedule", bookBody("s3", "")},
	} {
		for _, c := range []struct{ who, token string }{{"patient A", w.tA}, {"parent of C", w.mum}, {"caregiver of A", w.carer}} {
			hidden := h.req("POST", "Appointment/"+apptB+"/"+op.name, op.body, c.token)
			missing := h.req("POST", "Appointment/no-such/"+op.name, op.body, c.token)
			if hidden.Status != 404 {
				t.Errorf("%s %s on B's Appointment: %d %s", c.who, op.name, hidden.Status, truncate(hidden.Body))
			}
			same(t, c.who+" "+op.name+" on B's Appointment", hidden, apptB, missing, "no-such")
		}
	}
	h.req("POST", "Appointment/"+apptB+"/$approve", nil, w.tB).must(t, 403)
	if v := version(h, "Appointment/"+apptB); v != vB {
		t.Errorf("B's Appointment changed to version %s", v)
	}
	if slotStatus(h, "s1") != "busy" || slotStatus(h, "s2") != "free" || slotStatus(h, "s3") != "free" {
		t.Errorf("Slots: %s %s %s", slotStatus(h, "s1"), slotStatus(h, "s2"), slotStatus(h, "s3"))
	}

	// A caregiver whose Consent covers Communication only books nothing
	// (the Consent limits writes as reads), nor cancels A's booking.
	apptA := h.req("POST", "Appointment/$book", bookBody("s2", ""), w.tA).must(t, 201).str("id")
	before = appts()
	put(h, "Consent", w.consent, strings.Replace(consentJSON("active"),
		`{"system":"http://hl7.org/fhir/resource-types","code":"Appointment"},`, "", 1))
	if r := h.req("POST", "Appointment/$book", bookBody("s3", ""), w.carer); r.Status != 403 && r.Status != 404 {
		t.Errorf("caregiver without Appointment in the Consent books: %d %s", r.Status, truncate(r.Body))
	}
	if r := h.req("POST", "Appointment/"+apptA+"/$cancel", nil, w.carer); r.Status != 403 && r.Status != 404 {
		t.Errorf("caregiver without Appointment in the Consent cancels: %d %s", r.Status, truncate(r.Body))
	}
	if r := h.req("GET", "Slot/$find", nil, w.carer); r.Status == 200 && len(ids(r)) == 0 {
		t.Logf("$find for the caregiver: %d", r.Status)
	}
	// A Consent with actions that exclude writing (access only).
	put(h, "Consent", w.consent, strings.Replace(consentJSON("active"), `"class":`,
		`"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}],"class":`, 1))
	if r := h.req("POST", "Appointment/$book", bookBody("s3", ""), w.carer); r.Status != 403 && r.Status != 404 {
		t.Errorf("caregiver with an access-only Consent books: %d %s", r.Status, truncate(r.Body))
	}
	if r := h.req("POST", "Appointment/"+apptA+"/$reschedule", bookBody("s3", ""), w.carer); r.Status != 403 && r.Status != 404 {
		t.Errorf("caregiver with an access-only Consent moves A's booking: %d %s", r.Status, truncate(r.Body))
	}
	if appts() != before || slotStatus(h, "s3") != "free" || h.req("GET", "Appointment/"+apptA, nil, "").str("status") != "booked" {
		t.Errorf("a refused proxy changed something: %d Appointments (were %d), s3 %s", appts(), before, slotStatus(h, "s3"))
	}

	// Around $book with Bundles: a transaction or batch that PUTs a Slot
	// busy, or creates / updates an Appointment naming a Slot.
	slotBusy := `{"resourceType":"Slot","id":"s3","schedule":{"reference":"Schedule/sch-a"},"status":"busy","start":"2026-06-05T12:00:00Z","end":"2026-06-05T12:20:00Z"}`
	apptOnSlot := `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/s3"}],"participant":[{"actor":{"reference":"Patient/pat-a"},"status":"accepted"}]}`
	for _, typ := range []string{"transaction", "batch"} {
		for _, c := range []struct{ name, entries string }{
			{"PUT Slot busy", `{"resource":` + slotBusy + `,"request":{"method":"PUT","url":"Slot/s3"}}`},
			{"POST Appointment with a Slot", `{"fullUrl":"urn:uuid:1","resource":` + apptOnSlot + `,"request":{"method":"POST","url":"Appointment"}}`},
			{"PUT own Appointment onto a Slot", `{"resource":` + strings.Replace(apptOnSlot, `{"resourceType":"Appointment",`, `{"resourceType":"Appointment","id":"`+apptA+`",`, 1) +
				`,"request":{"method":"PUT","url":"Appointment/` + apptA + `"}}`},
			{"PATCH Slot", `{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Slot.status"},{"name":"value","valueCode":"busy"}]}]},"request":{"method":"PATCH","url":"Slot/s3"}}`},
		} {
			body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + c.entries + `]}`
			r := h.req("POST", "", body, w.tA)
			if r.Status == 200 {
				for _, e := range r.entries() {
					resp, _ := e["response"].(map[string]any)
					if st, _ := resp["status"].(string); strings.HasPrefix(st, "2") {
						t.Errorf("patient %s %s: entry %s", typ, c.name, st)
					}
				}
			} else if r.Status < 400 {
				t.Errorf("patient %s %s: %d", typ, c.name, r.Status)
			}
		}
	}
	if slotStatus(h, "s3") != "free" || appts() != before {
		t.Errorf("Bundles went around $book: s3 %s, %d Appointments (were %d)", slotStatus(h, "s3"), appts(), before)
	}
	if got := h.req("GET", "Appointment/"+apptA, nil, "").must(t, 200); strings.Contains(string(got.Body), "Slot/s3") {
		t.Errorf("A's Appointment moved onto s3 by a Bundle")
	}

	// Forged booking marks: a slot-less request Appointment claiming to
	// have been booked online by a practitioner.
	forged := `{"resourceType":"Appointment","status":"proposed",` +
		`"meta":{"tag":[{"system":"http://fhirgate.dev/CodeSystem/booking","code":"online"}]},` +
		`"extension":[{"url":"http://fhirgate.dev/StructureDefinition/booked-by","valueReference":{"reference":"Practitioner/dr-a"}}],` +
		`"participant":[{"actor":{"reference":"Patient/pat-a"},"status":"accepted"}]}`
	if r := h.req("POST", "Appointment", forged, w.tA); r.Status < 300 {
		got := h.req("GET", "Appointment/"+r.str("id"), nil, "").must(t, 200)
		if strings.Contains(string(got.Body), "booked-by") || strings.Contains(string(got.Body), `"code":"online"`) {
			t.Errorf("a patient app forged the online-booking tag or the booked-by extension: %s", got.Body)
		}
	}

	// Malformed and oversized Parameters: 4xx with an OperationOutcome,
	// nothing stored.
	before = appts()
	for _, c := range []struct {
		name, path, body string
	}{
		{"not JSON", "Appointment/$book", `{"resourceType":"Parameters",`},
		{"not Parameters", "Appointment/$book", `{"resourceType":"Patient"}`},
		{"slot of another type", "Appointment/$book", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Appointment/` + apptB + `"}}]}`},
		{"slot with a path", "Appointment/$book", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/../Appointment/` + apptB + `"}}]}`},
		{"slot as a list", "Appointment/$book", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/s3"}},{"name":"slot","valueReference":{"reference":"Slot/s4"}}]}`},
		{"huge comment", "Appointment/$book", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/s3"}},{"name":"comment","valueString":"` + strings.Repeat("x", 5000) + `"}]}`},
		{"huge reschedule comment", "Appointment/" + apptA + "/$reschedule", `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/s4"}},{"name":"comment","valueString":"` + strings.Repeat("x", 5000) + `"}]}`},
		{"huge cancel reason", "Appointment/" + apptA + "/$cancel", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"` + strings.Repeat("x", 5000) + `"}]}`},
		{"over the body limit", "Appointment/$book", `{"resourceType":"Parameters","parameter":[{"name":"comment","valueString":"` + strings.Repeat("x", 2<<20) + `"}]}`},
	} {
		r := h.req("POST", c.path, c.body, w.tA)
		if r.Status < 400 || r.Status >= 500 || r.JSON["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d %s", c.name, r.Status, truncate(r.Body))
		}
	}
	if appts() != before || slotStatus(h, "s3") != "free" || slotStatus(h, "s4") != "free" || h.req("GET", "Appointment/"+apptA, nil, "").str("status") != "booked" {
		t.Errorf("a malformed request changed something: %d Appointments (were %d), s3 %s, s4 %s", appts(), before, slotStatus(h, "s3"), slotStatus(h, "s4"))
	}

	// Race: A's $cancel and $reschedule of one Appointment at once leave
	// one consistent outcome (never a cancelled Appointment holding a busy
	// Slot, never two busy Slots for one Appointment).
	var wg sync.WaitGroup
	var st [2]int
	for i, op := range []struct{ path, body string }{{"Appointment/" + apptA + "/$cancel", ""}, {"Appointment/" + apptA + "/$reschedule", bookBody("s4", "")}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st[i] = h.reqNoFatal("POST", op.path, op.body, w.tA).Status
		}()
	}
	wg.Wait()
	a := h.req("GET", "Appointment/"+apptA, nil, "").must(t, 200)
	s2, s4 := slotStatus(h, "s2"), slotStatus(h, "s4")
	switch {
	case a.str("status") == "cancelled" && s2 == "free" && s4 == "free":
	case a.str("status") == "booked" && strings.Contains(string(a.Body), "Slot/s4") && s2 == "free" && s4 == "busy":
	default:
		t.Errorf("cancel %d and reschedule %d at once: Appointment %s %s, s2 %s, s4 %s", st[0], st[1], a.str("status"), a.Body, s2, s4)
	}
}

// Correction requests and $withdraw as an attacker: focus another
// patient's, a held or a sensitive resource; Tasks of another kind or
// status; owner naming another patient; Bundles and conditional writes
// that would go around the Task rules; $withdraw of another's Task or of
// a held one; malformed bodies. Refusals store nothing.
func TestAttackPortalWorkflow(t *testing.T) {
	w := newPaWorld(t)
	h := w.h
	put(h, "Observation", "held-a", pathology(w.pa))
	put(h, "Observation", "hiv-c", strings.Replace(obs(w.pc, "laboratory", "75622-1"), `"status"`, hivSecurity+`"status"`, 1))
	put(h, "Task", "task-b", `{"resourceType":"Task","status":"requested","intent":"order","identifier":[{"system":"urn:x","value":"b-1"}],`+
		`"code":{"coding":[{"system":"`+workflow.TaskCodeSystem+`","code":"correction-request"}]},"focus":{"reference":"Observation/lab-b"},`+
		`"for":{"reference":"Patient/pat-b"},"requester":{"reference":"Patient/pat-b"},`+
		`"input":[{"type":{"coding":[{"system":"`+workflow.ParameterSystem+`","code":"proposed-correction"}]},"valueString":"b"}]}`)
	// A's Tasks that A may not see: held (HIV label, manual release), one
	// of them closed (a 409 would tell it exists).
	put(h, "Task", "task-a-held", `{"resourceType":"Task",`+hivSecurity+`"status":"requested","intent":"order","for":{"reference":"Patient/pat-a"},"requester":{"reference":"Patient/pat-a"},`+
		`"code":{"coding":[{"system":"`+workflow.TaskCodeSystem+`","code":"correction-request"}]},"focus":{"reference":"Observation/lab-a"},`+
		`"input":[{"type":{"coding":[{"system":"`+workflow.ParameterSystem+`","code":"proposed-correction"}]},"valueString":"a"}]}`)
	put(h, "Appointment", "appt-b", `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/pat-b"},"status":"accepted"}]}`)
	tasks := func() int { return count(h, "Task") }
	before := tasks()

	// focus: another patient's, own but held, a child's sensitive result:
	// 404, the same as a missing resource.
	for _, c := range []struct{ who, token, patient, focus string }{
		{"patient A, B's result", w.tA, w.pa, "Observation/" + w.labB},
		{"patient A, held result", w.tA, w.pa, "Observation/held-a"},
		{"patient A, B's Patient", w.tA, w.pa, "Patient/pat-b"},
		{"patient A, B's Task", w.tA, w.pa, "Task/task-b"},
		{"patient A, B's Appointment", w.tA, w.pa, "Appointment/appt-b"},
		{"parent, child's HIV result", w.mum, w.pc, "Observation/hiv-c"},
		{"parent, A's result", w.mum, w.pc, "Observation/" + w.labA},
	} {
		typ, id, _ := strings.Cut(c.focus, "/")
		hidden := h.req("POST", "Task", correction(c.patient, c.focus, "x"), c.token)
		missing := h.req("POST", "Task", correction(c.patient, typ+"/no-such", "x"), c.token)
		if hidden.Status != 404 {
			t.Errorf("%s: %d %s", c.who, hidden.Status, truncate(hidden.Body))
		}
		same(t, c.who, hidden, id, missing, "no-such")
	}
	// Tasks of another shape.
	for _, c := range []struct {
		name, body string
		want       []int
	}{
		{"status completed", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"status":"requested"`, `"status":"completed"`, 1), []int{422}},
		{"status accepted", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"status":"requested"`, `"status":"accepted"`, 1), []int{422}},
		{"an eReferral", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), "correction-request", "ereferral", 1), []int{403}},
		{"the escalation code", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"system":"`+workflow.TaskCodeSystem+`","code":"correction-request"`,
			`"system":"http://fhirgate.dev/CodeSystem/message-escalation","code":"econsult"`, 1), []int{403}},
		{"two codes", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"code":"correction-request"}`,
			`"code":"correction-request"},{"system":"`+workflow.TaskCodeSystem+`","code":"ereferral"}`, 1), []int{403, 422}},
		{"owner another patient", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"for":`, `"owner":{"reference":"Patient/pat-b"},"for":`, 1), []int{403, 422}},
		{"owner a clinician (the organisation routes corrections)", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"for":`, `"owner":{"reference":"Practitioner/dr-a"},"for":`, 1), []int{422}},
		{"requester a practitioner", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"for":`, `"requester":{"reference":"Practitioner/dr-a"},"for":`, 1), []int{403}},
		{"requester another patient", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"for":`, `"requester":{"reference":"Patient/pat-b"},"for":`, 1), []int{403}},
		{"for another patient", correction(w.pb, "Observation/lab-b", "x"), []int{403}},
		{"an output", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"for":`, `"output":[{"type":{"text":"x"},"valueString":"done"}],"for":`, 1), []int{422}},
		{"no proposal", strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"valueString":"x"`, `"valueString":"  "`, 1), []int{422}},
	} {
		r := h.req("POST", "Task", c.body, w.tA)
		ok := false
		for _, s := range c.want {
			ok = ok || r.Status == s
		}
		if !ok || r.JSON["resourceType"] != "OperationOutcome" {
			t.Errorf("patient creates a Task with %s: %d, want %v: %s", c.name, r.Status, c.want, truncate(r.Body))
		}
	}
	// Bundles: a Task transition, a completed Task, a Task of B's: refused,
	// and the transaction all-or-nothing.
	ownID := h.req("POST", "Task", correction(w.pa, "Observation/lab-a", "fasting"), w.tA).must(t, 201).str("id")
	before = tasks()
	vOwn := version(h, "Task/"+ownID)
	own := h.req("GET", "Task/"+ownID, nil, w.tA).must(t, 200).JSON
	own["status"] = "completed"
	ownJSON := mustJSON(t, own)
	for _, typ := range []string{"transaction", "batch"} {
		for _, c := range []struct{ name, entries string }{
			{"PUT own Task completed", `{"resource":` + ownJSON + `,"request":{"method":"PUT","url":"Task/` + ownID + `"}}`},
			{"PATCH own Task", `{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Task.status"},{"name":"value","valueCode":"completed"}]}]},"request":{"method":"PATCH","url":"Task/` + ownID + `"}}`},
			{"POST completed Task", `{"fullUrl":"urn:uuid:t1","resource":` + strings.Replace(correction(w.pa, "Observation/lab-a", "x"), `"status":"requested"`, `"status":"completed"`, 1) + `,"request":{"method":"POST","url":"Task"}}`},
			{"POST Task for B beside a good one", `{"fullUrl":"urn:uuid:t2","resource":` + correction(w.pa, "Observation/lab-a", "ok") + `,"request":{"method":"POST","url":"Task"}},` +
				`{"fullUrl":"urn:uuid:t3","resource":` + correction(w.pb, "Observation/lab-b", "x") + `,"request":{"method":"POST","url":"Task"}}`},
			{"PUT B's Task", `{"resource":{"resourceType":"Task","id":"task-b","status":"cancelled","intent":"order","for":{"reference":"Patient/pat-b"}},"request":{"method":"PUT","url":"Task/task-b"}}`},
			{"DELETE B's Task", `{"request":{"method":"DELETE","url":"Task/task-b"}}`},
			{"conditional PUT matching B's Task", `{"resource":{"resourceType":"Task","status":"cancelled","intent":"order","for":{"reference":"Patient/pat-a"}},"request":{"method":"PUT","url":"Task?identifier=urn:x|b-1"}}`},
		} {
			body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + c.entries + `]}`
			r := h.req("POST", "", body, w.tA)
			if typ == "transaction" && r.Status < 400 {
				t.Errorf("patient transaction %s: %d %s", c.name, r.Status, truncate(r.Body))
			}
			if typ == "batch" && r.Status == 200 {
				for i, e := range r.entries() {
					resp, _ := e["response"].(map[string]any)
					st, _ := resp["status"].(string)
					if strings.HasPrefix(st, "2") && !(c.name == "POST Task for B beside a good one" && i == 0) {
						t.Errorf("patient batch %s: entry %d %s", c.name, i, st)
					}
				}
			}
		}
	}
	// The one good entry of the last batch is the only Task created.
	if n := tasks(); n != before+1 {
		t.Errorf("%d Tasks after the Bundles, want %d", n, before+1)
	}
	if v := version(h, "Task/"+ownID); v != vOwn {
		t.Errorf("own Task changed through a Bundle (version %s)", v)
	}
	if h.req("GET", "Task/task-b", nil, "").str("status") != "requested" {
		t.Error("B's Task changed")
	}
	// Conditional writes matching B's Task answer as one matching nothing
	// and change nothing.
	condBody := `{"resourceType":"Task","status":"cancelled","intent":"order","for":{"reference":"Patient/pat-a"}}`
	for _, c := range []struct{ method, hidden, missing, body string }{
		{"PUT", "Task?identifier=urn:x|b-1", "Task?identifier=urn:x|none", condBody},
		{"DELETE", "Task?identifier=urn:x|b-1", "Task?identifier=urn:x|none", ""},
		{"PATCH", "Task?identifier=urn:x|b-1", "Task?identifier=urn:x|none", `[{"op":"replace","path":"/status","value":"cancelled"}]`},
	} {
		var body any
		hdr := []string{}
		if c.body != "" {
			body = c.body
			if c.method == "PATCH" {
				hdr = append(hdr, "Content-Type: application/json-patch+json")
			}
		}
		a, b := h.req(c.method, c.hidden, body, w.tA, hdr...), h.req(c.method, c.missing, body, w.tA, hdr...)
		if notFoundShape(a, "b-1") != notFoundShape(b, "none") {
			t.Errorf("conditional %s on B's Task: %d %s; on nothing: %d %s", c.method, a.Status, truncate(a.Body), b.Status, truncate(b.Body))
		}
	}
	// POST with If-None-Exist matching B's Task: not B's Task in the answer.
	r := h.req("POST", "Task", correction(w.pa, "Observation/lab-a", "dup"), w.tA, "If-None-Exist: identifier=urn:x|b-1")
	if strings.Contains(string(r.Body), "task-b") || strings.Contains(string(r.Body), "pat-b") {
		t.Errorf("If-None-Exist matched B's Task: %d %s", r.Status, truncate(r.Body))
	}
	if h.req("GET", "Task/task-b", nil, "").str("status") != "requested" {
		t.Error("B's Task changed by a conditional write")
	}

	// $withdraw: B's Task and A's held Task answer as a missing one, for
	// A, the caregiver (Consent without Task) and the parent; nothing changes.
	vHeld := version(h, "Task/task-a-held")
	for _, c := range []struct{ who, token, id string }{
		{"patient A, B's Task", w.tA, "task-b"},
		{"patient A, own held Task", w.tA, "task-a-held"},
		{"caregiver of A, A's Task", w.carer, ownID},
		{"parent of C, A's Task", w.mum, ownID},
		{"patient B, A's Task", w.tB, ownID},
	} {
		hidden := h.req("POST", "Task/"+c.id+"/$withdraw", nil, c.token)
		missing := h.req("POST", "Task/no-such/$withdraw", nil, c.token)
		if hidden.Status != 404 && hidden.Status != 403 { // 403: the Consent does not cover Task at all
			t.Errorf("%s $withdraw: %d %s", c.who, hidden.Status, truncate(hidden.Body))
		}
		same(t, c.who+" $withdraw", hidden, c.id, missing, "no-such")
	}
	// Closing the held Task must not make the answer a 409.
	held := h.req("GET", "Task/task-a-held", nil, "").must(t, 200).JSON
	held["status"] = "cancelled"
	h.req("PUT", "Task/task-a-held", held, "").must(t, 200)
	vHeld = version(h, "Task/task-a-held")
	same(t, "patient A $withdraw of own closed held Task", h.req("POST", "Task/task-a-held/$withdraw", nil, w.tA), "task-a-held",
		h.req("POST", "Task/no-such/$withdraw", nil, w.tA), "no-such")
	if version(h, "Task/task-a-held") != vHeld || version(h, "Task/"+ownID) != vOwn || h.req("GET", "Task/task-b", nil, "").str("status") != "requested" {
		t.Error("a refused $withdraw changed a Task")
	}
	// A practitioner who is neither requester nor owner cannot withdraw.
	if r := h.req("POST", "Task/"+ownID+"/$withdraw", nil, w.outsider); r.Status != 403 {
		t.Errorf("unrelated practitioner $withdraw: %d %s", r.Status, truncate(r.Body))
	}
	// Malformed bodies: 400 with an OperationOutcome, nothing changes.
	for _, body := range []string{`{"resourceType":"Parameters",`, `{"resourceType":"Task"}`, `[1,2]`} {
		r := h.req("POST", "Task/"+ownID+"/$withdraw", body, w.tA)
		if r.Status != 400 || r.JSON["resourceType"] != "OperationOutcome" {
			t.Errorf("$withdraw with %s: %d %s", body, r.Status, truncate(r.Body))
		}
	}
	if version(h, "Task/"+ownID) != vOwn {
		t.Error("a malformed $withdraw changed the Task")
	}
	// Two $withdraw at once: one cancels, the other is refused; one new version.
	var wg sync.WaitGroup
	var st [2]int
	for i := range st {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st[i] = h.reqNoFatal("POST", "Task/"+ownID+"/$withdraw", "", w.tA).Status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range st {
		if s == 200 {
			ok++
		} else if s != 409 && s != 412 {
			t.Errorf("concurrent $withdraw answered %d", s)
		}
	}
	got := h.req("GET", "Task/"+ownID, nil, "").must(t, 200)
	if ok != 1 || got.str("status") != "cancelled" || got.str("meta", "versionId") != fmt.Sprint(mustAtoi(t, vOwn)+1) {
		t.Errorf("two $withdraw at once: %v, Task %s version %s", st, got.str("status"), got.str("meta", "versionId"))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// $everything and Bulk Data as an attacker: another patient's record, a
// proxy beyond their grant, a forged cursor; bulk status and file URLs
// used by another client, by a user-facing token of the same client, with
// an expired token, with path traversal in the file name.
func TestAttackPortalExport(t *testing.T) {
	w := exWorld(t)
	h := w.h
	pa := w.patientToken(w.pa, "patient/*.rs")
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"})
	carer := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"})
	for _, c := range []struct{ who, token, other string }{
		{"patient A", pa, w.pb}, {"parent of C", mum, w.pa}, {"caregiver of A", carer, w.pb},
	} {
		for _, m := range []string{"GET", "POST"} {
			var body any
			if m == "POST" {
				body = `{"resourceType":"Parameters"}`
			}
			hidden := h.req(m, "Patient/"+c.other+"/$everything", body, c.token)
			missing := h.req(m, "Patient/no-such/$everything", body, c.token)
			if hidden.Status != 404 && hidden.Status != 403 {
				t.Errorf("%s %s $everything of %s: %d", c.who, m, c.other, hidden.Status)
			}
			same(t, c.who+" $everything of another", hidden, c.other, missing, "no-such")
		}
	}
	// The caregiver's Consent covers Appointment and Communication, not
	// the Patient: no export of A's record.
	if r := h.req("GET", "Patient/pat-a/$everything", nil, carer); r.Status != 403 && r.Status != 404 {
		t.Errorf("the caregiver's $everything of A: %d %s", r.Status, truncate(r.Body))
	}
	// Held, excluded and sensitive resources stay out, with their Binaries.
	matches, included, _ := exEverything(t, h, "Patient/pat-a/$everything?_type=Observation,DocumentReference,Task,Binary", pa)
	for _, k := range append(matches, included...) {
		if k == "Observation/path-a" || strings.Contains(k, "pat-b") || k == "Observation/"+w.labB || k == "Binary/bin-hiv" {
			t.Errorf("patient A's $everything returns %s", k)
		}
	}
	matches, included, _ = exEverything(t, h, "Patient/pat-c/$everything", mum)
	for _, k := range append(matches, included...) {
		if k == "DocumentReference/hiv" || k == "Binary/bin-hiv" {
			t.Errorf("the parent's $everything returns %s", k)
		}
	}
	// A forged cursor is a 400, not another page of someone's record.
	for _, cur := range []string{"0.garbage", "99.x", "-1.", "1.eyJ0eXAiOiJ4In0"} {
		r := h.req("GET", "Patient/pat-a/$everything?_cursor="+cur, nil, pa)
		if r.Status != 400 && r.Status != 200 {
			t.Errorf("$everything _cursor=%s: %d %s", cur, r.Status, truncate(r.Body))
		}
		for _, k := range ids(r) {
			if strings.Contains(k, "pat-b") || k == "Observation/"+w.labB || k == "Observation/path-a" {
				t.Errorf("$everything _cursor=%s returns %s", cur, k)
			}
		}
	}

	// Bulk Data: a job of client bulk-1.
	owner := h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1"})
	r := exBulk{h, owner}.kick(t, "GET", "$export?_type=Patient,Observation", nil).must(t, 202)
	loc := r.Header.Get("Content-Location")
	m := exPoll(t, loc, owner)
	if len(m.Output) == 0 {
		t.Fatalf("no output: %+v", m)
	}
	file := m.Output[0].URL
	missingLoc := loc[:strings.LastIndex(loc, "/")+1] + "nosuchjob"
	missingFile := missingLoc + "/files/" + file[strings.LastIndex(file, "/")+1:]
	jobID := loc[strings.LastIndex(loc, "/")+1:]
	for _, c := range []struct{ who, token string }{
		{"another backend client", h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-2"})},
		{"another client with the same subject", h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-2", Subject: "bulk-1"})},
		{"a patient of the same client", h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, Client: "bulk-1"})},
		{"a patient user of the same client", h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, FHIRUser: "Patient/pat-a", Subject: "bulk-1", Client: "bulk-1"})},
		{"a practitioner of the same client", h.token(devissuer.MintOptions{Scope: "user/*.rs", FHIRUser: "Practitioner/dr-1", Subject: "bulk-1", Client: "bulk-1"})},
	} {
		for _, u := range [][2]string{{loc, missingLoc}, {file, missingFile}} {
			st, _, body := exRaw(t, "GET", u[0], c.token)
			st2, _, body2 := exRaw(t, "GET", u[1], c.token)
			if st < 400 || st != st2 || strings.ReplaceAll(string(body), jobID, "ID") != strings.ReplaceAll(string(body2), "nosuchjob", "ID") {
				t.Errorf("%s GET %s: %d %s; missing job: %d %s", c.who, u[0], st, body, st2, body2)
			}
		}
		if st, _, _ := exRaw(t, "DELETE", loc, c.token); st < 400 {
			t.Errorf("%s cancels the job: %d", c.who, st)
		}
	}
	// No token, a bad one, an expired one: 401.
	expiring := h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1", TTL: time.Minute})
	h.clock.Set(h.clock.Now().Add(2 * time.Minute))
	for _, tok := range []string{"", "not-a-jwt", expiring} {
		for _, u := range []string{loc, file} {
			if st, _, _ := exRaw(t, "GET", u, tok); st != 401 {
				t.Errorf("GET %s with token %.10q: %d, want 401", u, tok, st)
			}
		}
	}
	owner = h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1"})
	// Path traversal and odd names in the file and job segments.
	base := loc + "/files/"
	for _, name := range []string{"..%2F..%2Ffhirgate.db", "..%2Fjob.json", "%2e%2e", "..", ".", "x%00.ndjson", "%2Fetc%2Fpasswd",
		strings.Repeat("a", 300), file[strings.LastIndex(file, "/")+1:] + "%2F..%2F..%2Ffhirgate.db"} {
		st, _, body := exRaw(t, "GET", base+name, owner)
		if st != 404 && st != 400 {
			t.Errorf("file %q: %d %.200s", name, st, body)
		}
	}
	for _, u := range []string{loc + "/../../fhir/Patient", loc + "%2F..%2F" + jobID, strings.TrimSuffix(loc, jobID) + "..%2F" + jobID} {
		st, _, body := exRaw(t, "GET", u, owner)
		if st == 200 && !strings.Contains(string(body), `"transactionTime"`) {
			t.Errorf("GET %s: %d %.200s", u, st, body)
		}
	}
	// The owner still gets its files: the job is intact.
	if st, _, _ := exRaw(t, "GET", file, owner); st != 200 {
		t.Errorf("owner's download after the attempts: %d", st)
	}
}

// $usage, /usage/report and /metrics as an attacker: patient-facing
// tokens (whatever their scopes), a practitioner without AuditEvent,
// wrong and missing metrics tokens.
func TestAttackPortalUsage(t *testing.T) {
	const metricsToken = "metrics-secret-0123456789"
	w := newUsageWorld(t, func(o *Options) { o.Usage.MetricsToken = metricsToken })
	h := w.h
	for _, c := range []struct{ name, scope, patient, fhirUser string }{
		{"patient with system scopes", "system/AuditEvent.rs", w.pa, "Patient/" + w.pa},
		{"patient user with system scopes", "system/*.rs", "", "Patient/" + w.pa},
		{"parent with system scopes", "system/AuditEvent.rs", w.pc, "RelatedPerson/" + w.parent},
		{"person with user scopes", "user/AuditEvent.rs", "", "Person/p1"},
		{"patient scopes", "patient/*.rs", w.pa, "Patient/" + w.pa},
		{"practitioner without AuditEvent", "user/Observation.rs", "", "Practitioner/dr-a"},
		{"user scopes without fhirUser", "user/AuditEvent.rs", "", ""},
		{"backend without AuditEvent", "system/Observation.rs", "", ""},
		{"AuditEvent with a query", "system/AuditEvent.rs?patient=Patient/pat-a", "", ""},
		{"AuditEvent write only", "system/AuditEvent.c", "", ""},
	} {
		tok := h.token(devissuer.MintOptions{Scope: c.scope, Patient: c.patient, FHIRUser: c.fhirUser, Client: "x"})
		if r := h.req("GET", "$usage", nil, tok); r.Status != 403 && r.Status != 401 {
			t.Errorf("%s: $usage %d", c.name, r.Status)
		}
		st, _, body := exRaw(t, "GET", strings.TrimSuffix(h.base, "/fhir")+"/usage/report", tok)
		if st != 401 || strings.Contains(string(body), "<svg") {
			t.Errorf("%s: /usage/report %d", c.name, st)
		}
	}
	// The report page without a token is only the sign-in form.
	st, _, body := exRaw(t, "GET", strings.TrimSuffix(h.base, "/fhir")+"/usage/report?start=2026-01-01&end=2026-06-01", "")
	if st != 200 || strings.Contains(string(body), "<svg") || strings.Contains(string(body), "active-users") {
		t.Errorf("report without a token: %d %.300s", st, body)
	}
	// /metrics: no token, a wrong one, a prefix of the right one, the
	// FHIR access token of a backend: 401.
	for _, tok := range []string{"", "wrong", metricsToken[:10], metricsToken + "x", h.tok} {
		if code := scrape(t, h, tok).StatusCode; code != http.StatusUnauthorized {
			t.Errorf("/metrics with %.12q: %d", tok, code)
		}
	}
	if code := scrape(t, h, metricsToken).StatusCode; code != 200 {
		t.Errorf("/metrics with the token: %d", code)
	}
}

// Subscription $status and $events as an attacker: another patient's
// Subscription answers as a missing one; a held result is no event of
// the patient's own Subscription (neither in the count nor in $events).
func TestAttackPortalSubscriptions(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts(withPolicy(t)))
	for _, p := range []string{"pat-a", "pat-b"} {
		put(h, "Patient", p, `{"resourceType":"Patient","name":[{"family":"`+p+`"}],"birthDate":"1970-01-01"}`)
	}
	pa := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "pat-a", FHIRUser: "Patient/pat-a", Client: "portal"})
	pb := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "pat-b", FHIRUser: "Patient/pat-b", Client: "portal"})
	subA := subscribe(t, h, k, pa, subscriptionJSON("Observation?patient=Patient/pat-a", k.srv.URL, "id-only"))
	subB := subscribe(t, h, k, pb, subscriptionJSON("Observation?patient=Patient/pat-b", k.srv.URL, "id-only"))
	for _, op := range []string{"$status", "$events", "$events?content=id-only&eventsSinceNumber=1"} {
		for _, m := range []string{"GET", "POST"} {
			path := op
			var body any
			if m == "POST" {
				path, _, _ = strings.Cut(op, "?")
				body = `{"resourceType":"Parameters"}`
			}
			p1, _, _ := strings.Cut(path, "?")
			_ = p1
			hidden := h.req(m, "Subscription/"+subB+"/"+path, body, pa)
			missing := h.req(m, "Subscription/no-such/"+path, body, pa)
			if hidden.Status != 404 {
				t.Errorf("A %s %s on B's Subscription: %d %s", m, op, hidden.Status, truncate(hidden.Body))
			}
			same(t, "A "+op+" on B's Subscription", hidden, subB, missing, "no-such")
		}
	}
	// A held result (pathology, 7 days) and a released one for A.
	put(h, "Observation", "held-a", pathology("pat-a"))
	ntTick(h, time.Millisecond)
	put(h, "Observation", "seen-a", obs("pat-a", "vital-signs", "8867-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the released result's notification", func() bool { return len(k.of(subA, "event-notification")) >= 1 })
	ntCaughtUp(t, h)
	if n := len(k.of(subA, "event-notification")); n != 1 {
		t.Errorf("%d notifications to A, want 1 (the held result is none)", n)
	}
	st := h.req("GET", "Subscription/"+subA+"/$status", nil, pa).must(t, 200)
	if got := sbParam(sbPost{JSON: st.JSON}, "events-since-subscription-start"); got != "1" {
		t.Errorf("A's $status counts %s events, want 1: %s", got, st.Body)
	}
	ev := h.req("GET", "Subscription/"+subA+"/$events?content=id-only", nil, pa).must(t, 200)
	if strings.Contains(string(ev.Body), "held-a") {
		t.Errorf("$events names the held result: %s", ev.Body)
	}
	// B's Subscription saw none of A's.
	if n := len(k.of(subB, "event-notification")); n != 0 {
		t.Errorf("%d notifications of A's results to B", n)
	}
}
