package bundle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/store"
)

const base = "http://localhost/fhir"

func bundleOf(typ string, entries ...string) []byte {
	return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
}

func ent(fullURL, method, u, resource string, extra ...string) string {
	var parts []string
	if fullURL != "" {
		parts = append(parts, fmt.Sprintf(`"fullUrl":%q`, fullURL))
	}
	if resource != "" {
		parts = append(parts, `"resource":`+resource)
	}
	req := fmt.Sprintf(`"method":%q,"url":%q`, method, u)
	for _, x := range extra {
		req += "," + x
	}
	parts = append(parts, `"request":{`+req+`}`)
	return "{" + strings.Join(parts, ",") + "}"
}

type gotBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Response struct {
			Status       string          `json:"status"`
			Location     string          `json:"location"`
			Etag         string          `json:"etag"`
			LastModified string          `json:"lastModified"`
			Outcome      json.RawMessage `json:"outcome"`
		} `json:"response"`
	} `json:"entry"`
}

func run(t *testing.T, f *fake, body []byte) (*fhir.Response, gotBundle) {
	t.Helper()
	resp := Process(context.Background(), f, body, Options{Base: base, Now: func() time.Time { return f.now }})
	var b gotBundle
	if resp.Status == 200 {
		if err := json.Unmarshal(resp.Body, &b); err != nil {
			t.Fatalf("response is not JSON: %v\n%s", err, resp.Body)
		}
	}
	return resp, b
}

func outcome(t *testing.T, body []byte) fhir.OperationOutcome {
	t.Helper()
	var oo fhir.OperationOutcome
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	return oo
}

func statuses(b gotBundle) []string {
	var s []string
	for _, e := range b.Entry {
		s = append(s, e.Response.Status)
	}
	return s
}

