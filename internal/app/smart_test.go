package app

// End-to-end SMART on FHIR tests (SMART App Launch 2.x
// scopes-and-launch-context; R4 compartmentdefinition-patient.html): every
// path by which one patient's data could leak to another patient, a proxy
// or a granular scope must fail, and tokens are checked as a resource server must.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// world is a small data set: patients A and B, each with a lab and a vital
// sign, a child C with a parent, and an adult A with a delegated caregiver.
type world struct {
	h                          *harness
	pa, pb, pc                 string
	labA, vitalA, labB, labC   string
	apptA, commA               string
	parent, caregiver, consent string
}

func put(h *harness, typ, id, body string) {
	h.t.Helper()
	body = strings.Replace(body, `{"resourceType":"`+typ+`"`, `{"resourceType":"`+typ+`","id":"`+id+`"`, 1)
	r := h.req("PUT", typ+"/"+id, body, "")
	if r.Status != 201 && r.Status != 200 {
		h.t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
	}
}

func obs(patient, category, code string) string {
	return `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"` + category + `"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},"subject":{"reference":"Patient/` + patient + `"},` +
		`"effectiveDateTime":"2026-01-02T10:00:00Z","issued":"2026-01-02T12:00:00Z","valueQuantity":{"value":1.5,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}`
}

func newWorld(t *testing.T, opts ...harnessOpt) *world {
	h := newHarness(t, opts...)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h.clock.Set(now)
	h.tok = h.token(devissuer.MintOptions{Scope: "system/*.cruds", Client: "test-emr"})
	w := &world{h: h, pa: "pat-a", pb: "pat-b", pc: "pat-c"}
	put(h, "Patient", w.pa, `{"resourceType":"Patient","name":[{"family":"Alpha"}],"birthDate":"1970-01-01"}`)
	put(h, "Patient", w.pb, `{"resourceType":"Patient","name":[{"family":"Bravo"}],"birthDate":"1971-01-01"}`)
	put(h, "Patient", w.pc, `{"resourceType":"Patient","name":[{"family":"Charlie"}],"birthDate":"2017-03-10"}`)
	w.labA, w.vitalA, w.labB, w.labC = "lab-a", "vital-a", "lab-b", "lab-c"
	put(h, "Observation", w.labA, obs(w.pa, "laboratory", "2160-0"))
	put(h, "Observation", w.vitalA, obs(w.pa, "vital-signs", "8867-4"))
	put(h, "Observation", w.labB, obs(w.pb, "laboratory", "2160-0"))
	put(h, "Observation", w.labC, obs(w.pc, "laboratory", "718-7"))
	w.apptA, w.commA = "appt-a", "comm-a"
	put(h, "Appointment", w.apptA, `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/pat-a"},"status":"accepted"}]}`)
	put(h, "Communication", w.commA, `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/pat-a"},"payload":[{"contentString":"hello"}]}`)
	w.parent, w.caregiver, w.consent = "rp-mother", "rp-care", "consent-care"
	put(h, "RelatedPerson", w.parent, `{"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/pat-c"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}]}`)
	put(h, "RelatedPerson", w.caregiver, `{"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/pat-a"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"FRND"}]}]}`)
	put(h, "Consent", w.consent, consentJSON("active"))
	return w
}

func consentJSON(status string) string {
	return `{"resourceType":"Consent","status":"` + status + `","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/pat-a"},` +
		`"provision":{"type":"permit","period":{"start":"2026-01-01"},"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleClass","code":"AGNT"}]},"reference":{"reference":"RelatedPerson/rp-care"}}],` +
		`"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Appointment"},{"system":"http://hl7.org/fhir/resource-types","code":"Communication"}]}}`
}

func (w *world) patientToken(patient, scope string) string {
	return w.h.token(devissuer.MintOptions{Scope: scope, Patient: patient, FHIRUser: "Patient/" + patient, Client: "portal"})
}

func ids(r res) []string {
	var out []string
	for _, e := range r.entries() {
		if m, ok := e["resource"].(map[string]any); ok {
			out = append(out, fmt.Sprint(m["resourceType"], "/", m["id"]))
		}
	}
	return out
}

