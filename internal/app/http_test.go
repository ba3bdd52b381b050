package app

// End-to-end tests of the RESTful API (R4 http.html) through the real gin
// engine, the real pipeline and the embedded FerretDB: status codes,
// headers, OperationOutcome contents, and that bad input stores nothing.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const patientJSON = `{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"MRN-1"}],` +
	`"name":[{"family":"Smith","given":["Ann"]}],"birthDate":"1980-05-01",` +
	`"_birthDate":{"extension":[{"url":"http://example.org/precision","valueString":"exact"}]},` +
	`"extension":[{"url":"http://example.org/weight","valueDecimal":1.50}]}`

// http.html#create, #read, #vread, #update, #delete, #history
func TestCRUDLifecycle(t *testing.T) {
	h := newHarness(t)
	r := h.req("POST", "Patient", patientJSON, "").must(t, http.StatusCreated)
	id := r.str("id")
	if id == "" {
		t.Fatal("no id assigned")
	}
	if loc := r.Header.Get("Location"); loc != h.base+"/Patient/"+id+"/_history/1" {
		t.Errorf("Location = %q", loc)
	}
	if et := r.Header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag = %q", et)
	}
	if r.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.str("meta", "versionId") != "1" || r.str("meta", "lastUpdated") == "" {
		t.Errorf("meta not set: %s", r.Body)
	}
	// The JSON the client sent comes back intact: primitive extensions, decimals.
	if !strings.Contains(string(r.Body), `"valueDecimal":1.50`) || !strings.Contains(string(r.Body), `"_birthDate":{"extension"`) {
		t.Errorf("client content altered: %s", r.Body)
	}

	got := h.req("GET", "Patient/"+id, nil, "").must(t, http.StatusOK)
	if string(got.Body) != string(r.Body) {
		t.Errorf("read differs from create response:\n%s\n%s", got.Body, r.Body)
	}
	upd := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	upd = strings.Replace(upd, "Ann", "Anne", 1)
	u := h.req("PUT", "Patient/"+id, upd, "").must(t, http.StatusOK)
	if u.Header.Get("ETag") != `W/"2"` || u.str("meta", "versionId") != "2" {
		t.Errorf("update version: %s %s", u.Header.Get("ETag"), u.Body)
	}
	// Version-aware update with a stale version: 412 (http.html#concurrency).
	h.req("PUT", "Patient/"+id, upd, "", `If-Match: W/"1"`).must(t, http.StatusPreconditionFailed).outcome(t)
	h.req("PUT", "Patient/"+id, upd, "", `If-Match: W/"2"`).must(t, http.StatusOK)

	v1 := h.req("GET", "Patient/"+id+"/_history/1", nil, "").must(t, http.StatusOK)
	if !strings.Contains(string(v1.Body), `"Ann"`) || v1.Header.Get("ETag") != `W/"1"` {
		t.Errorf("vread 1: %s", v1.Body)
	}
	h.req("GET", "Patient/"+id+"/_history/9", nil, "").must(t, http.StatusNotFound).outcome(t)

	h.req("DELETE", "Patient/"+id, nil, "").must(t, http.StatusNoContent)
	g := h.req("GET", "Patient/"+id, nil, "").must(t, http.StatusGone)
	if g.outcome(t)["code"] != "deleted" {
		t.Errorf("410 issue code: %v", g.JSON)
	}
	hist := h.req("GET", "Patient/"+id+"/_history", nil, "").must(t, http.StatusOK)
	es := hist.entries()
	if hist.str("type") != "history" || len(es) != 4 {
		t.Fatalf("history: want 4 entries, got %d: %s", len(es), truncate(hist.Body))
	}
	if req := es[0]["request"].(map[string]any); req["method"] != "DELETE" {
		t.Errorf("newest history entry should be the delete: %v", es[0])
	}
	// Re-create after delete with PUT: version 5 (http.html#update, create on update).
	h.req("PUT", "Patient/"+id, upd, "").must(t, http.StatusCreated)
}

