package app

// End-to-end tests of the access model as an attacker tries it, with
// patient, parent, caregiver and practitioner tokens (issue 12):
//   - R4 compartmentdefinition-patient.html and binary.html#security: types
//     outside the Patient compartment follow what links them to a patient;
//   - http.html (read, vread, history, update, patch, delete, conditional
//     operations): one answer for "not yours" and "does not exist";
//   - release rules and sensitive labels on every interaction, writes too;
//   - IHE BALP / AuditEvent: what a patient or proxy sees of the audit trail;
//   - what a patient-facing app may write (smart.PatientWrites).

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const hivLabel = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},`

func docRef(patient, id, extra string) string {
	return `{"resourceType":"DocumentReference",` + extra + `"status":"current","subject":{"reference":"Patient/` + patient + `"},` +
		`"content":[{"attachment":{"contentType":"application/pdf","url":"Binary/bin-` + id + `"}}]}`
}

func binary(securityContext string) string {
	sc := ""
	if securityContext != "" {
		sc = `"securityContext":{"reference":"` + securityContext + `"},`
	}
	return `{"resourceType":"Binary",` + sc + `"contentType":"application/pdf","data":"JVBERi0xLjQ="}`
}

// Types outside the Patient compartment (Binary, Task, Device, Bundle,
// Linkage...) are confined to the patients they carry data of; only the
// types that hold none (Practitioner, Organization...) stay readable.
func TestNonCompartmentTypesFollowTheirLink(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Practitioner", "dr-1", `{"resourceType":"Practitioner","name":[{"family":"Who"}]}`)
	put(h, "Task", "task-b", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/pat-b"}}`)
	put(h, "Task", "task-a", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/pat-a"}}`)
	put(h, "Device", "dev-b", `{"resourceType":"Device","patient":{"reference":"Patient/pat-b"}}`)
	put(h, "Bundle", "bun-b", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+obs(w.pb, "laboratory", "2160-0")+`}]}`)
	put(h, "Bundle", "bun-a", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+obs(w.pa, "laboratory", "2160-0")+`}]}`)
	put(h, "Bundle", "bun-a-hiv", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+
		strings.Replace(obs(w.pa, "laboratory", "75622-1"), `"status"`, hivLabel+`"status"`, 1)+`}]}`)
	put(h, "Bundle", "bun-ab", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+obs(w.pa, "laboratory", "2160-0")+`},{"resource":`+obs(w.pb, "laboratory", "2160-0")+`}]}`)
	// A Binary whose securityContext is B's stays B's, whoever carries it.
	put(h, "Binary", "bin-sc-b", binary("Patient/pat-b"))
	put(h, "DocumentReference", "doc-a-carries-b", strings.Replace(docRef(w.pa, "x", ""), "Binary/bin-x", "Binary/bin-sc-b", 1))
	put(h, "Linkage", "link-1", `{"resourceType":"Linkage","item":[{"type":"source","resource":{"reference":"Patient/pat-b"}}]}`)
	// Binaries: by securityContext, by the DocumentReference carrying them.
	put(h, "DocumentReference", "doc-b", docRef(w.pb, "doc-b", ""))
	put(h, "Binary", "bin-doc-b", binary("DocumentReference/doc-b"))
	put(h, "DocumentReference", "doc-a", docRef(w.pa, "doc-a", ""))
	put(h, "Binary", "bin-doc-a", binary(""))
	put(h, "DocumentReference", "doc-a-psy", docRef(w.pa, "doc-a-psy", `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},`))
	put(h, "Binary", "bin-doc-a-psy", binary("DocumentReference/doc-a-psy"))
	put(h, "Binary", "bin-orphan", binary(""))
	put(h, "Binary", "bin-pat-a", binary("Patient/pat-a"))

	tok := w.patientToken(w.pa, "patient/*.rs")
	for _, c := range []struct {
		path   string
		status int
	}{
		{"Practitioner/dr-1", 200},
		{"Task/task-a", 200},
		{"Task/task-b", 404},
		{"Device/dev-b", 404},
		{"Bundle/bun-a", 200},
		{"Bundle/bun-b", 404},
		{"Bundle/bun-ab", 404}, // A's and B's entries
		{"Binary/bin-sc-b", 404},
		{"Linkage/link-1", 404},
		{"Binary/bin-doc-a", 200},     // carried by A's DocumentReference
		{"Binary/bin-pat-a", 200},     // securityContext: A
		{"Binary/bin-doc-b", 404},     // securityContext: B's DocumentReference
		{"Binary/bin-doc-a-psy", 404}, // A's, but of an excluded note
		{"Binary/bin-orphan", 404},    // linked to nobody
		{"Binary/bin-doc-b/_history/1", 404},
	} {
		if r := h.req("GET", c.path, nil, tok); r.Status != c.status {
			t.Errorf("patient A GET %s: %d, want %d: %s", c.path, r.Status, c.status, truncate(r.Body))
		}
	}
	for _, q := range []string{"Task", "Device", "Bundle", "Linkage", "Binary", "?_type=Task,Device,Bundle,Linkage,Binary", "Patient/pat-a/*", "Task/_history", "_history"} {
		got := ids(h.req("GET", q, nil, tok).must(t, 200))
		for _, bad := range []string{"Task/task-b", "Device/dev-b", "Bundle/bun-b", "Bundle/bun-ab", "Linkage/link-1", "Binary/bin-doc-b", "Binary/bin-orphan"} {
			if has(got, bad) {
				t.Errorf("patient A searching %s sees %s", q, bad)
			}
		}
	}
	// Sensitive labels follow the link: a parent of C does not see a
	// Bundle of C's HIV result, nor the Binary of C's HIV report.
	put(h, "Bundle", "bun-c-hiv", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+
		strings.Replace(obs(w.pc, "laboratory", "75622-1"), `"status"`, hivLabel+`"status"`, 1)+`}]}`)
	put(h, "Bundle", "bun-c", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+obs(w.pc, "laboratory", "718-7")+`}]}`)
	put(h, "DocumentReference", "doc-c-hiv", docRef(w.pc, "doc-c-hiv", hivLabel))
	put(h, "Binary", "bin-doc-c-hiv", binary(""))
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	h.req("GET", "Bundle/bun-c", nil, mum).must(t, 200)
	h.req("GET", "Bundle/bun-c-hiv", nil, mum).must(t, 404)
	h.req("GET", "Binary/bin-doc-c-hiv", nil, mum).must(t, 404)
	// The patient themselves sees their own HIV Bundle only once released
	// (the entry's manual rule holds the Bundle): held now.
	h.req("GET", "Bundle/bun-a-hiv", nil, tok).must(t, 404)
	// Naming someone else's Binary in one's own DocumentReference neither
	// is allowed nor reveals it.
	claim := docRef(w.pa, "claim", "")
	claim = strings.Replace(claim, "Binary/bin-claim", "Binary/bin-doc-b", 1)
	pw := w.patientToken(w.pa, "patient/*.cruds")
	h.req("POST", "DocumentReference", claim, pw).must(t, 403)
	h.req("GET", "Binary/bin-doc-b", nil, pw).must(t, 404)
	// Practitioners see everything.
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Binary/bin-doc-b", nil, doc).must(t, 200)
	h.req("GET", "Linkage/link-1", nil, doc).must(t, 200)
}