// TestTransactionOrder: http.html#trules processes DELETE, POST, PUT/PATCH,
// then GET/HEAD; the response keeps the original entry order; writes see a
// Tx, reads run after the commit without one.
func TestTransactionOrder(t *testing.T) {
	f := newFake()
	f.put("Patient/old", `{"resourceType":"Patient","id":"old"}`)
	f.put("Patient/p1", `{"resourceType":"Patient","id":"p1"}`)
	body := bundleOf("transaction",
		ent("", "GET", "Patient/p1", ""),
		ent("", "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","active":true}`),
		ent("urn:uuid:o", "POST", "Observation", `{"resourceType":"Observation","status":"final","subject":{"reference":"urn:uuid:p"}}`),
		ent("urn:uuid:p", "POST", "Patient", `{"resourceType":"Patient"}`),
		ent("", "DELETE", "Patient/old", ""),
		ent("", "HEAD", "Patient/p1", ""),
	)
	resp, b := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	wantCalls := []string{"DELETE Patient/old", "POST Observation", "POST Patient", "PUT Patient/p1", "GET Patient/p1", "HEAD Patient/p1"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Fatalf("calls = %v, want %v", f.calls, wantCalls)
	}
	if want := []string{"200 OK", "200 OK", "201 Created", "201 Created", "204 No Content", "200 OK"}; !reflect.DeepEqual(statuses(b), want) {
		t.Fatalf("statuses = %v, want %v", statuses(b), want)
	}
	if b.Type != "transaction-response" || f.commits != 1 {
		t.Fatalf("type %q commits %d", b.Type, f.commits)
	}
	for i, tx := range map[int]bool{0: false, 1: true, 2: true, 3: true, 4: true, 5: false} {
		if f.txSeen[i] != tx {
			t.Errorf("entry %d: Tx in ctx = %v, want %v", i, f.txSeen[i], tx)
		}
	}
	// The GET ran after the commit and saw the PUT.
	if !strings.Contains(string(b.Entry[0].Resource), `"active":true`) {
		t.Errorf("GET did not see the committed PUT: %s", b.Entry[0].Resource)
	}
	// POST ids were assigned by the processor in entry order (Observation first).
	if f.reqs[2].AssignID != "id1" || f.reqs[3].AssignID != "id2" {
		t.Errorf("AssignID = %q, %q", f.reqs[2].AssignID, f.reqs[3].AssignID)
	}
	if got := string(f.res["Observation/id1"]); !strings.Contains(got, `"reference":"Patient/id2"`) {
		t.Errorf("placeholder not rewritten: %s", got)
	}
	e := b.Entry[3]
	if e.Response.Location != "http://localhost/fhir/Patient/id2/_history/1" || e.Response.Etag != `W/"1"` || e.Response.LastModified != "2024-05-06T07:08:09Z" || e.FullURL != base+"/Patient/id2" {
		t.Errorf("entry 3 response = %+v fullUrl %q", e.Response, e.FullURL)
	}
	if f.res["Patient/old"] != nil {
		t.Errorf("delete not committed")
	}
}

// TestPlaceholderRewrite: every reference to a placeholder is rewritten —
// in extensions, contained resources, narrative href/src and uri values —
// while every other byte (order, whitespace, 1.50, escapes) is kept, and
// Identifier.value is left alone (bundle.html#references).
func TestPlaceholderRewrite(t *testing.T) {
	f := newFake()
	obs := `{
  "resourceType": "Observation",
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:p\">patient</a> <img src='urn:uuid:p'/> <a href=\"http://x/y\">x</a></div>"},
  "contained": [{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:p"}], "agent": [{"who": {"reference": "Practitioner/1"}}]}],
  "extension": [{"url": "http://e", "extension": [{"url": "inner", "valueReference": {"reference": "urn:uuid:p", "display": "caf\u00e9 & <b>"}}]}, {"url": "http://u", "valueUri": "urn:uuid:p"}],
  "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:p"}],
  "status": "final",
  "valueQuantity": {"value": 1.50, "unit": "mg"},
  "component": [{"valueDecimal": 1e2}, {"valueDecimal": -0.0}],
  "subject": {"reference": "urn:uuid:p"},
  "focus": [{"reference": "#c1"}, {"reference": "Patient/abc"}]
}`
	body := bundleOf("transaction",
		ent("urn:uuid:o", "POST", "Observation", obs),
		ent("urn:uuid:p", "POST", "Patient", `{"resourceType":"Patient"}`),
	)
	resp, _ := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	want := obs
	for _, r := range []struct{ old, new string }{
		{`<a href=\"urn:uuid:p\">`, `<a href=\"Patient/id2\">`},
		{`<img src='urn:uuid:p'/>`, `<img src='Patient/id2'/>`},
		{`"target": [{"reference": "urn:uuid:p"}]`, `"target": [{"reference": "Patient/id2"}]`},
		{`"valueReference": {"reference": "urn:uuid:p"`, `"valueReference": {"reference": "Patient/id2"`},
		{`"valueUri": "urn:uuid:p"`, `"valueUri": "Patient/id2"`},
		{`"subject": {"reference": "urn:uuid:p"}`, `"subject": {"reference": "Patient/id2"}`},
	} {
		if !strings.Contains(want, r.old) {
			t.Fatalf("test bug: %s", r.old)
		}
		want = strings.Replace(want, r.old, r.new, 1)
	}
	// The div string is re-encoded (only it changed); everything else is byte-identical.
	got := string(f.reqs[0].Body)
	var gotDiv, wantDiv struct {
		Text struct{ Div string } `json:"text"`
	}
	_ = json.Unmarshal([]byte(got), &gotDiv)
	_ = json.Unmarshal([]byte(want), &wantDiv)
	if gotDiv.Text.Div != wantDiv.Text.Div {
		t.Fatalf("div = %s\nwant %s", gotDiv.Text.Div, wantDiv.Text.Div)
	}
	divLine := func(s string) string {
		i := strings.Index(s, `"div": `)
		j := strings.Index(s[i:], "},\n")
		return s[:i] + s[i+j:]
	}
	if divLine(got) != divLine(want) {
		t.Fatalf("body changed beyond the references:\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(got, `"value": 1.50`) || !strings.Contains(got, `1e2`) || !strings.Contains(got, `caf\u00e9 & <b>`) {
		t.Fatalf("literals not preserved: %s", got)
	}
}

