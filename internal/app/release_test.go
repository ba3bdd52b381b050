package app

// End-to-end tests of release rules (policy package; Ontario 'Digital
// Release of PHI Decision Framework': data release delays and exclusions):
// a held result is invisible to patient-facing callers on every path until
// its release time or a clinician's $release.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const testPolicy = `version: 1
rules:
  - name: pathology-7-days
    match:
      resourceType: [Observation, DiagnosticReport]
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|SP"]
    action: delay
    delay: 168h
    from: issued
  - name: hiv-manual
    match:
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"]
    action: manual
  - name: psychotherapy-notes
    match:
      resourceType: [DocumentReference]
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"]
    action: exclude
`

func withPolicy(t *testing.T) harnessOpt {
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(o *Options) { o.PolicyFile = p }
}

func pathology(patient string) string {
	return `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"SP"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"22637-3"}]},"subject":{"reference":"Patient/` + patient + `"},` +
		`"issued":"2026-06-01T08:00:00Z","valueString":"benign"}`
}

func TestReleaseDelayEveryPath(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "path-a", pathology(w.pa))
	pt := func() string { return w.patientToken(w.pa, "patient/*.rs") }
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})

	hidden := func(t *testing.T) {
		t.Helper()
		h.req("GET", "Observation/path-a", nil, pt()).must(t, 404)
		h.req("GET", "Observation/path-a/_history/1", nil, pt()).must(t, 404)
		for _, p := range []string{
			"Observation", "Observation?_total=accurate", "Patient?_revinclude=Observation:subject",
			"Observation/_history", "Patient/pat-a/Observation", "Patient/pat-a/*",
			"Observation?code=22637-3", "Patient?_has:Observation:subject:code=22637-3",
		} {
			r := h.req("GET", p, nil, pt()).must(t, 200)
			for _, e := range r.entries() {
				// The patient's own audited attempts name what they asked
				// for; every other entry must not mention the held result.
				res, _ := e["resource"].(map[string]any)
				if res["resourceType"] != "AuditEvent" && strings.Contains(fmt.Sprint(e), "path-a") {
					t.Errorf("%s reveals the held result: %v", p, e)
				}
			}
			if p == "Patient?_has:Observation:subject:code=22637-3" && len(r.entries()) != 0 {
				t.Errorf("_has matched through a held Observation")
			}
			if p == "Observation?_total=accurate" {
				if tot := r.JSON["total"].(float64); int(tot) != len(r.entries()) {
					t.Errorf("_total %v counts a held result", tot)
				}
			}
		}
		b := h.req("POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/path-a"}}]}`, pt()).must(t, 200)
		if strings.Contains(string(b.Body), "benign") {
			t.Errorf("batch read reveals the held result")
		}
	}
	hidden(t)
	// The practitioner sees it, with its release state.
	h.req("GET", "Observation/path-a", nil, doc).must(t, 200)
	st := h.req("GET", "Observation/path-a/$release-status", nil, doc).must(t, 200)
	if !strings.Contains(string(st.Body), "pathology-7-days") {
		t.Errorf("$release-status: %s", st.Body)
	}
	// 7 days after issued: visible, with no background job.
	h.clock.Set(time.Date(2026, 6, 8, 8, 0, 1, 0, time.UTC))
	h.req("GET", "Observation/path-a", nil, pt()).must(t, 200)
	if !strings.Contains(string(h.req("GET", "Patient/pat-a/Observation", nil, pt()).Body), "path-a") {
		t.Errorf("released result missing from compartment search")
	}
}