func has(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// SMART App Launch 2.x, "Token": no token, bad tokens.
func TestTokenChecks(t *testing.T) {
	w := newWorld(t)
	h := w.h
	r := h.req("GET", "Patient/pat-a", nil, "-").must(t, http.StatusUnauthorized)
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
	}
	r.outcome(t)
	bad := h.req("GET", "Patient/pat-a", nil, "not-a-token").must(t, http.StatusUnauthorized)
	if !strings.Contains(bad.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("bad token WWW-Authenticate = %q", bad.Header.Get("WWW-Authenticate"))
	}
	wrongAud := h.token(devissuer.MintOptions{Scope: "system/*.rs", Audience: "https://elsewhere.example/fhir"})
	h.req("GET", "Patient/pat-a", nil, wrongAud).must(t, http.StatusUnauthorized)
	expiring := h.token(devissuer.MintOptions{Scope: "system/*.rs", TTL: time.Minute})
	h.req("GET", "Patient/pat-a", nil, expiring).must(t, http.StatusOK)
	h.clock.Set(h.clock.Now().Add(10 * time.Minute))
	h.req("GET", "Patient/pat-a", nil, expiring).must(t, http.StatusUnauthorized)
	// Tampered signature.
	good := h.token(devissuer.MintOptions{Scope: "system/*.rs"})
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	h.req("GET", "Patient/pat-a", nil, tampered).must(t, http.StatusUnauthorized)
	// Public discovery endpoints.
	h.req("GET", "metadata", nil, "-").must(t, http.StatusOK)
	sc := h.req("GET", ".well-known/smart-configuration", nil, "-").must(t, http.StatusOK)
	if sc.str("issuer") == "" || sc.str("jwks_uri") == "" {
		t.Errorf("smart-configuration: %s", sc.Body)
	}
	// Missing scope: 403 insufficient_scope.
	onlyPatients := h.token(devissuer.MintOptions{Scope: "system/Patient.rs"})
	f := h.req("GET", "Observation/lab-a", nil, onlyPatients).must(t, http.StatusForbidden)
	if !strings.Contains(f.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("403 WWW-Authenticate = %q", f.Header.Get("WWW-Authenticate"))
	}
}

// Attacks by a patient on another patient's data: each path must fail.
func TestPatientCannotReachOtherPatients(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := w.patientToken(w.pa, "patient/*.rs launch/patient openid fhirUser")
	// Own data works.
	h.req("GET", "Observation/"+w.labA, nil, tok).must(t, 200)
	h.req("GET", "Patient/"+w.pa, nil, tok).must(t, 200)
	cases := []struct {
		name, path string
		status     int
		forbidden  []string // must not appear in a 200 Bundle
	}{
		{"by id", "Observation/" + w.labB, 404, nil},
		{"other patient by id", "Patient/" + w.pb, 404, nil},
		{"vread", "Observation/" + w.labB + "/_history/1", 404, nil},
		{"instance history", "Observation/" + w.labB + "/_history", 404, nil},
		{"by search", "Observation?subject=Patient/" + w.pb, 200, []string{"Observation/" + w.labB}},
		{"search all", "Observation", 200, []string{"Observation/" + w.labB, "Observation/" + w.labC}},
		{"include", "Observation?_include=Observation:subject", 200, []string{"Patient/" + w.pb, "Patient/" + w.pc}},
		{"revinclude", "Patient?_revinclude=Observation:subject", 200, []string{"Observation/" + w.labB, "Patient/" + w.pb}},
		{"chain", "Observation?subject:Patient.family=Bravo", 200, []string{"Observation/" + w.labB}},
		{"has", "Patient?_has:Observation:subject:code=2160-0", 200, []string{"Patient/" + w.pb}},
		{"type history", "Observation/_history", 200, []string{"Observation/" + w.labB}},
		{"system history", "_history", 200, []string{"Observation/" + w.labB, "Patient/" + w.pb}},
		{"compartment", "Patient/" + w.pb + "/Observation", 404, nil},
		{"compartment star", "Patient/" + w.pb + "/*", 404, nil},
		{"system search", "?_type=Observation,Patient", 200, []string{"Observation/" + w.labB, "Patient/" + w.pb}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.req("GET", c.path, nil, tok)
			if r.Status != c.status {
				t.Fatalf("%s: status %d, want %d: %s", c.path, r.Status, c.status, truncate(r.Body))
			}
			if c.status != 200 {
				r.outcome(t)
				return
			}
			got := ids(r)
			// Bodies of returned resources, AuditEvents aside: the patient's
			// own failed attempts are audited in their record and name what
			// they asked for, which is no leak.
			var bodies strings.Builder
			for _, e := range r.entries() {
				if res, ok := e["resource"].(map[string]any); ok && res["resourceType"] != "AuditEvent" {
					fmt.Fprint(&bodies, res)
				}
			}
			for _, f := range c.forbidden {
				if has(got, f) || strings.Contains(bodies.String(), f) {
					t.Errorf("%s leaked %s: %v", c.path, f, got)
				}
			}
			if tot, ok := r.JSON["total"].(float64); ok && int(tot) > len(r.entries()) {
				t.Errorf("total %v counts hidden resources", tot)
			}
		})
	}
	// Inside a batch: the entry fails, the others work.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[` +
		`{"request":{"method":"GET","url":"Observation/` + w.labB + `"}},` +
		`{"request":{"method":"GET","url":"Observation/` + w.labA + `"}}]}`
	b := h.req("POST", "", batch, tok).must(t, 200)
	es := b.entries()
	if len(es) != 2 || !strings.HasPrefix(es[0]["response"].(map[string]any)["status"].(string), "404") ||
		!strings.HasPrefix(es[1]["response"].(map[string]any)["status"].(string), "200") {
		t.Errorf("batch: %s", truncate(b.Body))
	}
}