// TestAbsoluteFullURL: a POST with an absolute fullUrl gets a new id;
// absolute references and relative references resolved against the
// entry's base are rewritten (bundle.html#references).
func TestAbsoluteFullURL(t *testing.T) {
	f := newFake()
	body := bundleOf("transaction",
		ent("http://example.org/fhir/Patient/abc", "POST", "Patient", `{"resourceType":"Patient","id":"abc"}`),
		ent("http://example.org/fhir/Observation/o1", "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/abc"},"focus":[{"reference":"http://example.org/fhir/Patient/abc"}],"performer":[{"reference":"Practitioner/abc"}]}`),
		ent("urn:uuid:x", "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/abc"}}`),
		ent("", "POST", "Bundle", `{"resourceType":"Bundle","type":"document","entry":[{"fullUrl":"urn:uuid:c","resource":{"resourceType":"Composition","subject":{"reference":"urn:uuid:x"}}}]}`),
	)
	resp, _ := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if got, want := string(f.reqs[1].Body), `{"resourceType":"Observation","subject":{"reference":"Patient/id1"},"focus":[{"reference":"Patient/id1"}],"performer":[{"reference":"Practitioner/abc"}]}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Entry 3 is a document Bundle: its own urn:uuid references stay.
	// Entry 2's base is the server base: "Patient/abc" there is a real id.
	if got := string(f.reqs[2].Body); !strings.Contains(got, `"Patient/abc"`) {
		t.Errorf("reference rewritten against the wrong base: %s", got)
	}
	if got := string(f.reqs[3].Body); !strings.Contains(got, `"urn:uuid:x"`) {
		t.Errorf("document Bundle rewritten: %s", got)
	}
}

// TestPatchEntries: PATCH entries carry a Binary (JSON Patch) or a
// Parameters (FHIRPath Patch); placeholders inside patches are rewritten.
func TestPatchEntries(t *testing.T) {
	f := newFake()
	f.put("Patient/p1", `{"resourceType":"Patient","id":"p1","active":true}`)
	f.put("Observation/o1", `{"resourceType":"Observation","id":"o1","status":"preliminary","valueQuantity":{"value":1.50}}`)
	jp := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/active","value":false},{"op":"add","path":"/generalPractitioner","value":[{"reference":"urn:uuid:org"}]}]`))
	fp := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.status"},{"name":"value","valueCode":"final"}]},{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Observation"},{"name":"name","valueString":"performer"},{"name":"value","valueReference":{"reference":"urn:uuid:org"}}]}]}`
	body := bundleOf("transaction",
		ent("", "PATCH", "Patient/p1", `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"`+jp+`"}`),
		ent("", "PATCH", "Observation/o1", fp),
		ent("urn:uuid:org", "POST", "Organization", `{"resourceType":"Organization"}`),
	)
	resp, b := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if got, want := string(f.res["Patient/p1"]), `{"resourceType":"Patient","id":"p1","active":false,"generalPractitioner":[{"reference":"Organization/id1"}]}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got, want := string(f.res["Observation/o1"]), `{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{"value":1.50},"performer":[{"reference":"Organization/id1"}]}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if ct := f.reqs[0].Header.Get("Content-Type"); ct != "application/json-patch+json" {
		t.Errorf("content type %q", ct)
	}
	if want := []string{"200 OK", "200 OK", "201 Created"}; !reflect.DeepEqual(statuses(b), want) {
		t.Errorf("statuses %v", statuses(b))
	}
}

// TestConditionalReferences: "Patient?identifier=..." references resolve
// to exactly one match or the transaction fails (http.html#trules).
func TestConditionalReferences(t *testing.T) {
	setup := func() *fake {
		f := newFake()
		f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"},{"system":"s","value":"2"}]}`)
		f.put("Patient/b", `{"resourceType":"Patient","id":"b","identifier":[{"system":"s","value":"2"}]}`)
		return f
	}
	obs := func(ref string) []byte {
		return bundleOf("transaction", ent("", "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"`+ref+`"},"focus":[{"reference":"`+ref+`"}]}`))
	}
	f := setup()
	resp, _ := run(t, f, obs("Patient?identifier=s|1"))
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if got := string(f.reqs[0].Body); got != `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"focus":[{"reference":"Patient/a"}]}` {
		t.Errorf("got %s", got)
	}
	for _, tc := range []struct {
		ref    string
		status int
		expr   string
	}{
		{"Patient?identifier=s|2", 412, "Bundle.entry[0].resource.subject.reference"},
		{"Patient?identifier=s|9", 412, "Bundle.entry[0].resource.subject.reference"},
		{"Patient?colour=red", 400, "Bundle.entry[0].resource.subject.reference"},
		{"urn:uuid:nowhere", 400, "Bundle.entry[0].resource.subject.reference"},
	} {
		f := setup()
		resp, _ := run(t, f, obs(tc.ref))
		if resp.Status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.ref, resp.Status, tc.status, resp.Body)
			continue
		}
		oo := outcome(t, resp.Body)
		if oo.Issue[0].Expression[0] != tc.expr || !strings.Contains(oo.Issue[0].Diagnostics, "Bundle.entry[0]") {
			t.Errorf("%s: issue %+v", tc.ref, oo.Issue[0])
		}
		if f.commits != 0 || len(f.calls) != 0 {
			t.Errorf("%s: commits %d calls %v", tc.ref, f.commits, f.calls)
		}
	}
}