// notFoundShape is an OperationOutcome with ids and versions blanked, to
// compare the answers for a hidden and a missing resource.
func notFoundShape(r res, ids ...string) string {
	b := string(r.Body)
	for _, id := range ids {
		b = strings.ReplaceAll(b, id, "ID")
	}
	return fmt.Sprint(r.Status, " ", regexp.MustCompile(`W/\\"\d+\\"`).ReplaceAllString(b, "ETAG"))
}

// One answer for "not yours" and "does not exist" on every interaction
// (http.html): a hidden resource (another patient's, or the caller's own
// but held or excluded by release rules) answers byte for byte as a
// missing one, and nothing changes.
func TestHiddenEqualsMissing(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "held-a", pathology(w.pa)) // A's, held 7 days
	put(h, "DocumentReference", "psy-a", `{"resourceType":"DocumentReference","status":"current",`+
		`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},`+
		`"subject":{"reference":"Patient/pat-a"},"content":[{"attachment":{"contentType":"text/plain","data":"c2VjcmV0"}}]}`)
	tok := w.patientToken(w.pa, "patient/*.cruds")
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	put(h, "Observation", "hiv-c", strings.Replace(obs(w.pc, "laboratory", "75622-1"), `"status"`, `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"status"`, 1))
	type probe struct {
		method, path, body, ctype, ifMatch string
	}
	probes := func(typ, id string) []probe {
		u := typ + "/" + id
		res := `{"resourceType":"` + typ + `","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-a"}}`
		return []probe{
			{"GET", u, "", "", ""},
			{"GET", u + "/_history/1", "", "", ""},
			{"GET", u + "/_history", "", "", ""},
			{"GET", u + "/_history?_since=2000-01-01", "", "", ""},
			{"PUT", u, res, "application/fhir+json", ""},
			{"PUT", u, res, "application/fhir+json", `W/"1"`},
			{"PUT", u, res, "application/fhir+json", `W/"7"`},
			{"DELETE", u, "", "", ""},
			{"DELETE", u, "", "", `W/"1"`},
			{"PATCH", u, `[{"op":"test","path":"/status","value":"preliminary"}]`, "application/json-patch+json", ""},
			{"PATCH", u, `[{"op":"replace","path":"/status","value":"entered-in-error"}]`, "application/json-patch+json", `W/"1"`},
			{"GET", u + "/$release-status", "", "", ""},
		}
	}
	send := func(p probe, token string) res {
		hdr := []string{}
		if p.ctype != "" {
			hdr = append(hdr, "Content-Type: "+p.ctype)
		}
		if p.ifMatch != "" {
			hdr = append(hdr, "If-Match: "+p.ifMatch)
		}
		var body any
		if p.body != "" {
			body = p.body
		}
		return h.req(p.method, p.path, body, token, hdr...)
	}
	for _, c := range []struct {
		who, token, typ, hidden string
	}{
		{"patient, other patient's", tok, "Observation", w.labB},
		{"patient, own but held", tok, "Observation", "held-a"},
		{"patient, own but excluded", tok, "DocumentReference", "psy-a"},
		{"parent, child's sensitive", mum, "Observation", "hiv-c"},
	} {
		before := h.req("GET", c.typ+"/"+c.hidden, nil, "").must(t, 200)
		hidden, missing := probes(c.typ, c.hidden), probes(c.typ, "no-such-id")
		for i := range hidden {
			a, b := send(hidden[i], c.token), send(missing[i], c.token)
			if notFoundShape(a, c.hidden) != notFoundShape(b, "no-such-id") {
				t.Errorf("%s: %s %s (%s) answers\n  %s\nbut for a missing id\n  %s", c.who, hidden[i].method, hidden[i].path, hidden[i].ifMatch,
					notFoundShape(a, c.hidden), notFoundShape(b, "no-such-id"))
			}
			if a.Status < 400 {
				t.Errorf("%s: %s %s succeeded: %d", c.who, hidden[i].method, hidden[i].path, a.Status)
			}
		}
		after := h.req("GET", c.typ+"/"+c.hidden, nil, "").must(t, 200)
		if string(before.Body) != string(after.Body) {
			t.Errorf("%s: the hidden resource changed", c.who)
		}
	}
	// Conditional writes on what the caller cannot see match nothing.
	h.req("DELETE", "Observation?_id=held-a", nil, tok).must(t, 204)
	h.req("PATCH", "Observation?_id=held-a", `[{"op":"replace","path":"/status","value":"cancelled"}]`, tok, "Content-Type: application/json-patch+json").must(t, 404)
	h.req("GET", "Observation/held-a", nil, "").must(t, 200)
	if s := h.req("GET", "Observation/held-a", nil, "").str("status"); s != "final" {
		t.Errorf("held result changed by a patient's conditional write: status %q", s)
	}
}