// A patient may write about themselves, never into another patient's compartment.
func TestPatientWritesStayInCompartment(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := w.patientToken(w.pa, "patient/Communication.cruds patient/Patient.rs")
	own := `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/pat-a"},"sender":{"reference":"Patient/pat-a"},"payload":[{"contentString":"question"}]}`
	h.req("POST", "Communication", own, tok).must(t, 201)
	other := strings.ReplaceAll(own, "pat-a", "pat-b")
	h.req("POST", "Communication", other, tok).must(t, 403).outcome(t)
	// Not through update either, nor by moving an own resource to someone else.
	h.req("PUT", "Communication/"+w.commA, strings.Replace(other, `{"resourceType":"Communication"`, `{"resourceType":"Communication","id":"`+w.commA+`"`, 1), tok).must(t, 403)
	// A transaction with one forbidden entry fails whole.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"urn:uuid:1","resource":` + own + `,"request":{"method":"POST","url":"Communication"}},` +
		`{"fullUrl":"urn:uuid:2","resource":` + other + `,"request":{"method":"POST","url":"Communication"}}]}`
	before := h.req("GET", "Communication?_summary=count", nil, "").JSON["total"]
	h.req("POST", "", tx, tok).must(t, 403)
	after := h.req("GET", "Communication?_summary=count", nil, "").JSON["total"]
	if before != after {
		t.Errorf("failed transaction wrote: %v -> %v", before, after)
	}
	// Write scope missing: Observation create is 403.
	h.req("POST", "Observation", obs(w.pa, "laboratory", "1-1"), tok).must(t, 403)
}

// Granular v2 scopes (scopes-and-launch-context.html#finer-grained-resource-constraints-using-search-parameters).
func TestGranularScope(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := w.patientToken(w.pa, "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Patient.rs")
	h.req("GET", "Observation/"+w.labA, nil, tok).must(t, 200)
	h.req("GET", "Observation/"+w.vitalA, nil, tok).must(t, 404)
	s := h.req("GET", "Observation", nil, tok).must(t, 200)
	if got := ids(s); has(got, "Observation/"+w.vitalA) || !has(got, "Observation/"+w.labA) {
		t.Errorf("granular search: %v", got)
	}
	rev := h.req("GET", "Patient?_revinclude=Observation:subject", nil, tok).must(t, 200)
	if has(ids(rev), "Observation/"+w.vitalA) {
		t.Errorf("granular scope bypassed through _revinclude: %v", ids(rev))
	}
}

// Proxy access: a parent of a 9-year-old until the 12th birthday.
func TestParentProxy(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := func() string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"})
	}
	h.req("GET", "Observation/"+w.labC, nil, tok()).must(t, 200)
	s := h.req("GET", "Observation", nil, tok()).must(t, 200)
	if got := ids(s); len(got) != 1 || got[0] != "Observation/"+w.labC {
		t.Errorf("parent sees %v", got)
	}
	// The parent cannot name another patient in the token.
	other := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.parent})
	if r := h.req("GET", "Observation/"+w.labA, nil, other); r.Status == 200 {
		t.Errorf("parent read another patient's data")
	}
	// The 12th birthday (2029-03-10) ends access by itself.
	h.clock.Set(time.Date(2029, 3, 10, 0, 0, 1, 0, time.UTC))
	if r := h.req("GET", "Observation/"+w.labC, nil, tok()); r.Status == 200 {
		t.Errorf("parent still reads after the child's 12th birthday")
	}
	h.clock.Set(time.Date(2029, 3, 9, 12, 0, 0, 0, time.UTC))
	h.req("GET", "Observation/"+w.labC, nil, tok()).must(t, 200)
}