// TestConditionalCreate: ifNoneExist (http.html#ccreate) is resolved under
// a lock: one match -> 200 and the placeholder points at it, no write; none
// -> create; several -> 412 for the whole transaction.
func TestConditionalCreate(t *testing.T) {
	f := newFake()
	f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}]}`)
	body := bundleOf("transaction",
		ent("urn:uuid:p1", "POST", "Patient", `{"resourceType":"Patient","identifier":[{"system":"s","value":"1"}]}`, `"ifNoneExist":"identifier=s|1"`),
		ent("urn:uuid:p2", "POST", "Patient", `{"resourceType":"Patient","identifier":[{"system":"s","value":"2"}]}`, `"ifNoneExist":"identifier=s%7C2&_id=zz"`),
		ent("urn:uuid:p3", "POST", "Patient", `{"resourceType":"Patient"}`, `"ifNoneExist":"Patient?_id=zz&identifier=s|2"`),
		ent("", "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:p1"},"focus":[{"reference":"urn:uuid:p2"},{"reference":"urn:uuid:p3"}]}`),
	)
	resp, b := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if want := []string{"POST Patient", "POST Observation"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls %v, want %v (matched and repeated conditions must not write)", f.calls, want)
	}
	if want := []string{"200 OK", "201 Created", "200 OK", "201 Created"}; !reflect.DeepEqual(statuses(b), want) {
		t.Fatalf("statuses %v", statuses(b))
	}
	if b.Entry[0].Response.Location != base+"/Patient/a" {
		t.Errorf("location %q", b.Entry[0].Response.Location)
	}
	// Plain creates get their ids first (the Observation: id1).
	if h := f.reqs[1].Header.Get("If-None-Exist"); h != "" || f.reqs[1].AssignID != "id2" {
		t.Errorf("create request: If-None-Exist %q AssignID %q", h, f.reqs[1].AssignID)
	}
	if got := string(f.reqs[3].Body); got != `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"focus":[{"reference":"Patient/id2"},{"reference":"Patient/id2"}]}` {
		t.Errorf("got %s", got)
	}
	// Equivalent conditions share one lock key; locks are sorted and all released.
	wantLocks := []string{"cond:Patient?_id=zz&identifier=s%7C2", "cond:Patient?identifier=s%7C1"}
	if !reflect.DeepEqual(f.locked, wantLocks) {
		t.Errorf("locked %v, want %v", f.locked, wantLocks)
	}
	if len(f.unlocked) != len(f.locked) {
		t.Errorf("unlocked %v", f.unlocked)
	}

	f = newFake()
	f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}]}`)
	f.put("Patient/b", `{"resourceType":"Patient","id":"b","identifier":[{"system":"s","value":"1"}]}`)
	resp, _ = run(t, f, bundleOf("transaction", ent("", "PUT", "Patient/c", `{"resourceType":"Patient","id":"c"}`),
		ent("", "POST", "Patient", `{"resourceType":"Patient"}`, `"ifNoneExist":"identifier=s|1"`)))
	if resp.Status != 412 || f.commits != 0 || len(f.calls) != 0 {
		t.Fatalf("multiple matches: status %d commits %d calls %v", resp.Status, f.commits, f.calls)
	}
	if oo := outcome(t, resp.Body); oo.Issue[0].Expression[0] != "Bundle.entry[1].request.ifNoneExist" {
		t.Errorf("issue %+v", oo.Issue[0])
	}
	if len(f.unlocked) != 1 {
		t.Errorf("lock not released on failure: %v", f.unlocked)
	}
}

// TestConditionalUpdate: PUT Type?query resolves before the entry runs
// (http.html#cond-update) so its fullUrl can be referenced.
func TestConditionalUpdate(t *testing.T) {
	f := newFake()
	f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}]}`)
	body := bundleOf("transaction",
		ent("urn:uuid:m", "PUT", "Patient?identifier=s|1", `{"resourceType":"Patient","identifier":[{"system":"s","value":"1"}],"active":true}`),
		ent("urn:uuid:n", "PUT", "Patient?identifier=s|2", `{"resourceType":"Patient","identifier":[{"system":"s","value":"2"}]}`),
		ent("", "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:m"},"focus":[{"reference":"urn:uuid:n"}]}`),
	)
	resp, b := run(t, f, body)
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if r := f.reqs[0]; r.Method != "PUT" || r.Path != "Patient/a" || string(r.Body) != `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}],"active":true}` {
		t.Errorf("matched update: %s %s %s", r.Method, r.Path, r.Body)
	}
	if r := f.reqs[1]; r.Method != "POST" || r.Path != "Patient" || r.AssignID != "id2" {
		t.Errorf("unmatched update: %s %s %q", r.Method, r.Path, r.AssignID)
	}
	if got := string(f.reqs[2].Body); !strings.Contains(got, `"Patient/a"`) || !strings.Contains(got, `"Patient/id2"`) {
		t.Errorf("got %s", got)
	}
	if want := []string{"200 OK", "201 Created", "201 Created"}; !reflect.DeepEqual(statuses(b), want) {
		t.Errorf("statuses %v", statuses(b))
	}
	// A body id that differs from the match is a 400.
	f = newFake()
	f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}]}`)
	resp, _ = run(t, f, bundleOf("transaction", ent("", "PUT", "Patient?identifier=s|1", `{"resourceType":"Patient","id":"zz"}`)))
	if resp.Status != 400 {
		t.Errorf("status %d", resp.Status)
	}
}

