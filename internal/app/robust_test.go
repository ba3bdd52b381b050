package app

// End-to-end robustness (issue 12): bad input of any caller gets a clear
// 4xx OperationOutcome at bounded cost, the process survives, and nothing
// is stored. RFC 8259 (JSON), RFC 6902 (JSON Patch), R4 datatypes.html
// (integer), http.html#transaction (no nested batch/transaction),
// RFC 6749 §3.3 (scope syntax).

import (
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

func TestHostileBodies(t *testing.T) {
	w := newWorld(t)
	h := w.h
	count := func() any { return h.req("GET", "Patient?_summary=count", nil, "").JSON["total"] }
	before := count()
	deep := strings.Repeat("[", 200000) + strings.Repeat("]", 200000)
	for _, c := range []struct {
		name, method, path, body, ctype string
		status                          int
	}{
		{"deep JSON Patch", "PATCH", "Patient/pat-a", deep, "application/json-patch+json", 400},
		{"deep FHIRPath Patch", "PATCH", "Patient/pat-a", `{"resourceType":"Parameters","parameter":` + deep + `}`, "application/fhir+json", 400},
		{"deep resource", "POST", "Patient", `{"resourceType":"Patient","extension":` + deep + `}`, "", 400},
		{"deep Bundle", "POST", "", `{"resourceType":"Bundle","type":"batch","entry":` + deep + `}`, "", 400},
		{"integer above 32 bits", "POST", "Patient", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`, "", 400},
		{"number overflowing float64", "POST", "Observation", strings.Replace(obs(w.pa, "laboratory", "1-1"), "1.5", "1e400", 1), "", 400},
		{"lone surrogate", "POST", "Patient", `{"resourceType":"Patient","name":[{"family":"\ud800"}]}`, "", 400},
		{"Bundle with a duplicate key", "POST", "", `{"resourceType":"Bundle","type":"batch","type":"transaction","entry":[]}`, "", 400},
	} {
		hdr := []string{}
		if c.ctype != "" {
			hdr = append(hdr, "Content-Type: "+c.ctype)
		}
		r := h.req(c.method, c.path, c.body, "", hdr...)
		if r.Status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, r.Status, c.status, truncate(r.Body))
			continue
		}
		r.outcome(t)
	}
	// Copy growth: 22 copies of the document into itself.
	var ops []string
	for i := 0; i < 22; i++ {
		ops = append(ops, `{"op":"copy","from":"","path":"/contained/-"}`)
	}
	h.req("PATCH", "Patient/pat-a", `[{"op":"add","path":"/contained","value":[]},`+strings.Join(ops, ",")+`]`, "",
		"Content-Type: application/json-patch+json").must(t, 413).outcome(t)
	// A failing test op does not echo the stored value.
	r := h.req("PATCH", "Patient/pat-a", `[{"op":"test","path":"/name/0/family","value":"Zulu"}]`, "",
		"Content-Type: application/json-patch+json")
	if r.Status < 400 || r.Status >= 500 || strings.Contains(string(r.Body), "Alpha") {
		t.Errorf("failing test op: %d %s", r.Status, r.Body)
	}
	h.req("GET", "Patient/pat-a", nil, "").must(t, 200)
	if got := h.req("GET", "Patient/pat-a", nil, "").JSON["meta"].(map[string]any)["versionId"]; got != "1" {
		t.Errorf("Patient/pat-a changed by rejected patches: version %v", got)
	}
	if after := count(); after != before {
		t.Errorf("rejected bodies stored Patients: %v -> %v", before, after)
	}
}

// A batch/transaction entry may not itself be a batch/transaction.
func TestNestedBundles(t *testing.T) {
	w := newWorld(t)
	h := w.h
	count := func() any { return h.req("GET", "Patient?_summary=count", nil, "").JSON["total"] }
	before := count()
	inner := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`
	for _, url := range []string{"", "/", h.base, h.base + "/"} {
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},` +
			`{"resource":` + inner + `,"request":{"method":"POST","url":"` + url + `"}}]}`
		h.req("POST", "", tx, "").must(t, 400).outcome(t)
		batch := strings.Replace(tx, `"type":"transaction","entry":[{"fullUrl"`, `"type":"batch","entry":[{"fullUrl"`, 1)
		b := h.req("POST", "", batch, "").must(t, 200)
		es := b.entries()
		if len(es) != 2 || !strings.HasPrefix(es[1]["response"].(map[string]any)["status"].(string), "400") {
			t.Errorf("batch with a nested Bundle at %q: %s", url, truncate(b.Body))
		}
	}
	if n := count(); n == before {
		t.Errorf("the batches' valid entries were not stored")
	}
	// A document Bundle stored as a resource is fine.
	h.req("POST", "Bundle", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}}]}`, "").must(t, 201)
}

// Scopes split on U+0020 only: a token whose scopes are joined by another
// space character grants nothing.
func TestScopeSeparators(t *testing.T) {
	w := newWorld(t)
	h := w.h
	for _, sep := range []string{"\u00a0", "\t", "\n", "\u2003"} {
		tok := h.token(devissuer.MintOptions{Scope: "patient/Patient.rs" + sep + "patient/Observation.rs", Patient: w.pa, FHIRUser: "Patient/" + w.pa})
		if r := h.req("GET", "Observation/"+w.labA, nil, tok); r.Status == 200 {
			t.Errorf("scopes joined by %q granted a read", sep)
		}
	}
	tok := h.token(devissuer.MintOptions{Scope: "patient/Patient.rs  patient/Observation.rs", Patient: w.pa, FHIRUser: "Patient/" + w.pa})
	h.req("GET", "Observation/"+w.labA, nil, tok).must(t, 200)
}

// A granular scope with a date, number, quantity or composite condition
// answers a read exactly as a search (scopes-and-launch-context.html#
// finer-grained-resource-constraints-using-search-parameters).
func TestGranularScopeReadEqualsSearch(t *testing.T) {
	w := newWorld(t)
	h := w.h
	put(h, "Observation", "old-a", strings.Replace(obs(w.pa, "laboratory", "2160-0"), "2026-01-02T10:00:00Z", "2019-05-01T10:00:00Z", 1))
	put(h, "Observation", "bp-a", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/pat-a"},"effectiveDateTime":"2026-01-02",`+
		`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":150,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`)
	for _, q := range []string{
		"date=ge2020",
		"date=lt2020-01-01",
		"value-quantity=gt1",
		"value-quantity=le1.5|http://unitsofmeasure.org|mg/dL",
		"component-code-value-quantity=http://loinc.org|8480-6$gt140",
		"_lastUpdated=ge2000",
	} {
		tok := w.patientToken(w.pa, "patient/Observation.rs?"+q)
		found := ids(h.req("GET", "Observation?_count=100", nil, tok).must(t, 200))
		for _, id := range []string{w.labA, w.vitalA, "old-a", "bp-a", w.labB} {
			r := h.req("GET", "Observation/"+id, nil, tok)
			if (r.Status == 200) != has(found, "Observation/"+id) {
				t.Errorf("scope ?%s: read of %s is %d but search finds %v", q, id, r.Status, found)
			}
		}
		if len(found) == 0 {
			t.Errorf("scope ?%s: search finds nothing; the test data should match", q)
		}
	}
}

// 3,000 _has parameters are refused at once, not run (bounded work).
func TestSearchBoundsEndToEnd(t *testing.T) {
	w := newWorld(t)
	h := w.h
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		fmt := "&_has:Observation:subject:code=%d"
		b.WriteString(strings.Replace(fmt, "%d", "x"+strings.Repeat("1", i%7), 1))
	}
	r := h.req("GET", "Patient?_id=pat-a"+b.String(), nil, "").must(t, 400)
	if c := r.outcome(t)["code"]; c != "too-costly" {
		t.Errorf("issue code %v, want too-costly", c)
	}
	h.req("GET", "Observation?subject:Patient.link:Patient.link:Patient.link:Patient.link:Patient.name=x", nil, "").must(t, 400)
}