func TestAnnotateAndRelease(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "path-a", pathology(w.pa))
	pt := w.patientToken(w.pa, "patient/*.rs")
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation/path-a", nil, pt).must(t, 404)
	// Patients cannot release.
	h.req("POST", "Observation/path-a/$release", nil, pt).must(t, 403)
	note := `{"resourceType":"Parameters","parameter":[{"name":"note","valueString":"Benign, nothing to worry about."}]}`
	h.req("POST", "Observation/path-a/$release", note, doc).must(t, 200)
	r := h.req("GET", "Observation/path-a", nil, pt).must(t, 200)
	if !strings.Contains(string(r.Body), "nothing to worry about") {
		t.Errorf("the release note was not added to the result: %s", r.Body)
	}
	prov := h.req("GET", "Provenance?target=Observation/path-a", nil, doc).must(t, 200)
	if len(prov.entries()) == 0 || !strings.Contains(string(prov.Body), "Practitioner/dr-1") {
		t.Errorf("no Provenance of the release: %s", truncate(prov.Body))
	}
	// $hold hides it again.
	h.req("POST", "Observation/path-a/$hold", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"harm risk"}]}`, doc).must(t, 200)
	h.req("GET", "Observation/path-a", nil, pt).must(t, 404)
	h.req("POST", "Observation/path-a/$hold", nil, doc).must(t, 400)
}

func TestManualAndExclude(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	hiv := strings.Replace(obs(w.pa, "laboratory", "75622-1"), `"status"`,
		`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},"status"`, 1)
	put(h, "Observation", "hiv-a", hiv)
	put(h, "DocumentReference", "psy-a", `{"resourceType":"DocumentReference","status":"current",`+
		`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},`+
		`"subject":{"reference":"Patient/pat-a"},"content":[{"attachment":{"contentType":"text/plain","data":"c2VjcmV0"}}]}`)
	pt := w.patientToken(w.pa, "patient/*.rs")
	// Years later, still held / excluded.
	h.clock.Set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	pt = w.patientToken(w.pa, "patient/*.rs")
	h.req("GET", "Observation/hiv-a", nil, pt).must(t, 404)
	h.req("GET", "DocumentReference/psy-a", nil, pt).must(t, 404)
	// A correction keeps a released result released.
	put(h, "Observation", "lab-a", strings.Replace(obs(w.pa, "laboratory", "2160-0"), `"final"`, `"amended"`, 1))
	h.req("GET", "Observation/lab-a", nil, pt).must(t, http.StatusOK)
	// AuditEvents must not reveal held ids to the patient.
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation/hiv-a", nil, doc).must(t, 200)
	flush(t, h)
	at := w.patientToken(w.pa, "patient/AuditEvent.rs")
	// (The patient's own failed attempt names the id they asked for; that is no leak.)
	for _, e := range h.req("GET", "AuditEvent", nil, at).must(t, 200).entries() {
		ents, _ := e["resource"].(map[string]any)["entity"].([]any)
		for _, en := range ents {
			if what, ok := en.(map[string]any)["what"].(map[string]any); ok && strings.Contains(fmt.Sprint(what["reference"]), "hiv-a") {
				t.Errorf("audit view reveals a held result's id: %v", e["resource"])
			}
		}
	}
}

// Release rules apply to proxies too: a parent sees the child's pathology
// result only after the delay, or after a clinician's $release.
func TestReleaseForParentProxy(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "path-c", pathology(w.pc))
	put(h, "Observation", "path-c2", pathology(w.pc))
	tok := func() string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	}
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation/path-c", nil, tok()).must(t, 404)
	if got := ids(h.req("GET", "Observation", nil, tok()).must(t, 200)); has(got, "Observation/path-c") {
		t.Errorf("held result in the parent's search: %v", got)
	}
	h.req("POST", "Observation/path-c2/$release", nil, doc).must(t, 200)
	h.req("GET", "Observation/path-c2", nil, tok()).must(t, 200)
	h.req("GET", "Observation/path-c", nil, tok()).must(t, 404)
	h.clock.Set(time.Date(2026, 6, 8, 8, 0, 1, 0, time.UTC))
	h.req("GET", "Observation/path-c", nil, tok()).must(t, 200)
}

// Conditional operations run through the same constrained search: a held
// result never matches a patient's condition (and so is never returned).
func TestReleaseConditionalOps(t *testing.T) {
	w := newWorld(t, withPolicy(t))
	h := w.h
	put(h, "Observation", "path-a", pathology(w.pa))
	pt := w.patientToken(w.pa, "patient/Observation.cruds")
	self := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"22637-3"}]},"subject":{"reference":"Patient/pat-a"},"valueString":"self-reported"}`
	r := h.req("POST", "Observation", self, pt, "If-None-Exist: code=http://loinc.org|22637-3")
	if r.Status != 201 || strings.Contains(string(r.Body), "benign") {
		t.Errorf("conditional create matched a held result: %d %s", r.Status, r.Body)
	}
	// Conditional delete cannot reach it either.
	h.req("DELETE", "Observation?code=http://loinc.org|22637-3&value-string=benign", nil, pt).must(t, 204)
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-1"})
	h.req("GET", "Observation/path-a", nil, doc).must(t, 200)
}