// TestDuplicateTargets: a resource may be touched by only one entry, and
// fullUrls are unique (http.html#trules, bundle.html).
func TestDuplicateTargets(t *testing.T) {
	f := newFake()
	f.put("Patient/a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"1"}]}`)
	for name, body := range map[string][]byte{
		"two PUTs": bundleOf("transaction", ent("", "PUT", "Patient/1", `{"resourceType":"Patient","id":"1"}`), ent("", "PUT", "Patient/1", `{"resourceType":"Patient","id":"1"}`)),
		"DELETE and PATCH": bundleOf("transaction", ent("", "DELETE", "Patient/a", ""),
			ent("", "PATCH", "Patient/a", `{"resourceType":"Parameters","parameter":[]}`)),
		"conditional PUT onto a PUT": bundleOf("transaction", ent("", "PUT", "Patient/a", `{"resourceType":"Patient","id":"a"}`), ent("", "PUT", "Patient?identifier=s|1", `{"resourceType":"Patient"}`)),
		"duplicate fullUrl":          bundleOf("transaction", ent("urn:uuid:x", "POST", "Patient", `{"resourceType":"Patient"}`), ent("urn:uuid:x", "POST", "Patient", `{"resourceType":"Patient"}`)),
	} {
		f.calls = nil
		resp, _ := run(t, f, body)
		if resp.Status != 400 || len(f.calls) != 0 || f.commits != 0 {
			t.Errorf("%s: status %d calls %v commits %d: %s", name, resp.Status, f.calls, f.commits, resp.Body)
			continue
		}
		if oo := outcome(t, resp.Body); !strings.HasPrefix(oo.Issue[0].Expression[0], "Bundle.entry[1]") {
			t.Errorf("%s: issue %+v", name, oo.Issue[0])
		}
	}
}

// TestTransactionAtomic: when entry 3 fails nothing is committed, and the
// OperationOutcome points into that entry (http.html#transaction).
func TestTransactionAtomic(t *testing.T) {
	f := newFake()
	f.put("Patient/p1", `{"resourceType":"Patient","id":"p1"}`)
	body := bundleOf("transaction",
		ent("", "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","active":false}`),
		ent("", "POST", "Patient", `{"resourceType":"Patient"}`),
		ent("", "DELETE", "Patient/p1x", ""),
		ent("", "POST", "Observation", `{"resourceType":"Observation","invalid":true}`),
		ent("", "GET", "Patient/p1", ""),
	)
	resp, _ := run(t, f, body)
	if resp.Status != 400 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if f.commits != 0 {
		t.Fatalf("Commit called %d times", f.commits)
	}
	if len(f.res) != 1 || string(f.res["Patient/p1"]) != `{"resourceType":"Patient","id":"p1"}` {
		t.Fatalf("store changed: %v", f.res)
	}
	oo := outcome(t, resp.Body)
	is := oo.Issue[0]
	if !reflect.DeepEqual(is.Expression, []string{"Bundle.entry[3].resource.invalid"}) || !strings.HasPrefix(is.Diagnostics, "Bundle.entry[3] (POST Observation): ") {
		t.Errorf("issue %+v", is)
	}
	for _, c := range f.calls {
		if strings.HasPrefix(c, "GET") || strings.HasPrefix(c, "PUT") {
			t.Errorf("%s ran although an earlier-ordered entry failed", c)
		}
	}
	// A header problem is re-rooted onto the entry's request.
	f = newFake()
	f.put("Patient/p1", `{"resourceType":"Patient","id":"p1"}`)
	resp, _ = run(t, f, bundleOf("transaction", ent("", "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1"}`, `"ifMatch":"W/\"7\""`)))
	if resp.Status != 412 {
		t.Fatalf("status %d", resp.Status)
	}
	if oo := outcome(t, resp.Body); oo.Issue[0].Expression[0] != "Bundle.entry[0].request.ifMatch" {
		t.Errorf("issue %+v", oo.Issue[0])
	}
}

