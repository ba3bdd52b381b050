package bundle_test

// Batch and transaction Bundles on the real pipeline (fhir/server) and the
// in-memory SQLite store: what fake_test.go's Handler stands in for in the
// package's other tests. R4 http.html#transaction (all or nothing, urn:uuid
// references resolved, conditional create), http.html#brules (batch
// entries succeed or fail alone), and the access rules applied to every
// entry as to the same request.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/server/servertest"
)

type bundleResp struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
		Response struct {
			Status   string `json:"status"`
			Location string `json:"location"`
		} `json:"response"`
	} `json:"entry"`
}

func decode(t *testing.T, body []byte) bundleResp {
	t.Helper()
	var b bundleResp
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("response: %v: %s", err, body)
	}
	return b
}

func bundle(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

// ent is one entry: fullUrl may be "", res "" for none, extra more request
// fields (`"ifNoneExist":"..."`).
func ent(fullURL, method, url, res, extra string) string {
	e := `{`
	if fullURL != "" {
		e += `"fullUrl":"` + fullURL + `",`
	}
	e += `"request":{"method":"` + method + `","url":"` + url + `"`
	if extra != "" {
		e += "," + extra
	}
	e += "}"
	if res != "" {
		e += `,"resource":` + res
	}
	return e + "}"
}

func TestBundlesOnThePipeline(t *testing.T) {
	s, _ := servertest.New(t, servertest.Options{})
	emr := servertest.As(t, "system/*.cruds", "", "")
	count := func(t *testing.T, query string) int {
		t.Helper()
		r := servertest.Do(emr, s, "GET", query+"&_total=accurate", "")
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", query, r.Status, r.Body)
		}
		b := decode(t, r.Body)
		if b.Total == nil {
			t.Fatalf("GET %s: no total: %s", query, r.Body)
		}
		return *b.Total
	}
	patient := func(ident string) string {
		return `{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"` + ident + `"}]}`
	}

	t.Run("transaction: urn:uuid references point at the created resources", func(t *testing.T) {
		// http.html#transaction: references to a fullUrl of the Bundle are
		// replaced by the location the server assigned.
		r := servertest.Do(emr, s, "POST", "", bundle("transaction",
			ent("urn:uuid:11111111-1111-4111-8111-111111111111", "POST", "Patient", patient("uuid-1"), ""),
			ent("urn:uuid:22222222-2222-4222-8222-222222222222", "POST", "Observation",
				`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}}`, "")))
		if r.Status != 200 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		b := decode(t, r.Body)
		if b.Type != "transaction-response" || len(b.Entry) != 2 {
			t.Fatalf("response: %s", r.Body)
		}
		var locs []string
		for i, e := range b.Entry {
			if !strings.HasPrefix(e.Response.Status, "201") {
				t.Errorf("entry %d: status %q, want 201", i, e.Response.Status)
			}
			// A location may be absolute (http.html#create: Location).
			loc, _, _ := strings.Cut(strings.TrimPrefix(e.Response.Location, servertest.Base+"/"), "/_history/")
			locs = append(locs, loc)
		}
		if !strings.HasPrefix(locs[0], "Patient/") || !strings.HasPrefix(locs[1], "Observation/") {
			t.Fatalf("locations %v", locs)
		}
		o := servertest.Do(emr, s, "GET", locs[1], "")
		var obs struct {
			Subject struct{ Reference string } `json:"subject"`
		}
		if err := json.Unmarshal(o.Body, &obs); err != nil || o.Status != 200 {
			t.Fatalf("read %s: %d %s", locs[1], o.Status, o.Body)
		}
		if obs.Subject.Reference != locs[0] {
			t.Errorf("stored subject %q, want %q", obs.Subject.Reference, locs[0])
		}
		// The reference is searchable as written after the rewrite.
		if n := count(t, "Observation?subject="+locs[0]); n != 1 {
			t.Errorf("Observation?subject=%s: %d, want 1", locs[0], n)
		}
	})

	t.Run("transaction: conditional create matches what is stored", func(t *testing.T) {
		// http.html#ccreate through a Bundle entry's ifNoneExist: the
		// second transaction finds the first's patient (200), no duplicate.
		for i, want := range []string{"201", "200"} {
			r := servertest.Do(emr, s, "POST", "", bundle("transaction",
				ent("urn:uuid:33333333-3333-4333-8333-333333333333", "POST", "Patient", patient("cond-1"), `"ifNoneExist":"identifier=urn:test|cond-1"`)))
			if r.Status != 200 {
				t.Fatalf("transaction %d: %d %s", i, r.Status, r.Body)
			}
			if got := decode(t, r.Body).Entry[0].Response.Status; !strings.HasPrefix(got, want) {
				t.Errorf("transaction %d: entry status %q, want %s", i, got, want)
			}
		}
		if n := count(t, "Patient?identifier=urn:test|cond-1"); n != 1 {
			t.Errorf("patients with the identifier: %d, want 1", n)
		}
	})

	t.Run("transaction: one failing entry stores nothing", func(t *testing.T) {
		// http.html#transaction: "If any resource ... fails, then the whole
		// transaction fails"; the failure is an OperationOutcome.
		r := servertest.Do(emr, s, "POST", "", bundle("transaction",
			ent("", "POST", "Patient", patient("atomic-1"), ""),
			ent("", "POST", "Observation", `{"resourceType":"Observation","status":"not-a-status","code":{"text":"x"}}`, "")))
		if r.Status < 400 || r.Status >= 500 || !strings.Contains(string(r.Body), `"OperationOutcome"`) {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		if n := count(t, "Patient?identifier=urn:test|atomic-1"); n != 0 {
			t.Errorf("patients of the failed transaction: %d, want 0", n)
		}
	})

	t.Run("transaction: two entries on one resource are refused", func(t *testing.T) {
		// http.html#trules: a resource is the target of at most one entry.
		r := servertest.Do(emr, s, "POST", "", bundle("transaction",
			ent("", "PUT", "Patient/dup", `{"resourceType":"Patient","id":"dup"}`, ""),
			ent("", "PUT", "Patient/dup", `{"resourceType":"Patient","id":"dup","active":true}`, "")))
		if r.Status != 400 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		if g := servertest.Do(emr, s, "GET", "Patient/dup", ""); g.Status != 404 {
			t.Errorf("Patient/dup after the refused transaction: %d", g.Status)
		}
	})

	t.Run("batch: entries succeed or fail alone", func(t *testing.T) {
		// http.html#brules: each entry is processed on its own.
		r := servertest.Do(emr, s, "POST", "", bundle("batch",
			ent("", "POST", "Patient", patient("batch-1"), ""),
			ent("", "POST", "Observation", `{"resourceType":"Observation","status":"not-a-status","code":{"text":"x"}}`, ""),
			ent("", "GET", "Patient/never-stored", "", "")))
		if r.Status != 200 {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
		b := decode(t, r.Body)
		if b.Type != "batch-response" || len(b.Entry) != 3 {
			t.Fatalf("response: %s", r.Body)
		}
		for i, want := range []string{"201", "400", "404"} {
			if got := b.Entry[i].Response.Status; !strings.HasPrefix(got, want) {
				t.Errorf("entry %d: status %q, want %s", i, got, want)
			}
		}
		if n := count(t, "Patient?identifier=urn:test|batch-1"); n != 1 {
			t.Errorf("patients of the batch: %d, want 1", n)
		}
	})

	t.Run("a patient's transaction cannot write another's record", func(t *testing.T) {
		// Every entry is authorized as the same request would be: a patient
		// app writing into another patient's compartment fails the whole
		// transaction, and its own entry is not stored either.
		for _, p := range []string{"pa", "pb"} {
			if r := servertest.Do(emr, s, "PUT", "Patient/"+p, `{"resourceType":"Patient","id":"`+p+`"}`); r.Status != 201 {
				t.Fatalf("PUT Patient/%s: %d %s", p, r.Status, r.Body)
			}
		}
		pa := servertest.As(t, "patient/*.cruds", "pa", "Patient/pa")
		msg := func(text, patient string) string {
			return `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/` + patient +
				`"},"payload":[{"contentString":"` + text + `"}]}`
		}
		msgs := func(t *testing.T, patient string) int {
			return count(t, "Communication?subject=Patient/"+patient)
		}
		r := servertest.Do(pa, s, "POST", "", bundle("transaction",
			ent("", "POST", "Communication", msg("own", "pa"), ""),
			ent("", "POST", "Communication", msg("other", "pb"), "")))
		if r.Status < 400 || r.Status >= 500 || !strings.Contains(string(r.Body), `"OperationOutcome"`) {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		if a, b := msgs(t, "pa"), msgs(t, "pb"); a != 0 || b != 0 {
			t.Errorf("after the refused transaction: %d messages of pa, %d of pb; want none", a, b)
		}
		// The same entries as a batch: the patient's own succeeds alone.
		r = servertest.Do(pa, s, "POST", "", bundle("batch",
			ent("", "POST", "Communication", msg("own", "pa"), ""),
			ent("", "POST", "Communication", msg("other", "pb"), "")))
		if r.Status != 200 {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
		b := decode(t, r.Body)
		if got := b.Entry[0].Response.Status; !strings.HasPrefix(got, "201") {
			t.Errorf("own entry: %q, want 201", got)
		}
		if got := b.Entry[1].Response.Status; !strings.HasPrefix(got, "4") {
			t.Errorf("other's entry: %q, want a 4xx refusal", got)
		}
		if a, b := msgs(t, "pa"), msgs(t, "pb"); a != 1 || b != 0 {
			t.Errorf("after the batch: %d messages of pa, %d of pb; want 1 and 0", a, b)
		}
	})
}