// http.html#update: create-on-update with a client id; id rules.
func TestUpdateRules(t *testing.T) {
	h := newHarness(t)
	body := `{"resourceType":"Patient","id":"client-id-1","active":true}`
	h.req("PUT", "Patient/client-id-1", body, "").must(t, http.StatusCreated)
	h.req("PUT", "Patient/client-id-1", body, "").must(t, http.StatusOK)
	cases := []struct {
		name, path, body string
		status           int
		expr             string
	}{
		{"id mismatch", "Patient/other", body, 400, "Patient.id"},
		{"no id", "Patient/client-id-1", `{"resourceType":"Patient"}`, 400, "Patient.id"},
		{"type mismatch", "Patient/client-id-1", `{"resourceType":"Observation","id":"client-id-1"}`, 400, "resourceType"},
		{"bad id syntax", "Patient/bad_id!", body, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.req("PUT", c.path, c.body, "").must(t, c.status)
			iss := r.outcome(t)
			if c.expr != "" {
				ex, _ := iss["expression"].([]any)
				if len(ex) == 0 || ex[0] != c.expr {
					t.Errorf("expression = %v, want %s", iss["expression"], c.expr)
				}
			}
		})
	}
}

// Bad input gets a 4xx OperationOutcome naming the problem, and nothing is stored.
func TestBadInputStoresNothing(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat(`{"extension":[`, 70) + strings.Repeat(`]}`, 70)
	cases := []struct {
		name, body string
		headers    []string
		status     int
		want       string // substring of diagnostics or expression
	}{
		{"invalid json", `{"resourceType":"Patient",`, nil, 400, "JSON"},
		{"not an object", `[1,2]`, nil, 400, "object"},
		{"wrong type", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resourceType"},
		{"no resourceType", `{"name":[{"family":"x"}]}`, nil, 400, "resourceType"},
		{"unknown element", `{"resourceType":"Patient","foo":1}`, nil, 400, "foo"},
		{"bad date", `{"resourceType":"Patient","birthDate":"1990-13-45"}`, nil, 400, "birthDate"},
		{"wrong value type", `{"resourceType":"Patient","active":"yes"}`, nil, 400, "active"},
		{"duplicate key", `{"resourceType":"Patient","active":true,"active":false}`, nil, 400, "Patient.active"},
		{"null value", `{"resourceType":"Patient","active":null}`, nil, 400, "active"},
		{"empty array", `{"resourceType":"Patient","name":[]}`, nil, 400, "name"},
		{"too deep", `{"resourceType":"Patient","extension":[` + deep + `]}`, nil, 400, "Patient.extension[0].extension[0]"},
		{"xml body", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type: application/fhir+xml"}, 415, "Content-Type"},
		{"too large", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 1<<20) + `</div>"}}`, nil, 413, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.req("POST", "Patient", c.body, "", c.headers...).must(t, c.status)
			iss := r.outcome(t)
			text := iss["diagnostics"].(string)
			if ex, ok := iss["expression"].([]any); ok {
				for _, e := range ex {
					text += " " + e.(string)
				}
			}
			if c.want != "" && !strings.Contains(text, c.want) {
				t.Errorf("issue %q does not mention %q", text, c.want)
			}
		})
	}
	s := h.req("GET", "Patient?_summary=count", nil, "").must(t, http.StatusOK)
	if total, _ := s.JSON["total"].(float64); total != 0 {
		t.Errorf("bad input stored %v patients", total)
	}
}

