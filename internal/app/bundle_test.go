package app

// End-to-end tests of batch/transaction Bundles (http.html#transaction),
// PATCH (http.html#patch) and race-free conditional writes through the real
// pipeline and store.

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const txBundle = `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"TX-1"}],"name":[{"family":"Tx"}]},
  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://hospital.example/mrn|TX-1"}},
 {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059","resource":{"resourceType":"Observation","status":"final","code":{"text":"glucose"},
   "subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},"valueQuantity":{"value":5.50,"unit":"mmol/L"},
   "extension":[{"url":"http://example.org/about","valueReference":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}]},
  "request":{"method":"POST","url":"Observation"}}
]}`

// http.html#transaction: placeholders resolved, references rewritten, numbers intact.
func TestTransaction(t *testing.T) {
	h := newHarness(t)
	r := h.req("POST", "", txBundle, "").must(t, 200)
	if r.str("type") != "transaction-response" {
		t.Fatalf("type %q", r.str("type"))
	}
	es := r.entries()
	if len(es) != 2 {
		t.Fatalf("%d entries", len(es))
	}
	for _, e := range es {
		resp := e["response"].(map[string]any)
		if !strings.HasPrefix(resp["status"].(string), "201") || resp["location"] == nil || resp["etag"] == nil {
			t.Errorf("entry response %v", resp)
		}
	}
	loc := es[0]["response"].(map[string]any)["location"].(string)
	pid := strings.Split(strings.TrimPrefix(loc, h.base+"/"), "/")[1]
	obs := h.req("GET", "Observation?subject=Patient/"+pid, nil, "").must(t, 200)
	if len(obs.entries()) != 1 {
		t.Fatalf("observation not linked to the new patient: %s", truncate(obs.Body))
	}
	body := string(h.req("GET", strings.TrimPrefix(es[1]["response"].(map[string]any)["location"].(string), h.base+"/"), nil, "").Body)
	if strings.Contains(body, "urn:uuid") || strings.Count(body, "Patient/"+pid) != 2 || !strings.Contains(body, `"value":5.50`) {
		t.Errorf("references or numbers not right: %s", body)
	}
	// Re-sent after a timeout: the conditional create finds the patient.
	again := h.req("POST", "", txBundle, "").must(t, 200)
	if st := again.entries()[0]["response"].(map[string]any)["status"].(string); !strings.HasPrefix(st, "200") {
		t.Errorf("conditional create in re-sent transaction: %s", st)
	}
	pats := h.req("GET", "Patient?identifier=http://hospital.example/mrn|TX-1", nil, "").must(t, 200)
	if len(pats.entries()) != 1 {
		t.Errorf("re-sent transaction duplicated the patient: %d", len(pats.entries()))
	}
}

// A transaction with an invalid entry fails whole, pointing at the entry.
func TestTransactionAtomicOnInvalidEntry(t *testing.T) {
	h := newHarness(t)
	bad := strings.Replace(txBundle, `"status":"final"`, `"status":"final","effectiveDateTime":"2020-99-99"`, 1)
	bad = strings.Replace(bad, "TX-1", "TX-2", -1)
	r := h.req("POST", "", bad, "")
	if r.Status != 400 {
		t.Fatalf("status %d: %s", r.Status, truncate(r.Body))
	}
	iss := r.outcome(t)
	if ex := fmt.Sprint(iss["expression"]); !strings.Contains(ex, "entry[1]") || !strings.Contains(ex, "effectiveDateTime") {
		t.Errorf("expression %v does not point at entry 1's effectiveDateTime", ex)
	}
	if n := len(h.req("GET", "Patient?identifier=http://hospital.example/mrn|TX-2", nil, "").must(t, 200).entries()); n != 0 {
		t.Errorf("failed transaction left %d patients", n)
	}
	// Over the entry limit: 413.
	h2 := newHarness(t, func(o *Options) { o.MaxEntries = 1 })
	h2.req("POST", "", txBundle, "").must(t, http.StatusRequestEntityTooLarge).outcome(t)
}

// http.html#batch: entries independent, failures reported per entry.
func TestBatch(t *testing.T) {
	h := newHarness(t)
	b := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","active":"nope"},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"GET","url":"Patient/missing"}}]}`
	r := h.req("POST", "", b, "").must(t, 200)
	es := r.entries()
	want := []string{"201", "400", "404"}
	for i, e := range es {
		resp := e["response"].(map[string]any)
		if !strings.HasPrefix(resp["status"].(string), want[i]) {
			t.Errorf("entry %d status %v, want %s", i, resp["status"], want[i])
		}
		if want[i] != "201" && resp["outcome"] == nil {
			t.Errorf("entry %d has no outcome", i)
		}
	}
}