// $hold hides every version (read, vread, history) and the AuditEvents
// that name the resource, those of requests still in the audit queue too;
// $release shows them again.
func TestHoldHidesEveryVersion(t *testing.T) {
	w := newWorld(t)
	h := w.h
	put(h, "Observation", w.labA, strings.Replace(obs(w.pa, "laboratory", "2160-0"), `"final"`, `"amended"`, 1)) // version 2
	pt := w.patientToken(w.pa, "patient/*.rs")
	h.req("GET", "Observation/"+w.labA+"/_history/1", nil, pt).must(t, 200)
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	// A practitioner's read whose AuditEvent is still queued when the hold lands.
	h.req("GET", "Observation/"+w.labA, nil, doc).must(t, 200)
	h.req("POST", "Observation/"+w.labA+"/$hold", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"discuss first"}]}`, doc).must(t, 200)
	h.req("GET", "Observation/"+w.labA, nil, doc).must(t, 200) // after the hold
	for _, p := range []string{"", "/_history/1", "/_history/2", "/_history", "/_history?_since=2000-01-01"} {
		h.req("GET", "Observation/"+w.labA+p, nil, pt).must(t, 404)
	}
	for _, q := range []string{"Observation/_history", "_history", "Observation"} {
		if got := ids(h.req("GET", q, nil, pt).must(t, 200)); has(got, "Observation/"+w.labA) {
			t.Errorf("%s shows the held result", q)
		}
	}
	flush(t, h)
	at := w.patientToken(w.pa, "patient/AuditEvent.rs")
	auditNames := func() bool {
		r := h.req("GET", "AuditEvent?_count=200", nil, at).must(t, 200)
		for _, e := range r.entries() {
			res := e["resource"].(map[string]any)
			if strings.Contains(fmt.Sprint(res["entity"]), "Observation/"+w.labA) && strings.Contains(fmt.Sprint(res["agent"]), "Practitioner/dr-1") {
				return true
			}
		}
		return false
	}
	if auditNames() {
		t.Errorf("the patient's audit view names the held result")
	}
	h.req("POST", "Observation/"+w.labA+"/$release", nil, doc).must(t, 200)
	h.req("GET", "Observation/"+w.labA+"/_history/1", nil, pt).must(t, 200)
	if !auditNames() {
		t.Errorf("after $release the practitioner's reads are not in the patient's audit view")
	}
}

// A patient or proxy sees in AuditEvents only what they may see: no ids of
// resources withheld from a proxy, no other patients' search values.
func TestAuditEventsShowOnlyWhatTheCallerMaySee(t *testing.T) {
	w := newWorld(t)
	h := w.h
	put(h, "Observation", "hiv-c", strings.Replace(obs(w.pc, "laboratory", "75622-1"), `"status"`, hivLabel+`"status"`, 1))
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation?patient=Patient/pat-c", nil, doc).must(t, 200)           // lab-c and hiv-c in one search
	h.req("GET", "Observation?patient=pat-a,pat-b&code=2160-0", nil, doc).must(t, 200) // two patients
	h.req("GET", "Observation?subject:Patient.family=Bravo,Alpha", nil, doc).must(t, 200)
	flush(t, h)
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	seenLab := false
	for _, e := range h.req("GET", "AuditEvent?_count=200", nil, mum).must(t, 200).entries() {
		b := fmt.Sprint(e["resource"])
		if strings.Contains(b, "hiv-c") {
			t.Errorf("the parent's audit view names the withheld HIV result: %s", b)
		}
		if strings.Contains(b, "Observation/lab-c") {
			seenLab = true
		}
	}
	if !seenLab {
		t.Errorf("the parent's audit view lacks the practitioner's read of lab-c")
	}
	// The child's own view (a patient sees their sensitive data's audit).
	ct := w.patientToken(w.pc, "patient/AuditEvent.rs")
	if b := string(h.req("GET", "AuditEvent?_count=200", nil, ct).must(t, 200).Body); !strings.Contains(b, "Observation/hiv-c") {
		t.Errorf("the patient's own audit view lacks the read of their HIV result")
	}
	at := w.patientToken(w.pa, "patient/AuditEvent.rs")
	n := 0
	for _, e := range h.req("GET", "AuditEvent?_count=200", nil, at).must(t, 200).entries() {
		res := e["resource"].(map[string]any)
		ents, _ := res["entity"].([]any)
		for _, en := range ents {
			q, _ := en.(map[string]any)["query"].(string)
			if q == "" {
				continue
			}
			raw, _ := base64.StdEncoding.DecodeString(q)
			n++
			if strings.Contains(string(raw), "pat-b") || strings.Contains(string(raw), "Bravo") {
				t.Errorf("patient A's audit event carries patient B's search values: %s", raw)
			}
		}
	}
	if n == 0 {
		t.Errorf("patient A's audit view has no query of the practitioner's searches")
	}
}

// A patient-facing write lands only in the caller's own record, only for
// the types a patient app may write (smart.PatientWrites).
func TestPatientWritesOnlyOwnRecord(t *testing.T) {
	w := newWorld(t)
	h := w.h
	pt := w.patientToken(w.pa, "patient/*.cruds")
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	comm := func(subject, extra string) string {
		s := ""
		if subject != "" {
			s = `"subject":{"reference":"Patient/` + subject + `"},`
		}
		return `{"resourceType":"Communication","status":"completed",` + s + extra + `"payload":[{"contentString":"hi"}]}`
	}
	for _, c := range []struct {
		name, token, method, path, body string
		status                          int
	}{
		{"own message", pt, "POST", "Communication", comm("pat-a", `"sender":{"reference":"Patient/pat-a"},`), 201},
		{"message about B", pt, "POST", "Communication", comm("pat-b", `"sender":{"reference":"Patient/pat-a"},`), 403},
		{"message without subject, A sender", pt, "POST", "Communication", comm("", `"sender":{"reference":"Patient/pat-a"},`), 403},
		{"message to patient B", pt, "POST", "Communication", comm("pat-a", `"recipient":[{"reference":"Patient/pat-b"}],`), 403},
		{"observation of B, A performer", pt, "POST", "Observation", strings.Replace(obs(w.pb, "vital-signs", "8867-4"), `"status"`, `"performer":[{"reference":"Patient/pat-a"}],"status"`, 1), 403},
		{"own home vitals", pt, "POST", "Observation", obs(w.pa, "vital-signs", "8867-4"), 201},
		{"AuditEvent", pt, "POST", "AuditEvent", `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true,"who":{"reference":"Patient/pat-a"}}],"source":{"observer":{"display":"x"}},"entity":[{"what":{"reference":"Patient/pat-a"}}]}`, 403},
		{"Provenance", pt, "POST", "Provenance", `{"resourceType":"Provenance","target":[{"reference":"Observation/lab-a"}],"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"reference":"Patient/pat-a"}}]}`, 403},
		{"Consent", pt, "POST", "Consent", consentJSON("active"), 403},
		{"RelatedPerson", pt, "POST", "RelatedPerson", `{"resourceType":"RelatedPerson","patient":{"reference":"Patient/pat-a"}}`, 403},
		{"parent grants herself more", mum, "PUT", "RelatedPerson/" + w.parent, `{"resourceType":"RelatedPerson","id":"` + w.parent + `","active":true,"patient":{"reference":"Patient/pat-a"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}]}`, 403},
		{"parent writes a message for the child", mum, "POST", "Communication", comm("pat-c", `"sender":{"reference":"RelatedPerson/rp-mother"},`), 201},
		{"parent writes into A's record", mum, "POST", "Communication", comm("pat-a", ""), 403},
		{"Patient create", pt, "POST", "Patient", `{"resourceType":"Patient","name":[{"family":"New"}]}`, 403},
		{"birthDate change", mum, "PUT", "Patient/pat-c", `{"resourceType":"Patient","id":"pat-c","name":[{"family":"Charlie"}],"birthDate":"2020-03-10"}`, 403},
		{"own telecom", pt, "PUT", "Patient/pat-a", `{"resourceType":"Patient","id":"pat-a","name":[{"family":"Alpha"}],"birthDate":"1970-01-01","telecom":[{"system":"phone","value":"555"}]}`, 200},
		{"other patient's record", pt, "PUT", "Patient/pat-b", `{"resourceType":"Patient","id":"pat-b","name":[{"family":"Bravo"}],"birthDate":"1971-01-01"}`, 404},
		{"care team's result", pt, "PUT", "Observation/lab-a", `{"resourceType":"Observation","id":"lab-a","status":"entered-in-error","code":{"text":"x"},"subject":{"reference":"Patient/pat-a"}}`, 403},
		{"care team's result, patch", pt, "PATCH", "Observation/lab-a", `[{"op":"replace","path":"/status","value":"entered-in-error"}]`, 403},
		{"care team's result, delete", pt, "DELETE", "Observation/lab-a", "", 403},
		{"care team's message", pt, "DELETE", "Communication/" + w.commA, "", 403},
		{"PUT creates nothing", pt, "PUT", "Communication/new-1", `{"resourceType":"Communication","id":"new-1","status":"completed","subject":{"reference":"Patient/pat-a"}}`, 404},
		{"appointment request", pt, "POST", "Appointment", `{"resourceType":"Appointment","status":"proposed","participant":[{"actor":{"reference":"Patient/pat-a"},"status":"needs-action"},{"actor":{"reference":"Practitioner/dr-1"},"status":"needs-action"}]}`, 201},
		{"appointment for B", pt, "POST", "Appointment", `{"resourceType":"Appointment","status":"proposed","participant":[{"actor":{"reference":"Patient/pat-b"},"status":"needs-action"}]}`, 403},
		{"decline an appointment", pt, "POST", "AppointmentResponse", `{"resourceType":"AppointmentResponse","appointment":{"reference":"Appointment/appt-a"},"actor":{"reference":"Patient/pat-a"},"participantStatus":"declined"}`, 201},
		{"own questionnaire", pt, "POST", "QuestionnaireResponse", `{"resourceType":"QuestionnaireResponse","status":"completed","subject":{"reference":"Patient/pat-a"},"author":{"reference":"Patient/pat-a"}}`, 201},
		{"questionnaire about B", pt, "POST", "QuestionnaireResponse", `{"resourceType":"QuestionnaireResponse","status":"completed","subject":{"reference":"Patient/pat-b"},"author":{"reference":"Patient/pat-a"}}`, 403},
		{"ServiceRequest", pt, "POST", "ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/pat-a"}}`, 403},
		{"Binary without securityContext", pt, "POST", "Binary", `{"resourceType":"Binary","contentType":"text/plain","data":"aGk="}`, 403},
		{"Binary of B's document", pt, "POST", "Binary", `{"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"Patient/pat-b"},"data":"aGk="}`, 403},
		{"own Binary", pt, "POST", "Binary", `{"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"Patient/pat-a"},"data":"aGk="}`, 201},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		hdr := []string{}
		if c.method == "PATCH" {
			hdr = append(hdr, "Content-Type: application/json-patch+json")
		}
		if r := h.req(c.method, c.path, body, c.token, hdr...); r.Status != c.status {
			t.Errorf("%s: %s %s = %d, want %d: %s", c.name, c.method, c.path, r.Status, c.status, truncate(r.Body))
		} else if c.status >= 400 {
			r.outcome(t)
		}
	}
	if s := h.req("GET", "Observation/lab-a", nil, "").str("status"); s != "final" {
		t.Errorf("the care team's result was changed: %s", s)
	}
	if bd := h.req("GET", "Patient/pat-c", nil, "").str("birthDate"); bd != "2017-03-10" {
		t.Errorf("birthDate changed to %s", bd)
	}
	// What a patient app wrote, it may change and delete; it carries the origin tag.
	r := h.req("POST", "Communication", comm("pat-a", ""), pt).must(t, 201)
	id := r.str("id")
	tags := fmt.Sprint(r.JSON["meta"])
	if !strings.Contains(tags, "patient-app") {
		t.Errorf("patient-written resource lacks the origin tag: %s", tags)
	}
	h.req("PATCH", "Communication/"+id, `[{"op":"replace","path":"/status","value":"entered-in-error"}]`, pt, "Content-Type: application/json-patch+json").must(t, 200)
	h.req("DELETE", "Communication/"+id, nil, pt).must(t, 204)
	// A client cannot forge the origin tag: an EMR write drops it.
	forged := strings.Replace(comm("pat-a", ""), `"status"`, `"meta":{"tag":[{"system":"http://fhirgate.dev/CodeSystem/origin","code":"patient-app"}]},"status"`, 1)
	r = h.req("POST", "Communication", forged, "").must(t, 201)
	if strings.Contains(fmt.Sprint(r.JSON["meta"]), "patient-app") {
		t.Errorf("an EMR write kept a forged origin tag")
	}
	h.req("DELETE", "Communication/"+r.str("id"), nil, pt).must(t, 403)
}