// http.html#mime-type, #general: XML gets a clear 406; JSON flavours both work.
func TestContentNegotiation(t *testing.T) {
	h := newHarness(t)
	h.req("GET", "metadata", nil, "-", "Accept: application/fhir+xml").must(t, http.StatusNotAcceptable).outcome(t)
	h.req("GET", "metadata?_format=xml", nil, "-").must(t, http.StatusNotAcceptable).outcome(t)
	r := h.req("GET", "metadata", nil, "-", "Accept: application/json").must(t, http.StatusOK)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Errorf("Accept application/json answered %q", r.Header.Get("Content-Type"))
	}
	p := h.req("GET", "metadata?_pretty=true", nil, "-").must(t, http.StatusOK)
	if !strings.Contains(string(p.Body), "\n  ") {
		t.Error("_pretty=true did not indent")
	}
	if r.str("fhirVersion") != "4.0.1" || r.str("resourceType") != "CapabilityStatement" {
		t.Errorf("metadata: %s", truncate(r.Body))
	}
}

// http.html#ops: Prefer return=minimal | representation | OperationOutcome.
func TestPreferReturn(t *testing.T) {
	h := newHarness(t)
	r := h.req("POST", "Patient", patientJSON, "", "Prefer: return=minimal").must(t, http.StatusCreated)
	if len(r.Body) != 0 || r.Header.Get("Location") == "" {
		t.Errorf("minimal: body %q, Location %q", r.Body, r.Header.Get("Location"))
	}
	o := h.req("POST", "Patient", patientJSON, "", "Prefer: return=OperationOutcome").must(t, http.StatusCreated)
	if o.str("resourceType") != "OperationOutcome" {
		t.Errorf("OperationOutcome: %s", o.Body)
	}
}

// http.html#cond-update, #ccreate, #cdelete: conditional interactions.
func TestConditionalInteractions(t *testing.T) {
	h := newHarness(t)
	cond := "If-None-Exist: identifier=http://hospital.example/mrn|MRN-1"
	first := h.req("POST", "Patient", patientJSON, "", cond).must(t, http.StatusCreated)
	again := h.req("POST", "Patient", patientJSON, "", cond).must(t, http.StatusOK)
	if again.str("id") != first.str("id") {
		t.Errorf("conditional create made a second resource")
	}
	// Conditional update: one match updates it.
	upd := strings.Replace(patientJSON, "Ann", "Annie", 1)
	u := h.req("PUT", "Patient?identifier=http://hospital.example/mrn|MRN-1", upd, "").must(t, http.StatusOK)
	if u.str("id") != first.str("id") || u.str("meta", "versionId") != "2" {
		t.Errorf("conditional update: %s", u.Body)
	}
	// No match: creates.
	other := strings.Replace(patientJSON, "MRN-1", "MRN-2", 1)
	h.req("PUT", "Patient?identifier=http://hospital.example/mrn|MRN-2", other, "").must(t, http.StatusCreated)
	// Several matches: 412 for create, update and delete.
	h.req("POST", "Patient", strings.Replace(patientJSON, "MRN-1", "MRN-3", 1), "").must(t, http.StatusCreated)
	h.req("POST", "Patient", strings.Replace(patientJSON, "MRN-1", "MRN-3", 1), "").must(t, http.StatusCreated)
	h.req("POST", "Patient", patientJSON, "", "If-None-Exist: identifier=http://hospital.example/mrn|MRN-3").must(t, http.StatusPreconditionFailed).outcome(t)
	h.req("PUT", "Patient?identifier=http://hospital.example/mrn|MRN-3", patientJSON, "").must(t, http.StatusPreconditionFailed)
	h.req("DELETE", "Patient?identifier=http://hospital.example/mrn|MRN-3", nil, "").must(t, http.StatusPreconditionFailed)
	// Single match: deleted.
	h.req("DELETE", "Patient?identifier=http://hospital.example/mrn|MRN-2", nil, "").must(t, http.StatusNoContent)
	s := h.req("GET", "Patient?identifier=http://hospital.example/mrn|MRN-2", nil, "").must(t, http.StatusOK)
	if len(s.entries()) != 0 {
		t.Errorf("conditionally deleted patient still found")
	}
}