// TestCommitFailure: a version conflict at commit is a 409, another error a
// 500 with a generic message.
func TestCommitFailure(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{&store.OpError{Index: 0, Err: store.ErrConflict}, 409},
		{errBoom, 500},
		{fhir.Errorf(fhir.KindUnavailable, "down"), 503},
	} {
		f := newFake()
		f.commitErr = tc.err
		resp, _ := run(t, f, bundleOf("transaction", ent("", "POST", "Patient", `{"resourceType":"Patient"}`)))
		if resp.Status != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, resp.Status, tc.status)
		}
		oo := outcome(t, resp.Body)
		if strings.Contains(oo.Issue[0].Diagnostics, "boom") {
			t.Errorf("internal error leaked: %+v", oo.Issue[0])
		}
	}
}

// TestBatch: entries are independent; failures are reported per entry with
// response.outcome; GETs run last; no Tx is in the context.
func TestBatch(t *testing.T) {
	f := newFake()
	body := bundleOf("batch",
		ent("", "GET", "Patient/new1", ""),
		ent("", "PUT", "Patient/new1", `{"resourceType":"Patient","id":"new1"}`),
		ent("", "POST", "Observation", `{"resourceType":"Observation","invalid":true}`),
		ent("", "GET", "Patient/nope", ""),
		`{"request":{"url":"Patient"}}`,
		ent("urn:uuid:q", "POST", "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"urn:uuid:zzz"}}`, `"ifNoneExist":"identifier=s|1"`),
	)
	resp, b := run(t, f, body)
	if resp.Status != 200 || b.Type != "batch-response" {
		t.Fatalf("status %d type %q: %s", resp.Status, b.Type, resp.Body)
	}
	if want := []string{"200 OK", "201 Created", "400 Bad Request", "404 Not Found", "400 Bad Request", "201 Created"}; !reflect.DeepEqual(statuses(b), want) {
		t.Fatalf("statuses %v, want %v", statuses(b), want)
	}
	if f.commits != 0 || f.res["Patient/new1"] == nil {
		t.Errorf("batch writes must commit through Handle: commits %d", f.commits)
	}
	for i, seen := range f.txSeen {
		if seen {
			t.Errorf("entry %d saw a Tx", i)
		}
	}
	for _, i := range []int{2, 3, 4} {
		if b.Entry[i].Response.Outcome == nil || b.Entry[i].Resource != nil {
			t.Errorf("entry %d: no outcome", i)
			continue
		}
		oo := outcome(t, b.Entry[i].Response.Outcome)
		if !strings.HasPrefix(oo.Issue[0].Expression[0], fmt.Sprintf("Bundle.entry[%d]", i)) {
			t.Errorf("entry %d: %+v", i, oo.Issue[0])
		}
	}
	// Batch: no placeholder resolution, the conditional create is the pipeline's.
	if r := f.reqs[5]; r.Header.Get("If-None-Exist") != "identifier=s|1" || r.AssignID != "" || !strings.Contains(string(r.Body), "urn:uuid:zzz") {
		t.Errorf("batch request %+v", r)
	}
}

// TestBundleLimits: malformed Bundles and too many entries.
func TestBundleLimits(t *testing.T) {
	f := newFake()
	many := bundleOf("batch", ent("", "GET", "Patient/1", ""), ent("", "GET", "Patient/2", ""), ent("", "GET", "Patient/3", ""))
	resp := Process(context.Background(), f, many, Options{MaxEntries: 2})
	if resp.Status != 413 || len(f.calls) != 0 {
		t.Errorf("too many entries: %d", resp.Status)
	}
	outcome(t, resp.Body)
	for name, tc := range map[string]struct {
		body   string
		status int
		expr   string
	}{
		"not json":         {`{"resourceType":`, 400, ""},
		"not a bundle":     {`{"resourceType":"Patient"}`, 400, "resourceType"},
		"collection":       {`{"resourceType":"Bundle","type":"collection"}`, 400, "Bundle.type"},
		"no request":       {string(bundleOf("transaction", `{"resource":{"resourceType":"Patient"}}`)), 400, "Bundle.entry[0].request"},
		"no method":        {string(bundleOf("transaction", `{"request":{"url":"Patient"}}`)), 400, "Bundle.entry[0].request.method"},
		"bad method":       {string(bundleOf("transaction", ent("", "TRACE", "Patient", ""))), 400, "Bundle.entry[0].request.method"},
		"no url":           {string(bundleOf("transaction", `{"request":{"method":"GET"}}`)), 400, "Bundle.entry[0].request.url"},
		"foreign url":      {string(bundleOf("transaction", ent("", "GET", "http://evil.example/fhir/Patient/1", ""))), 400, "Bundle.entry[0].request.url"},
		"POST no resource": {string(bundleOf("transaction", ent("", "POST", "Patient", ""))), 400, "Bundle.entry[0].resource"},
		"PATCH wrong kind": {string(bundleOf("transaction", ent("", "PATCH", "Patient/1", `{"resourceType":"Patient"}`))), 400, "Bundle.entry[0].resource"},
		"PATCH bad binary": {string(bundleOf("transaction", ent("", "PATCH", "Patient/1", `{"resourceType":"Binary","contentType":"text/plain","data":""}`))), 415, "Bundle.entry[0].resource.contentType"},
		"bad ifNoneExist":  {string(bundleOf("transaction", ent("", "POST", "Patient", `{"resourceType":"Patient"}`, `"ifNoneExist":"%zz"`))), 400, "Bundle.entry[0].request.ifNoneExist"},
	} {
		resp, _ := run(t, f, []byte(tc.body))
		if resp.Status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.Status, tc.status, resp.Body)
			continue
		}
		oo := outcome(t, resp.Body)
		if tc.expr != "" && (len(oo.Issue[0].Expression) == 0 || oo.Issue[0].Expression[0] != tc.expr) {
			t.Errorf("%s: issue %+v", name, oo.Issue[0])
		}
	}
	if len(f.calls) != 0 {
		t.Errorf("calls %v", f.calls)
	}
}