// An EMR's conditional create never matches what a patient app wrote
// (identifier squatting).
func TestConditionalCreateNotHijackedByPatient(t *testing.T) {
	w := newWorld(t)
	h := w.h
	pt := w.patientToken(w.pa, "patient/*.cruds")
	ident := `"identifier":[{"system":"urn:oid:1.2.3.4","value":"ACC-77"}],`
	squat := strings.Replace(obs(w.pa, "vital-signs", "8867-4"), `"status"`, ident+`"status"`, 1)
	h.req("POST", "Observation", squat, pt).must(t, 201)
	emr := strings.Replace(obs(w.pa, "laboratory", "2160-0"), `"status"`, ident+`"status"`, 1)
	r := h.req("POST", "Observation", emr, "", "If-None-Exist: identifier=urn:oid:1.2.3.4|ACC-77").must(t, 201)
	if r.str("category") != "" || !strings.Contains(string(r.Body), "laboratory") {
		t.Errorf("the EMR's conditional create answered the patient's resource: %s", truncate(r.Body))
	}
	// Again: the EMR's own resource now matches (200, nothing new).
	h.req("POST", "Observation", emr, "", "If-None-Exist: identifier=urn:oid:1.2.3.4|ACC-77").must(t, 200)
	// A conditional update by the EMR updates its own, never the patient's.
	h.req("PUT", "Observation?identifier=urn:oid:1.2.3.4|ACC-77", strings.Replace(emr, `"final"`, `"amended"`, 1), "").must(t, 200)
	s := h.req("GET", "Observation?identifier=urn:oid:1.2.3.4|ACC-77", nil, "").must(t, 200)
	amended := 0
	for _, e := range s.entries() {
		res := e["resource"].(map[string]any)
		if res["status"] == "amended" {
			amended++
			if strings.Contains(fmt.Sprint(res["meta"]), "patient-app") {
				t.Errorf("the EMR's conditional update landed on the patient's resource")
			}
		}
	}
	if len(s.entries()) != 2 || amended != 1 {
		t.Errorf("want the patient's and the EMR's resource, one amended: %s", truncate(s.Body))
	}
}