// http.html#read: unknown types and ids are 404 with an OperationOutcome.
func TestNotFound(t *testing.T) {
	h := newHarness(t)
	h.req("GET", "Patient/nope", nil, "").must(t, http.StatusNotFound).outcome(t)
	h.req("GET", "Unicorn/1", nil, "").must(t, http.StatusNotFound).outcome(t)
	h.req("GET", "Unicorn", nil, "").must(t, http.StatusNotFound).outcome(t)
	r := h.req("GET", "/../../healthz", nil, "")
	if r.Status == http.StatusOK && r.JSON["resourceType"] == nil && !strings.Contains(string(r.Body), "status") {
		t.Errorf("odd path answered %d", r.Status)
	}
}

// http.html#history: type and system history with _since, _at, _count and next links.
func TestHistoryParams(t *testing.T) {
	h := newHarness(t)
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	h.clock.Set(t0)
	var ids []string
	for i := 0; i < 5; i++ {
		h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
		ids = append(ids, h.req("POST", "Patient", patientJSON, "").must(t, 201).str("id"))
	}
	h.clock.Set(t0.Add(10 * time.Minute))
	h.req("POST", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, "").must(t, 201)
	all := h.req("GET", "Patient/_history", nil, "").must(t, 200)
	if n := len(all.entries()); n != 5 {
		t.Fatalf("type history: %d entries", n)
	}
	since := h.req("GET", "Patient/_history?_since=2026-01-01T10:02:00Z", nil, "").must(t, 200)
	if n := len(since.entries()); n != 3 {
		t.Errorf("_since: %d entries, want 3", n)
	}
	// System history also holds the AuditEvents the audit queue writes meanwhile.
	sys := h.req("GET", "_history?_count=1000", nil, "").must(t, 200)
	n := 0
	for _, e := range sys.entries() {
		if !strings.Contains(e["fullUrl"].(string), "/AuditEvent/") {
			n++
		}
	}
	if n != 6 {
		t.Errorf("system history: %d entries besides AuditEvents, want 6", n)
	}
	// Paging through _count with next links, no duplicates.
	seen := map[string]bool{}
	next := "Patient/_history?_count=2"
	pages := 0
	for next != "" && pages < 10 {
		p := h.req("GET", next, nil, "").must(t, 200)
		pages++
		for _, e := range p.entries() {
			u := e["fullUrl"].(string)
			if seen[u] {
				t.Errorf("duplicate %s", u)
			}
			seen[u] = true
		}
		next = ""
		for _, l := range p.JSON["link"].([]any) {
			lm := l.(map[string]any)
			if lm["relation"] == "next" {
				next = strings.TrimPrefix(lm["url"].(string), h.base+"/")
			}
		}
	}
	if len(seen) != 5 || pages != 3 {
		t.Errorf("paging: %d resources over %d pages", len(seen), pages)
	}
	at := h.req("GET", "Patient/_history?_at=2026-01-01T10:01:30Z", nil, "").must(t, 200)
	if n := len(at.entries()); n != 2 {
		t.Errorf("_at: %d entries, want 2", n)
	}
	h.req("GET", "Patient/_history?_since=yesterday", nil, "").must(t, 400).outcome(t)
	_ = ids
	var _ = json.Marshal
}

// Health endpoints and request ids.
func TestHealthAndRequestID(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(h.srv.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	r := h.req("GET", "metadata", nil, "-", "X-Request-Id: abc-123")
	if r.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("request id not echoed")
	}
	if h.req("GET", "metadata", nil, "-").Header.Get("X-Request-Id") == "" {
		t.Errorf("request id not generated")
	}
}

// A malformed query string is a 400, never a silently wider search; a UTF-8
// byte order mark before the JSON is accepted (RFC 8259 §8.1).
func TestMalformedQueryAndBOM(t *testing.T) {
	h := newHarness(t)
	h.req("GET", "Patient?name=%ZZ", nil, "").must(t, 400).outcome(t)
	h.req("POST", "Patient", "\xef\xbb\xbf"+patientJSON, "").must(t, 201)
}