// http.html#patch: JSON Patch and FHIRPath Patch, validated like any write.
func TestPatch(t *testing.T) {
	h := newHarness(t)
	id := h.req("POST", "Patient", patientJSON, "").must(t, 201).str("id")
	jp := `[{"op":"replace","path":"/name/0/family","value":"Jones"},{"op":"add","path":"/active","value":true}]`
	r := h.req("PATCH", "Patient/"+id, jp, "", "Content-Type: application/json-patch+json").must(t, 200)
	if !strings.Contains(string(r.Body), `"Jones"`) || r.str("meta", "versionId") != "2" || !strings.Contains(string(r.Body), `1.50`) {
		t.Errorf("json patch: %s", r.Body)
	}
	fp := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.birthDate"},{"name":"value","valueDate":"1981-01-01"}]}]}`
	r = h.req("PATCH", "Patient/"+id, fp, "", "Content-Type: application/fhir+json").must(t, 200)
	if !strings.Contains(string(r.Body), "1981-01-01") {
		t.Errorf("fhirpath patch: %s", r.Body)
	}
	// The patched result is validated: an invalid value is rejected, nothing stored.
	h.req("PATCH", "Patient/"+id, `[{"op":"replace","path":"/birthDate","value":"not-a-date"}]`, "", "Content-Type: application/json-patch+json").must(t, 400)
	h.req("PATCH", "Patient/"+id, `[{"op":"test","path":"/active","value":false}]`, "", "Content-Type: application/json-patch+json").must(t, 422)
	h.req("PATCH", "Patient/"+id, jp, "", "Content-Type: application/json-patch+json", `If-Match: W/"1"`).must(t, 412)
	if v := h.req("GET", "Patient/"+id, nil, "").str("meta", "versionId"); v != "3" {
		t.Errorf("version %s after rejected patches, want 3", v)
	}
	// Conditional patch.
	h.req("PATCH", "Patient?identifier=http://hospital.example/mrn|MRN-1", `[{"op":"add","path":"/gender","value":"female"}]`, "",
		"Content-Type: application/json-patch+json").must(t, 200)
}

// Race-free conditional create: N concurrent identical conditional creates
// yield exactly one resource (http.html#ccreate).
func TestConcurrentConditionalCreate(t *testing.T) {
	h := newHarness(t)
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := strings.Replace(patientJSON, "MRN-1", "RACE-1", 1)
			if i%2 == 0 {
				statuses[i] = h.req("POST", "Patient", body, "", "If-None-Exist: identifier=http://hospital.example/mrn|RACE-1").Status
				return
			}
			tx := strings.Replace(strings.Replace(txBundle, "TX-1", "RACE-1", -1), `"family":"Tx"`, `"family":"Race"`, 1)
			statuses[i] = h.req("POST", "", tx, "").Status
		}(i)
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 && s != 201 {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if got := len(h.req("GET", "Patient?identifier=http://hospital.example/mrn|RACE-1", nil, "").must(t, 200).entries()); got != 1 {
		t.Errorf("%d patients from %d concurrent conditional creates, want 1", got, n)
	}
}

// Concurrent If-Match updates: exactly one wins per version, the others get 412; no lost update.
func TestConcurrentIfMatch(t *testing.T) {
	h := newHarness(t)
	id := h.req("POST", "Patient", patientJSON, "").must(t, 201).str("id")
	const n = 6
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := strings.Replace(patientJSON, `{"resourceType":"Patient"`, `{"resourceType":"Patient","id":"`+id+`"`, 1)
			body = strings.Replace(body, "Ann", fmt.Sprintf("Writer%d", i), 1)
			statuses[i] = h.req("PUT", "Patient/"+id, body, "", `If-Match: W/"1"`).Status
		}(i)
	}
	wg.Wait()
	wins := 0
	for _, s := range statuses {
		switch s {
		case 200:
			wins++
		case 412:
		default:
			t.Errorf("status %d", s)
		}
	}
	if wins != 1 {
		t.Errorf("%d updates won with If-Match W/\"1\", want exactly 1 (%v)", wins, statuses)
	}
	hist := h.req("GET", "Patient/"+id+"/_history", nil, "").must(t, 200)
	if len(hist.entries()) != 2 {
		t.Errorf("history has %d versions, want 2", len(hist.entries()))
	}
	// Without If-Match, concurrent updates all land as successive versions (no lost update).
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := strings.Replace(patientJSON, `{"resourceType":"Patient"`, `{"resourceType":"Patient","id":"`+id+`"`, 1)
			statuses[i] = h.req("PUT", "Patient/"+id, body, "").Status
		}(i)
	}
	wg.Wait()
	if v := h.req("GET", "Patient/"+id, nil, "").str("meta", "versionId"); v != fmt.Sprint(2+n) {
		t.Errorf("version %s after %d concurrent updates, want %d (%v)", v, n, 2+n, statuses)
	}
}