// A caregiver's Consent limits writes like reads; a write needs its scope.
func TestCaregiverWrites(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver})
	msg := `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/pat-a"},"sender":{"reference":"RelatedPerson/rp-care"},"payload":[{"contentString":"for Ann"}]}`
	h.req("POST", "Communication", msg, tok).must(t, 201)
	if r := h.req("POST", "Observation", obs(w.pa, "vital-signs", "8867-4"), tok); r.Status < 400 {
		t.Errorf("caregiver wrote an Observation the Consent does not cover: %d", r.Status)
	}
	if r := h.req("GET", "Observation/"+w.labA, nil, tok); r.Status != http.StatusNotFound && r.Status != http.StatusForbidden {
		t.Errorf("caregiver read: %d", r.Status)
	}
}

// A patient app uploads a document as one transaction: the Binary (its
// securityContext the patient) and the DocumentReference pointing at it.
func TestPatientUploadTransaction(t *testing.T) {
	w := newWorld(t)
	h := w.h
	pt := w.patientToken(w.pa, "patient/*.cruds")
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"urn:uuid:0b1e3c6a-0000-4000-8000-000000000001","resource":{"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"Patient/pat-a"},"data":"aGk="},"request":{"method":"POST","url":"Binary"}},` +
		`{"resource":{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/pat-a"},"content":[{"attachment":{"contentType":"text/plain","url":"urn:uuid:0b1e3c6a-0000-4000-8000-000000000001"}}]},"request":{"method":"POST","url":"DocumentReference"}}]}`
	r := h.req("POST", "", tx, pt).must(t, 200)
	loc := r.entries()[0]["response"].(map[string]any)["location"].(string)
	bin := loc[strings.Index(loc, "Binary/"):strings.Index(loc, "/_history")]
	h.req("GET", bin, nil, pt).must(t, 200)
	h.req("GET", bin, nil, w.patientToken(w.pb, "patient/*.rs")).must(t, 404)
}

// A clinician's app launched in a patient's context (patient/ scopes,
// fhirUser a Practitioner) is confined to that patient but is no
// patient-facing app: it writes results and sees held ones. An EMR with
// an update scope and no read scope may still release and hold.
func TestClinicianInPatientContext(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "held-a", pathology(w.pa))
	tok := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation/held-a", nil, tok).must(t, 200)
	h.req("POST", "Observation", obs(w.pa, "laboratory", "2160-0"), tok).must(t, 201)
	h.req("POST", "Observation", obs(w.pb, "laboratory", "2160-0"), tok).must(t, 403)
	h.req("GET", "Observation/"+w.labB, nil, tok).must(t, 404)
	emr := h.token(devissuer.MintOptions{Scope: "system/Observation.u", Client: "release-bot"})
	h.req("POST", "Observation/held-a/$release", nil, emr).must(t, 200)
	h.req("GET", "Observation/held-a", nil, w.patientToken(w.pa, "patient/*.rs")).must(t, 200)
}