// Proxy access by delegation: a caregiver with a Consent for Appointment and Communication.
func TestCaregiverConsent(t *testing.T) {
	w := newWorld(t)
	h := w.h
	tok := func() string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"})
	}
	h.req("GET", "Appointment/"+w.apptA, nil, tok()).must(t, 200)
	h.req("GET", "Communication/"+w.commA, nil, tok()).must(t, 200)
	if r := h.req("GET", "Observation/"+w.labA, nil, tok()); r.Status == 200 {
		t.Errorf("caregiver read an Observation the Consent does not cover")
	}
	if r := h.req("GET", "Observation", nil, tok()); r.Status == 200 && len(r.entries()) > 0 {
		t.Errorf("caregiver searched Observations: %v", ids(r))
	}
	// Withdrawing the Consent ends access on the next request.
	put(h, "Consent", w.consent, consentJSON("inactive"))
	if r := h.req("GET", "Appointment/"+w.apptA, nil, tok()); r.Status == 200 {
		t.Errorf("caregiver reads after Consent withdrawal")
	}
}

// Proxies never see sensitive labels unless the Consent says so.
func TestProxySensitiveLabels(t *testing.T) {
	w := newWorld(t)
	h := w.h
	put(h, "Observation", "lab-c-hiv", strings.Replace(obs(w.pc, "laboratory", "75622-1"), `"status"`,
		`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},"status"`, 1))
	tok := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	h.req("GET", "Observation/lab-c-hiv", nil, tok).must(t, 404)
	if got := ids(h.req("GET", "Observation", nil, tok).must(t, 200)); has(got, "Observation/lab-c-hiv") {
		t.Errorf("sensitive result leaked to proxy: %v", got)
	}
}

// Audit: a patient can see who looked at their record (BALP).
func TestAuditTrailForPatient(t *testing.T) {
	w := newWorld(t)
	h := w.h
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-who", Client: "emr"})
	h.req("GET", "Observation/"+w.labA, nil, doc).must(t, 200)
	h.req("GET", "Observation/"+w.labB, nil, doc).must(t, 200)
	flush(t, h)
	tok := w.patientToken(w.pa, "patient/AuditEvent.rs patient/Patient.rs")
	r := h.req("GET", "AuditEvent?patient=Patient/"+w.pa, nil, tok).must(t, 200)
	found := false
	for _, e := range r.entries() {
		res := e["resource"].(map[string]any)
		b := fmt.Sprint(res)
		if strings.Contains(b, "Practitioner/dr-who") && strings.Contains(b, "Observation/"+w.labA) {
			found = true
		}
		if strings.Contains(b, "Observation/"+w.labB) {
			t.Errorf("patient A sees an audit event about patient B: %v", b)
		}
	}
	if !found {
		t.Errorf("no AuditEvent of the practitioner's read: %s", truncate(r.Body))
	}
	// AuditEvents cannot be changed or deleted.
	if len(r.entries()) > 0 {
		id := r.entries()[0]["resource"].(map[string]any)["id"].(string)
		h.req("DELETE", "AuditEvent/"+id, nil, "").must(t, 405)
	}
}

// flush waits until the audit queue is empty.
func flush(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := h.app.Audit.Stats(); st.Queued == 0 {
			time.Sleep(50 * time.Millisecond)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("audit queue did not drain")
}

// What a scope allows a PUT: it is an update interaction, and creating
// with it also needs create (smart scopes v2: c and u are separate). With
// update only, an existing resource is updated (200) and a new id is 403;
// with create only, PUT is 403; with both, a new id is created (201).
func TestPutScopes(t *testing.T) {
	w := newWorld(t)
	h := w.h
	body := func(id string) string {
		return `{"resourceType":"Basic","id":"` + id + `","code":{"text":"x"}}`
	}
	h.req("PUT", "Basic/exists", body("exists"), "").must(t, 201)
	upd := h.token(devissuer.MintOptions{Scope: "system/Basic.u", Client: "emr-u"})
	cre := h.token(devissuer.MintOptions{Scope: "system/Basic.c", Client: "emr-c"})
	both := h.token(devissuer.MintOptions{Scope: "system/Basic.cu", Client: "emr-cu"})
	h.req("PUT", "Basic/exists", body("exists"), upd).must(t, 200)
	h.req("PUT", "Basic/new-u", body("new-u"), upd).must(t, 403).outcome(t)
	h.req("PUT", "Basic/new-c", body("new-c"), cre).must(t, 403).outcome(t)
	h.req("PUT", "Basic/exists", body("exists"), cre).must(t, 403).outcome(t)
	h.req("PUT", "Basic/new-cu", body("new-cu"), both).must(t, 201)
	h.req("PUT", "Basic/new-cu", body("new-cu"), both).must(t, 200)
	if v := h.req("GET", "Basic/exists", nil, "").must(t, 200).JSON["meta"].(map[string]any)["versionId"]; v != "2" {
		t.Errorf("Basic/exists at version %v, want 2 (one update, the refused PUTs wrote nothing)", v)
	}
	h.req("GET", "Basic/new-u", nil, "").must(t, 404)
	h.req("GET", "Basic/new-c", nil, "").must(t, 404)
}