func TestEmptyTransaction(t *testing.T) {
	f := newFake()
	resp, b := run(t, f, bundleOf("transaction"))
	if resp.Status != 200 || len(b.Entry) != 0 || strings.Contains(string(resp.Body), `"entry"`) {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
}

// TestAbsoluteRequestURL: entry.request.url may be absolute on this base.
func TestAbsoluteRequestURL(t *testing.T) {
	f := newFake()
	f.put("Patient/1", `{"resourceType":"Patient","id":"1"}`)
	resp, b := run(t, f, bundleOf("batch", ent("", "GET", base+"/Patient/1", ""), ent("", "GET", "/Patient?identifier=x&_id=1", "")))
	if resp.Status != 200 || b.Entry[0].Response.Status != "200 OK" {
		t.Fatalf("status %d %v", resp.Status, statuses(b))
	}
	if r := f.reqs[1]; r.Path != "Patient" || !reflect.DeepEqual(r.Query, url.Values{"identifier": {"x"}, "_id": {"1"}}) {
		t.Errorf("request %s %v", r.Path, r.Query)
	}
}

func TestRewriteStrings(t *testing.T) {
	in := []byte(" {\"a\" : [ 1.50 , \"x\\u0041\", {\"b\":\"x\"} , true,null,-0.0e+5 ] ,\"c\":\"\\\"q\"}\n")
	out, err := rewriteStrings(in, func(path []seg, s string) (string, bool, error) {
		if s == "xA" {
			return "<é>", true, nil
		}
		if jsonPath(path) == "a[2].b" {
			return "y", true, nil
		}
		return s, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := " {\"a\" : [ 1.50 , \"<é>\", {\"b\":\"y\"} , true,null,-0.0e+5 ] ,\"c\":\"\\\"q\"}\n"; string(out) != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
	same, _ := rewriteStrings(in, func(_ []seg, s string) (string, bool, error) { return s, false, nil })
	if &same[0] != &in[0] {
		t.Errorf("unchanged input should be returned as is")
	}
	for _, bad := range []string{`{"a":}`, `{"a":1,}`, `[1 2]`, `"abc`, `{"a":tru}`, `{} x`} {
		if _, err := rewriteStrings([]byte(bad), func(_ []seg, s string) (string, bool, error) { return s, false, nil }); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestSetTopLevelString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"resourceType":"Patient","active":true}`, `{"resourceType":"Patient","id":"x","active":true}`},
		{`{ "resourceType" : "Patient" }`, `{ "resourceType" : "Patient","id":"x" }`},
		{`{"active":true}`, `{"id":"x","active":true}`},
		{`{}`, `{"id":"x"}`},
		{`{"resourceType":"Patient","id":"old","a":{"id":"keep"}}`, `{"resourceType":"Patient","id":"x","a":{"id":"keep"}}`},
	} {
		got, err := setTopLevelString([]byte(tc.in), "id", "x")
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %s (%v), want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestConditionKey(t *testing.T) {
	a := ConditionKey("Patient", url.Values{"identifier": {"s|2", "s|1"}, "_id": {"x"}})
	b := ConditionKey("Patient", url.Values{"_id": {"x"}, "identifier": {"s|1", "s|2"}})
	if a != b || a != "cond:Patient?_id=x&identifier=s%7C1&identifier=s%7C2" {
		t.Errorf("%s != %s", a, b)
	}
	if ConditionKey("Patient", url.Values{"a": {"b&c=d"}}) == ConditionKey("Patient", url.Values{"a": {"b"}, "c": {"d"}}) {
		t.Errorf("keys must not collide")
	}
}

// BenchmarkTransaction1000 processes a 1000-entry transaction (500 patients
// and 500 observations referencing them by urn:uuid) against the fake.
func BenchmarkTransaction1000(b *testing.B) {
	var entries []string
	for i := 0; i < 500; i++ {
		entries = append(entries,
			ent(fmt.Sprintf("urn:uuid:p%d", i), "POST", "Patient", `{"resourceType":"Patient","name":[{"family":"F","given":["A"]}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`),
			ent("", "POST", "Observation", fmt.Sprintf(`{"resourceType":"Observation","status":"final","subject":{"reference":"urn:uuid:p%d"},"valueQuantity":{"value":1.50,"unit":"mg"}}`, i)))
	}
	body := bundleOf("transaction", entries...)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		f := newFake()
		resp := Process(context.Background(), f, body, Options{Base: base})
		if resp.Status != 200 {
			b.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
	}
}

// TestConcurrentConditionalCreate: two transactions with the same
// ifNoneExist race; the lock makes exactly one of them create.
func TestConcurrentConditionalCreate(t *testing.T) {
	f := newFake()
	f.matchDelay = time.Millisecond
	body := bundleOf("transaction", ent("", "POST", "Patient", `{"resourceType":"Patient","identifier":[{"system":"s","value":"1"}]}`, `"ifNoneExist":"identifier=s|1"`))
	const n = 8
	got := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			resp := Process(context.Background(), f, body, Options{Base: base})
			var b gotBundle
			_ = json.Unmarshal(resp.Body, &b)
			if len(b.Entry) == 1 {
				got <- b.Entry[0].Response.Status
			} else {
				got <- fmt.Sprint(resp.Status)
			}
		}()
	}
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[<-got]++
	}
	if counts["201 Created"] != 1 || counts["200 OK"] != n-1 {
		t.Fatalf("statuses %v", counts)
	}
}
